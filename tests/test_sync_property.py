"""A property test of sync (issue 11, point 7): random sequences of snapshots (with and
without deletes), change feeds, metadata-only changes and rollbacks leave the published
collection equal to a plain dict of what it must hold."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedops import EmbeddingProcessor
from tests.fakes import FakeEmbedder

IDS = st.sampled_from(["a", "b", "c", "d", "e"])
TEXTS = st.sampled_from(["red shoe", "blue hat", "green coat"])
CATS = st.sampled_from(["x", "y"])
ROWS = st.dictionaries(IDS, st.tuples(TEXTS, CATS), min_size=1, max_size=5)
SNAPSHOT = st.tuples(st.just("snapshot"), ROWS, st.booleans())
FEED = st.tuples(
    st.just("feed"),
    st.lists(
        st.tuples(st.sampled_from(["upsert", "delete"]), IDS, TEXTS, CATS), min_size=1, max_size=6
    ),
)
ROLLBACK = st.tuples(st.just("rollback"), st.integers(min_value=1, max_value=8))
STEPS = st.lists(st.one_of(SNAPSHOT, FEED, ROLLBACK), min_size=1, max_size=7)

Model = dict[str, tuple[str, str]]


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _published(p: EmbeddingProcessor, fake: FakeEmbedder) -> Model:
    data = p.store.collection("c", fake.spec.version)._table.to_arrow().to_pylist()
    return {row["id"]: (row["text"], row["cat"]) for row in data}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_sync_matches_a_dict(steps: list[tuple[Any, ...]]) -> None:
    fake = FakeEmbedder()
    model: Model = {}
    at: dict[int, Model] = {}  # the model at each published version
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddingProcessor(store=Path(tmp) / "s", embedder=fake) as p,
    ):
        src = Path(tmp) / "in.jsonl"
        for step in steps:
            if step[0] == "rollback":
                if step[1] not in at:
                    continue
                entry = p.rollback("c", step[1])
                model = dict(at[step[1]])
                at[entry.number] = dict(model)
            else:
                if step[0] == "snapshot":
                    _, rows, delete_missing = step
                    lines = [{"id": i, "text": t, "cat": c} for i, (t, c) in rows.items()]
                    model = dict(rows) if delete_missing else {**model, **rows}
                    options = {"delete_missing": delete_missing}
                else:
                    lines = []
                    for op, i, t, c in step[1]:
                        lines.append({"op": op, "id": i, "text": t, "cat": c})
                        if op == "delete":
                            model.pop(i, None)
                        else:
                            model[i] = (t, c)
                    options = {"feed": True}
                report = p.process(_write(src, lines), collection="c", id_field="id",
                                   text_field="text", keep=["cat"], **options)  # fmt: skip
                assert report.read == (
                    report.inserted + report.updated + report.metadata_updated
                    + report.unchanged + report.deleted + report.quarantined
                )  # fmt: skip
                if report.published is not None:
                    at[report.published] = dict(model)
            if at:
                assert _published(p, fake) == model
