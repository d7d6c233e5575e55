"""The one rollout interface both engines implement, and the plain data that crosses it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

FinishReason = Literal["stop", "length", "repetition", "empty"]


@dataclass(frozen=True)
class GenerationRequest:
    """One image and its un-rendered user text; the engine renders the chat template.
    `seed` fixes the request's N rollouts (derive it with `ireasoner.seeding.derive_seed`)."""

    image: Image.Image
    text: str
    seed: int


@dataclass(frozen=True)
class SamplingSpec:
    n: int
    temperature: float  # 0 = greedy
    top_p: float
    max_new_tokens: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"SamplingSpec.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingSpec.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingSpec.top_p must lie in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingSpec.max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter by name. `path` is its saved directory (the one holding
    adapter_config.json; vLLM loads from it); `version` changes whenever the weights do."""

    name: str
    path: str | None = None
    version: int = 0


@dataclass
class Completion:
    """One rollout. `token_ids` and `logprobs` cover the generated tokens without the stop token;
    `logprobs[i]` is log π(token_ids[i]) under the policy's own distribution (temperature 1, no
    top-p, no suppression): what the update's log-probs recompute."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    num_tokens: int = field(init=False)
    decode_errors: bool = False  # the tokens did not decode to valid UTF-8 (U+FFFD in text)

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(
                f"{len(self.token_ids)} token ids but {len(self.logprobs)} log-probs"
            )
        self.num_tokens = len(self.token_ids)


class RolloutEngine(ABC):
    """Samples all B x N rollouts of an iteration in one call and lives across iterations."""

    @abstractmethod
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingSpec,
        adapter: AdapterRef | None,
    ) -> list[list[Completion]]:
        """`sampling.n` completions per request, in request order. `adapter=None` samples from
        the base model (adapters disabled)."""

    # Optional hooks (noqa B027): no-ops unless an engine holds accelerator memory.
    def sleep(self) -> None:  # noqa: B027
        """Release accelerator memory around the policy update (no-op where meaningless)."""

    def wake(self) -> None:  # noqa: B027
        """Undo `sleep` before the next `generate`."""

    def close(self) -> None:  # noqa: B027
        """Free the engine's resources; it cannot generate afterwards."""

    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
