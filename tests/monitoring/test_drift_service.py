"""Drift gauges of a real service (hash backend): they stay below their thresholds while the
input distribution holds, and cross them when it shifts (longer texts of another corpus,
texts full of unknown tokens)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from embedops.monitoring.history import read_history
from tests.monitoring.conftest import (
    ag_news_texts,
    new_key,
    scrape,
    sts_sentences,
    value,
    wait_for,
)
from tests.service.conftest import Server, auth

WINDOW = 400
SIGNALS = ("length_shift", "unknown_token_rate", "centroid_shift")
GAUGES = {
    "length_shift": "embedops_drift_input_length_shift",
    "unknown_token_rate": "embedops_drift_unknown_token_rate",
    "centroid_shift": "embedops_drift_centroid_shift",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("drift") / "store",
        drift_window=WINDOW,
        monitor_interval_s=0.5,
        service_cache_size=0,
    )
    yield server
    server.stop()


def _send(server: Server, client: httpx.Client, texts: list[str]) -> dict[str, float]:
    """Embed ``texts`` (50 a request), wait for the tokenised refresh, return the gauges."""
    for i in range(0, len(texts), 50):
        r = client.post(
            "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts[i : i + 50]}
        )
        assert r.status_code == 200, r.text
    version = client.get("/v1/models").json()["data"][0]["version"]
    marker = server.store / ".monitoring" / "history.jsonl"
    lines = marker.read_text().count("\n") if marker.exists() else 0
    # Two history lines later the window's sample has been tokenised.
    wait_for(lambda: marker.exists() and marker.read_text().count("\n") >= lines + 2)
    samples = scrape(server)
    out = {}
    for signal, name in GAUGES.items():
        found = value(samples, name, model_version=version)
        assert found is not None, name
        out[signal] = found
        alert = value(samples, "embedops_drift_alert", model_version=version, signal=signal)
        out[f"alert_{signal}"] = alert if alert is not None else -1
    out["norm_mean"] = value(samples, "embedops_embedding_norm_mean", model_version=version) or 0
    return out


def test_drift_stays_put_then_moves_past_its_thresholds(server: Server) -> None:
    sts = sts_sentences()
    random.Random(0).shuffle(sts)
    token, _ = new_key(server)
    samples = scrape(server)
    thresholds = {s: value(samples, "embedops_drift_threshold", signal=s) for s in SIGNALS}
    assert thresholds == {"length_shift": 0.2, "unknown_token_rate": 0.05, "centroid_shift": 0.1}
    with httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as client:
        baseline = sts[:WINDOW]
        _send(server, client, baseline)
        assert len(list((server.store / ".monitoring").glob("baseline-*.json"))) == 1

        same = _send(server, client, sts[WINDOW : 2 * WINDOW])
        assert same["length_shift"] < 0.2 and same["centroid_shift"] < 0.1, same
        assert same["unknown_token_rate"] < 0.01, same
        assert same["norm_mean"] == pytest.approx(1.0, abs=1e-5)
        assert [same[f"alert_{s}"] for s in SIGNALS] == [0, 0, 0], same

        news = _send(server, client, ag_news_texts()[:WINDOW])
        assert news["length_shift"] > 1.0 and news["centroid_shift"] > 0.15, news
        assert news["alert_length_shift"] == 1 and news["alert_centroid_shift"] == 1, news
        assert news["alert_unknown_token_rate"] == 0, news

        unknown = [f"{s} 🙂🚀🎉🙃🔥" for s in sts[2 * WINDOW : 3 * WINDOW]]
        odd = _send(server, client, unknown)
        assert odd["unknown_token_rate"] > 0.05 and odd["alert_unknown_token_rate"] == 1, odd

        back = _send(server, client, sts[3 * WINDOW : 4 * WINDOW])
        assert [back[f"alert_{s}"] for s in SIGNALS] == [0, 0, 0], back
        version = client.get("/v1/models").json()["data"][0]["version"]
    lines = [line for line in read_history(server.store) if version in line.get("drift", {})]
    alerts = [set(line["drift"][version]["alerts"]) for line in lines]
    assert {"length_shift", "centroid_shift"} in alerts and {"unknown_token_rate"} in alerts
    assert alerts[-1] == set()
    assert set(lines[-1]["drift"][version]) == {*SIGNALS, "norm_mean", "norm_std", "alerts"}
