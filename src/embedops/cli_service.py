"""``embedops serve`` and ``embedops keys``: the embedding service's commands.

Registered on the main app by one import at the end of ``embedops.cli``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embedops.cli import (
    BackendOpt,
    JsonOpt,
    ModelOpt,
    StoreOpt,
    _guard,
    _settings,
    _split,
    app,
    out,
)
from embedops.config import Settings

logger = logging.getLogger(__name__)

keys_app = typer.Typer(name="keys", help="API keys of the embedding service.", no_args_is_help=True)
app.add_typer(keys_app)

KeysFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys-file", help="Keys file (env EMBEDOPS_KEYS_FILE; default STORE/keys.json)."
    ),
]


def _export(settings: Settings) -> None:
    """Put ``settings`` in the environment, for uvicorn's worker processes."""
    for name, value in settings.model_dump().items():
        if value is not None:
            os.environ[f"EMBEDOPS_{name.upper()}"] = str(value)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address (env EMBEDOPS_HOST; default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (env EMBEDOPS_PORT; default 8000).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Service processes, each with the model (env EMBEDOPS_SERVICE_WORKERS)."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="Redis for rate limits shared by instances (env EMBEDOPS_REDIS_URL)."),
    ] = None,
    keys_file: KeysFileOpt = None,
    store: StoreOpt = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
) -> None:
    """Serve the model over HTTP: OpenAI-compatible /v1/embeddings, search and writes.

    API docs at /docs. SIGTERM lets in-flight requests finish, then exits 0.
    """
    import uvicorn

    def run() -> None:
        settings = _settings(
            store,
            model,
            backend,
            host=host,
            port=port,
            service_workers=workers,
            redis_url=redis_url,
            keys_file=keys_file,
        )
        level = logging.getLogger().getEffectiveLevel()
        options = {
            "host": settings.host,
            "port": settings.port,
            "log_level": logging.getLevelName(min(level, logging.INFO)).lower(),
            "timeout_graceful_shutdown": max(1, round(settings.drain_seconds)),
            "access_log": False,
        }
        if settings.service_workers > 1:
            _export(settings)
            uvicorn.run(
                "embedops.service.app:app_from_env",
                factory=True,
                workers=settings.service_workers,
                **options,  # type: ignore[arg-type]
            )
        else:
            from embedops.service.app import create_app

            uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]

    _guard(run)


@keys_app.command("create")
def keys_create(
    scopes: Annotated[str, typer.Option(help="embed, search, write, admin: a,b,c.")],
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    rpm: Annotated[
        int | None, typer.Option(help="Requests per minute (default: the service's).")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option(help="Tokens per minute (default: the service's).")
    ] = None,
    keys_file: KeysFileOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from embedops.service.auth import KeyStore, keys_path

    def run() -> None:
        settings = _settings(store, None, keys_file=keys_file)
        token, key = KeyStore(keys_path(settings)).create(
            scopes=_split(scopes), name=name, rpm=rpm, tpm=tpm
        )
        if json_out:
            out.print_json(json.dumps({"key": token, **key.public()}))
            return
        out.print(token, highlight=False, markup=False)
        typer.echo(
            f"{key.id} ({', '.join(key.scopes)}): keep the key above, it is not shown again",
            err=True,
        )

    _guard(run)


@keys_app.command("list")
def keys_list(
    keys_file: KeysFileOpt = None, store: StoreOpt = None, json_out: JsonOpt = False
) -> None:
    """List the keys (ids, scopes and limits; never the keys themselves)."""
    from embedops.service.auth import KeyStore, keys_path

    def run() -> None:
        keys = KeyStore(keys_path(_settings(store, None, keys_file=keys_file))).all()
        if json_out:
            out.print_json(json.dumps([k.public() for k in keys]))
            return
        table = Table(title="API keys")
        for column in ("id", "name", "hint", "scopes", "rpm", "tpm", "created", "revoked"):
            table.add_column(column)
        for k in keys:
            table.add_row(
                k.id,
                k.name,
                k.hint + "...",
                ",".join(k.scopes),
                str(k.rpm or "default"),
                str(k.tpm or "default"),
                k.created,
                k.revoked or "",
            )
        out.print(table)

    _guard(run)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...), from keys list.")],
    keys_file: KeysFileOpt = None,
    store: StoreOpt = None,
) -> None:
    """Revoke a key: the service refuses it from its next request on."""
    from embedops.service.auth import KeyStore, keys_path

    def run() -> None:
        key = KeyStore(keys_path(_settings(store, None, keys_file=keys_file))).revoke(key_id)
        out.print(f"revoked {key.id}", highlight=False, markup=False)

    _guard(run)
