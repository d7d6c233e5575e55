"""What the stages of one training process share: the config, the run store, the trainer, and
the heavy objects (backbone, adapters, role trainers, engine, images), each built on first use.
Building one has no side effect on the run: whatever a stage writes, the stage writes.

Restoring is explicit: `restore()` puts the policy in the state after the last completed
iteration (checkpoint `iter-<done>`; the prepare stage writes `iter-000000`, the fresh
adapters), which is what makes a resumed run sample and train exactly as an uninterrupted one.
It also lets the stages of one run execute on different workers: a context pickles to its
config, store and trainer alone, and a worker whose policy is older than the run's last update
reloads it before its next stage.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import torch
from PIL import Image

from ireasoner.config import Config
from ireasoner.data.sources import ImageRecord, ImageSet, load_images
from ireasoner.engines import AdapterRef, RolloutEngine
from ireasoner.engines.factory import make_engine
from ireasoner.model.loading import Backbone, load_backbone
from ireasoner.pipeline.trainer import TrainerSpec
from ireasoner.policy.adapters import attach_adapters
from ireasoner.policy.state import load_policy_state, save_policy_state
from ireasoner.policy.update import RoleTrainer
from ireasoner.seeding import derive_seed
from storage import COMPLETE_MARKER, RunStore, atomic_write_bytes

T = TypeVar("T")


class RunContext:
    # A plain class, not a dataclass: Prefect walks dataclass task arguments looking for futures.
    def __init__(self, config: Config, store: RunStore, trainer: TrainerSpec):
        self.config = config
        self.store = store
        self.trainer = trainer
        self._policy_iteration: int | None = None  # the iteration the in-memory policy is after
        self._memo: dict[str, Any] = {}

    # Models never travel: a worker that receives a context builds its own on first use.
    def __getstate__(self) -> dict:
        return {"config": self.config, "store": self.store, "trainer": self.trainer}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"], state["store"], state["trainer"])

    # ---- data ---------------------------------------------------------------------------
    @cached_property
    def image_set(self) -> ImageSet:
        return load_images(self.config.data)

    @cached_property
    def _records_by_id(self) -> dict[str, ImageRecord]:
        return {r.image_id: r for r in self.image_set.records}

    def image(self, image_id: str) -> Image.Image:
        """The image's pixels, decoded on demand (the set's cache bounds what stays in memory).
        Stages after propose only ask for images that decoded there."""
        return self._records_by_id[image_id].image

    # ---- model and policy ---------------------------------------------------------------
    @cached_property
    def backbone(self) -> Backbone:
        return load_backbone(self.config.model)

    @cached_property
    def policy(self):
        # LoRA's A matrices are drawn from torch's global generator: seed it, or two processes
        # of the same run would start from different adapters.
        torch.manual_seed(derive_seed(self.config.trainer.seed, 0, "solver"))
        return attach_adapters(self.backbone.model, self.config.lora)

    @cached_property
    def trainers(self) -> dict[str, RoleTrainer]:
        return self.trainer.make_trainers(self)

    def restore(self) -> None:
        """Load the state after the last completed iteration, unless the policy in memory is
        already that one (or newer: saved by this process's last stage, whose marker comes
        next). Checkpoints of iterations that never completed are dropped."""
        done = self.store.completed_iterations()
        if self._policy_iteration is not None and self._policy_iteration >= done:
            return
        for iteration, path in self.store.checkpoints():
            if iteration > done:  # written by a last stage that never completed
                shutil.rmtree(path)
        checkpoint = self.store.checkpoint_dir(done)
        if not (checkpoint / COMPLETE_MARKER).is_file():
            raise FileNotFoundError(
                f"{checkpoint} is missing: iteration {done} completed but its policy state is "
                "gone, so the run cannot resume exactly")
        load_policy_state(checkpoint, self.policy, list(self.trainers.values()))
        self._policy_iteration = done

    def save_checkpoint(self, iteration: int) -> Path:
        path = save_policy_state(self.store.checkpoint_dir(iteration), self.policy,
                                 list(self.trainers.values()))
        atomic_write_bytes(path / COMPLETE_MARKER, f"{iteration}\n".encode())
        self.store.record_files(path)  # the stage's marker vouches for them
        self._policy_iteration = iteration
        self.store.prune_checkpoints(self.config.storage.keep_checkpoints_every, iteration)
        return path

    def adapter(self, role: str) -> AdapterRef:
        """The role's current adapter, restored: its weights in the latest checkpoint,
        versioned by the number of updates the role has had (the vLLM engine loads a new
        version from disk)."""
        self.restore()
        latest = self.store.checkpoints()[-1][1]
        return AdapterRef(name=role, path=str(latest / "adapters" / role),
                          version=self.trainers[role].step)

    @cached_property
    def engine(self) -> RolloutEngine:
        return make_engine(self.config.rollout, self.backbone, self.policy,
                           seed=self.config.trainer.seed, log_dir=self.store.root / "logs")

    @contextlib.contextmanager
    def engine_asleep(self) -> Iterator[None]:
        """Let the trainer have the accelerator memory of a colocated engine during an
        update (an engine not started yet stays unstarted)."""
        asleep = self.config.rollout.sleep_during_update and "engine" in self.__dict__
        if asleep:
            self.engine.sleep()
        try:
            yield
        finally:
            if asleep:
                self.engine.wake()

    def memo(self, key: str, build: Callable[[], T]) -> T:
        """An object a trainer's stages share across iterations (e.g. a step embedder), built
        by `build` on first use in this process; it never travels with the context."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
