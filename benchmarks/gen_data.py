"""Deterministic synthetic records for scale benchmarks (not part of the user CLI).

Each row has an ``id``, a ``title``, a ``text`` of varied length built from sentence templates
over a small built-in vocabulary, and metadata: ``category``, ``price`` and ``date``. A chosen
share of rows is bad, in four kinds taken in turn: empty text, missing id, a duplicate of an
earlier id, and text with invalid UTF-8 (raw bytes in CSV and JSONL; U+FFFD in Parquet, whose
strings are UTF-8). The same arguments give the same bytes.

    python -m benchmarks.gen_data --rows 1000000 --bad-share 0.01 --seed 1 --out data.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

logger = logging.getLogger("benchmarks.gen_data")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ADJECTIVES = _words(
    "red blue green black white silver golden compact wireless portable durable light "
    "heavy quiet loud smart classic modern vintage organic fresh spicy sweet bitter soft "
    "rough waterproof foldable electric manual digital analog premium cheap elegant "
    "sturdy tiny huge warm cold bright dark fast slow"
)
NOUNS = _words(
    "headphones speaker laptop phone camera watch backpack jacket shoe sneaker boot tent "
    "blender kettle toaster lamp chair desk sofa mattress pillow blanket bicycle helmet "
    "guitar piano drum novel cookbook puzzle toy drone router keyboard mouse monitor "
    "printer charger cable battery bottle mug pan knife vacuum heater fan telescope "
    "microscope wallet umbrella scarf glove sunglasses perfume candle"
)
VERBS = _words(
    "delivers offers provides keeps brings supports handles survives improves combines "
    "features includes fits matches replaces beats outlasts"
)
THINGS = _words(
    "battery life sound quality comfort style grip warmth speed precision value power "
    "storage range clarity balance flavour texture stability protection"
)
PLACES = (
    "the office",
    "the kitchen",
    "a long trip",
    "the gym",
    "the garden",
    "a rainy day",
    "the beach",
    "the city",
    "the mountains",
    "a small flat",
    "the classroom",
    "the studio",
)
PEOPLE = _words("students travellers parents gamers runners cooks musicians builders kids seniors")
TEMPLATES = (
    "The {a} {n} {v} great {t} for {p}.",
    "This {n} is {a} and {a2}, ideal for {people}.",
    "Customers say the {a} {n} {v} excellent {t}.",
    "A {a} {n} that {v} {t} without compromise.",
    "Built for {people}, it {v} {t} in {place}.",
    "Compared to other {n}s, this one {v} better {t}.",
    "Its {t} and {t2} make the {n} a favourite of {people}.",
    "Use the {a} {n} in {place} and enjoy the {t}.",
    "Not the most {a} {n}, but it {v} solid {t}.",
    "Model {num} of the {a} {n} series {v} improved {t}.",
)
CATEGORIES = _words("audio computing home kitchen outdoor sports toys books fashion garden")
BAD_KINDS = ("empty_text", "missing_id", "duplicate_id", "invalid_utf8")
FIELDS = ("id", "title", "text", "category", "price", "date")
START = date(2020, 1, 1)


@dataclass(frozen=True)
class Row:
    """One generated record; ``text`` may hold lone surrogates standing for invalid bytes."""

    id: str
    title: str
    text: str
    category: str
    price: float
    date: str


def _sentence(rng: random.Random) -> str:
    template = TEMPLATES[rng.randrange(len(TEMPLATES))]
    return template.format(
        a=rng.choice(ADJECTIVES),
        a2=rng.choice(ADJECTIVES),
        n=rng.choice(NOUNS),
        v=rng.choice(VERBS),
        t=rng.choice(THINGS),
        t2=rng.choice(THINGS),
        p=rng.choice(PLACES),
        place=rng.choice(PLACES),
        people=rng.choice(PEOPLE),
        num=rng.randrange(100, 10_000),
    )


def _sentences(rng: random.Random) -> int:
    """Sentences in a text: mostly 1-4, some up to 12, a few up to 40 (past 256 tokens)."""
    roll = rng.random()
    if roll < 0.7:
        return rng.randint(1, 4)
    if roll < 0.97:
        return rng.randint(5, 12)
    return rng.randint(13, 40)


def generate(rows: int, bad_share: float, seed: int) -> Iterator[Row]:
    """``rows`` records; about ``bad_share`` of them bad (see the module), spread evenly."""
    rng = random.Random(seed)
    bad_every = int(1 / bad_share) if bad_share > 0 else 0
    bad_seen = 0
    for i in range(1, rows + 1):
        text = " ".join(_sentence(rng) for _ in range(_sentences(rng)))
        noun = rng.choice(NOUNS)
        row_id = f"item-{i:09d}"
        kind = None
        if bad_every and i % bad_every == 0:
            kind = BAD_KINDS[bad_seen % len(BAD_KINDS)]
            bad_seen += 1
        if kind == "empty_text":
            text = "" if bad_seen % 2 else "   "
        elif kind == "missing_id":
            row_id = ""
        elif kind == "duplicate_id":
            row_id = f"item-{rng.randint(1, i - 1):09d}" if i > 1 else row_id
        elif kind == "invalid_utf8":
            cut = rng.randrange(len(text) + 1)
            text = text[:cut] + "\udcff\udcfe" + text[cut:]  # bytes 0xff 0xfe on write
        yield Row(
            id=row_id,
            title=f"{rng.choice(ADJECTIVES).title()} {noun}",
            text=text,
            category=rng.choice(CATEGORIES),
            price=round(rng.uniform(1, 500), 2),
            date=(START + timedelta(days=rng.randrange(2000))).isoformat(),
        )


def write_csv(rows: Iterator[Row], out: Path) -> int:
    n = 0
    with out.open("w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow((row.id, row.title, row.text, row.category, row.price, row.date))
            n += 1
    return n


def write_jsonl(rows: Iterator[Row], out: Path) -> int:
    n = 0
    with out.open("w", encoding="utf-8", errors="surrogateescape", newline="\n") as fh:
        for row in rows:
            record: dict[str, object] = {
                "id": row.id or None,
                "title": row.title,
                "text": row.text,
                "category": row.category,
                "price": row.price,
                "date": row.date,
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_parquet(rows: Iterator[Row], out: Path, chunk: int = 100_000) -> int:
    """Parquet in row groups of ``chunk``, native types. Parquet text is UTF-8 by definition,
    so the invalid bytes of ``invalid_utf8`` rows are written as U+FFFD (a binary column
    would make every row ``non_string_text``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("title", pa.string()),
            ("text", pa.string()),
            ("category", pa.string()),
            ("price", pa.float64()),
            ("date", pa.string()),
        ]
    )
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) == chunk:
                writer.write_table(_arrow(batch, schema))
                n += len(batch)
                batch = []
        if batch:
            writer.write_table(_arrow(batch, schema))
            n += len(batch)
    return n


def _arrow(batch: list[Row], schema: object) -> object:
    import pyarrow as pa

    return pa.table(
        {
            "id": [r.id or None for r in batch],
            "title": [r.title for r in batch],
            "text": [_utf8(r.text) for r in batch],
            "category": [r.category for r in batch],
            "price": [r.price for r in batch],
            "date": [r.date for r in batch],
        },
        schema=schema,
    )


def _utf8(text: str) -> str:
    """``text`` with the lone surrogates that stand for invalid bytes as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


WRITERS = {".csv": write_csv, ".jsonl": write_jsonl, ".parquet": write_parquet}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--bad-share", type=float, default=0.0, help="share of bad rows, 0-1")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="FILE.csv, .jsonl or .parquet")
    args = parser.parse_args(argv)
    if not 0 <= args.bad_share <= 1:
        parser.error("--bad-share must be between 0 and 1")
    write = WRITERS.get(args.out.suffix)
    if write is None:
        parser.error(f"--out must end in one of {', '.join(WRITERS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n = write(generate(args.rows, args.bad_share, args.seed), args.out)
    logger.info("%s: %d rows", args.out, n)


if __name__ == "__main__":
    main()
