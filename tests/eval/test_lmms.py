import sys

import pytest

from ireasoner.eval.lmms import failure_summary, metric_values, model_spec, run_task

RESULTS = {
    "results": {
        "grp": {"alias": "grp"},
        "grp_a": {"alias": "a", "acc,none": 0.5, "acc_stderr,none": 0.1, "score,strict": 12.0,
                  "acc_stderr_clustered,none": "N/A"},
        "grp_b": {"acc,none": 0.25},
    },
    "n-samples": {"grp_a": {"original": 10, "effective": 4}, "grp_b": {"effective": 8}},
}


def test_metric_values_name_group_members_and_drop_stderr():
    values = {(v.metric, v.value, v.samples) for v in metric_values(RESULTS, "grp")}
    assert values == {("grp_a/acc", 0.5, 4), ("grp_a/score,strict", 12.0, 4),
                      ("grp_b/acc", 0.25, 8)}


def test_metric_values_of_a_plain_task_carry_bare_metric_names():
    results = {"results": {"t": {"exact_match,none": 1.0}}, "n-samples": {"t": {"effective": 3}}}
    [value] = metric_values(results, "t")
    assert (value.metric, value.value, value.samples) == ("exact_match", 1.0, 3)


def test_model_spec_sets_greedy_budget_for_vllm_and_device_map_for_transformers():
    name, args = model_spec("vllm", "/m", "cuda", 77, pixel_budget=(1, 2))
    # lmms-eval's vllm class would trust the checkpoint's own code by default.
    assert name == "vllm" and args == "model=/m,max_new_tokens=77,trust_remote_code=False"
    name, args = model_spec("transformers", "/m", "cpu", 77, pixel_budget=(1, 2),
                            extra={"attn_implementation": "sdpa"})
    assert name == "qwen2_5_vl"
    assert args == ("pretrained=/m,device=cpu,device_map=cpu,min_pixels=1,max_pixels=2,"
                    "attn_implementation=sdpa")


def test_model_spec_refuses_a_path_lmms_eval_would_split():
    with pytest.raises(ValueError, match="containing ','"):
        model_spec("transformers", "/a,b", "cpu", 8)


def test_a_run_without_results_file_is_an_error_even_with_exit_code_zero(tmp_path):
    script = "print('ModuleNotFoundError: No module named decord'); raise SystemExit(0)"
    run = run_task("t", [sys.executable, "-c", script], tmp_path / "out", env={})
    assert run.results is None
    assert "exit code 0" in run.error and "No module named decord" in run.error


def test_a_run_reads_the_results_json_it_wrote(tmp_path):
    script = ("import json, pathlib; p = pathlib.Path('m'); p.mkdir();"
              "(p / '1_results.json').write_text(json.dumps({'results': {}}))")
    run = run_task("t", [sys.executable, "-c", script], tmp_path / "out", env={})
    assert run.error is None and run.results == {"results": {}}


def test_failure_summary_keeps_error_lines(tmp_path):
    log = tmp_path / "log"
    log.write_text("INFO | loading\nTraceback:\n  x\nValueError: bad task\nmore noise\n")
    summary = failure_summary(log)
    assert summary.startswith("ValueError: bad task")
    assert str(log) in summary
