"""In-memory records as a ``sources.Source``, for writes that do not come from a file (the
service's ``PUT /v1/collections/{name}/items``).

Cells are JSON-encoded as the JSONL reader encodes them, so cleaning, validation and the
quarantine treat a record sent over HTTP exactly as the same record read from a JSONL file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from embedops.errors import InvalidFormat
from embedops.sources import CellEncoding, Source, SourceBatch, SourceFormat

REQUEST_SOURCE = Path("<request>")


def records_source(
    records: Sequence[Mapping[str, Any]], *, rows: int = 4096, name: Path = REQUEST_SOURCE
) -> Source:
    """A ``Source`` over ``records`` (JSON objects), ``rows`` records per batch.

    Args:
        records: the records, each a mapping of field name to a JSON value.
        rows: records per batch.
        name: what reports and quarantine lines name as the source.

    Raises:
        InvalidFormat: a record is not a mapping, or holds a value JSON cannot encode.
    """
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InvalidFormat(
                f"record {i + 1} is {type(record).__name__}; send each record as a JSON object"
            )
    fields = list(dict.fromkeys(key for record in records for key in record))

    def batches() -> Iterator[SourceBatch]:
        for start in range(0, len(records), rows):
            chunk = records[start : start + rows]
            yield _batch(chunk, start + 1, start + len(chunk))

    return Source(name, SourceFormat.JSONL, fields, len(records), "rows", batches())


def _batch(records: Sequence[Mapping[str, Any]], first_row: int, position: int) -> SourceBatch:
    keys = list(dict.fromkeys(key for record in records for key in record))
    try:
        columns = {
            key: pa.array(
                [json.dumps(r[key]) if key in r else None for r in records], type=pa.string()
            )
            for key in keys
        }
    except (TypeError, ValueError) as exc:
        raise InvalidFormat(f"records {first_row}-{position}: not JSON values ({exc})") from exc
    batch = (
        pa.RecordBatch.from_pydict(columns)
        if columns
        else pa.RecordBatch.from_pydict({"__empty__": pa.nulls(len(records))})
    )
    return SourceBatch(batch, first_row, CellEncoding.JSON, position)
