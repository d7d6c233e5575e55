"""Dataset labels for ivr.labels = dataset, and the critic / rectifier texts."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ireasoner.config import ConfigError, DataConfig, IVRConfig, config_from_dict
from ireasoner.data.sources import DataSourceError, load_images
from ireasoner.trainers.ivr_r1.labels import load_labels
from ireasoner.trainers.ivr_r1.prompts import fill, rectifier_text


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(out, format="PNG")
    return out.getvalue()


def test_parquet_labels_are_keyed_like_the_loaded_images_and_null_labels_are_left_out(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"image": [_png()] * 3, "question": ["q0", None, "q2"],
                             "answer": ["1", "2", "3"]}), path)
    data = DataConfig(source="parquet", path=str(path), shuffle=False)
    labels = load_labels(data, IVRConfig())
    image_ids = [r.image_id for r in load_images(data).records]
    assert sorted(labels) == [image_ids[0], image_ids[2]]
    assert labels[image_ids[2]].answer == "3"


def test_missing_label_columns_are_named(tmp_path):
    path = tmp_path / "images.parquet"
    pq.write_table(pa.table({"image": [_png()]}), path)
    with pytest.raises(DataSourceError, match="question"):
        load_labels(DataConfig(source="parquet", path=str(path)), IVRConfig())


def test_directory_labels_come_from_its_manifest_keyed_like_the_loaded_images(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.png", "c.png"):
        (tmp_path / name).write_bytes(_png())
    rows = [{"image": "a.png", "question": "qa", "answer": "1"},
            {"image": "sub/b.png", "question": "qb", "answer": "2"},
            {"image": "c.png", "question": None, "answer": "3"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = DataConfig(source="directory", path=str(tmp_path), shuffle=False)
    labels = load_labels(data, IVRConfig())
    image_ids = {r.image_id for r in load_images(data).records}
    assert set(labels) == {"a.png", "sub/b.png"} <= image_ids
    assert labels["sub/b.png"].question == "qb"


def test_a_directory_without_a_manifest_or_with_a_bad_row_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(_png())
    data = DataConfig(source="directory", path=str(tmp_path))
    with pytest.raises(DataSourceError, match="no label manifest"):
        load_labels(data, IVRConfig())
    (tmp_path / "manifest.jsonl").write_text('{"image": "a.png", "question": "q"}\n')
    with pytest.raises(DataSourceError, match=r"row 1: no \['answer'\]"):
        load_labels(DataConfig(source="directory", path=str(tmp_path), seed=1), IVRConfig())


@pytest.mark.parametrize("image", ["../outside.png", "sub/../../outside.png", "/etc/passwd"])
def test_a_manifest_row_naming_a_path_outside_the_directory_is_refused(tmp_path, image):
    (tmp_path / "a.png").write_bytes(_png())
    rows = [{"image": "a.png", "question": "q", "answer": "1"},
            {"image": image, "question": "q", "answer": "2"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataSourceError, match="row 2: image .* is not a path inside"):
        load_labels(DataConfig(source="directory", path=str(tmp_path)), IVRConfig())


def test_synthetic_images_are_labelled_with_their_first_question():
    labels = load_labels(DataConfig(synthetic_count=3), IVRConfig())
    assert len(labels) == 3 and all(label.answer for label in labels.values())


def test_placeholders_inside_a_rollout_are_not_substituted():
    text = rectifier_text(IVRConfig(), "Q {critique}?", "R {question}", "C")
    assert "Q {critique}?" in text and "R {question}" in text and text.count("C") >= 1
    assert fill("{question}-{other}", question="x") == "x-{other}"


def test_a_rectifier_prompt_without_the_critique_placeholder_is_refused():
    with pytest.raises(ConfigError, match="critique"):
        config_from_dict({"ivr": {"rectifier_prompt": "{question} {response}"}})
