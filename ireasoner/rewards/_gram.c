/* Gram matrices of the member steps at each position of each group, for
 * ireasoner.rewards.step_level, computed where the rows lie.
 *
 * Each rollout's steps are its own (J_i, d) array, so the rows that meet at one
 * (group, position) are scattered in memory. The torch path copies them into a padded
 * buffer for one batched matmul, and that copy costs more than the arithmetic on a CPU.
 * Here each row is read once, where it lies, and products of float32 entries (exact in
 * double) are summed in double: the Gram keeps ~15 digits.
 *
 * member_gram(arrays, rollout, kept, out, dim, first, stop) -> int
 *   arrays   list of (J_i, d) arrays (buffer protocol)
 *   rollout  (B, N) int64, index into `arrays` of each slot
 *   kept     (B, N) int64, rows of each slot's array that enter the Gram (0: none)
 *   out      (B, J, N, N) float64, C-contiguous; entries of groups [first, stop) are
 *            written for every pair of slots that both keep position j, and left alone
 *            elsewhere (the caller passes zeros)
 * Returns -1, or the index of the first array that is not float32 with contiguous rows
 * (the caller converts and calls again). The arithmetic runs without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
/* One build runs on any x86-64, and where AVX2 or AVX-512 is there (nearly all servers) the
 * loops below run 4 or 8 doubles wide instead of 2: 1.7x and 2.2x faster on the 2-core box. */
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#define LANES 16 /* independent sums, so that consecutive adds do not wait on each other */
#define TILE 512  /* entries per row and pass: a block's rows, as doubles, stay in L1 */

/* sums[s * m + t] (t >= s) = rows[s] . rows[t], for the m rows of one (group, position).
 * Each pass converts a tile of every row to double once, then takes all the pairs' dots
 * from L1: converting per pair cost twice as much. scratch holds m * TILE doubles. */
VECTOR_CLONES
static void block_gram(const float *const *rows, Py_ssize_t m, Py_ssize_t n, double *scratch,
                       double *sums)
{
    for (Py_ssize_t k = 0; k < m * m; k++)
        sums[k] = 0;
    for (Py_ssize_t start = 0; start < n; start += TILE) {
        const Py_ssize_t len = n - start < TILE ? n - start : TILE;
        for (Py_ssize_t s = 0; s < m; s++)
            for (Py_ssize_t i = 0; i < len; i++)
                scratch[s * TILE + i] = rows[s][start + i];
        for (Py_ssize_t s = 0; s < m; s++) {
            const double *a = scratch + s * TILE;
            for (Py_ssize_t t = s; t < m; t++) {
                const double *b = scratch + t * TILE;
                double acc[LANES] = {0};
                Py_ssize_t i = 0;
                for (; i + LANES <= len; i += LANES)
                    for (int k = 0; k < LANES; k++)
                        acc[k] += a[i + k] * b[i + k];
                double total = 0;
                for (; i < len; i++)
                    total += a[i] * b[i];
                for (int k = 0; k < LANES; k++)
                    total += acc[k];
                sums[s * m + t] += total;
            }
        }
    }
}

static int is_float32(const Py_buffer *view)
{
    /* numpy writes "f" for native float32, "<f" or ">f" with an explicit byte order. */
    const char *f = view->format;
    const uint16_t probe = 1;
    const char native = *(const char *)&probe ? '<' : '>';
    if (f == NULL || view->itemsize != 4)
        return 0;
    if (*f == '@' || *f == '=' || *f == native)
        f++;
    return strcmp(f, "f") == 0;
}

static int typed_view(PyObject *obj, Py_buffer *view, const char *name, int ndim,
                      const char *format, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->ndim != ndim || view->format == NULL || strcmp(view->format, format) != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %d-d array of '%s'", name,
                     ndim, format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *member_gram(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *arrays, *rollout_obj, *kept_obj, *out_obj;
    Py_ssize_t dim, first, stop;
    if (!PyArg_ParseTuple(args, "O!OOOnnn", &PyList_Type, &arrays, &rollout_obj, &kept_obj,
                          &out_obj, &dim, &first, &stop))
        return NULL;
    Py_buffer rollout_view, kept_view, out_view;
    /* numpy's int64 is 'l' on LP64 systems and 'q' on Windows. */
    const char *int64 = sizeof(long) == 8 ? "l" : "q";
    if (typed_view(rollout_obj, &rollout_view, "rollout", 2, int64, 0) < 0)
        return NULL;
    if (typed_view(kept_obj, &kept_view, "kept", 2, int64, 0) < 0) {
        PyBuffer_Release(&rollout_view);
        return NULL;
    }
    if (typed_view(out_obj, &out_view, "out", 4, "d", 1) < 0) {
        PyBuffer_Release(&rollout_view);
        PyBuffer_Release(&kept_view);
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer *views = NULL;
    const char **rows = NULL; /* per (group, slot): first row, or NULL when nothing is kept */
    Py_ssize_t *row_stride = NULL, *member = NULL;
    const float **member_row = NULL;
    double *scratch = NULL, *sums = NULL;
    const Py_ssize_t groups = rollout_view.shape[0], width = rollout_view.shape[1];
    const Py_ssize_t positions = out_view.shape[1];
    const Py_ssize_t count = PyList_GET_SIZE(arrays);
    const int64_t *rollout = rollout_view.buf, *kept = kept_view.buf;
    double *out = out_view.buf;
    if (kept_view.shape[0] != groups || kept_view.shape[1] != width ||
        out_view.shape[0] != groups || out_view.shape[2] != width ||
        out_view.shape[3] != width || first < 0 || first > stop || stop > groups || dim < 1) {
        PyErr_SetString(PyExc_ValueError, "member_gram: inconsistent shapes or range");
        goto done;
    }
    const Py_ssize_t slots = (stop - first) * width;
    views = PyMem_Calloc(slots ? slots : 1, sizeof(Py_buffer));
    rows = PyMem_Calloc(slots ? slots : 1, sizeof(char *));
    row_stride = PyMem_Calloc(slots ? slots : 1, sizeof(Py_ssize_t));
    member = PyMem_Calloc(width ? width : 1, sizeof(Py_ssize_t));
    member_row = PyMem_Calloc(width ? width : 1, sizeof(float *));
    scratch = PyMem_Calloc(width ? width * TILE : 1, sizeof(double));
    sums = PyMem_Calloc(width ? width * width : 1, sizeof(double));
    if (views == NULL || rows == NULL || row_stride == NULL || member == NULL ||
        member_row == NULL || scratch == NULL || sums == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t unsupported = -1;
    for (Py_ssize_t s = 0; s < slots && unsupported < 0; s++) {
        const Py_ssize_t at = first * width + s;
        if (kept[at] <= 0)
            continue;
        if (kept[at] > positions || rollout[at] < 0 || rollout[at] >= count) {
            PyErr_SetString(PyExc_ValueError, "member_gram: kept or rollout out of range");
            goto done;
        }
        Py_buffer *view = &views[s];
        if (PyObject_GetBuffer(PyList_GET_ITEM(arrays, rollout[at]), view,
                               PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            unsupported = rollout[at];
            break;
        }
        if (!is_float32(view) || view->ndim != 2 || view->shape[1] != dim ||
            view->shape[0] < kept[at] || view->strides[1] != 4) {
            PyBuffer_Release(view);
            unsupported = rollout[at];
            break;
        }
        rows[s] = view->buf;
        row_stride[s] = view->strides[0];
    }
    if (unsupported < 0) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t b = first; b < stop; b++) {
            const Py_ssize_t base = (b - first) * width;
            for (Py_ssize_t j = 0; j < positions; j++) {
                Py_ssize_t m = 0; /* members of G_j that keep position j */
                for (Py_ssize_t s = 0; s < width; s++)
                    if (kept[b * width + s] > j) {
                        member[m] = s;
                        member_row[m++] = (const float *)(rows[base + s]
                                                          + j * row_stride[base + s]);
                    }
                if (m == 0)
                    continue;
                block_gram(member_row, m, dim, scratch, sums);
                double *block = out + (b * positions + j) * width * width;
                for (Py_ssize_t s = 0; s < m; s++)
                    for (Py_ssize_t t = s; t < m; t++)
                        block[member[s] * width + member[t]] =
                            block[member[t] * width + member[s]] = sums[s * m + t];
            }
        }
        Py_END_ALLOW_THREADS
    }
    result = PyLong_FromSsize_t(unsupported);
done:
    if (views != NULL && rows != NULL)
        for (Py_ssize_t s = 0; s < (stop - first) * width; s++)
            if (rows[s] != NULL)
                PyBuffer_Release(&views[s]);
    PyMem_Free(views);
    PyMem_Free(rows);
    PyMem_Free(row_stride);
    PyMem_Free(member);
    PyMem_Free(member_row);
    PyMem_Free(scratch);
    PyMem_Free(sums);
    PyBuffer_Release(&rollout_view);
    PyBuffer_Release(&kept_view);
    PyBuffer_Release(&out_view);
    return result;
}

static PyMethodDef methods[] = {
    {"member_gram", member_gram, METH_VARARGS,
     "member_gram(arrays, rollout, kept, out, dim, first, stop) -> int: see _gram.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gram", "Gram matrices of member steps, read in place.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__gram(void) { return PyModule_Create(&module); }
