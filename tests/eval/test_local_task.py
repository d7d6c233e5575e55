import pyarrow.parquet as pq
import pytest
from lmms_eval.utils import load_yaml_config

from ireasoner.config import SolverConfig
from ireasoner.eval.local_task import LOCAL_TASK, build_local_task_data, write_local_task
from ireasoner.eval.tasks.ireasoner_synth.utils import doc_to_visual, process_results


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return build_local_task_data(tmp_path_factory.mktemp("local"), n=6, seed=3, size=(96, 72))


def test_local_task_data_has_one_labelled_question_per_image(data_file):
    table = pq.read_table(data_file).to_pylist()
    assert len(table) == 6
    assert len({row["image_id"] for row in table}) == 6
    for row in table:
        assert row["answer"]
        assert row["question"] in row["prompt"]
        assert doc_to_visual(row)[0].size == (96, 72)


def test_local_task_prompt_is_the_configured_solver_prompt(tmp_path):
    solver = SolverConfig(prompt="Q: {question} -- answer in <answer></answer>")
    path = build_local_task_data(tmp_path, n=1, seed=0, size=(64, 64), solver=solver)
    row = pq.read_table(path).to_pylist()[0]
    assert row["prompt"] == f"Q: {row['question']} -- answer in <answer></answer>"


def test_task_yaml_points_at_the_data_file_by_absolute_path(data_file, tmp_path):
    yaml_path = write_local_task(tmp_path / "include", data_file)
    config = load_yaml_config(str(yaml_path), mode="full")
    assert config["task"] == LOCAL_TASK
    assert config["dataset_kwargs"]["data_files"]["test"] == str(data_file.resolve())
    assert config["process_results"] is process_results


def test_task_yaml_refuses_a_missing_data_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="local task data not found"):
        write_local_task(tmp_path, tmp_path / "absent.parquet")


@pytest.mark.parametrize(("response", "exact", "tagged"), [
    ("<think>Step 1: add.</think><answer> 42. </answer>", 1.0, 1.0),
    ("42", 1.0, 0.0),  # a plain reply is scored as a whole
    ("<answer>41</answer>", 0.0, 1.0),
    ("", 0.0, 0.0),
])
def test_process_results_scores_exact_match_after_normalising(response, exact, tagged):
    scores = process_results({"answer": "42"}, [response])
    assert scores == {"exact_match": exact, "answer_tagged": tagged}
