"""What the stages of one training process share: the config, the run store, and the heavy
objects (backbone, adapters, trainers, engine, embedder, images), each built on first use.

Restoring is explicit: `restore()` puts the policy in the state after the last completed
iteration (checkpoint `iter-<done>`; iteration 0 is the fresh adapters), which is what makes a
resumed run sample and train exactly as an uninterrupted one. It also lets the stages of one
run execute on different workers: a context pickles to its config and store alone, and a
worker whose policy is older than the run's last update reloads it before its next stage.
"""

from __future__ import annotations

import shutil
from functools import cached_property
from pathlib import Path

import torch
from PIL import Image

from ireasoner.config import Config
from ireasoner.data.sources import ImageSet, load_images
from ireasoner.embeddings import StepEmbedder, export_embedding_table
from ireasoner.engines import AdapterRef, RolloutEngine
from ireasoner.engines.factory import make_engine
from ireasoner.model.loading import Backbone, load_backbone
from ireasoner.policy.adapters import ROLES, attach_adapters
from ireasoner.policy.grpo import GRPOTrainer
from ireasoner.policy.state import load_policy_state, save_policy_state
from ireasoner.policy.update import RoleTrainer
from ireasoner.seeding import derive_seed
from storage import RunStore
from storage.run import COMPLETE_MARKER
from storage.schemas import make_table

EMBEDDING_TABLE = "embed_tokens.safetensors"


class RunContext:
    # A plain class, not a dataclass: Prefect walks dataclass task arguments looking for futures.
    def __init__(self, config: Config, store: RunStore):
        self.config = config
        self.store = store
        self._policy_iteration: int | None = None  # the iteration the in-memory policy is after

    # Models never travel: a worker that receives a context builds its own on first use.
    def __getstate__(self) -> dict:
        return {"config": self.config, "store": self.store}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"], state["store"])

    # ---- data ---------------------------------------------------------------------------
    @cached_property
    def image_set(self) -> ImageSet:
        image_set = load_images(self.config.data)
        if not self.store.has_table("skips", 0):
            rows = [dict(iteration=0, stage="data", ref=s.source_ref, reason=s.reason,
                         detail=s.detail) for s in image_set.skipped]
            self.store.write_table("skips", 0, make_table("skips", rows))
        return image_set

    @cached_property
    def _images_by_id(self) -> dict[str, Image.Image]:
        return {r.image_id: r.image for r in self.image_set.records}

    def image(self, image_id: str) -> Image.Image:
        return self._images_by_id[image_id]

    # ---- model and policy ---------------------------------------------------------------
    @cached_property
    def backbone(self) -> Backbone:
        backbone = load_backbone(self.config.model)
        if not self.store.manifest().get("model_path"):
            self.store.update_manifest(model_path=backbone.path)
        return backbone

    @cached_property
    def policy(self):
        # LoRA's A matrices are drawn from torch's global generator: seed it, or two processes
        # of the same run would start from different adapters.
        torch.manual_seed(derive_seed(self.config.trainer.seed, 0, "solver"))
        return attach_adapters(self.backbone.model, self.config.lora)

    @cached_property
    def trainers(self) -> dict[str, RoleTrainer]:
        cfg, processor = self.config, self.backbone.processor
        trainers = {role: RoleTrainer(self.policy, processor, role, cfg.optimization, cfg.kl)
                    for role in ROLES}
        if cfg.trainer.kind == "ivr_r1":  # IVR-R1 trains the Solver with GRPO (spec §6)
            trainers["solver"] = GRPOTrainer(self.policy, processor, "solver", cfg.optimization,
                                             cfg.kl, cfg.ivr)
        return trainers

    def restore(self) -> None:
        """Load the state after the last completed iteration, unless the policy in memory is
        already that one (or newer: saved by this process's update, whose marker comes next)."""
        done = self.store.completed_iterations()
        if self._policy_iteration is not None and self._policy_iteration >= done:
            return
        for iteration, path in self.store.checkpoints():
            if iteration > done:  # written by an update whose stage never completed
                shutil.rmtree(path)
        checkpoint = self.store.checkpoint_dir(done)
        if (checkpoint / COMPLETE_MARKER).is_file():
            load_policy_state(checkpoint, self.policy, list(self.trainers.values()))
        elif done == 0:
            self.save_checkpoint(0)
        else:
            raise FileNotFoundError(
                f"{checkpoint} is missing: iteration {done} completed but its policy state is "
                "gone, so the run cannot resume exactly")
        self._policy_iteration = done

    def save_checkpoint(self, iteration: int) -> Path:
        path = save_policy_state(self.store.checkpoint_dir(iteration), self.policy,
                                 list(self.trainers.values()))
        (path / COMPLETE_MARKER).write_text(f"{iteration}\n")
        self._policy_iteration = iteration
        self.store.prune_checkpoints(self.config.storage.keep_checkpoints_every, iteration)
        return path

    def adapter(self, role: str) -> AdapterRef:
        """The role's current adapter: its weights in the latest checkpoint, versioned by the
        number of updates the role has had (the vLLM engine loads a new version from disk)."""
        self.restore()
        latest = self.store.checkpoints()[-1][1]
        return AdapterRef(name=role, path=str(latest / "adapters" / role),
                          version=self.trainers[role].step)

    @cached_property
    def engine(self) -> RolloutEngine:
        self.restore()
        return make_engine(self.config.rollout, self.backbone, self.policy,
                           seed=self.config.trainer.seed)

    # ---- scoring ------------------------------------------------------------------------
    @cached_property
    def embedder(self) -> StepEmbedder:
        """Step embeddings from the frozen input-embedding table; exported once into the run so
        offline rescoring needs no model."""
        tokenizer = self.backbone.processor.tokenizer
        target = self.store.embeddings_dir
        if not (target / EMBEDDING_TABLE).is_file():
            tokenizer.save_pretrained(target / "tokenizer")
            export_embedding_table(self.backbone.model, target / EMBEDDING_TABLE)
        return StepEmbedder.from_model(self.backbone.model, tokenizer,
                                       step_tokens=self.config.rewards.step_tokens)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
