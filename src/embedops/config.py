"""Settings read from ``EMBEDOPS_*`` environment variables, validated, passed in explicitly."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_STORE = Path(".embedops")
MAX_BATCH_TOKENS = 65_536
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embedops"


class Settings(BaseSettings):
    """Runtime settings. Every field can be set as ``EMBEDOPS_<NAME>``.

    Example:
        >>> Settings(store="/data/vectors").store
        PosixPath('/data/vectors')
    """

    # An empty variable (EMBEDOPS_STORE=) means unset, not the current directory.
    model_config = SettingsConfigDict(env_prefix="EMBEDOPS_", extra="forbid", env_ignore_empty=True)

    store: Path = Field(default=DEFAULT_STORE, description="Directory of the vector store.")
    model: str = Field(
        default=DEFAULT_MODEL,
        min_length=1,
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
        # Attention memory grows with rows x length^2: 65,536 tokens of 256-token texts take
        # about 1 GB of activations; 10^12 took 9.9 GB for 2,000 rows.
        le=MAX_BATCH_TOKENS,
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
        le=1024,
        description="Inference threads per worker; default: cores / (workers x processes).",
    )
    cache_dir: Path = Field(
        default=DEFAULT_CACHE,
        description="Where built model artefacts (ONNX, static models) are cached.",
    )
    read_rows: int = Field(
        default=4096, ge=1, le=1_000_000, description="Rows per input record batch."
    )
    sort_window: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Rows sorted by length, embedded and committed together (one store commit).",
    )
    commit_rows: int = Field(
        default=16_384,
        ge=1,
        le=10_000_000,
        description="Rows one store commit holds (--commit-every): a crash loses at most this "
        "many embedded rows plus one window; smaller commits make more table fragments.",
    )
    embed_cache: str = Field(
        default="auto",
        pattern="^(auto|on|off)$",
        description="The shared embedding cache on disk (vectors by model version and text "
        "hash, across runs and collections): on, off, or auto (on except for the static "
        "backend, whose embedding costs less than a lookup).",
    )
    embed_cache_mb: int = Field(
        default=2048, ge=1, le=1_000_000, description="Size bound of the embedding cache, MB."
    )
    keep_published: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Published versions of a table kept for rollback (tagged, so cleanup "
        "keeps them); older ones may be cleaned up after EMBEDOPS_KEEP_VERSIONS_HOURS.",
    )
    keep_old_tables: bool = Field(
        default=True,
        description="After promote switches a collection to another model version, keep the "
        "table of the one it replaced (rollback can go back to it) or drop it.",
    )
    cache_size: int = Field(
        default=65536,
        ge=0,
        le=10_000_000,
        description="Vectors kept to reuse for identical texts in a run.",
    )
    engine: Literal["local", "ray"] = Field(
        default="local",
        description="Where the stages run: 'local' (this process) or 'ray' (Ray Data: a local "
        "Ray, or the cluster at RAY_ADDRESS; needs the 'ray' extra).",
    )

    # --- The embedding service (``embedops serve``; see ``embedops.service``) ---
    host: str = Field(default="127.0.0.1", description="Address the service listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the service listens on.")
    service_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Service processes (uvicorn workers), each loading the model; with more "
        "than one, set redis_url so that they share the rate limits.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:port/db) for rate limits shared by several "
        "instances; default: limits kept in memory, per process.",
    )
    default_rpm: int = Field(
        default=600, ge=1, description="Requests per minute of a key that names none."
    )
    default_tpm: int = Field(
        default=1_000_000, ge=1, description="Tokens per minute of a key that names none."
    )
    max_batch_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=5000,
        description="Longest wait for more texts before a batch is embedded (from the oldest "
        "text's arrival when idle, from the release of an inference slot when busy).",
    )
    queue_size: int = Field(
        default=4096,
        ge=1,
        description="Texts waiting for the model at most; past it the service answers 503.",
    )
    keys_file: Path | None = Field(
        default=None,
        description="API keys file (hashed keys); default: keys.json in the store folder.",
    )
    metrics_auth: bool = Field(
        default=False, description="Require a key with the admin scope for /metrics."
    )
    max_input_items: int = Field(
        default=2048, ge=1, description="Most texts in one embeddings request."
    )
    truncate: bool = Field(
        default=True,
        description="Truncate texts over the model's token limit (false: answer 400).",
    )
    drain_seconds: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long in-flight requests may finish."
    )

    # Store upkeep after runs and on `embedops index` (see embedops.upkeep).
    upkeep: bool = Field(
        default=True,
        description="After a run that stored rows: compact the table, remove old versions and "
        "build or update its vector index.",
    )
    upkeep_fragments: int = Field(
        default=16,
        ge=2,
        description="After a run, compact a table once it has this many fragments (one per "
        "commit of up to 16,384 rows).",
    )
    keep_versions_hours: float = Field(
        default=168.0,
        ge=0,
        description="Table versions younger than this are kept by the cleanup (the latest and "
        "tagged ones always are). 0 removes every other version at once: only when nothing "
        "reads an older version.",
    )
    index_min_rows: int = Field(
        default=100_000,
        ge=0,
        description="Rows from which a table gets an ANN vector index (0: never automatically; "
        "below it search is an exact scan).",
    )
    index_type: Literal["IVF_SQ", "IVF_PQ"] = Field(
        default="IVF_SQ",
        description="Vector index type (cosine): IVF_SQ (8-bit scalar quantised) or IVF_PQ "
        "(product quantised: smaller, slower to build, needs more re-ranking).",
    )
    index_pq_dims: int = Field(
        default=8, ge=1, le=256, description="Vector dimensions per PQ sub-vector (IVF_PQ)."
    )
    index_retrain_share: float = Field(
        default=0.5,
        gt=0,
        description="Retrain the vector index when the rows it does not cover are more than "
        "this share of the table (else new rows are added to it).",
    )
    search_nprobes: int = Field(
        default=50, ge=1, le=4096, description="IVF partitions an indexed search reads."
    )
    search_refine_factor: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="An indexed search re-ranks k x this many candidates by their exact vectors.",
    )

    # experiments
    experiment: str = Field(
        default="auto",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="Which experiment the service runs (see docs/experiments.md): auto (the "
        "store's running experiment, if any), off (none), or the name of one.",
    )
    experiment_poll_s: float = Field(
        default=2.0,
        ge=0,
        description="How often the service checks experiments.json for changes made by the "
        "CLI (0: only at start and through the admin endpoint).",
    )
    shadow_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of live requests a shadow candidate embeds when an experiment "
        "names none.",
    )
    shadow_queue: int = Field(
        default=256,
        ge=1,
        description="Sampled requests waiting for the shadow candidate at most; more are "
        "dropped and counted (the request never waits for the shadow).",
    )

    # monitoring
    monitor_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between two lines of <store>/.monitoring/history.jsonl (and "
        "between two refreshes of the drift gauges).",
    )
    service_cache_size: int = Field(
        default=10_000,
        ge=0,
        le=10_000_000,
        description="Vectors of repeated texts the service keeps in memory, per process and "
        "model version (0: no cache).",
    )
    drift_window: int = Field(
        default=2000,
        ge=10,
        description="Texts in the baseline window (the first seen by a model version) and in "
        "the current window drift is measured on.",
    )
    drift_length_shift_max: float = Field(
        default=0.2,
        gt=0,
        description="Alert when the PSI of the input token-length histogram against the "
        "baseline is above this.",
    )
    drift_unknown_rate_max: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Alert when the share of unknown ([UNK]) tokens is above this.",
    )
    drift_centroid_shift_max: float = Field(
        default=0.1,
        gt=0,
        le=2,
        description="Alert when 1 - cosine of the window's embedding centroid with the "
        "baseline's is above this.",
    )
    canary_pairs: Path | None = Field(
        default=None,
        description="TSV of held-out pairs for the quality canary (sentence1, sentence2, "
        "score; or the STS-B layout); unset: no canary.",
    )
    canary_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between two quality canary runs."
    )
    canary_min_spearman: float = Field(
        default=0.75,
        ge=-1,
        le=1,
        description="Canary threshold (Spearman, 0-1) of a model version the registry has no "
        "gate for.",
    )
    canary_tolerance: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="A registered version passes the canary at its gate's STS-B minimum less "
        "this (the canary's pairs are a sample, its Spearman noisier than the gate's).",
    )


def bounded_to_cores(name: str, value: int, cores: int | None = None) -> int:
    """``value`` capped at the machine's cores, with a warning that names the value used:
    more threads or processes than cores only queue for them (64 threads on 2 cores ran a
    job 25 times slower)."""
    available = cores or os.cpu_count() or 1
    if value <= available:
        return value
    logger.warning(
        "%s=%d is more than the %d cores of this machine; using %d",
        name,
        value,
        available,
        available,
    )
    return available
