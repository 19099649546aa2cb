"""Experiments in the live service (``embedops serve`` in a subprocess, hash backend, real
HTTP): variant headers, per-variant routing and tables, feedback into the report, the admin
endpoints' scopes, and changes made by the CLI taking effect without a restart."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from embedops import EmbeddingProcessor
from embedops.cli import app
from embedops.config import Settings
from embedops.experiments.assignment import assign
from embedops.experiments.definitions import ExperimentStore
from embedops.experiments.manage import build_experiment
from embedops.service.auth import KeyStore
from embedops.store import VectorStore
from tests.experiments.conftest import register, tiny_model
from tests.service.conftest import Server, auth

ITEMS = [
    {"id": "1", "text": "red wool hat"},
    {"id": "2", "text": "blue cotton shirt"},
    {"id": "3", "text": "green wool scarf"},
]


@dataclass
class Live:
    server: Server
    store: Path
    a: str  # model-a's version (32 dimensions)
    b: str  # model-b's version (48 dimensions)
    admin: str

    def key(self, scopes: str = "embed,search,write") -> tuple[str, str]:
        """A new key: (token, key id)."""
        token, key = KeyStore(self.store / "keys.json").create(scopes=scopes.split(","))
        return token, key.id

    def put(self, name: str, body: dict[str, object]) -> httpx.Response:
        return httpx.put(
            f"{self.server.url}/v1/experiments/{name}", json=body, headers=auth(self.admin)
        )

    def stop(self, name: str) -> None:
        response = httpx.delete(
            f"{self.server.url}/v1/experiments/{name}", headers=auth(self.admin)
        )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("exp-svc")
    store = root / "store"
    a = register(store, tiny_model(root / "models", "model-a", 32))
    b = register(store, tiny_model(root / "models", "model-b", 48))
    server = Server(store, experiment_poll_s=0.2)
    admin = server.key("admin")
    yield Live(server, store, a, b, admin)
    server.stop()


def _embed(live: Live, token: str, model: str = "all-MiniLM-L6-v2") -> httpx.Response:
    response = httpx.post(
        f"{live.server.url}/v1/embeddings",
        json={"input": "red wool hat", "model": model},
        headers=auth(token),
    )
    return response


def _search(live: Live, token: str, query: str = "red wool hat") -> httpx.Response:
    response = httpx.post(
        f"{live.server.url}/v1/collections/docs/search",
        json={"query": query, "k": 10},
        headers=auth(token),
    )
    assert response.status_code == 200, response.text
    return response


def test_no_experiment_serves_default(live: Live) -> None:
    token, _ = live.key()
    response = _embed(live, token)
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert response.headers["x-embedops-variant"] == "default"
    assert response.headers["x-embedops-model-version"].startswith("all-minilm-l6-v2-hash-fp32-")
    assert len(response.json()["data"][0]["embedding"]) == 384
    # Outside an experiment nothing is logged, so feedback finds no request.
    feedback = httpx.post(
        f"{live.server.url}/v1/feedback",
        json={"request_id": response.headers["x-request-id"], "clicked": ["1"]},
        headers=auth(token),
    )
    assert feedback.status_code == 404
    assert feedback.json()["error"]["code"] == "request_not_found"


def test_admin_endpoints_need_the_admin_scope(live: Live) -> None:
    url = f"{live.server.url}/v1/experiments"
    embed_token, _ = live.key("embed,search,write")
    body = {"variants": [{"label": "a", "model": live.a, "weight": 1}]}
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=auth("eo-wrong")).status_code == 401
    refused = httpx.put(f"{url}/x", json=body, headers=auth(embed_token))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert httpx.get(f"{url}/x/report", headers=auth(embed_token)).status_code == 403
    listed = httpx.get(url, headers=auth(live.admin))
    assert listed.status_code == 200 and listed.json()["active"] is None
    bad = {"variants": [{"label": "a", "model": "/nowhere/model", "weight": 1}]}
    refused = httpx.put(f"{url}/bad", json=bad, headers=auth(live.admin))
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "variants"
    invalid = {"variants": [{"label": "A B", "model": live.a, "weight": 1}]}
    refused = httpx.put(f"{url}/bad", json=invalid, headers=auth(live.admin))
    assert refused.status_code == 400 and "not a valid name" in refused.json()["error"]["message"]
    assert httpx.get(url, headers=auth(live.admin)).json()["data"] == []
    missing = httpx.get(f"{url}/missing", headers=auth(live.admin))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "experiment_not_found"


def test_variants_route_embeddings_and_searches(live: Live) -> None:
    body = {
        "variants": [
            {"label": "a", "model": live.a, "weight": 50},
            {"label": "b", "model": live.b, "weight": 50},
        ],
        "collection": "docs",
    }
    response = live.put("ab", body)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True
    experiment = ExperimentStore(live.store).get("ab")
    try:
        dims = {"a": 32, "b": 48}
        versions = {"a": live.a, "b": live.b}
        keys = [live.key() for _ in range(16)]
        served: dict[str, str] = {}
        answered: Counter[str] = Counter()
        for token, key_id in keys * 2:  # twice: the same key keeps its variant
            reply = _embed(live, token)
            assert reply.status_code == 200, reply.text
            label = reply.headers["x-embedops-variant"]
            assert label == assign(experiment, key_id).label
            assert served.setdefault(key_id, label) == label
            answered[label] += 1
            assert reply.headers["x-embedops-model-version"] == versions[label]
            assert len(reply.json()["data"][0]["embedding"]) == dims[label]
        assert set(served.values()) == {"a", "b"}
        token_a = next(t for t, k in keys if served[k] == "a")
        token_b = next(t for t, k in keys if served[k] == "b")

        # Naming a variant's version pins it; an unknown model is refused.
        pinned = _embed(live, token_a, model=live.b)
        assert pinned.headers["x-embedops-variant"] == "b"
        assert len(pinned.json()["data"][0]["embedding"]) == 48
        unknown = _embed(live, token_a, model="no-such-model")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "model_not_found"

        # A write goes to the table of every served version.
        put = httpx.put(
            f"{live.server.url}/v1/collections/docs/items",
            json={"items": ITEMS},
            headers=auth(token_a),
        )
        assert put.status_code == 200, put.text
        tables = set(VectorStore(live.store).versions("docs"))
        assert {live.a, live.b} < tables and len(tables) == 3
        # An item only b's table holds: only b's searches can find it.
        with EmbeddingProcessor(store=live.store, model=live.b, backend="hash") as only_b:
            only_b.upsert("docs", [{"id": "only-b", "text": "red wool hat sale"}])
        found_a = _search(live, token_a)
        found_b = _search(live, token_b)
        assert found_a.headers["x-embedops-model-version"] == live.a
        assert found_b.headers["x-embedops-variant"] == "b"
        ids_a = [hit["id"] for hit in found_a.json()["data"]]
        ids_b = [hit["id"] for hit in found_b.json()["data"]]
        assert sorted(ids_a) == ["1", "2", "3"]
        assert sorted(ids_b) == ["1", "2", "3", "only-b"]

        similar = httpx.get(
            f"{live.server.url}/v1/collections/docs/items/1/similar", headers=auth(token_b)
        )
        assert similar.headers["x-embedops-variant"] == "b"
        assert "only-b" in [hit["id"] for hit in similar.json()["data"]]

        models = httpx.get(f"{live.server.url}/v1/models", headers=auth(token_a)).json()
        assert {card["version"] for card in models["data"]} >= {live.a, live.b}
        metrics = httpx.get(f"{live.server.url}/metrics").text
        assert re.search(
            r'embedops_experiment_requests_total\{experiment="ab",variant="b"\} [1-9]', metrics
        )
        # Request metrics carry the variant and its model version; batches their version.
        for label, version in versions.items():
            pinned_here = 1 if label == "b" else 0  # the request that named b's version
            line = (
                f'embedops_requests_total{{method="POST",model_version="{version}",'
                f'route="/v1/embeddings",status="200",variant="{label}"}} '
            )
            series = re.findall(re.escape(line) + r"(\S+)", _sorted_labels(metrics))
            assert [float(v) for v in series] == [answered[label] + pinned_here]
            assert f'embedops_batch_texts_count{{model_version="{version}"}}' in metrics
    finally:
        live.stop("ab")
    after = _embed(live, keys[0][0])
    assert after.headers["x-embedops-variant"] == "default"
    assert len(after.json()["data"][0]["embedding"]) == 384


def test_feedback_changes_the_report(live: Live) -> None:
    body = {
        "variants": [
            {"label": "a", "model": live.a, "weight": 1},
            {"label": "b", "model": live.b, "weight": 1},
        ],
        "collection": "docs",
    }
    assert live.put("fb", body).status_code == 200
    report_url = f"{live.server.url}/v1/experiments/fb/report"
    try:
        httpx.put(
            f"{live.server.url}/v1/collections/docs/items",
            json={"items": ITEMS},
            headers=auth(live.key()[0]),
        ).raise_for_status()
        sent: Counter[str] = Counter()
        searches: dict[str, list[tuple[str, list[str]]]] = {"a": [], "b": []}
        for _ in range(8):
            token, _ = live.key()
            reply = _search(live, token, "green wool")
            label = reply.headers["x-embedops-variant"]
            sent[label] += 1
            ids = [hit["id"] for hit in reply.json()["data"]]
            searches[label].append((reply.headers["x-request-id"], ids))
        before = httpx.get(report_url, headers=auth(live.admin)).json()
        by_label = {v["label"]: v for v in before["variants"]}
        for label in ("a", "b"):
            assert by_label[label]["requests"] == sent[label]
            assert by_label[label]["feedback"] == 0
            if sent[label]:
                assert by_label[label]["ctr"]["value"] == 0.0
        # Click the second result of every search a served: CTR 1, MRR 1/2.
        label = "a" if searches["a"] else "b"
        for request_id, ids in searches[label]:
            reply = httpx.post(
                f"{live.server.url}/v1/feedback",
                json={"request_id": request_id, "clicked": [ids[1]], "relevant": [ids[1]]},
                headers=auth(live.admin),
            )
            assert reply.status_code == 200 and reply.json() == {"accepted": True}
        after = httpx.get(report_url, headers=auth(live.admin)).json()
        arm = next(v for v in after["variants"] if v["label"] == label)
        assert arm["feedback"] == sent[label]
        assert arm["ctr"]["value"] == 1.0
        assert arm["mrr"]["value"] == 0.5
        assert arm["recall_at_k"]["value"] == 1.0
        # The CLI reads the same log.
        result = CliRunner().invoke(
            app, ["experiments", "report", "fb", "--store", str(live.store), "--json"]
        )
        assert result.exit_code == 0, result.stderr
        cli = json.loads(result.stdout)
        assert cli["variants"] == after["variants"]
    finally:
        live.stop("fb")


def test_cli_changes_take_effect_without_restart(live: Live) -> None:
    token, _ = live.key()
    settings = Settings(store=live.store, backend="hash")
    experiment = build_experiment(settings, "solo", [("b", live.b, 1.0)])
    ExperimentStore(live.store).create(experiment)
    try:
        deadline = time.monotonic() + 15
        while _embed(live, token).headers["x-embedops-variant"] != "b":
            assert time.monotonic() < deadline, "the service did not pick up the experiment"
            time.sleep(0.1)
    finally:
        ExperimentStore(live.store).finish("solo")
    deadline = time.monotonic() + 15
    while _embed(live, token).headers["x-embedops-variant"] != "default":
        assert time.monotonic() < deadline, "the service did not drop the experiment"
        time.sleep(0.1)


def test_sticky_by_user(live: Live) -> None:
    body = {
        "variants": [
            {"label": "a", "model": live.a, "weight": 1},
            {"label": "b", "model": live.b, "weight": 1},
        ],
        "sticky": "user",
    }
    assert live.put("users", body).status_code == 200
    experiment = ExperimentStore(live.store).get("users")
    try:
        tokens = [live.key()[0] for _ in range(4)]
        for user in ("alice", "bob", "carol", "dave", "erin"):
            labels = set()
            for token in tokens:  # other keys, same user: same variant
                reply = httpx.post(
                    f"{live.server.url}/v1/embeddings",
                    json={"input": "hat", "model": "all-MiniLM-L6-v2", "user": user},
                    headers=auth(token),
                )
                labels.add(reply.headers["x-embedops-variant"])
            assert labels == {assign(experiment, user).label}, user
    finally:
        live.stop("users")


def test_experiment_setting(tmp_path: Path) -> None:
    store = tmp_path / "store"
    version = register(store, tiny_model(tmp_path / "models", "model-a", 32))
    settings = Settings(store=store, backend="hash")
    ExperimentStore(store).create(build_experiment(settings, "running", [("a", version, 1.0)]))
    # EMBEDOPS_EXPERIMENT=off: the running experiment is not served.
    server = Server(store, experiment="off")
    try:
        assert _embed_default(server).headers["x-embedops-variant"] == "default"
    finally:
        server.stop()
    # A name: that experiment (here the running one).
    server = Server(store, experiment="running")
    try:
        assert _embed_default(server).headers["x-embedops-variant"] == "a"
    finally:
        server.stop()
    # A name the store lacks: the service refuses to start, saying why.
    with pytest.raises(RuntimeError, match="EMBEDOPS_EXPERIMENT=missing names no experiment"):
        Server(store, experiment="missing")


def _embed_default(server: Server) -> httpx.Response:
    reply = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"input": "hat", "model": "all-MiniLM-L6-v2"},
        headers=auth(server.key("embed")),
    )
    assert reply.status_code == 200, reply.text
    return reply


def _sorted_labels(metrics: str) -> str:
    """Prometheus text with each sample's labels sorted by name (exposition order is the
    order the metric declared them in)."""

    def sort(match: re.Match[str]) -> str:
        pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2))
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(pairs))
        return f"{match.group(1)}{{{inner}}}"

    return re.sub(r"^(\w+)\{([^}]*)\}", sort, metrics, flags=re.M)
