"""The IVR-R1 critic and rectifier texts (un-rendered user turns; the engine adds the image and
the chat template). The Solver's own prompt is `solver.prompt` (configs/ivr_r1.yaml asks for
`<desc>`, `<think>` and `\\boxed{}`)."""

from __future__ import annotations

import re

from ireasoner.config import IVRConfig

_PLACEHOLDER = re.compile(r"\{(question|response|critique)\}")


def critic_text(cfg: IVRConfig, question: str, response: str) -> str:
    return fill(cfg.critic_prompt, question=question, response=response)


def rectifier_text(cfg: IVRConfig, question: str, response: str, critique: str) -> str:
    return fill(cfg.rectifier_prompt, question=question, response=response, critique=critique)


def fill(template: str, **values: str) -> str:
    """One pass over the template (not str.format, not chained replaces): braces or a
    placeholder inside a question or a rollout are kept as written."""
    return _PLACEHOLDER.sub(lambda match: values.get(match[1], match[0]), template)
