# Sourced by the scripts: offline, quiet, reproducible.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
# Servers (prefect server start, the runner of ireasoner serve) listen on loopback unless told.
export PREFECT_SERVER_API_HOST=${PREFECT_SERVER_API_HOST:-127.0.0.1}
export PREFECT_RUNNER_SERVER_HOST=${PREFECT_RUNNER_SERVER_HOST:-127.0.0.1}
export TOKENIZERS_PARALLELISM=false
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.cache/prefect}
mkdir -p "$PREFECT_HOME"
