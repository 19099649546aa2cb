"""The core's integrity (issue 14): exits, interrupts, lost work, wrong answers with exit 0,
settings that exhaust the machine, and the library's own inputs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embedops import EmbeddingProcessor
from embedops.cleaning import CHARS_PER_TOKEN
from embedops.cli import app
from embedops.config import Settings
from embedops.errors import CollectionNotFound, ConfigError, InvalidFormat, StoreError
from tests.fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def stored(tmp_path: Path, processor: EmbeddingProcessor) -> EmbeddingProcessor:
    rows = [{"id": f"i{n}", "text": f"text number {n}"} for n in range(20)]
    processor.process(_jsonl(tmp_path / "s.jsonl", rows), collection="c", text_field="text",
                      id_field="id")  # fmt: skip
    return processor


def test_a_failing_command_always_exits_with_its_code_never_an_abort(tmp_path: Path) -> None:
    """A CSV with one quoted 50 MB value fails with exit 4 (the value is longer than the read
    block). pyarrow's read-ahead threads used to read a Python file object: at exit they could
    be torn down inside C++ (SIGABRT, rc 134, about 1 run in 6) or hang. They now read a
    native stream."""
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write('id,text\n1,hello\n2,"')
        fh.write("word " * 10_000_000)
        fh.write('"\n3,bye\n')
    args = [sys.executable, "-m", "embedops", "embed", str(big), "-c", "big", "--id-field",
            "id", "--text-field", "text", "--json", "--store", str(tmp_path / "s")]  # fmt: skip
    codes = []
    for _ in range(20):
        started = time.monotonic()
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
        codes.append(done.returncode)
        assert time.monotonic() - started < 30, "a failing command hung"
        assert "terminate called" not in done.stderr
        assert "line 3: a quoted value opens here" in done.stderr
    assert codes == [InvalidFormat.exit_code] * 20


def test_a_late_bad_row_says_how_many_rows_were_stored(tmp_path: Path) -> None:
    """Rows embedded before a bad row far into the file are stored, the error says how many,
    and the re-run after the fix resumes (skips them)."""
    good = "".join(f"{i},item number {i}\n" for i in range(10_000))
    source = tmp_path / "late.csv"
    source.write_text("id,title\n" + good + "10000,too,many\n" + "10001,last one\n")
    settings = Settings(store=tmp_path / "s", read_rows=100, sort_window=1000)  # 64 KB blocks
    with EmbeddingProcessor(settings=settings, embedder=FakeEmbedder()) as p:
        with pytest.raises(InvalidFormat) as caught:
            p.process(source, collection="c", text_field="title")  # ids: row numbers
        report = p.last_report
        assert report is not None and report.status == "failed"
        stored = p.store.collection("c", p.model_version).count()
        assert stored == report.stored > 0
        assert f"{stored:,} rows embedded before this were stored in 'c'" in str(caught.value)
        assert "run the same command again: it resumes" in str(caught.value)
        source.write_text("id,title\n" + good + "10000,fixed\n" + "10001,last one\n")
        again = p.process(source, collection="c", text_field="title")
    assert (again.unchanged, again.embedded) == (stored, 10_002 - stored)


def test_the_first_valid_occurrence_of_an_id_wins(tmp_path: Path) -> None:
    """'1,' then '1,hello': the empty row is quarantined for its text and does not claim id
    1, so the second row is stored under it (before: quarantined as duplicate_id)."""
    source = tmp_path / "d.csv"
    source.write_text("id,text\n1,\n1,hello\n1,again\n")
    with EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p:
        report = p.process(source, collection="c", id_field="id", text_field="text")
        assert (report.embedded, report.reasons) == (1, {"duplicate_id": 1, "empty_text": 1})
        assert p.store.collection("c", p.model_version).count() == 1
    quarantine = Path(str(report.quarantine_path)).read_text()
    lines = [json.loads(line) for line in quarantine.splitlines()]
    assert [(q["row"], q["reason"]) for q in lines] == [(1, "empty_text"), (3, "duplicate_id")]
    assert lines[1]["detail"] == "id '1' already used by row 2"


@pytest.mark.parametrize("query", ["", "   ", "<b></b>", "&nbsp;"])
def test_empty_queries_are_refused(stored: EmbeddingProcessor, query: str) -> None:
    with pytest.raises(ConfigError, match=r"query .* is empty"):
        stored.search("c", query)


def test_compare_refuses_empty_texts_and_cleans_like_search(tmp_path: Path) -> None:
    with EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p:
        with pytest.raises(ConfigError, match="a '' is empty"):
            p.similarity("", "")
        with pytest.raises(ConfigError, match="b '<br>' is empty after cleaning"):
            p.similarity("text", "<br>")
        # The fake's vectors come from a hash of the text: equal only for equal texts.
        assert p.similarity("<b>hello</b> world", "hello   world") == pytest.approx(1.0)


def test_compare_of_empty_texts_is_a_config_error_in_the_cli() -> None:
    result = runner.invoke(app, ["compare", "", ""])
    assert result.exit_code == ConfigError.exit_code
    assert "a '' is empty" in result.stderr


def test_a_huge_text_is_cut_by_characters_before_cleaning(tmp_path: Path) -> None:
    """A 5 MB text is cut to max_tokens x CHARS_PER_TOKEN characters before cleaning and
    tokenising (a 50 MB one took 61 s and 7 GB), and counts as truncated."""
    fake = FakeEmbedder(max_tokens=32)
    limit = 32 * CHARS_PER_TOKEN
    rows = [{"id": "big", "text": "word " * 1_000_000}, {"id": "small", "text": "short text"}]
    source = _jsonl(tmp_path / "big.jsonl", rows)
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        report = p.process(source, collection="c", id_field="id", text_field="text")
        assert (report.embedded, report.truncated) == (2, 1)
        assert max(len(t) for t in fake.texts_embedded) <= limit
        fake.calls.clear()
        p.embed(["x" * 10_000_000])
        assert len(fake.texts_embedded[0]) == limit


def test_a_batch_token_budget_past_the_bound_is_refused() -> None:
    result = runner.invoke(
        app, ["compare", "a", "b"], env={"EMBEDOPS_BATCH_TOKENS": "1000000000000"}
    )
    assert result.exit_code == ConfigError.exit_code
    assert "batch_tokens" in result.stderr and "65536" in result.stderr


def test_more_threads_than_cores_are_capped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(store=tmp_path / "s", threads=64, workers=64)
    cores = os.cpu_count() or 1
    with caplog.at_level(logging.WARNING), EmbeddingProcessor(settings=settings) as p:
        assert p.workers == min(64, cores)
    if cores < 64:
        assert f"workers=64 is more than the {cores} cores of this machine; using {cores}" in (
            caplog.text
        )


def test_empty_settings_mean_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDOPS_STORE", "")
    monkeypatch.setenv("EMBEDOPS_MODEL", "")
    settings = Settings()
    assert settings.store == Path(".embedops") and settings.model == "all-MiniLM-L6-v2"
    assert EmbeddingProcessor(store="", model="").store_path == Path(".embedops")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["search", "c", "query", "--model", "", "--store", ""])
    assert result.exit_code == CollectionNotFound.exit_code  # the default store and model
    assert "incomplete" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written into the current directory


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.search("c", "text", k="3"), "k must be a whole number"),
        (lambda p: p.search("c", "text", k=2.5), "k must be a whole number"),
        (lambda p: p.search("c", "text", k=True), "k must be a whole number"),
        (lambda p: p.search("c", None), "query must be a text"),
        (lambda p: p.search("c", b"bytes"), "query must be a text"),
        (lambda p: p.vectors("c", "NULL"), r"ids takes a list of ids, e.g. ids=\['NULL'\]"),
        (lambda p: p.vectors("c", [None]), "ids takes item ids"),
        (lambda p: p.most_similar("c", item_id=None), "item_id takes item ids"),
        (lambda p: p.most_similar("c", item_id="  "), "item_id holds an empty id"),
    ],
)
def test_bad_library_arguments_are_config_errors(
    stored: EmbeddingProcessor, call: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        call(stored)  # type: ignore[operator]


def test_ids_are_trimmed_on_lookup_as_on_read(stored: EmbeddingProcessor) -> None:
    assert stored.vectors("c", [" i3 "]).shape == (1, 8)
    hits = stored.most_similar("c", item_id=" i3 ", k=3)
    assert len(hits) == 3 and "i3" not in [i for i, _ in hits]


def test_a_second_writer_in_the_same_process_is_named_as_such(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    with EmbeddingProcessor(store=tmp_path / "s", embedder=fake) as p:
        writer = p.store.writer("c", fake.spec.version, fake.spec.dim)
        other = p.store.writer("c", fake.spec.version, fake.spec.dim)
        with writer.lock():
            with pytest.raises(StoreError, match="another writer in this process"), other.lock():
                pass
            with pytest.raises(CollectionNotFound, match="first rows of collection 'c' are still"):
                p.search("c", "text")
        with pytest.raises(CollectionNotFound, match="embed a file into it first"):
            p.search("c", "text")


def test_a_writer_in_another_process_is_named_with_its_pid(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    store = tmp_path / "s"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(store), fake.spec.version],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with EmbeddingProcessor(store=store, embedder=fake) as p:
            source = _jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "a"}])
            with pytest.raises(StoreError, match=rf"another writer \(pid {holder.pid} on "):
                p.process(source, collection="c", id_field="id", text_field="text")
    finally:
        holder.kill()
        holder.wait()


_HOLD_LOCK = """
import sys, time
from embedops.store import VectorStore
store = VectorStore(sys.argv[1])
with store.writer("c", sys.argv[2], 8).lock():
    print("held", flush=True)
    time.sleep(60)
"""


def test_help_texts_show_their_defaults() -> None:
    result = runner.invoke(app, ["embed", "--help"], env={"COLUMNS": "200"})
    assert "Field holding the id (default: the 1-based row number)." in result.stdout
    assert "Store directory (env EMBEDOPS_STORE; default ./.embedops)." in result.stdout
    for command in (["keys", "create"], ["serve"], ["index"]):
        shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout
        assert " .\n" not in shown and " . " not in shown, command  # a default eaten by markup


def test_a_json_error_reads_as_one_sentence(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"id": "1", "text": "ok"}\n{"id": "2", "text": "unterminated}')
    with (
        EmbeddingProcessor(store=tmp_path / "s", embedder=FakeEmbedder()) as p,
        pytest.raises(InvalidFormat) as caught,
    ):
        p.process(source, collection="c", text_field="text")  # ids: row numbers
    assert "line 2: not valid JSON (Unterminated string starting at column 21)" in str(caught.value)
