"""Helpers of the monitoring tests: scrape and parse a service's ``/metrics``."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from embedops.service.auth import KeyStore
from tests.conftest import shared_file
from tests.service.conftest import Server


def scrape(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``: (name, labels) -> value."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    """The sample ``name`` with exactly ``labels``, or ``None``."""
    return samples.get((name, frozenset(labels.items())))


def delta(
    before: dict[tuple[str, frozenset[tuple[str, str]]], float],
    after: dict[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    **labels: str,
) -> float:
    """How much the sample ``name`` with ``labels`` grew between two scrapes."""
    return (value(after, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)


def new_key(server: Server, scopes: str = "embed") -> tuple[str, str]:
    """A new key's token and id."""
    token, key = KeyStore(server.store / "keys.json").create(scopes=scopes.split(","))
    return token, key.id


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def sts_sentences() -> list[str]:
    """STS-B dev sentences, in file order, each once."""
    rows = shared_file("stsb-dev.tsv").read_text(encoding="utf-8").splitlines()
    sentences = [s for row in rows for s in row.split("\t")[5:7]]
    return list(dict.fromkeys(sentences))


def ag_news_texts() -> list[str]:
    """AG News test texts: ``title. description`` (longer than STS sentences)."""
    with shared_file("ag_news_test.csv").open(encoding="utf-8", newline="") as fh:
        return [f"{title}. {description}" for _, title, description in csv.reader(fh)]
