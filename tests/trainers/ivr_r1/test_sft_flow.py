"""The IVR-R1 SFT cold start writes a run's checkpoint 0 with a fine-tuned Solver adapter."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from ireasoner.data.synthetic import generate_samples
from storage import COMPLETE_MARKER

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SMOKE = str(REPO / "configs" / "ivr_r1_smoke.yaml")


def _traces(path: Path) -> Path:
    rows = []
    for sample in generate_samples(2):
        encoded = io.BytesIO()
        sample.image.save(encoded, format="PNG")
        qa = sample.qa[0]
        rows.append({"image": encoded.getvalue(), "question": qa.question,
                     "response": f"<desc>{sample.kind}</desc><think>{qa.steps[0]}</think>"
                                 f"\\boxed{{{qa.answer}}}"})
    rows.append({"image": b"not an image", "question": "q", "response": "r"})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_sft_writes_checkpoint_0_with_only_the_solver_adapter_trained(tmp_path, tiny_model_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "flows.cli", "sft", "--config", SMOKE,
               "--data", str(_traces(tmp_path / "traces.parquet")), "--run-dir", str(run),
               "--set", "ivr.sft_epochs=2", "--set", "ivr.sft_lr=1e-3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on 2 traces" in done.stdout
    adapters = run / "checkpoints" / "iter-000000" / "adapters"
    # LoRA's B matrices start at zero: only a trained adapter has non-zero ones.
    for role, trained in (("solver", True), ("proposer", False)):
        weights = load_file(str(adapters / role / "adapter_model.safetensors"))
        b_matrices = [w for name, w in weights.items() if "lora_B" in name]
        assert any((w != 0).any() for w in b_matrices) == trained, role
    assert (run / "checkpoints" / "iter-000000" / COMPLETE_MARKER).is_file()
