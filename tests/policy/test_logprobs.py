import pytest
import torch

from ireasoner.policy.adapters import PROPOSER, SOLVER, adapter_parameters
from ireasoner.policy.batch import iter_micro_batches
from ireasoner.policy.logprobs import forward_logprobs, response_logprobs
from ireasoner.prompts import render

# fp32 on CPU: batching changes padding and summation order, nothing else.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def rows(tiny_backbone, tiny_images):
    """Five rows over two images (different prompt lengths), text and token-id responses."""
    processor = tiny_backbone.processor
    ask, solve = render(processor, "How many bars?"), render(processor, "Which is tallest?")
    images = [tiny_images[0], tiny_images[0], tiny_images[0], tiny_images[1], tiny_images[1]]
    prompts = [ask, ask, ask, solve, solve]
    responses = ["<think>\nStep 1: three bars.\n</think><answer>3</answer>", "3", [40, 41, 42],
                 "<answer>red</answer>", ""]
    return images, prompts, responses


def test_micro_batched_logprobs_equal_one_at_a_time(tiny_backbone, rows):
    with torch.no_grad():
        together = response_logprobs(tiny_backbone.model, tiny_backbone.processor, *rows,
                                     micro_batch_size=5)
        split = response_logprobs(tiny_backbone.model, tiny_backbone.processor, *rows,
                                  micro_batch_size=2)
        singles = [response_logprobs(tiny_backbone.model, tiny_backbone.processor,
                                     [image], [prompt], [response], micro_batch_size=1)
                   for image, prompt, response in zip(*rows, strict=True)]
    assert torch.equal(together.mask, split.mask)
    assert torch.allclose(together.logprobs, split.logprobs, atol=TOLERANCE)
    for row, single in enumerate(singles):
        length = int(single.mask.sum())
        assert int(together.mask[row].sum()) == length
        assert torch.allclose(together.logprobs[row, :length], single.logprobs[0, :length],
                              atol=TOLERANCE)


def test_mask_counts_each_responses_tokens(tiny_backbone, rows):
    tokenizer = tiny_backbone.processor.tokenizer
    with torch.no_grad():
        out = response_logprobs(tiny_backbone.model, tiny_backbone.processor, *rows,
                                micro_batch_size=5)
    expected = [len(r) if isinstance(r, list) else len(tokenizer(r)["input_ids"])
                for r in rows[2]]
    assert out.mask.sum(dim=1).tolist() == expected
    assert torch.all(out.logprobs[~out.mask] == 0)
    assert torch.all(out.logprobs[out.mask] < 0)


def test_full_distribution_matches_the_token_logprobs(tiny_backbone, rows):
    with torch.no_grad():
        out = response_logprobs(tiny_backbone.model, tiny_backbone.processor, *rows,
                                micro_batch_size=3, full=True)
    vocab = tiny_backbone.model.config.text_config.vocab_size
    assert out.full.shape == (*out.logprobs.shape, vocab)
    totals = out.full[out.mask].exp().sum(dim=-1)
    assert torch.allclose(totals, torch.ones_like(totals), atol=1e-5)


def test_disabled_adapters_reproduce_the_base_model_exactly(tiny_lora_model, tiny_backbone, rows):
    processor = tiny_backbone.processor
    with torch.no_grad():
        base = response_logprobs(tiny_backbone.model, processor, *rows, micro_batch_size=5)
        adapted = response_logprobs(tiny_lora_model, processor, *rows, micro_batch_size=5)
        with tiny_lora_model.disable_adapter():
            reference = response_logprobs(tiny_lora_model, processor, *rows, micro_batch_size=5)
    assert not torch.allclose(adapted.logprobs, base.logprobs, atol=1e-3)
    assert torch.equal(reference.logprobs, base.logprobs)


def test_gradients_reach_only_the_active_adapter(tiny_lora_model, tiny_backbone, rows):
    for batch in iter_micro_batches(tiny_backbone.processor, *rows, micro_batch_size=2):
        forward_logprobs(tiny_lora_model, batch).sequence_logprobs().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in adapter_parameters(tiny_lora_model, SOLVER))
    assert all(p.grad is None for p in adapter_parameters(tiny_lora_model, PROPOSER))
    assert all(p.grad is None for n, p in tiny_lora_model.named_parameters() if "lora" not in n)


def test_misaligned_inputs_are_refused(tiny_backbone, rows):
    images, prompts, responses = rows
    with pytest.raises(ValueError, match="align"):
        response_logprobs(tiny_backbone.model, tiny_backbone.processor, images, prompts[:2],
                          responses, micro_batch_size=2)
