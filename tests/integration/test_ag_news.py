"""AG News end to end through the CLI: 7,600 real, messy news items."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedops import EmbeddingProcessor
from embedops.quality import knn_accuracy
from embedops.store import VectorStore
from tests.conftest import shared_file

pytestmark = [pytest.mark.integration, pytest.mark.quality]


def test_ag_news_through_the_cli(tmp_path: Path) -> None:
    data = shared_file("ag_news_test.csv")
    store = tmp_path / "store"
    cmd = [
        sys.executable,
        "-m",
        "embedops",
        "embed",
        str(data),
        "--collection",
        "ag_news",
        "--columns",
        "label,title,description",
        "--template",
        "{title}. {description}",
        "--keep",
        "label",
        "--store",
        str(store),
        "--json",
        "--quiet",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["read"] == 7600
    assert report["quarantined"] == 0
    assert report["embedded"] == 7600
    assert report["read"] == report["embedded"] + report["unchanged"] + report["quarantined"]
    assert report["cleaned"]["markup"] > 500  # '#39;', '&lt;b&gt;', backslashes

    with EmbeddingProcessor(store=store) as p:
        table = p.store.collection("ag_news", p.model_version)
        rows = table._table.to_arrow()
    ids = rows.column("id").to_pylist()
    assert sorted(ids, key=int) == [str(i) for i in range(1, 7601)]
    vectors = np.asarray(rows.column("vector").to_pylist(), dtype=np.float32)
    labels = np.asarray([int(x) for x in rows.column("label").to_pylist()])
    accuracy = knn_accuracy(vectors, labels)
    assert accuracy >= 0.88, accuracy

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["embedded"], second["unchanged"]) == (0, 7600)
    assert VectorStore(store).collection("ag_news", report["model_version"]).count() == 7600
