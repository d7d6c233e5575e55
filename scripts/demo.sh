#!/usr/bin/env bash
# Sets up the environment and runs the embedded default: a smoke training run of the tiny
# Qwen2.5-VL on synthetic images, on the CPU, with Prefect in-process (no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
.venv/bin/ireasoner train --config configs/smoke.yaml --run-dir runs/smoke --overwrite "$@"
.venv/bin/ireasoner traces runs/smoke --limit 1   # the last iteration's first question
