#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The vllm_server tests' interpreter (.venv-vllm), wherever setup.sh installed a vLLM.
if .venv/bin/python -c "import vllm" 2>/dev/null; then bash scripts/setup_vllm_server.sh; fi
source scripts/env.sh
# pytest exits 5 when it collected no test: that is a failure here too (set -e).
.venv/bin/python -m pytest -q --timeout 900 "$@"
