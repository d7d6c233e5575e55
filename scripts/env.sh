# Sourced by the scripts: offline, quiet, reproducible.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export TOKENIZERS_PARALLELISM=false
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.cache/prefect}
mkdir -p "$PREFECT_HOME"
