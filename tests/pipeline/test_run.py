"""Opening a run: the manifest's contents, the resume check and the config a resumed run
continues with; the tables' schemas."""

import json

import pytest

from ireasoner.config import load_config
from ireasoner.pipeline.run import open_run, run_config
from ireasoner.pipeline.tables import SCHEMA_VERSION, SKIPS
from ireasoner.trainers.ireasoner.tables import REWARDS
from ireasoner.trainers.registry import trainer_spec
from storage import ResumeRefused, RunStore

IREASONER = trainer_spec("ireasoner")


def _rewards_rows(iteration, n=3):
    return [dict(iteration=iteration, image_index=0, rollout_index=i, image_id="img",
                 parse_status="ok", answer_raw="3", answer="3", num_steps=2, steps_total=2,
                 words_before_answer=10, in_group=True, r_ans=0.5, r_step=float("nan"),
                 r_sol=0.5) for i in range(n)]


def test_building_a_table_names_missing_and_unknown_columns():
    rows = _rewards_rows(1)
    for r in rows:
        r.pop("r_sol")
        r["extra"] = 1
    with pytest.raises(ValueError, match=r"unknown columns \['extra'\].*missing columns \['r_sol'\]"):
        REWARDS.build(rows)


def test_nan_becomes_null_and_the_schema_version_is_recorded(tmp_path):
    store = RunStore(tmp_path)
    store.write_table(REWARDS.name, 1, REWARDS.build(_rewards_rows(1)))
    table = store.read_table(REWARDS.name, 1)
    assert table.column("r_step").null_count == 3
    assert table.schema.metadata[b"ireasoner.schema_version"] == str(SCHEMA_VERSION).encode()


def test_a_sparse_build_leaves_unnamed_columns_null():
    table = SKIPS.build_sparse([dict(iteration=0, stage="data", reason="bad")])
    assert table.column("detail").to_pylist() == [None]


def test_the_manifest_records_config_trainer_stages_and_versions(tmp_path):
    cfg = load_config(None, ["storage.run_dir=x"])
    store = RunStore(tmp_path / "run")
    open_run(store, cfg, trainer_spec, resume=False)
    manifest = json.loads(store.manifest_path.read_text())
    assert manifest["config_fingerprint"] == cfg.fingerprint()
    assert manifest["code_version"].startswith("0.1.0")
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["trainer"] == "ireasoner"
    assert manifest["stages"] == ["propose", "solve", "score", "update"]
    assert run_config(store) == cfg


def test_resume_with_a_training_change_names_the_keys(tmp_path):
    open_run(RunStore(tmp_path), load_config(None), trainer_spec, resume=False)
    changed = load_config(None, ["rewards.alpha=1.0", "optimization.lr=0.1"])
    with pytest.raises(ResumeRefused) as err:
        open_run(RunStore(tmp_path), changed, trainer_spec, resume=True)
    assert "rewards.alpha: 0.7 -> 1.0" in str(err.value)
    assert "optimization.lr" in str(err.value) and "--run-dir" in str(err.value)


def test_extending_a_run_with_a_fraction_schedule_is_refused_with_the_absolute_span(tmp_path):
    open_run(RunStore(tmp_path), load_config(None), trainer_spec, resume=False)
    longer = load_config(None, ["schedule.iterations=9999"])
    with pytest.raises(ResumeRefused) as err:
        open_run(RunStore(tmp_path), longer, trainer_spec, resume=True)
    assert "(750, 1750) -> (3000, 6999)" in str(err.value)
    assert "--set rewards.warmup_iterations=750 --set rewards.ramp_iterations=1750" in str(
        err.value)


def test_resume_may_extend_the_run(tmp_path):
    open_run(RunStore(tmp_path), load_config(None), trainer_spec, resume=False)
    longer = load_config(None, ["schedule.iterations=9999", "rewards.warmup_iterations=750",
                                "rewards.ramp_iterations=1750"])
    resumed, _ = open_run(RunStore(tmp_path), longer, trainer_spec, resume=True)
    assert resumed.schedule.iterations == 9999
    assert run_config(RunStore(tmp_path)).schedule.iterations == 9999


def test_resume_keeps_the_runs_value_of_every_key_the_config_leaves_unset(tmp_path):
    """A run started with rewards.alpha=1.0 resumes with a config that does not name it."""
    open_run(RunStore(tmp_path), load_config(None, ["rewards.alpha=1.0"]), trainer_spec,
             resume=False)
    resumed, trainer = open_run(RunStore(tmp_path), load_config(None, ["evaluation.every=7"]),
                                trainer_spec, resume=True)
    assert trainer is IREASONER
    assert resumed.rewards.alpha == 1.0 and resumed.evaluation.every == 7


def test_resume_with_another_trainer_is_refused(tmp_path):
    open_run(RunStore(tmp_path), load_config(None), trainer_spec, resume=False)
    with pytest.raises(ResumeRefused, match="trainer.kind"):
        open_run(RunStore(tmp_path), load_config(None, ["trainer.kind=ivr_r1"]), trainer_spec,
                 resume=True)


def test_resume_without_a_config_continues_the_runs_own_trainer(tmp_path):
    open_run(RunStore(tmp_path), load_config(None, ["trainer.kind=ivr_r1"]), trainer_spec,
             resume=False)
    config, trainer = open_run(RunStore(tmp_path), load_config(None), trainer_spec, resume=True)
    assert config.trainer.kind == "ivr_r1" and trainer.kind == "ivr_r1"
