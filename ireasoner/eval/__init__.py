"""Benchmarks with lmms-eval: the runner, the local synthetic task, reports, scheduled runs."""

from ireasoner.eval.local_task import LOCAL_TASK, build_local_task_data, write_local_task
from ireasoner.eval.offline import MissingDatasetError
from ireasoner.eval.runner import EvalResult, ResultRow, evaluate_checkpoint, read_results

__all__ = [
    "LOCAL_TASK",
    "EvalResult",
    "MissingDatasetError",
    "ResultRow",
    "build_local_task_data",
    "evaluate_checkpoint",
    "read_results",
    "write_local_task",
]
