"""API keys: 401, 403, revocation, open health endpoints, and the keys commands."""

from __future__ import annotations

import json
import re

import httpx
from typer.testing import CliRunner

from embedops.cli import app
from embedops.service.auth import KeyStore
from tests.service.conftest import Server, auth

BODY = {"input": "hello", "model": "all-MiniLM-L6-v2"}


def test_missing_and_invalid_keys_get_401(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer eo-nope"}, {"Authorization": "Basic abc"}):
        r = httpx.post(f"{server.url}/v1/embeddings", json=BODY, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.json()["error"]["code"] == "invalid_api_key"


def test_a_key_without_the_scope_gets_403(server: Server) -> None:
    search_only = server.key("search")
    r = httpx.post(f"{server.url}/v1/embeddings", json=BODY, headers=auth(search_only))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_scope"
    assert "'embed'" in r.json()["error"]["message"]
    r = httpx.put(
        f"{server.url}/v1/collections/c/items",
        json={"items": [{"id": "1", "text": "x"}]},
        headers=auth(search_only),
    )
    assert r.status_code == 403


def test_admin_has_every_scope_and_a_revoked_key_stops_working(server: Server) -> None:
    admin = server.key("admin")
    assert httpx.post(f"{server.url}/v1/embeddings", json=BODY, headers=auth(admin)).is_success
    keys = KeyStore(server.store / "keys.json")
    (key,) = [k for k in keys.all() if k.scopes == ("admin",)]
    keys.revoke(key.id)
    r = httpx.post(f"{server.url}/v1/embeddings", json=BODY, headers=auth(admin))
    assert r.status_code == 401


def test_health_and_metrics_are_open(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = httpx.get(f"{server.url}/metrics")
    assert metrics.status_code == 200
    assert re.search(
        r'embedops_requests_total\{method="GET",model_version="[^"]+",route="/readyz",'
        r'status="200",variant="default"\}',
        metrics.text,
    )


def test_keys_are_stored_hashed_and_shown_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    store = str(tmp_path / "store")
    made = runner.invoke(
        app, ["keys", "create", "--scopes", "embed,search", "--rpm", "5", "--store", store]
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[0]
    assert token.startswith("eo-") and len(token) > 40
    stored = (tmp_path / "store" / "keys.json").read_text()
    assert token not in stored and token[3:] not in stored
    assert KeyStore(tmp_path / "store" / "keys.json").authenticate(token) is not None
    listed = runner.invoke(app, ["keys", "list", "--json", "--store", store])
    (row,) = json.loads(listed.stdout)
    assert row["scopes"] == ["embed", "search"] and row["rpm"] == 5 and "hash" not in row
    assert token not in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", row["id"], "--store", store])
    assert revoked.exit_code == 0
    assert KeyStore(tmp_path / "store" / "keys.json").authenticate(token) is None
    bad = runner.invoke(app, ["keys", "create", "--scopes", "embed,root", "--store", store])
    assert bad.exit_code == 9 and "root" in bad.output
