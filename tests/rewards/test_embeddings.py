import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from ireasoner.embeddings import (
    TABLE_KEY,
    StepEmbedder,
    export_embedding_table,
    load_embedding_table,
)

WORDS = ["[UNK]", "the", "bar", "is", "red", "blue", "tall", "count", "three", "step", "x"]


@pytest.fixture(scope="module")
def tokenizer():
    """A real HF fast tokenizer over a word-level vocabulary, built offline."""
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


@pytest.fixture(scope="module")
def table():
    return torch.randn(len(WORDS), 8, generator=torch.Generator().manual_seed(0))


class EmbeddingModel(torch.nn.Module):
    def __init__(self, table):
        super().__init__()
        self.embed = torch.nn.Embedding.from_pretrained(table)

    def get_input_embeddings(self):
        return self.embed


def per_step_reference(tokenizer, table, text, step_tokens):
    ids = tokenizer.encode(text, add_special_tokens=False)[:step_tokens]
    if not ids:
        return np.zeros(table.shape[1], dtype=np.float32)
    mean = table[ids].float().mean(dim=0).numpy()
    return mean / np.linalg.norm(mean)


def test_one_gather_equals_the_per_step_computation(tokenizer, table):
    steps = ["the bar is red", "count three", "x x x x x x", "blue", "the tall bar is blue red"]
    embedder = StepEmbedder(tokenizer, table, step_tokens=3)
    expected = [per_step_reference(tokenizer, table, s, 3) for s in steps]
    np.testing.assert_allclose(embedder.embed(steps), expected, rtol=1e-5, atol=1e-6)


def test_gathering_in_pieces_gives_the_same_rows(tokenizer, table):
    steps = [" ".join(WORDS[1 + k % 10] for k in range(n)) for n in range(1, 30)]
    whole = StepEmbedder(tokenizer, table).embed(steps)
    pieces = StepEmbedder(tokenizer, table)
    pieces.tokens_per_gather = 7
    np.testing.assert_allclose(pieces.embed(steps), whole, rtol=1e-6)


def test_rows_are_unit_vectors_and_only_the_first_step_tokens_count(tokenizer, table):
    embedder = StepEmbedder(tokenizer, table, step_tokens=2)
    rows = embedder.embed(["the bar", "the bar is red tall", "red tall"])
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(rows[0], rows[1])
    assert not np.allclose(rows[0], rows[2])


def test_a_step_without_tokens_gets_the_zero_vector(tokenizer, table):
    rows = StepEmbedder(tokenizer, table).embed(["", "the bar"])
    assert not rows[0].any()
    assert rows[1].any()


def test_embed_traces_splits_rows_per_trace(tokenizer, table):
    embedder = StepEmbedder(tokenizer, table)
    traces = embedder.embed_traces([["the bar", "red"], [], ["blue"]])
    assert [t.shape for t in traces] == [(2, 8), (0, 8), (1, 8)]
    np.testing.assert_allclose(traces[2], embedder.embed(["blue"]))
    assert embedder.embed([]).shape == (0, 8)


def test_bfloat16_tables_give_the_float32_result_to_bf16_precision(tokenizer, table):
    half = table.to(torch.bfloat16)
    rows = StepEmbedder(tokenizer, half).embed(["the bar is red tall blue count three"])
    expected = per_step_reference(tokenizer, half, "the bar is red tall blue count three", 64)
    np.testing.assert_allclose(rows[0], expected, atol=2**-8)
    assert rows.dtype == np.float32


def test_from_model_uses_the_input_embedding_table(tokenizer, table):
    embedder = StepEmbedder.from_model(EmbeddingModel(table), tokenizer)
    np.testing.assert_allclose(embedder.embed(["red"])[0], (table[4] / table[4].norm()).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_export_and_load_round_trip_keeps_values_and_dtype(tmp_path, table, dtype):
    model = EmbeddingModel(table.to(dtype))
    path = export_embedding_table(model, tmp_path / "run" / "embeddings.safetensors")
    loaded = load_embedding_table(path)
    assert loaded.dtype == dtype
    assert torch.equal(loaded, table.to(dtype))
    assert not list(path.parent.glob("*.partial"))


def test_from_files_rebuilds_the_same_embedder(tmp_path, tokenizer, table):
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    path = export_embedding_table(EmbeddingModel(table), tmp_path / "table.safetensors")
    offline = StepEmbedder.from_files(tmp_path / "tokenizer", path)
    steps = ["the bar is red", "count three"]
    np.testing.assert_allclose(offline.embed(steps), StepEmbedder(tokenizer, table).embed(steps))


def test_loading_a_file_without_the_table_key_names_what_it_found(tmp_path):
    from safetensors.torch import save_file

    save_file({"weights": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match=f"{TABLE_KEY}.*weights"):
        load_embedding_table(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_embedding_table(tmp_path / "missing.safetensors")


def test_mismatched_tokenizer_and_table_are_refused(tokenizer):
    embedder = StepEmbedder(tokenizer, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="outside the embedding table"):
        embedder.embed(["red"])


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(0, 3), torch.zeros(3, 2).long()])
def test_bad_tables_are_refused(tokenizer, bad):
    with pytest.raises(ValueError, match="table"):
        StepEmbedder(tokenizer, bad)


def test_a_single_string_is_refused(tokenizer, table):
    with pytest.raises(TypeError, match="sequence"):
        StepEmbedder(tokenizer, table).embed("the bar")
