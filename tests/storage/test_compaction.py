"""Compaction: completed iterations merged into chunk files, read exactly as before, and a crash
half-way through compaction counting no row twice."""

import pathlib

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage import RunStore, compact_run, compaction

STAGES = ("propose", "solve", "score", "update")


def _steps(iteration, n):
    return pa.table({"iteration": pa.array([iteration] * n, pa.int32()),
                     "rollout_index": pa.array(range(n), pa.int32()),
                     "text": pa.array([f"step of {iteration}"] * n, pa.string()),
                     "loo_similarity": pa.nulls(n, pa.float64())},
                    metadata={"ireasoner.schema_version": "2"})


def _skip(iteration):
    return pa.table({"iteration": pa.array([iteration], pa.int32()), "reason": ["no_question"]})


def _store(tmp_path, completed=5, written=6) -> RunStore:
    """Iterations 1..`completed` complete, `written` with files (the last one in flight).
    Iteration 3 has no steps (an empty table); only iterations 0 and 2 have skips."""
    store = RunStore(tmp_path / "run").open({"stages": list(STAGES)}, resume=False)
    store.write_table("skips", 0, _skip(0))
    for t in range(1, written + 1):
        store.write_table("steps", t, _steps(t, 0 if t == 3 else t))
        if t == 2:
            store.write_table("skips", t, _skip(t))
        for stage in STAGES if t <= completed else STAGES[:1]:
            store.mark_done(t, stage, {})
    return store


def _snapshot(store: RunStore, iterations=range(0, 8)) -> dict:
    """Everything a reader of the store can see of the steps and skips tables."""
    return {name: dict(
        scan=store.scan(name).collect().sort("iteration", maintain_order=True),
        some=store.scan(name, [2, 3, 5]).collect(),
        tables={t: store.read_table(name, t) for t in iterations if store.has_table(name, t)},
        has=[store.has_table(name, t) for t in iterations],
        iterations=store.table_iterations(name),
        glob=pl.read_parquet(str(store.root / name / "*.parquet")).sort("iteration",
                                                                        maintain_order=True),
    ) for name in ("steps", "skips")}


def _assert_same(before: dict, after: dict) -> None:
    for name, seen in before.items():
        for what in ("scan", "some", "glob"):
            assert after[name][what].equals(seen[what]), (name, what)
        assert after[name]["has"] == seen["has"] and after[name]["iterations"] == seen["iterations"]
        assert after[name]["tables"].keys() == seen["tables"].keys()
        for t, table in seen["tables"].items():
            again = after[name]["tables"][t]
            assert again.equals(table) and again.schema.equals(table.schema, check_metadata=True)


def _names(store: RunStore, name: str) -> list[str]:
    return sorted(p.name for p in (store.root / name).glob("*.parquet"))


def test_only_full_blocks_of_completed_iterations_are_compacted_and_read_as_before(
        tmp_path, monkeypatch):
    # One row per row group: reads must also be right when an iteration spans several.
    monkeypatch.setattr(compaction, "CHUNK_ROW_GROUP_ROWS", 1)
    store = _store(tmp_path)
    before = _snapshot(store)
    chunks = compact_run(store, 2)
    # 1-2 and 3-4 are full blocks of completed iterations; 5's block is not full, 6 is in flight;
    # iteration 0 (data loading) is never compacted.
    assert _names(store, "steps") == ["000001-000002.parquet", "000003-000004.parquet",
                                      "000005.parquet", "000006.parquet"]
    assert _names(store, "skips") == ["000000.parquet", "000002-000002.parquet"]
    assert len(chunks) == 3
    _assert_same(before, _snapshot(store))
    # Rows in iteration order, so a filter on `iteration` skips other iterations' row groups.
    groups = pq.ParquetFile(store.root / "steps" / "000001-000002.parquet").metadata
    assert [groups.row_group(i).column(0).statistics.max for i in range(3)] == [1, 2, 2]

    store.mark_done(6, "solve", {})
    for stage in STAGES[2:]:
        store.mark_done(6, stage, {})
    compact_run(store, 2)
    assert _names(store, "steps") == ["000001-000002.parquet", "000003-000004.parquet",
                                      "000005-000006.parquet"]
    assert compact_run(store, 2) == []  # nothing left to do


def test_a_crash_between_chunk_write_and_removal_counts_no_row_twice_and_is_cleaned(
        tmp_path, monkeypatch):
    store = _store(tmp_path)
    before = _snapshot(store)
    unlink = pathlib.Path.unlink
    calls = []

    def killed_after_one_removal(path, *args, **kwargs):
        """The process dies right after removing the first steps file it compacted."""
        if path.parent.name == "steps":
            if calls:
                raise KeyboardInterrupt("killed")
            calls.append(path)
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "unlink", killed_after_one_removal)
    with pytest.raises(KeyboardInterrupt):
        compact_run(store, 2)
    monkeypatch.undo()
    # The steps chunk 1-2 is complete, iteration 1's file is gone, iteration 2's is left behind.
    assert _names(store, "steps") == ["000001-000002.parquet", "000002.parquet",
                                      "000003.parquet", "000004.parquet", "000005.parquet",
                                      "000006.parquet"]
    seen = _snapshot(store)
    for name in before:  # raw globs see iteration 2 twice in this window; the store does not
        seen[name]["glob"] = before[name]["glob"]
    _assert_same(before, seen)

    assert compact_run(store, 0) == []  # what a resume does when compaction is off
    assert _names(store, "steps")[:2] == ["000001-000002.parquet", "000003.parquet"]
    compact_run(store, 2)
    _assert_same(before, _snapshot(store))


def test_a_file_holding_another_iterations_rows_is_refused(tmp_path):
    store = _store(tmp_path)
    store.write_table("steps", 2, _steps(1, 2))
    with pytest.raises(ValueError, match="000002.parquet holds rows of another iteration"):
        compact_run(store, 2)
    assert _names(store, "steps")[:2] == ["000001.parquet", "000002.parquet"]
