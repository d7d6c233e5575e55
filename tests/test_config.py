"""The config schema: defaults, composition, overrides and the errors users see."""

from pathlib import Path

import pytest
import yaml

from ireasoner.config import (
    LAMBDA_SPAN,
    LAMBDA_SPAN_KEYS,
    Config,
    ConfigError,
    config_from_dict,
    load_config,
    parse_override,
    training_changes,
    training_summary,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ABLATIONS = sorted((CONFIGS / "ablations").glob("*.yaml"))


def test_defaults_are_the_spec_authors_settings():
    cfg = Config()
    assert (cfg.rewards.alpha, cfg.rewards.gamma, cfg.rewards.position_decay) == (0.7, 0.7, 0.15)
    assert (cfg.rewards.length_penalty, cfg.rewards.length_budget) == (0.05, 64)
    assert (cfg.rewards.entropy_target, cfg.rewards.entropy_width) == (0.90, 0.35)
    assert (cfg.kl.beta_init, cfg.kl.target, cfg.kl.adapt_rate) == (1e-3, 0.02, 0.10)
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout) == (16, 32.0, 0.05)
    assert "vision" not in cfg.lora.target_modules and "language_model" in cfg.lora.target_modules


def test_paper_config_matches_the_papers_setting():
    cfg = load_config(CONFIGS / "paper.yaml")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert cfg.solver.num_rollouts == 5 and cfg.schedule.images_per_iteration == 1
    assert cfg.schedule.iterations == 2500 and cfg.proposer.update_every == 5
    assert cfg.rewards.lambda_max == 0.7 and cfg.rewards.max_steps == 8
    # 30% warm-up, ramp over the remaining 70%.
    assert cfg.rewards.lambda_span(cfg.schedule.iterations) == (750, 1750)
    # The published update (spec §4).
    assert (cfg.optimization.update, cfg.optimization.token_reduction) == ("per_rollout", "mean")
    assert cfg.proposer.train_on == "update_iteration"
    assert (cfg.optimization.lr, cfg.optimization.weight_decay) == (1e-6, 0.01)
    assert cfg.optimization.grad_clip == 1.0 and cfg.optimization.precision == "bfloat16"


def test_smoke_config_uses_the_tiny_model_on_cpu():
    cfg = load_config(CONFIGS / "smoke.yaml")
    assert cfg.model.name_or_path == "tiny" and cfg.model.device == "cpu"
    assert cfg.rollout.engine == "transformers" and cfg.data.source == "synthetic"


@pytest.mark.parametrize("overlay", ABLATIONS, ids=lambda p: p.stem)
def test_each_ablation_overlay_differs_from_the_base_only_where_its_row_says(overlay):
    base = load_config(CONFIGS / "paper.yaml").to_dict()
    combined = load_config([CONFIGS / "paper.yaml", overlay]).to_dict()
    declared = yaml.safe_load(overlay.read_text())
    expected = {f"{section}.{key}" for section, body in declared.items() for key in body}
    if expected & set(LAMBDA_SPAN_KEYS):  # λ's span is compared resolved
        expected = (expected - set(LAMBDA_SPAN_KEYS)) | {LAMBDA_SPAN}
    changed = set(training_changes(base, combined))
    # steps_8 restates the default; every other overlay changes exactly what it names.
    assert changed <= expected
    if overlay.stem != "steps_8":
        assert changed == expected


def test_unknown_key_is_named_with_the_allowed_keys():
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "smoke.yaml", ["rewards.gama=0.5"])
    message = str(err.value)
    assert "rewards.gama" in message and "gamma" in message and "alpha" in message


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="unknown key 'reward'"):
        load_config(None, ["reward.gamma=0.5"])


def test_wrong_type_names_the_key_and_the_value():
    with pytest.raises(ConfigError, match=r"solver\.num_rollouts.*'five'"):
        load_config(None, ["solver.num_rollouts=five"])


def test_out_of_range_names_the_key_and_the_bound():
    with pytest.raises(ConfigError, match=r"rewards\.lambda_max: .*less than or equal to 1"):
        load_config(None, ["rewards.lambda_max=1.5"])


def test_literal_error_lists_the_allowed_values():
    with pytest.raises(ConfigError, match=r"rewards\.mode.*'continuous' or 'discrete'"):
        load_config(None, ["rewards.mode=soft"])


def test_a_run_url_needs_a_protocol_and_backend_fsspec_has_here():
    assert load_config(None, ["storage.run_dir=s3://bucket/run"]).storage.run_dir == \
        "s3://bucket/run"
    with pytest.raises(ConfigError, match=r"storage\.run_dir: .*unknown protocol 'nope'"):
        load_config(None, ["storage.run_dir=nope://bucket/run"])
    with pytest.raises(ConfigError, match=r"storage\.run_dir: .*gs:// backend is not installed"):
        load_config(None, ["storage.run_dir=gs://bucket/run"])  # gcsfs is not a dependency
    with pytest.raises(ConfigError, match=r"storage\.run_dir: .*does not outlive the process"):
        load_config(None, ["storage.run_dir=memory://run"])


def test_cross_section_rule_lora_rank_must_fit_vllm():
    with pytest.raises(ConfigError, match="max_lora_rank"):
        load_config(None, ["lora.rank=32"])


def test_overrides_are_read_as_yaml_and_nest():
    assert parse_override("rewards.gamma=0.5") == {"rewards": {"gamma": 0.5}}
    assert parse_override("evaluation.tasks=[a, b]") == {"evaluation": {"tasks": ["a", "b"]}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("rewards.gamma")


def test_later_files_and_overrides_win(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("rewards:\n  gamma: 0.3\n  alpha: 0.9\n")
    cfg = load_config([CONFIGS / "paper.yaml", overlay], ["rewards.alpha=1.0"])
    assert (cfg.rewards.gamma, cfg.rewards.alpha) == (0.3, 1.0)
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_missing_file_and_non_mapping_yaml_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_resume_neutral_keys_are_not_training_changes():
    base = Config().to_dict()
    longer = load_config(None, ["schedule.iterations=5000", "evaluation.every=10",
                                "rewards.warmup_iterations=750",
                                "rewards.ramp_iterations=1750"]).to_dict()
    assert training_changes(base, longer) == {}  # the same λ span, now absolute
    # With λ's span as fractions a longer run is another span: a training change.
    fractions = load_config(None, ["schedule.iterations=5000"]).to_dict()
    assert training_changes(base, fractions) == {LAMBDA_SPAN: ((750, 1750), (1500, 3500))}
    different = load_config(None, ["rewards.alpha=1.0"]).to_dict()
    assert training_changes(base, different) == {"rewards.alpha": (0.7, 1.0)}


def test_fingerprint_is_stable_and_sensitive():
    assert Config().fingerprint() == Config().fingerprint()
    assert Config().fingerprint() != load_config(None, ["rewards.alpha=1.0"]).fingerprint()


def test_compact_every_is_validated_and_resume_neutral():
    with pytest.raises(ConfigError, match=r"storage\.compact_every: .*greater than or equal to 0"):
        load_config(None, ["storage.compact_every=-1"])
    never = load_config(None, ["storage.compact_every=0"])
    assert (Config().storage.compact_every, never.storage.compact_every) == (100, 0)
    assert training_changes(Config().to_dict(), never.to_dict()) == {}


def test_update_keys_default_to_the_published_update_and_are_validated():
    cfg = Config()
    assert (cfg.optimization.update, cfg.optimization.token_reduction) == ("per_rollout", "mean")
    assert cfg.proposer.train_on == "update_iteration"
    assert cfg.rewards.proposer_unparsable == "singleton"
    assert load_config(None, ["optimization.lr=0"]).optimization.lr == 0  # a control run
    with pytest.raises(ConfigError, match="optimization.update"):
        load_config(None, ["optimization.update=per_batch"])
    with pytest.raises(ConfigError, match="optimization.token_reduction"):
        load_config(None, ["optimization.token_reduction=max"])


def test_a_lambda_schedule_that_never_reaches_lambda_max_names_the_keys():
    with pytest.raises(ConfigError, match="rewards.warmup_iterations") as err:
        load_config(None, ["schedule.iterations=100", "rewards.warmup_iterations=750",
                           "rewards.ramp_iterations=1750"])
    assert "schedule.iterations" in str(err.value)
    with pytest.raises(ConfigError, match="warmup_fraction"):
        load_config(None, ["rewards.warmup_fraction=0.5", "rewards.ramp_fraction=0.6"])
    # A stored run (a v1 run's absolute counts on a short schedule) trains on as it was.
    stored = load_config(None).to_dict()
    stored["schedule"]["iterations"] = 10
    stored["rewards"].update(warmup_iterations=750, ramp_iterations=1750)
    assert config_from_dict(stored, stored=True).rewards.warmup_iterations == 750
    with pytest.raises(ConfigError):
        config_from_dict(stored)


def test_training_summary_names_the_update_mode_and_lambda_span():
    lines = "\n".join(training_summary(load_config(CONFIGS / "smoke.yaml")))
    assert "per_rollout" in lines and "mean" in lines
    assert "0 until iteration 2, then to 0.7 over 4 iterations" in lines
    batched = load_config([CONFIGS / "smoke.yaml", CONFIGS / "ablations" / "batched_update.yaml"])
    assert "update: batched" in training_summary(batched)[0]
