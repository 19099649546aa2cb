"""Settings read from ``EMBEDOPS_*`` environment variables, validated, passed in explicitly."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_STORE = Path(".embedops")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedops"


class Settings(BaseSettings):
    """Runtime settings. Every field can be set as ``EMBEDOPS_<NAME>``.

    Example:
        >>> Settings(store="/data/vectors").store
        PosixPath('/data/vectors')
    """

    model_config = SettingsConfigDict(env_prefix="EMBEDOPS_", extra="forbid")

    store: Path = Field(default=DEFAULT_STORE, description="Directory of the vector store.")
    model: str = Field(
        default=DEFAULT_MODEL,
        description="Model name, Hugging Face model id or local directory.",
    )
    backend: str = Field(
        default="onnx",
        description="Inference backend (default: the fastest that passes the fp32 quality gate "
        "on the machine we measure, see benchmarks/README.md).",
    )
    batch_tokens: int | None = Field(
        default=None,
        ge=64,
        description="Token budget of one inference batch (rows x padded length); "
        "default: the backend's measured best.",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Inference batches run at once (threads); default: one per core for the "
        "ONNX backends, 1 for the others.",
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Embedding worker processes, each loading the model (1: embed in this "
        "process). Worth it where the backend holds the GIL (static).",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="Inference threads per worker; default: cores / (workers x processes).",
    )
    cache_dir: Path = Field(
        default=DEFAULT_CACHE,
        description="Where built model artefacts (ONNX, static models) are cached.",
    )
    read_rows: int = Field(default=4096, ge=1, description="Rows per input record batch.")
    sort_window: int = Field(
        default=4096,
        ge=1,
        description="Rows sorted by length, embedded and committed together (one store commit).",
    )
    cache_size: int = Field(
        default=65536, ge=0, description="Vectors kept to reuse for identical texts in a run."
    )
