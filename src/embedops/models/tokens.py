"""Token counting with the model's own fast tokenizer (no model weights needed)."""

from __future__ import annotations

from collections.abc import Sequence

from embedops.errors import ModelLoadError
from embedops.models.base import ModelSpec


class TokenCounter:
    """Counts tokens per text, special tokens included, without truncation."""

    def __init__(self, spec: ModelSpec) -> None:
        from tokenizers import Tokenizer

        path = spec.path / "tokenizer.json"
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise ModelLoadError(
                f"cannot read tokenizer {path} ({exc}); reinstall the model"
            ) from exc
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]
