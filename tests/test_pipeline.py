from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from numpy.typing import NDArray

from embedops import EmbeddingProcessor
from embedops.config import Settings
from embedops.errors import (
    CollectionNotFound,
    ConfigError,
    ItemNotFound,
    MemoryPressure,
    StoreError,
)
from tests.fakes import FakeEmbedder


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _items(n: int, prefix: str = "text") -> list[dict[str, object]]:
    return [{"id": str(i), "text": f"{prefix} number {i}", "cat": f"c{i % 3}"} for i in range(n)]


def test_rerun_embeds_nothing_and_changed_rows_are_reembedded(
    tmp_path: Path, processor: EmbeddingProcessor, fake: FakeEmbedder
) -> None:
    src = _write_jsonl(tmp_path / "items.jsonl", _items(50))
    first = processor.process(src, collection="items", id_field="id", text_field="text")
    assert (first.read, first.embedded, first.unchanged) == (50, 50, 0)
    calls = len(fake.texts_embedded)

    again = processor.process(src, collection="items", id_field="id", text_field="text")
    assert (again.read, again.embedded, again.unchanged, again.quarantined) == (50, 0, 50, 0)
    assert len(fake.texts_embedded) == calls  # nothing embedded

    rows = _items(50)
    rows[7]["text"] = "a brand new text"
    rows.append({"id": "new", "text": "another new row"})
    _write_jsonl(src, rows)
    third = processor.process(src, collection="items", id_field="id", text_field="text")
    assert (third.read, third.embedded, third.unchanged) == (51, 2, 49)
    assert sorted(fake.texts_embedded[calls:]) == ["a brand new text", "another new row"]
    table = processor.store.collection("items", fake.spec.version)
    assert table.count() == 51  # replaced, not duplicated
    np.testing.assert_allclose(
        processor.vectors("items", ["7"])[0], fake.embed(["a brand new text"])[0], rtol=1e-6
    )


def test_identical_texts_embedded_once_per_run(
    tmp_path: Path, processor: EmbeddingProcessor, fake: FakeEmbedder
) -> None:
    rows = [{"id": str(i), "text": "same words" if i % 2 else f"unique {i}"} for i in range(40)]
    src = _write_jsonl(tmp_path / "dups.jsonl", rows)
    report = processor.process(src, collection="d", id_field="id", text_field="text")
    assert report.embedded == 40
    assert fake.texts_embedded.count("same words") == 1
    assert len(fake.texts_embedded) == 21
    assert report.cache_hits == 19
    vectors = processor.vectors("d", ["1", "3"])
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_cache_works_across_windows(tmp_path: Path, fake: FakeEmbedder) -> None:
    from embedops.config import Settings

    rows = [{"id": str(i), "text": f"t{i % 5}"} for i in range(100)]
    src = _write_jsonl(tmp_path / "w.jsonl", rows)
    settings = Settings(store=tmp_path / "s", sort_window=10, read_rows=7)
    with EmbeddingProcessor(settings=settings, embedder=fake) as p:
        report = p.process(src, collection="w", id_field="id", text_field="text")
    assert report.embedded == 100 and len(fake.texts_embedded) == 5


def test_keep_metadata_and_row_layout(
    tmp_path: Path, processor: EmbeddingProcessor, fake: FakeEmbedder
) -> None:
    src = _write_jsonl(tmp_path / "m.jsonl", _items(5))
    processor.process(src, collection="m", id_field="id", text_field="text", keep=["cat"])
    data = processor.store.collection("m", fake.spec.version)._table.to_arrow()
    assert set(data.schema.names) == {
        "id",
        "vector",
        "text",
        "content_hash",
        "meta_hash",
        "raw_hash",
        "model_version",
        "updated_at",
        "cat",
    }
    assert data.column("model_version").to_pylist() == [fake.spec.version] * 5
    assert sorted(data.column("cat").to_pylist()) == ["c0", "c0", "c1", "c1", "c2"]


def test_memory_error_halves_batch_then_fails_with_setting(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "m.jsonl", _items(64))
    halving = FakeEmbedder(memory_limit=5)
    with EmbeddingProcessor(store=tmp_path / "a", embedder=halving) as p:
        report = p.process(src, collection="m", id_field="id", text_field="text")
    assert report.embedded == 64
    assert max(len(c) for c in halving.calls) <= 5

    hopeless = FakeEmbedder(memory_limit=0)
    with (
        EmbeddingProcessor(store=tmp_path / "b", embedder=hopeless) as p,
        pytest.raises(MemoryPressure, match="lower --batch-tokens"),
    ):
        p.process(src, collection="m", id_field="id", text_field="text")


def test_rows_the_model_rejects_are_quarantined(tmp_path: Path) -> None:
    rows = _items(20)
    rows[3]["text"] = "poison pill"
    src = _write_jsonl(tmp_path / "p.jsonl", rows)
    fake = FakeEmbedder(fail_on="poison")
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        report = p.process(src, collection="p", id_field="id", text_field="text")
    assert (report.embedded, report.quarantined, report.reasons) == (19, 1, {"embed_failed": 1})
    assert report.read == report.embedded + report.unchanged + report.quarantined
    line = json.loads(Path(str(report.quarantine_path)).read_text())
    assert line["id"] == "3" and "cannot embed" in line["detail"]


def test_queries(tmp_path: Path, processor: EmbeddingProcessor) -> None:
    src = _write_jsonl(tmp_path / "q.jsonl", _items(30))
    processor.process(src, collection="q", id_field="id", text_field="text")
    hits = processor.most_similar("q", item_id="4", k=5)
    assert len(hits) == 5 and "4" not in [i for i, _ in hits]
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    stored = processor.vectors("q", [i for i, _ in hits])
    expected = stored @ processor.vectors("q", ["4"])[0]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    # the brute-force answer agrees
    everything = processor.vectors("q", [str(i) for i in range(30)])
    sims = everything @ everything[4]
    sims[4] = -2
    assert [i for i, _ in hits] == [str(i) for i in np.argsort(-sims)[:5]]

    found = processor.search("q", "text number 12", k=1)
    assert found[0][0] == "12" and found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert processor.vectors("q", ["2", "1"]).shape == (2, 8)
    np.testing.assert_array_equal(
        processor.vectors("q", ["2", "1"])[0], processor.vectors("q", ["2"])[0]
    )
    with pytest.raises(ItemNotFound, match="'nope'"):
        processor.vectors("q", ["1", "nope"])
    with pytest.raises(CollectionNotFound, match="embed a file into it first"):
        processor.search("other", "x")
    with pytest.raises(ConfigError, match="whole number between 1 and 2,147,483,647, got 0"):
        processor.search("q", "x", k=0)
    with pytest.raises(ConfigError, match="got 9223372036854775807"):  # not an OverflowError
        processor.most_similar("q", item_id="1", k=2**63 - 1)


def test_embed_and_similarity(processor: EmbeddingProcessor) -> None:
    vectors = processor.embed(["a", "b", "a"])
    assert vectors.shape == (3, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert processor.similarity("a", "a") == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ConfigError, match="list of texts"):
        processor.embed("a single string")  # type: ignore[arg-type]


def test_bad_arguments(tmp_path: Path, processor: EmbeddingProcessor) -> None:
    src = _write_jsonl(tmp_path / "x.jsonl", _items(3))
    with pytest.raises(ConfigError, match="collection name"):
        processor.process(src, collection="bad name", text_field="text")
    with pytest.raises(ConfigError, match="reserved"):
        processor.process(src, collection="x", text_field="text", keep=["id"])


def test_one_writer_per_table(
    tmp_path: Path, processor: EmbeddingProcessor, fake: FakeEmbedder
) -> None:
    writer = processor.store.writer("locked", fake.spec.version, fake.spec.dim)
    src = _write_jsonl(tmp_path / "l.jsonl", _items(3))
    held = r"another writer in this process .* is writing"
    with writer.lock(), pytest.raises(StoreError, match=held):
        processor.process(src, collection="locked", id_field="id", text_field="text")


def test_prefetch_passes_items_errors_and_stops_early() -> None:
    import threading

    from embedops.pipeline import Prefetch

    with Prefetch(iter(range(100)), 2, "t") as items:
        assert list(items) == list(range(100))

    def broken():  # type: ignore[no-untyped-def]
        yield 1
        raise ValueError("reader failed")

    with pytest.raises(ValueError, match="reader failed"), Prefetch(broken(), 2, "t") as items:
        list(items)

    produced: list[int] = []
    closed = threading.Event()

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        try:
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    with Prefetch(endless(), 3, "t") as items:
        for item in items:
            if item == 5:
                break
    assert len(produced) <= 5 + 1 + 3 + 1  # bounded read-ahead
    assert threading.active_count() == before
    assert closed.is_set()  # the producer thread closed its generator


def test_chained_stages_stop_together_while_one_waits() -> None:
    """A consumer stopping while the middle stage waits on a slow first stage: both threads
    end at once (the middle one is not left waiting, and nothing closes a running
    generator from another thread)."""
    import threading
    import time

    from embedops.pipeline import Prefetch

    def slow():  # type: ignore[no-untyped-def]
        yield 1
        time.sleep(30)
        yield 2

    before = threading.active_count()
    first = Prefetch(slow(), 1, "first")
    second = Prefetch((x * 10 for x in first), 1, "second")
    assert next(second) == 10
    for stage in (second, first):
        stage.stop()
    second.join()  # gives up after 10 s; the middle stage must have ended well before
    assert not second._thread.is_alive()
    assert threading.active_count() <= before + 1  # only the sleeping first stage is left


def test_an_error_in_the_main_thread_surfaces_while_the_reader_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeEmbedder
) -> None:
    """The store fails while the reader is still reading the next window: process() raises
    the store's error (not one from stopping the stages), and both stages end."""
    import threading
    import time

    import embedops.sources as sources
    import embedops.store as store
    from embedops.errors import StoreError

    plain = sources.Source.batches

    def slow(self):  # type: ignore[no-untyped-def]
        for i, batch in enumerate(plain(self)):
            if i == 1:
                time.sleep(3)
            yield batch

    def full(*args: object, **kwargs: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(sources.Source, "batches", slow)
    monkeypatch.setattr(store.Writer, "write", full)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id": "{i}", "text": "t {i}"}}\n' for i in range(300)))
    settings = Settings(store=tmp_path / "s", sort_window=100, read_rows=100)
    with (
        EmbeddingProcessor(settings=settings, embedder=fake) as processor,
        pytest.raises(StoreError, match="disk full"),
    ):
        processor.process(source, collection="c", id_field="id", text_field="text")
    names = {thread.name for thread in threading.enumerate()}
    assert not names & {"embedops-reader", "embedops-counter"}  # both stages have ended


def test_source_errors_surface_through_the_reader_thread(
    tmp_path: Path, processor: EmbeddingProcessor
) -> None:
    from embedops.errors import InvalidFormat

    bad = tmp_path / "late.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in _items(10)) + "{oops\n")
    with pytest.raises(InvalidFormat, match="line 11"):
        processor.process(bad, collection="late", text_field="text")  # ids: row numbers


def test_vector_cache_keeps_copies() -> None:
    """A cached vector is its own array: keeping it does not keep its window's matrix."""
    from embedops.pipeline import VectorCache

    cache = VectorCache(size=2)
    window = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put(["a", "b", "c"], window)
    assert cache.get("a") is None  # the least recently used went first
    kept = cache.get("c")
    assert kept is not None and kept.base is None
    np.testing.assert_array_equal(kept, window[2])


def test_a_backend_returning_the_wrong_shape_is_a_model_error(
    tmp_path: Path, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedops.errors import ModelError

    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id": "{i}", "text": "t {i}"}}\n' for i in range(5)))
    monkeypatch.setattr(fake, "embed", lambda texts: np.zeros((1, 8), dtype=np.float32))
    with (
        EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as processor,
        pytest.raises(ModelError, match=r"shape \(1, 8\) for 5 texts"),
    ):
        processor.process(source, collection="c", id_field="id", text_field="text")


def test_kept_fields_take_their_type_from_all_rows_of_the_first_commit(
    tmp_path: Path, fake: FakeEmbedder
) -> None:
    """A kept field empty in the first windows takes the type of its later values; one that is
    always empty is stored as text; values of two types in a field are a clear error."""
    from embedops.errors import StoreError

    rows = _items(300)
    for i, row in enumerate(rows):
        row["when"] = None if i < 150 else i  # empty in the first window and a half
        row["never"] = None
    source = _write_jsonl(tmp_path / "in.jsonl", rows)
    settings = Settings(store=tmp_path / "s", sort_window=100, read_rows=100)
    with EmbeddingProcessor(settings=settings, embedder=fake) as processor:
        report = processor.process(
            source, collection="c", id_field="id", text_field="text", keep=["when", "never"]
        )
        assert report.embedded == 300
        table = processor.store.writer("c", fake.spec.version, 8)._table
        assert table.schema.field("when").type == pa.int64()
        assert table.schema.field("never").type == pa.string()
        data = table.to_arrow()
        ids, values = data.column("id").to_pylist(), data.column("when").to_pylist()
        when = dict(zip(ids, values, strict=True))
        assert when["0"] is None and when["299"] == 299
        rows[10]["when"] = "a string among numbers"
        bad = _write_jsonl(tmp_path / "bad.jsonl", rows)
        with pytest.raises(StoreError, match="rows do not fit table"):
            processor.process(bad, collection="d", id_field="id", text_field="text", keep=["when"])


def test_a_run_commits_once_per_commit_rows_and_keeps_rows_when_it_fails(
    tmp_path: Path, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of many small windows makes few commits; when the model fails mid-run, the rows
    embedded before the failure are stored, and a re-run embeds only the rest."""
    from embedops.errors import ModelError

    rows = _items(1000)
    rows[950]["text"] = "the bad one"
    source = _write_jsonl(tmp_path / "in.jsonl", rows)
    plain = fake.embed

    def embed(texts: Sequence[str]) -> NDArray[np.float32]:
        if "the bad one" in texts:
            return np.zeros((1, 8), dtype=np.float32)  # the wrong shape: a ModelError
        return plain(texts)

    monkeypatch.setattr(fake, "embed", embed)
    settings = Settings(store=tmp_path / "s", sort_window=100, read_rows=100)
    with EmbeddingProcessor(settings=settings, embedder=fake) as processor:
        with pytest.raises(ModelError):
            processor.process(source, collection="c", id_field="id", text_field="text")
        table = processor.store.writer("c", fake.spec.version, 8)._table
        assert table.count_rows() == 900  # the nine windows before the failing one
        assert table.version == 1  # one commit created it (not one per window)
        monkeypatch.setattr(fake, "embed", plain)
        fake.calls.clear()
        report = processor.process(source, collection="c", id_field="id", text_field="text")
    assert (report.unchanged, report.embedded) == (900, 100)
    assert len(fake.texts_embedded) == 100


def test_a_quarantine_file_that_cannot_be_written_is_a_store_error(
    tmp_path: Path, processor: EmbeddingProcessor
) -> None:
    """A full disk or an unwritable folder under the quarantine file gives a ``StoreError``
    naming the file and what to do, not a raw ``OSError`` from the reader thread."""
    rows = _items(5)
    rows[2]["text"] = ""
    src = _write_jsonl(tmp_path / "items.jsonl", rows)
    processor.store.path.mkdir(parents=True, exist_ok=True)
    (processor.store.path / "quarantine").write_text("a file where the folder goes")
    with pytest.raises(StoreError, match=r"cannot write the quarantine file .*quarantine/items-"):
        processor.process(src, collection="items", id_field="id", text_field="text")


def test_names_that_cannot_be_stored_are_refused_before_any_work(
    tmp_path: Path, processor: EmbeddingProcessor, fake: FakeEmbedder
) -> None:
    """LanceDB's own columns (``_distance`` made the collection unsearchable), dotted names, a
    string for ``keep``, a collection name ending in '-', non-text items for ``embed``."""
    src = _write_jsonl(tmp_path / "items.jsonl", _items(3))
    for keep, message in (
        (["_distance"], r"cannot store the field\(s\) \['_distance'\]"),
        (["a.b"], r"cannot store the field\(s\) \['a.b'\]"),
        (["vector"], "reserved column"),
        ("cat", r"keep takes a list of field names, e.g. keep=\['cat'\]"),
    ):
        with pytest.raises(ConfigError, match=message):
            processor.process(src, collection="c", id_field="id", text_field="text", keep=keep)
    with pytest.raises(ConfigError, match="collection name 'c-' is not allowed"):
        processor.process(src, collection="c-", id_field="id", text_field="text")
    assert fake.calls == []
    with pytest.raises(ConfigError, match="item 1 is NoneType"):
        processor.embed(["fine", None])  # type: ignore[list-item]


def test_texts_the_model_gives_a_zero_vector_are_quarantined(tmp_path: Path) -> None:
    """A static model gives a zero vector for a text none of whose tokens it knows (emoji
    only). Such rows go to quarantine as ``embed_failed``, not into the store, where they would
    match nothing; a window of only such texts does not stop the run."""

    class Zeros(FakeEmbedder):
        def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
            vectors = super().embed(texts)
            vectors[[i for i, t in enumerate(texts) if t.startswith("emoji")]] = 0.0
            return vectors

    rows = [*_items(6), {"id": "e1", "text": "emoji one"}, {"id": "e2", "text": "emoji two"}]
    src = _write_jsonl(tmp_path / "items.jsonl", rows)
    only = _write_jsonl(tmp_path / "only.jsonl", rows[6:])
    with EmbeddingProcessor(store=tmp_path / "s", embedder=Zeros()) as processor:
        report = processor.process(src, collection="c", id_field="id", text_field="text")
        assert (report.read, report.embedded, report.quarantined) == (8, 6, 2)
        assert report.reasons == {"embed_failed": 2}
        assert processor.store.collection("c", processor.model_version).count() == 6
        lines = Path(str(report.quarantine_path)).read_text().splitlines()
        assert all("zero vector" in json.loads(line)["detail"] for line in lines)
        again = processor.process(only, collection="d", id_field="id", text_field="text")
        assert (again.read, again.embedded, again.quarantined) == (2, 0, 2)


def test_a_jsonl_field_first_seen_after_the_first_records_can_be_kept(
    tmp_path: Path, fake: FakeEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    """JSONL has no header: a kept field that the first read batch lacks is stored where it
    appears (with a warning), not refused as missing from the input."""
    rows = _items(30)
    for row in rows:
        if int(str(row["id"])) < 20:
            del row["cat"]
    src = _write_jsonl(tmp_path / "late.jsonl", rows)
    settings = Settings(store=tmp_path / "s", read_rows=10)
    with EmbeddingProcessor(settings=settings, embedder=fake) as processor:
        report = processor.process(
            src, collection="c", id_field="id", text_field="text", keep=["cat"]
        )
        assert (report.read, report.embedded) == (30, 30)
        data = processor.store.collection("c", fake.spec.version)._table.to_arrow()
        cats = dict(zip(data.column("id").to_pylist(), data.column("cat").to_pylist(), strict=True))
        assert cats["0"] is None and cats["25"] == "c1"
    assert "keep field 'cat' is not in the first records" in caplog.text
