#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
# pytest exits 5 when it collected no test: that is a failure here too (set -e).
.venv/bin/python -m pytest -q --timeout 900 "$@"
