from pathlib import Path

from ireasoner.config import (
    DEFAULT_PROPOSER_PROMPT,
    DEFAULT_SOLVER_PROMPT,
    ProposerConfig,
    SolverConfig,
    load_config,
)
from ireasoner.model.warmup import TINY_PROPOSER_PROMPT, TINY_SOLVER_PROMPT
from ireasoner.prompts import proposer_text, render, solver_text, suppressed_token_ids


def test_render_puts_one_image_before_the_text_and_ends_with_the_generation_prompt(tiny_backbone):
    text = render(tiny_backbone.processor, "How many?")
    assert text.count("<|image_pad|>") == 1
    assert text.index("<|vision_end|>") < text.index("How many?")
    assert text.endswith("<|im_start|>assistant\n")


def test_solver_text_inserts_the_question_even_with_braces():
    assert solver_text(SolverConfig(prompt="Q: {question}!"), "Is {x} > 2?") == "Q: Is {x} > 2?!"


def test_proposer_text_is_the_configured_prompt():
    assert proposer_text(ProposerConfig(prompt="Ask.")) == "Ask."


def test_suppressed_tokens_cover_vision_tokens_but_not_the_end_of_turn(tiny_backbone):
    tokenizer = tiny_backbone.processor.tokenizer
    suppressed = set(suppressed_token_ids(tiny_backbone.processor))
    for token in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>",
                  "<|im_start|>", "<|endoftext|>"):
        assert tokenizer.convert_tokens_to_ids(token) in suppressed
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") not in suppressed


def test_default_prompts_carry_the_authors_instructions():
    """Spec §4: numbered steps with a three-step example, one concrete claim per step, nothing
    outside the tags, the question last; the Proposer's rationale and its exclusions."""
    solver = DEFAULT_SOLVER_PROMPT
    assert solver.endswith("Question: {question}")
    assert all(f"Step {k}:" in solver for k in (1, 2, 3))
    assert "one concrete visual or structural claim" in solver
    assert "nothing outside these two tags" in solver and "<answer>" in solver
    proposer = DEFAULT_PROPOSER_PROMPT
    for phrase in ("<question>", "<rationale>", "image alone", "not be ambiguous",
                   "trivial counting", "not contain", "units", "one or two sentences",
                   "nothing else"):
        assert phrase in proposer, phrase


def test_smoke_config_keeps_the_prompts_the_tiny_model_was_warmed_up_on():
    smoke = load_config(Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml")
    assert (smoke.solver.prompt, smoke.proposer.prompt) == (TINY_SOLVER_PROMPT,
                                                            TINY_PROPOSER_PROMPT)
