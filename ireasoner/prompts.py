"""Chat rendering of the Proposer and Solver prompts, each with one image.

`render` gives the one string both engines generate from and the log-prob code scores against:
if they differed, the update would score tokens the policy never conditioned on.
"""

from __future__ import annotations

from transformers import ProcessorMixin

from ireasoner.config import ProposerConfig, SolverConfig

QUESTION_PLACEHOLDER = "{question}"


def render(processor: ProcessorMixin, user_text: str) -> str:
    """The chat template over one user turn (an image, then `user_text`), ending with the
    assistant's generation prompt."""
    messages = [{
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": user_text}],
    }]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def proposer_text(cfg: ProposerConfig) -> str:
    return cfg.prompt


def solver_text(cfg: SolverConfig, question: str) -> str:
    # str.replace, not str.format: a question (or a custom prompt) may contain braces.
    return cfg.prompt.replace(QUESTION_PLACEHOLDER, question)


def suppressed_token_ids(processor: ProcessorMixin) -> list[int]:
    """Special tokens a sampler must never emit: all of them but the end-of-turn token. A random
    or collapsed model samples `<|image_pad|>` and the like, which break re-encoding the text."""
    tokenizer = processor.tokenizer
    end_of_turn = tokenizer.eos_token_id
    return sorted(
        token_id
        for token_id, token in tokenizer.added_tokens_decoder.items()
        if token.special and token_id != end_of_turn
    )
