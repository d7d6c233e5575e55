"""Session fixtures shared by every test: the tiny Qwen2.5-VL (built once, cached across runs
in $IREASONER_CACHE or ~/.cache/ireasoner), its loaded backbone, small synthetic images, and an
S3 bucket on loopback (moto)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never download

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from ireasoner.config import LoraConfig, ModelConfig  # noqa: E402
from ireasoner.model.loading import Backbone, load_backbone  # noqa: E402
from ireasoner.model.tiny import ensure_tiny_model  # noqa: E402
from ireasoner.policy.adapters import ROLES, adapter_parameters, attach_adapters  # noqa: E402

# The CI box has 2 cores; more threads than cores only adds contention.
torch.set_num_threads(min(2, os.cpu_count() or 1))

# A small pixel budget keeps the tiny model's image prompts short (a 112x112 image: 16 tokens).
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 112 * 112


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """The format-warmed tiny checkpoint directory (read-only: copy it before changing it)."""
    return ensure_tiny_model(seed=0)


@pytest.fixture(scope="session")
def tiny_model_config(tiny_model_path: Path) -> ModelConfig:
    return ModelConfig(
        name_or_path=str(tiny_model_path),
        dtype="float32",
        device="cpu",
        min_pixels=TINY_MIN_PIXELS,
        max_pixels=TINY_MAX_PIXELS,
    )


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_config: ModelConfig) -> Backbone:
    """Loaded once per session, CPU fp32, frozen. Tests that modify the model (adapters,
    training) must load their own copy with `load_backbone(tiny_model_config)`."""
    return load_backbone(tiny_model_config)


@pytest.fixture
def tiny_lora_model(tiny_model_config: ModelConfig):
    """A fresh copy of the tiny backbone with both adapters (rank 4) whose weights are random
    and non-zero, so that each adapter really changes the output. Eval mode (no dropout)."""
    model = attach_adapters(load_backbone(tiny_model_config).model, LoraConfig(rank=4, alpha=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for role in ROLES:
            for param in adapter_parameters(model, role):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_images() -> list[Image.Image]:
    """Three small RGB images of different sizes (different numbers of image tokens)."""
    return [_bars_image(96, 96, [3, 7, 5]), _bars_image(112, 84, [6, 2]), _bars_image(64, 64, [4])]


def _bars_image(width: int, height: int, values: list[int]) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    bar_width = width // (2 * len(values) + 1)
    colours = ["red", "blue", "green"]
    for index, value in enumerate(values):
        left = bar_width * (2 * index + 1)
        top = height - int(height * value / 10)
        draw.rectangle([left, top, left + bar_width, height - 1], fill=colours[index % 3])
    return image


@pytest.fixture(scope="session")
def cache_like_the_hub():
    """`(cache_dir, repo_id, config, {split: datasets.Dataset})`: leaves in `cache_dir` what
    `load_dataset(repo_id, config)` leaves after downloading a Parquet dataset from the Hub
    (<namespace>___<name>/<config>/0.0.0/<hash>/<name>-<split>.arrow and dataset_info.json), so
    that an offline `load_dataset(repo_id, config)` reads it from there."""
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.parquet.parquet import Parquet

    def write(cache_dir: Path, repo_id: str, config: str, splits: dict) -> None:
        sources = cache_dir.parent / f"{repo_id.replace('/', '_')}-{config}-parquet"
        sources.mkdir(parents=True, exist_ok=True)
        files = {}
        for name, data in splits.items():
            files[name] = str(sources / f"{name}.parquet")
            data.to_parquet(files[name])
        namespace, name = repo_id.split("/")
        builder = Parquet(cache_dir=str(cache_dir), dataset_name=name, config_name=config,
                          config_id=config, hash="0123abcd", data_files=files)
        builder.download_and_prepare()
        target = cache_dir / f"{namespace}___{camelcase_to_snakecase(name)}"
        target.mkdir(exist_ok=True)
        (cache_dir / camelcase_to_snakecase(name) / config).rename(target / config)

    return write


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """An S3 bucket on a moto server on loopback; the AWS_* variables that point boto at it are
    set for the session (subprocesses inherit them). Returns "s3://<bucket>"."""
    import logging

    import fsspec
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}",
                            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():
            env.setenv(name, value)
        fsspec.filesystem("s3").mkdir("ireasoner-test")
        yield "s3://ireasoner-test"
    server.stop()


class S3Faults:
    """Faults injected into a real S3 filesystem's calls (the call itself runs after them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.monkeypatch = monkeypatch

    @staticmethod
    def error(code: str, status: int) -> OSError:
        """What s3fs raises for an S3 error answer (its own translation of botocore's)."""
        from botocore.exceptions import ClientError
        from s3fs.errors import translate_boto_error

        return translate_boto_error(ClientError(
            {"Error": {"Code": code, "Message": f"injected {code}"},
             "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"))

    def fail_first(self, fs, method: str, error: BaseException, times: int = 1) -> list:
        """`fs.<method>` raises `error` on its first `times` calls; returns the calls made."""
        real, calls = getattr(fs, method), []

        def flaky(*args, **kwargs):
            calls.append(args)
            if len(calls) <= times:
                raise error
            return real(*args, **kwargs)

        self.monkeypatch.setattr(fs, method, flaky)
        return calls


@pytest.fixture
def s3_faults(monkeypatch) -> S3Faults:
    return S3Faults(monkeypatch)


class TrainingCLI:
    """`ireasoner train` in a subprocess with its own process group, so that a test can kill -9
    all of it (the trainer and its embedded Prefect server), as a crash would."""

    repo = Path(__file__).resolve().parent.parent

    def start(self, config: str, overrides: list[str], resume: bool = False,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """`env`: added to the environment (e.g. enospc_preload's)."""
        command = [sys.executable, "-m", "flows.cli", "train", "--config", config]
        for item in overrides:
            command += ["--set", item]
        if resume:
            command.append("--resume")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **(env or {})}
        return subprocess.Popen(command, cwd=self.repo, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def kill_when(self, process: subprocess.Popen, marker: Path, timeout: float = 600) -> None:
        """kill -9 the whole process group (the trainer and its embedded Prefect server, as a
        crash would) as soon as `marker` exists."""
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, f"training never wrote {marker}"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def finish(self, process: subprocess.Popen, timeout: float = 900) -> str:
        """Wait for a training that must succeed; returns its output."""
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output
        return output


@pytest.fixture(scope="session")
def training_cli() -> TrainingCLI:
    return TrainingCLI()


# 3 iterations x 1 image x 3 rollouts of <= 128 tokens; the Proposer updates at iteration 2;
# the Solver is evaluated after iteration 3.
TINY_RUN = [
    "schedule.iterations=3",
    "schedule.images_per_iteration=1",
    "solver.num_rollouts=3",
    "solver.max_new_tokens=128",
    "proposer.max_new_tokens=24",
    "proposer.update_every=2",
    "data.synthetic_count=4",
    "rewards.warmup_iterations=1",
    "rewards.ramp_iterations=1",
    # Evaluate the final Solver on the project's local lmms-eval task (no download).
    "evaluation.every=3",
    "evaluation.limit=2",
    "evaluation.max_new_tokens=32",
]


@pytest.fixture(scope="session")
def tiny_run() -> list[str]:
    """Overrides of configs/smoke.yaml for a 3-iteration run (add storage.run_dir)."""
    return list(TINY_RUN)


ENOSPC_SHIM = Path(__file__).resolve().parent / "fixtures" / "enospc.c"


@pytest.fixture(scope="session")
def enospc_preload(tmp_path_factory) -> Callable[[str, int], dict[str, str]]:
    """A full disk at the OS boundary: build tests/fixtures/enospc.c and return
    `env(match, after)`, the environment under which a subprocess's writes to paths containing
    `match` fail with ENOSPC once `after` bytes went to them."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the ENOSPC shim")
    library = tmp_path_factory.mktemp("enospc") / "enospc.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(ENOSPC_SHIM),
                    "-ldl"], check=True, capture_output=True)

    def env(match: str, after: int = 0) -> dict[str, str]:
        return {"LD_PRELOAD": str(library), "ENOSPC_MATCH": match, "ENOSPC_AFTER": str(after)}
    return env
