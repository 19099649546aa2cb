"""The library pieces the service stands on: the hash backend, in-memory records, upserts,
deletes and filtered search (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embedops import ConfigError, EmbeddingProcessor, InvalidFormat, Settings
from embedops.cli import app
from embedops.models.loader import BACKENDS, load_embedder
from embedops.records import records_source


def test_hash_backend_is_deterministic_normalised_and_counts_real_tokens() -> None:
    assert "hash" in BACKENDS
    backend = load_embedder("all-MiniLM-L6-v2", "hash")
    assert backend.spec.version.startswith("all-minilm-l6-v2-hash-fp32-")
    vectors = backend.embed(["a red shoe", "a red shoe", "red shoes on sale", "quantum"])
    np.testing.assert_array_equal(vectors[0], vectors[1])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[3]
    assert backend.count_tokens(["hello world"]) == [4]


def test_hash_backend_is_selectable_from_the_cli(tmp_path: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text('{"id": "1", "text": "a red shoe"}\n{"id": "2", "text": "a blue hat"}\n')
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store"), "--backend", "hash"]
    embedded = runner.invoke(
        app,
        ["embed", str(source), "-c", "items", "--text-field", "text", "--id-field", "id", *store],
    )
    assert embedded.exit_code == 0, embedded.output
    assert "2 embedded" in embedded.stdout
    found = runner.invoke(app, ["search", "items", "red shoe", "-k", "1", "--json", *store])
    assert found.exit_code == 0 and '"id": "1"' in found.stdout


def test_records_source_encodes_cells_as_the_jsonl_reader_does() -> None:
    source = records_source([{"id": 1, "text": "x", "tags": ["a"]}, {"id": "2"}], rows=1)
    batches = list(source.batches())
    assert source.fields == ["id", "text", "tags"] and source.total == 2
    assert [b.first_row for b in batches] == [1, 2]
    assert batches[0].values("tags") == [["a"]] and batches[1].values("text") == [None]
    with pytest.raises(InvalidFormat, match="record 2"):
        records_source([{"id": 1}, ["not", "an", "object"]])  # type: ignore[list-item]


def test_upsert_delete_and_filtered_search(tmp_path: Path) -> None:
    settings = Settings(store=tmp_path / "store", backend="hash")
    items = [
        {"id": "1", "text": "a red shoe", "color": "red", "size": 42},
        {"id": "2", "text": "a red hat", "color": "red", "size": 1},
        {"id": "3", "text": "a blue shoe", "color": "blue", "size": 42},
        {"id": "4", "text": None},
    ]
    with EmbeddingProcessor(settings=settings) as p:
        report = p.upsert("shop", items, keep=["color", "size"])
        assert (report.read, report.embedded, report.quarantined) == (4, 3, 1)
        assert report.reasons == {"missing_text": 1}
        assert p.upsert("shop", items[:3], keep=["color", "size"]).unchanged == 3
        shoe = p.embed(["shoe"])[0]
        assert [i for i, _ in p.search_vector("shop", shoe, k=3, filters={"color": "red"})] == [
            "1",
            "2",
        ]
        assert sorted(i for i, _ in p.search_vector("shop", shoe, filters={"size": 42})) == [
            "1",
            "3",
        ]
        assert p.search_filtered("shop", "hat", k=1, filters={"color": "red"})[0][0] == "2"
        with pytest.raises(ConfigError, match="weight"):
            p.search_vector("shop", shoe, filters={"weight": 1})
        with pytest.raises(ConfigError, match="384"):
            p.search_vector("shop", [1.0, 2.0])
        assert p.delete("shop", ["1", "1", "nope"]) == 1
        assert [i for i, _ in p.search_vector("shop", shoe, k=5)] == ["3", "2"]
