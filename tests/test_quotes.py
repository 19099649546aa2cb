"""``QuoteTracker`` against Python's own CSV parser, on well-formed CSV cut at random points."""

from __future__ import annotations

import csv
import io
import random

import pytest

from embedops.quotes import QuoteTracker


def _random_csv(rng: random.Random) -> str:
    def field() -> str:
        if rng.random() < 0.5:  # unquoted: may hold a quote, but not at its start
            return "".join(rng.choice('ab "') for _ in range(rng.randint(0, 4))).lstrip('"')
        body = "".join(rng.choice(["a", ",", "\n", "\r\n", '""']) for _ in range(rng.randint(0, 4)))
        return f'"{body}"'

    rows = [",".join(field() for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 4))]
    return rng.choice(["", "\ufeff"]) + "\n".join(rows) + rng.choice(["", "\n", "\r\n"])


def _python_says_unclosed(text: str) -> bool:
    try:
        list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True))
    except csv.Error as exc:
        assert "unexpected end of data" in str(exc), (text, exc)
        return True
    return False


def _tracked(text: str, rng: random.Random) -> QuoteTracker:
    data = text.encode()
    tracker = QuoteTracker(",")
    at = 0
    while at < len(data):  # blocks of random sizes, down to single bytes
        size = rng.randint(1, 5)
        tracker.feed(data[at : at + size])
        at += size
    return tracker


def test_it_agrees_with_python_csv_on_where_a_file_ends() -> None:
    rng = random.Random(7)
    unclosed = 0
    for _ in range(3000):
        text = _random_csv(rng)
        text = text[: rng.randint(0, len(text))]
        expected = _python_says_unclosed(text)
        tracker = _tracked(text, rng)
        assert tracker.unclosed == expected, repr(text)
        assert tracker.malformed_at == -1, repr(text)  # well-formed, only cut short
        unclosed += expected
    assert 300 < unclosed < 2700  # both outcomes were tried many times


def test_a_bom_split_across_feeds_is_still_skipped() -> None:
    tracker = QuoteTracker(",")
    for part in (b"\xef", b"\xbb", b'\xbf"a\n'):
        tracker.feed(part)
    assert tracker.unclosed and tracker.opened_at == 3


@pytest.mark.parametrize(
    ("text", "unclosed", "opened_at", "malformed_at"),
    [
        ('id,text\n1,"a stray quote\n2,b\n', True, 10, -1),
        ('1,12" pizza\n2,"fine ""quoted"" text"\n', False, -1, -1),
        ('\ufeff"id","text"\n1,"two\nlines"', False, 17, -1),
        ('1,""\n2,"', True, 7, -1),
        ('1,"x"', False, 2, -1),
        ('1,a\n2,"stray start\n3,b\n4,a "quoted" word\n5,c\n', False, 6, 6),
        ('1,"Best" seller\n2,"two\nlines" x\n', False, 18, 18),  # only a value across lines
        ('1,"two\nlines" \t,x\n2,"two\nlines"  \n', False, 20, -1),  # blanks, then a separator
    ],
)
def test_cases(text: str, unclosed: bool, opened_at: int, malformed_at: int) -> None:
    tracker = QuoteTracker(",")
    tracker.feed(text.encode())
    assert (tracker.unclosed, tracker.opened_at, tracker.malformed_at) == (
        unclosed,
        opened_at,
        malformed_at,
    )
