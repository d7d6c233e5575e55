#!/usr/bin/env bash
# Sets up the environment and runs the embedded default on the miniature world: the world
# model (the tiny Qwen2.5-VL warmed up to count coloured shapes, right about half
# the time; built offline and cached the first time) trains label-free from its own agreement for
# a few iterations on the CPU, with Prefect in-process (no server). It prints the last iteration's
# first question (answers, step similarities, rewards) and the agreement before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
# One thread per process: on a shared 2-core box, torch's default threads contend badly.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
.venv/bin/ireasoner train --config configs/world.yaml --run-dir runs/demo --overwrite \
    --set schedule.iterations=10 "$@"
.venv/bin/ireasoner traces runs/demo --limit 1 --agreement
