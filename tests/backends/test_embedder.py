"""The real all-MiniLM-L6-v2 embedder: shape, unit norms, similarity order, bad folders."""

from __future__ import annotations

import numpy as np
import pytest

from backends.embedder import SentenceEmbedder
from uno_local.embedding import Embedder, embed_logs, embed_rule_lists, rules_text
from uno_local.errors import ModelError


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder(threads=1)


def test_shape_dtype_and_unit_norms(embedder):
    texts = ["How often should I water tomatoes?", "Who was Genghis Khan?", ""]
    vectors = embedder.encode(texts)
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_list_gives_zero_rows(embedder):
    empty = embedder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_a_single_string_is_refused(embedder):
    with pytest.raises(TypeError, match="list of texts"):
        embedder.encode("one text")


@pytest.mark.parametrize(
    "anchor, similar, unrelated",
    [
        (
            "How often should I water tomato plants?",
            "How frequently do tomatoes need watering?",
            "Who was Cleopatra?",
        ),
        ("End every answer with 'Happy growing!'", "Sign off with Happy growing!", "Use a numbered list."),
        ("Keep answers under 40 words.", "Shorter please, I only need the gist.", "What is a prime number?"),
    ],
)
def test_similar_sentences_are_closer_than_unrelated(embedder, anchor, similar, unrelated):
    a, s, u = embedder.encode([anchor, similar, unrelated])
    assert float(a @ s) > float(a @ u) + 0.1


def test_batching_does_not_change_vectors(embedder):
    texts = [f"Question number {i} about gardening." for i in range(5)]
    one_by_one = np.stack([embedder.encode([t])[0] for t in texts])
    assert np.allclose(embedder.encode(texts), one_by_one, atol=1e-5)


def test_embed_logs_and_rule_lists(embedder):
    eq, er = embed_logs(embedder, ["q one", "q two"], [["rule a", "rule b"], []])
    assert eq.shape == er.shape == (2, 384)
    assert np.allclose(er[0], embedder.encode([rules_text(["rule a", "rule b"])])[0], atol=1e-5)
    lists = embed_rule_lists(embedder, [["a", "b"], [], ["c"]])
    assert [v.shape[0] for v in lists] == [2, 0, 1]
    assert np.allclose(lists[2][0], embedder.encode(["c"])[0], atol=1e-5)
    with pytest.raises(ValueError, match="one rule list per query"):
        embed_logs(embedder, ["q"], [])


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda tmp: tmp / "missing", "not found"),
        (lambda tmp: tmp, "not a sentence-transformers model folder"),
        (lambda tmp: (tmp / "modules.json").write_text("not json") and tmp, "Cannot load"),
    ],
)
def test_bad_folder_is_a_model_error(tmp_path, make, phrase):
    with pytest.raises(ModelError, match=phrase) as info:
        SentenceEmbedder(make(tmp_path))
    assert str(tmp_path) in str(info.value)
