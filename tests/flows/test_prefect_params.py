"""The Prefect-facing pieces that need no server: typed parameters, run names, artifact keys,
the checkpoint event and its trigger in prefect.yaml."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows import params as flow_params
from flows import train as train_flow
from flows.events import (
    CHECKPOINT_PUBLISHED,
    RUN_RESOURCE_PREFIX,
    TRIGGER_PARAMETERS,
    checkpoint_trigger,
    run_slug,
)
from flows.limits import run_limit
from flows.params import HYPERPARAMETER_KEYS, Hyperparameters
from ireasoner.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_every_hyperparameter_sets_its_config_key():
    chosen = Hyperparameters(iterations=7, images_per_iteration=3, num_rollouts=4, lr=1e-5,
                             lambda_max=0.5, lambda_mode="answer_only", proposer_update_every=2,
                             evaluate_every=5, seed=11)
    assert set(chosen.model_dump(exclude_none=True)) == set(HYPERPARAMETER_KEYS)
    cfg = load_config(REPO / "configs/paper.yaml", chosen.overrides()).to_dict()
    for name, key in HYPERPARAMETER_KEYS.items():
        section, field = key.split(".")
        assert cfg[section][field] == getattr(chosen, name), key


def test_unset_hyperparameters_keep_the_config_and_bad_ones_fail_before_training():
    assert Hyperparameters().overrides() == []
    with pytest.raises(ValidationError, match="iterations"):
        Hyperparameters(iterations=0)
    with pytest.raises(ValidationError, match="warmup"):
        Hyperparameters(warmup=3)


def test_flow_run_names_show_the_configs_and_the_run(monkeypatch):
    monkeypatch.setattr(flow_params.flow_run, "get_parameters", lambda: {
        "config": ["configs/paper.yaml", "configs/ablations/no_warmup.yaml"],
        "run_dir": "/data/runs/exp3/"})
    assert flow_params.train_run_name() == "paper+no_warmup@exp3"
    monkeypatch.setattr(flow_params.flow_run, "get_parameters", lambda: {
        "config": "configs/smoke.yaml", "overrides": ["storage.run_dir=s3://b/runs/a"]})
    assert flow_params.train_run_name() == "smoke@a"


def test_artifact_keys_and_limit_names_are_stable_and_valid():
    slug = run_slug("s3://bucket/Runs/Exp #2")
    assert slug == run_slug("s3://bucket/Runs/Exp #2") != run_slug("/other/Runs/Exp #2")
    assert slug.startswith("exp-2-") and all(c.isalnum() or c == "-" for c in slug)
    assert slug == slug.lower()
    assert run_limit("runs/a") == run_limit("runs/a") != run_limit("runs/b")


def test_kept_checkpoints_are_every_kth_and_the_last():
    cfg = load_config(REPO / "configs/smoke.yaml", ["storage.keep_checkpoints_every=3"])
    kept = [i for i in range(1, 9) if train_flow._checkpoint_kept(cfg, i)]
    assert kept == [3, 6, 8]


def test_prefect_yaml_deploys_the_flows_with_the_checkpoint_trigger():
    project = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in project["deployments"]}
    assert deployments["train"]["entrypoint"] == "flows/train.py:train"
    [trigger] = deployments["evaluate"]["triggers"]
    expected = checkpoint_trigger()
    assert set(trigger["expect"]) == expected.expect == {CHECKPOINT_PUBLISHED}
    assert trigger["match"] == {"prefect.resource.id": RUN_RESOURCE_PREFIX + "*"}
    assert trigger["parameters"] == TRIGGER_PARAMETERS == expected.parameters
    for deployment in deployments.values():
        path, name = deployment["entrypoint"].split(":")
        assert f"def {name}(" in (REPO / path).read_text(), deployment["entrypoint"]
