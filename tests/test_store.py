"""The store's writer against real LanceDB tables: its commits, what a failed write leaves, and
its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embedops.errors import CollectionNotFound, StoreError
from embedops.store import VectorStore, Writer


def _write(writer: Writer, ids: list[str], replace: set[str] | None = None) -> None:
    writer.write(
        ids=ids,
        vectors=np.ones((len(ids), 4), dtype=np.float32),
        texts=[f"text {i}" for i in ids],
        hashes=[f"h{i}" for i in ids],
        metadata={},
        replace=replace or set(),
    )


def test_writer_gathers_new_rows_into_few_commits(tmp_path: Path) -> None:
    """New rows are committed ``commit_rows`` at a time (and on ``flush``), the first commit
    creating the table; a replace commits the gathered rows first; a new table stores its
    hashes with zstd."""
    writer = VectorStore(tmp_path / "s").writer("c", "m-1", 4)
    writer.commit_rows = 250

    def stored() -> int:
        return int(writer._table.count_rows())

    _write(writer, [str(i) for i in range(100)])
    _write(writer, [str(i) for i in range(100, 200)])
    assert writer._table is None  # 200 gathered, no table yet
    _write(writer, [str(i) for i in range(200, 300)])  # 300 >= 250: one commit creates it
    assert stored() == 300
    assert writer._table.schema.field("content_hash").metadata == {
        b"lance-encoding:compression": b"zstd"
    }
    version = writer._table.version
    _write(writer, ["300"])
    _write(writer, ["0", "301"], replace={"0"})  # commits "300" first, then replaces "0"
    assert stored() == 301 and writer._pending_rows == 1
    writer.flush()
    assert stored() == 302
    assert writer._table.version == version + 3  # "300", the replace, "301"
    writer.flush()  # nothing gathered: no commit
    assert writer._table.version == version + 3


def test_a_write_the_disk_refuses_is_a_store_error_naming_the_table(tmp_path: Path) -> None:
    """A LanceDB I/O error (here: its data folder is a file, as a full disk also makes it
    fail) comes out as a ``StoreError`` that names the table and says what to do; the rows
    committed before stay readable."""
    store = VectorStore(tmp_path / "s")
    writer = store.writer("c", "m-1", 4)
    _write(writer, ["a", "b"])
    writer.flush()
    table_dir = tmp_path / "s" / "c--m-1.lance"
    shutil.rmtree(table_dir / "data")
    (table_dir / "data").write_text("not a folder")
    _write(writer, ["c"])
    with pytest.raises(StoreError, match=r"cannot write table c--m-1 .*free disk space"):
        writer.flush()
    assert VectorStore(tmp_path / "s").collection("c", "m-1").count() == 2


def test_a_table_folder_with_no_committed_version_counts_as_no_table(tmp_path: Path) -> None:
    """A first commit that failed (a full disk) leaves the table's folder with data files and
    no version. Reading it is "not found" with the usual hint, and the next run's first commit
    creates the table over it instead of failing on every run."""
    store = VectorStore(tmp_path / "s")
    leftover = tmp_path / "s" / "c--m-1.lance" / "data"
    leftover.mkdir(parents=True)
    (leftover / "0001.lance").write_bytes(b"partial")
    with pytest.raises(CollectionNotFound, match="embed a file into it first"):
        store.collection("c", "m-1")
    writer = store.writer("c", "m-1", 4)
    assert writer._table is None
    _write(writer, ["a", "b", "c"])
    writer.flush()
    assert store.collection("c", "m-1").count() == 3


def test_a_lock_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "s")
    (tmp_path / "s" / ".c--m-1.lock").mkdir(parents=True)  # a folder where the lock goes
    with (
        pytest.raises(StoreError, match=r"cannot open the lock file .*\.c--m-1\.lock"),
        store.writer("c", "m-1", 4).lock(),
    ):
        pass


def test_a_kept_field_that_mixes_types_names_the_field_and_the_row(tmp_path: Path) -> None:
    """Within one write and against the table's column type, the error names the field and
    the id of the first row that does not fit (not Arrow's message alone)."""
    writer = VectorStore(tmp_path / "s").writer("c", "m-1", 4)

    def write(ids: list[str], prices: list[object]) -> None:
        writer.write(
            ids=ids,
            vectors=np.ones((len(ids), 4), dtype=np.float32),
            texts=ids,
            hashes=ids,
            metadata={"price": prices},
            replace=set(),
        )

    with pytest.raises(
        StoreError, match=r"kept field 'price' .* row id 'd' holds str 'n/a' among values of type"
    ):
        write(["a", "b", "c", "d"], [1, None, 2.5, "n/a"])  # int and float mix; str does not
    with pytest.raises(StoreError, match=r"row id 'b' holds int 18446744073709551616"):
        write(["a", "b"], [1, 2**64])  # not a raw OverflowError
    write(["a", "b"], [1, 2])
    writer.flush()
    with pytest.raises(
        StoreError, match=r"kept field 'price': row id 'e' holds 'n/a', which does not fit .*int64"
    ):
        write(["d", "e"], [None, "n/a"])


def test_reading_a_store_that_does_not_exist_makes_no_folder(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "nowhere")
    with pytest.raises(CollectionNotFound, match="embed a file into it first"):
        store.collection("c", "m-1")
    assert store.versions("c") == []
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        VectorStore(tmp_path / "afile")
    with pytest.raises(StoreError, match="cannot open store"):
        VectorStore(tmp_path / "afile" / "below").writer("c", "m-1", 4)
