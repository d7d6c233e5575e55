from pathlib import Path

import pytest

from ireasoner.config import EvaluationConfig
from ireasoner.eval.offline import (
    CacheRoots,
    DatasetRef,
    cache_roots,
    hub_is_offline,
    missing_dataset_message,
)
from ireasoner.eval.runner import preflight


def test_cache_roots_treat_a_dir_with_hub_or_datasets_as_hf_home(tmp_path):
    (tmp_path / "hub").mkdir()
    assert cache_roots(str(tmp_path)) == CacheRoots(tmp_path / "datasets", tmp_path / "hub")


def test_cache_roots_treat_a_plain_dir_as_the_datasets_cache(tmp_path):
    assert cache_roots(str(tmp_path)) == CacheRoots(tmp_path, tmp_path)


def test_cache_roots_follow_hf_variables_when_unset(tmp_path):
    roots = cache_roots(None, {"HF_HOME": str(tmp_path), "HF_HUB_CACHE": "/h"})
    assert roots == CacheRoots(tmp_path / "datasets", Path("/h"))


def test_offline_when_a_cache_is_configured_or_hf_says_so():
    assert hub_is_offline("/c", {})
    assert hub_is_offline(None, {"HF_HUB_OFFLINE": "1"})
    assert not hub_is_offline(None, {"HF_HUB_OFFLINE": "0"})


def test_missing_hub_dataset_message_names_task_dataset_and_cache(tmp_path):
    ref = DatasetRef("infovqa_val", "lmms-lab-encoder/DocVQA", "InfographicVQA")
    message = missing_dataset_message(ref, CacheRoots(tmp_path, tmp_path))
    assert "task 'infovqa_val'" in message
    assert "'lmms-lab-encoder/DocVQA'" in message and "InfographicVQA" in message
    assert str(tmp_path) in message and "evaluation.dataset_cache" in message


def test_dataset_in_the_datasets_cache_layout_is_found(tmp_path):
    (tmp_path / "lmms-lab-encoder___doc_vqa" / "InfographicVQA" / "0.0.0" / "abc").mkdir(
        parents=True)
    ref = DatasetRef("infovqa_val", "lmms-lab-encoder/DocVQA", "InfographicVQA")
    assert missing_dataset_message(ref, CacheRoots(tmp_path, tmp_path / "none")) is None
    other_config = DatasetRef("docvqa_val", "lmms-lab-encoder/DocVQA", "DocVQA")
    assert missing_dataset_message(other_config, CacheRoots(tmp_path, tmp_path)) is not None


def test_dataset_in_the_hub_cache_layout_is_found(tmp_path):
    (tmp_path / "datasets--lmms-lab-encoder--ai2d" / "snapshots" / "rev").mkdir(parents=True)
    ref = DatasetRef("ai2d", "lmms-lab-encoder/ai2d")
    assert missing_dataset_message(ref, CacheRoots(tmp_path / "none", tmp_path)) is None


def test_local_builder_checks_its_data_files(tmp_path):
    present = tmp_path / "a.parquet"
    present.write_bytes(b"x")
    ok = DatasetRef("t", "parquet", data_files=(str(present),))
    assert missing_dataset_message(ok, CacheRoots(tmp_path, tmp_path)) is None
    absent = DatasetRef("t", "parquet", data_files=(str(tmp_path / "b.parquet"),))
    assert "b.parquet" in missing_dataset_message(absent, CacheRoots(tmp_path, tmp_path))


@pytest.mark.slow
def test_preflight_reads_the_registry_and_blocks_only_tasks_missing_offline(tmp_path):
    cfg = EvaluationConfig(dataset_cache=str(tmp_path))
    (tmp_path / "lmms-lab-encoder___ai2d" / "default" / "0.0.0" / "h").mkdir(parents=True)
    blocked = preflight(["chartqa", "ai2d", "mathvista_testmini", "no_such_task"], cfg, [])
    assert set(blocked) == {"chartqa", "mathvista_testmini", "no_such_task"}
    assert "'lmms-lab-encoder/ChartQA'" in blocked["chartqa"]
    assert "mathvista_testmini_format" in blocked["mathvista_testmini"]  # a group's members
    assert "unknown lmms-eval task" in blocked["no_such_task"]
