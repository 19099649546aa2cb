"""Token counting and token ids with the model's own fast tokenizer (no model weights needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedops.errors import ModelLoadError
from embedops.models.base import ModelSpec
from embedops.models.wordpiece import FastWordPiece


def read_tokenizer(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` from ``path`` with truncation and padding off."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise ModelLoadError(f"cannot read tokenizer {path} ({exc}); reinstall the model") from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class TokenCounter:
    """Counts tokens per text, special tokens included, without truncation."""

    def __init__(self, spec: ModelSpec) -> None:
        self._tokenizer = read_tokenizer(spec.path / "tokenizer.json")
        self._fast = FastWordPiece.of(self._tokenizer)
        self._specials = len(self._tokenizer.encode("").ids)

    def count(self, texts: Sequence[str]) -> list[int]:
        if self._fast is not None:
            extra = self._specials
            return [len(ids) + extra for ids in self._fast.encode(texts)]
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]


class CutTokenizer:
    """Token ids of each text after a cut to ``max_chars`` characters, no special tokens and
    no truncation: ``FastWordPiece`` where it applies, else the tokenizer itself."""

    def __init__(self, tokenizer: Any, max_chars: int) -> None:
        self._tokenizer = tokenizer
        self._fast = FastWordPiece.of(tokenizer)
        self.max_chars = max_chars

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        cut = [text[: self.max_chars] for text in texts]
        if self._fast is not None:
            return self._fast.encode(cut)
        return [e.ids for e in self._tokenizer.encode_batch_fast(cut, add_special_tokens=False)]
