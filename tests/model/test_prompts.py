from ireasoner.config import ProposerConfig, SolverConfig
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
