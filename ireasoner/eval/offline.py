"""Offline datasets: which ones an lmms-eval task reads, and whether a local cache holds them.

Where the hub is unreachable, lmms-eval can only read datasets already in the HF caches; without
this check it would load a model and then die deep inside `datasets`. Here the task's
`dataset_path` comes from lmms-eval's own task registry (groups expand to their subtasks), and a
missing one is reported by task name before anything is launched.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# lmms-eval's builders for local files: their data lives in `data_files`, not in a cache.
LOCAL_BUILDERS = frozenset({"csv", "json", "parquet", "text", "pandas", "arrow"})
_TRUE = frozenset({"1", "true", "yes", "on"})


class MissingDatasetError(FileNotFoundError):
    """A task's dataset is neither reachable nor in the offline cache."""


@dataclass(frozen=True)
class DatasetRef:
    task: str  # the leaf lmms-eval task that loads it
    path: str  # `dataset_path`: a hub id, a local builder name or a directory
    name: str | None = None  # `dataset_name` (the hub config)
    data_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheRoots:
    datasets: Path  # HF_DATASETS_CACHE: datasets' own Arrow cache
    hub: Path  # HF_HUB_CACHE: raw snapshots of hub repos

    def env(self) -> dict[str, str]:
        return {
            "HF_DATASETS_CACHE": str(self.datasets),
            "HF_HUB_CACHE": str(self.hub),
            # lmms-eval prefers its own variable over HF_DATASETS_CACHE when set.
            "LMMS_EVAL_DATASETS_CACHE": str(self.datasets),
        }


def cache_roots(dataset_cache: str | None, environ: Mapping[str, str] = os.environ) -> CacheRoots:
    """The caches to read. `dataset_cache` may be an HF_HOME (holding `datasets/` or `hub/`) or a
    datasets cache directory itself; unset, the usual HF environment variables decide."""
    if dataset_cache is not None:
        root = Path(dataset_cache).expanduser()
        if (root / "datasets").is_dir() or (root / "hub").is_dir():
            return CacheRoots(datasets=root / "datasets", hub=root / "hub")
        return CacheRoots(datasets=root, hub=root)
    home = Path(environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    return CacheRoots(
        datasets=Path(environ.get("HF_DATASETS_CACHE", home / "datasets")).expanduser(),
        hub=Path(environ.get("HF_HUB_CACHE", home / "hub")).expanduser(),
    )


def hub_is_offline(dataset_cache: str | None, environ: Mapping[str, str] = os.environ) -> bool:
    """Offline when a dataset cache is configured or the HF offline switches are on."""
    switches = (environ.get("HF_HUB_OFFLINE", ""), environ.get("HF_DATASETS_OFFLINE", ""))
    return dataset_cache is not None or any(s.strip().lower() in _TRUE for s in switches)


def missing_dataset_message(ref: DatasetRef, roots: CacheRoots) -> str | None:
    """Why `ref` cannot be loaded offline, or None when it can."""
    if ref.path in LOCAL_BUILDERS:
        absent = [f for f in ref.data_files if not Path(f).is_file()]
        if absent:
            return f"task {ref.task!r}: local data file(s) not found: {', '.join(absent)}"
        return None
    if Path(ref.path).expanduser().is_dir() or _in_datasets_cache(ref, roots.datasets) or (
        _in_hub_cache(ref.path, roots.hub)
    ):
        return None
    config = f" (config {ref.name!r})" if ref.name else ""
    return (
        f"task {ref.task!r}: dataset {ref.path!r}{config} is not in the offline dataset cache "
        f"(datasets cache {roots.datasets}, hub cache {roots.hub}). On a machine with hub access, "
        f"load it once (datasets.load_dataset({ref.path!r}"
        f"{', ' + repr(ref.name) if ref.name else ''})) and copy that HF_HOME here, then point "
        "evaluation.dataset_cache at it."
    )


def task_datasets(tasks: Sequence[str], include_paths: Sequence[Path]) -> dict[str, list[DatasetRef] | str]:
    """For each requested task, the datasets its leaf tasks read (from lmms-eval's registry), or
    an error message when the registry does not know the task."""
    from lmms_eval.tasks import TaskManager  # heavy (seconds): only when a check is needed

    manager = TaskManager("WARNING", include_path=[str(p) for p in include_paths] or None)
    found: dict[str, list[DatasetRef] | str] = {}
    for task in tasks:
        if task not in manager.task_index:
            found[task] = f"unknown lmms-eval task {task!r} (see `python -m lmms_eval tasks list`)"
        else:
            found[task] = list(_leaf_datasets(manager, task))
    return found


def _leaf_datasets(manager, name: str) -> Iterator[DatasetRef]:
    from lmms_eval.utils import load_yaml_config

    entry = manager.task_index[name]
    if entry["type"] == "tag":
        members = entry["task"]
    elif entry["type"] == "python_task":
        return  # a Python class loads its own data; nothing declarative to check
    else:
        config = load_yaml_config(entry["yaml_path"], mode="simple")
        if entry["type"] == "task":
            yield _ref(name, config)
            return
        members = config["task"]
    for member in members:
        if isinstance(member, dict):  # a subtask declared inline in the group
            yield _ref(member.get("task", name), member)
        elif member in manager.task_index:
            yield from _leaf_datasets(manager, member)


def _ref(task: str, config: dict) -> DatasetRef:
    kwargs = config.get("dataset_kwargs") or {}
    return DatasetRef(
        task=task,
        path=str(config.get("dataset_path", "")),
        name=config.get("dataset_name"),
        data_files=tuple(_flatten_data_files(kwargs.get("data_files"))),
    )


def _flatten_data_files(data_files) -> Iterator[str]:
    if data_files is None:
        return
    if isinstance(data_files, str):
        yield data_files
    elif isinstance(data_files, dict):
        for value in data_files.values():
            yield from _flatten_data_files(value)
    else:
        for value in data_files:
            yield from _flatten_data_files(value)


def _in_datasets_cache(ref: DatasetRef, root: Path) -> bool:
    # The layout `datasets` itself searches offline: <ns>___<snake_name>/<config>/<version>/<hash>.
    from datasets.naming import camelcase_to_snakecase

    *namespace, dataset = ref.path.split("/")
    directory = root / "___".join([*namespace, camelcase_to_snakecase(dataset)])
    config = glob.escape(ref.name) if ref.name else "*"
    return any(Path(p).is_dir() for p in glob.glob(str(directory / config / "*" / "*")))


def _in_hub_cache(repo_id: str, root: Path) -> bool:
    snapshots = root / f"datasets--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())
