"""An image found unusable when a stage first decodes it is a recorded, counted skip of that
iteration (skips table, stage "propose"), and the other images keep their positions."""

import io

from PIL import Image

from ireasoner.config import load_config
from ireasoner.pipeline.context import RunContext
from ireasoner.pipeline.propose import decodable_images, write_image_skips
from ireasoner.pipeline.run import open_run
from ireasoner.pipeline.tables import SKIPS
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore


def test_a_truncated_image_of_an_iteration_is_recorded_in_its_skips_table(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, shade in (("a.png", 10), ("b.png", 20), ("c.png", 30)):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (shade,) * 3).save(buffer, format="PNG")
        (images / name).write_bytes(buffer.getvalue()[:50] if name == "b.png" else
                                    buffer.getvalue())
    cfg = load_config(None, ["data.source=directory", f"data.path={images}",
                             "data.shuffle=false", "schedule.images_per_iteration=3",
                             f"storage.run_dir={tmp_path / 'run'}"])
    store = RunStore(cfg.storage.run_dir)
    open_run(store, cfg, trainer_spec, resume=False)
    ctx = RunContext(cfg, store, trainer_spec(cfg.trainer.kind))
    usable, bad = decodable_images(ctx, 1)
    assert sorted(r.image_id for _, r in usable) == ["a.png", "c.png"]
    assert len(usable) == 2 and {k for k, _ in usable} < {0, 1, 2}  # positions in the batch
    write_image_skips(ctx, 1, bad)
    rows = store.read_table(SKIPS.name, 1).to_pylist()
    assert [(r["iteration"], r["stage"], r["ref"], r["reason"]) for r in rows] == [
        (1, "propose", "b.png", "truncated")]
