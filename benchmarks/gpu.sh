#!/usr/bin/env bash
# The GPU checks in one go, for a lent GPU machine (figures in docs/benchmarks.md): the
# pipeline's stages on CUDA, a 7B-shaped Solver update with and without gradient
# checkpointing, and rollout throughput (vLLM only where it is installed).
#     bash benchmarks/gpu.sh OUT_DIR        # PYTHON=... to pick the interpreter
set -u
out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c "import torch, transformers, peft; print('torch', torch.__version__,
'transformers', transformers.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$out/machine.txt"
# Each step gets its own time limit, so one that hangs cannot eat the others' time.
# First, both trainers' stages on the GPU with the tiny model (built on first use, or carried
# over in $IREASONER_CACHE: the machine may have no network).
timeout 240 "$py" scripts/gpu_smoke.py "$out/runs" 2>&1 | tee "$out/smoke.txt"
timeout 240 "$py" benchmarks/update.py --real-size 2>&1 | tee "$out/update.txt"
timeout 180 "$py" benchmarks/update.py --real-size --gradient-checkpointing 2>&1 \
    | tee "$out/update_checkpointing.txt"
# The transformers engine batches all B x N sequences in one call; one request per call is
# timed at B=1 only (it costs the same per request at any B: ~4 min for B=16).
vllm=--skip-vllm
"$py" -c "import vllm" 2>/dev/null && vllm=
timeout 300 "$py" benchmarks/rollouts.py --real-size $vllm --batches 1 16 --one-at-a-time 1 \
    --max-new-tokens 256 --repeats 1 2>&1 | tee "$out/rollouts.txt"
