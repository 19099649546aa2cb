"""``QuoteTracker``: follows CSV quoting over a file's bytes, to tell whether it ends inside a
quoted value.

pyarrow's CSV reader (with newlines allowed in values, as CSV needs) reads a quote that is never
closed to the end of the file: every row after a stray quote silently becomes part of one value.
The tracker reads the same bytes as the parser, block by block, with the same rules (RFC 4180:
a quote opens a value only at the start of a field; inside, ``""`` is a quote and a single ``"``
closes), so the reader can refuse such a file instead of losing rows.
"""

from __future__ import annotations

import re

_QUOTE = 0x22  # '"'
_BLANKS = b" \t"
_BOM = b"\xef\xbb\xbf"


class QuoteTracker:
    """Feed it a file's bytes in order (byte offsets below; -1: none).

    - ``unclosed``: the bytes end inside a quoted value; ``opened_at``: where the last value
      that did not close in its block opened.
    - ``malformed_at``: where the first quoted value opened that spans lines and whose closing
      quote is followed by text (spaces and tabs aside) instead of a delimiter or line break.
    - ``long_value_at``: where the first quoted value opened that is longer than
      ``long_value`` bytes (pyarrow cannot read a value longer than its block).
    """

    def __init__(self, delimiter: str, long_value: int = 1 << 62) -> None:
        separators = rb"[" + re.escape(delimiter.encode()) + rb"\r\n]"
        # Everything outside quoted values, and whole quoted values that close before the
        # block ends, in one match: runs without quotes, quotes inside a field (literal), and
        # quoted values followed by a separator (a closing quote at the block's end may be the
        # first half of '""'). It stops at a quote that opens a value it cannot finish so.
        self._outside = re.compile(
            rb'(?:[^"]++|(?<!' + separators + rb')"|"(?:[^"]++|"")*+"(?=' + separators + rb"))*+"
        )
        self._separators = set(delimiter.encode() + b"\r\n")
        self._long_value = long_value
        self._inside = False
        self._spans_lines = False  # inside, and the value holds a line break
        self._quote_ends_block = False  # inside, and the last block ended with a quote
        self._after_close = False  # a value that spans lines closed; spaces or tabs followed
        self._held = b""  # the start of a BOM, split across feeds
        self._last = b"\n"  # the byte before the block (a field starts after it)
        self._offset = 0  # bytes fed so far
        self.opened_at = -1
        self.malformed_at = -1
        self.long_value_at = -1

    @property
    def unclosed(self) -> bool:
        # A quote that ends the file closes its value.
        return self._inside and not self._quote_ends_block

    def feed(self, data: bytes) -> None:
        if self._offset == 0:
            data = self._held + data
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._held = data  # maybe a BOM: wait for its end
                return
            self._held = b""
            if data.startswith(_BOM):
                self._offset, data = len(_BOM), data[len(_BOM) :]
        if not data:
            return
        # The previous byte goes first, so that the pattern sees whether a field starts.
        block = self._last + data
        start, end = 1, len(block)
        if self._after_close:
            self._after_close = False
            self._check_after_close(block, 1)
        if self._quote_ends_block:
            self._quote_ends_block = False
            if block[1] == _QUOTE:
                start = 2  # '""': a quote inside the value
            else:
                self._closed(block, 1)
        while start < end:
            if self._inside:
                found = block.find(b'"', start)
                stop = end if found < 0 else found
                if not self._spans_lines:
                    self._spans_lines = (
                        block.find(b"\n", start, stop) >= 0 or block.find(b"\r", start, stop) >= 0
                    )
                if found < 0:
                    break
                if found + 1 == end:
                    self._quote_ends_block = True
                    break
                if block[found + 1] == _QUOTE:
                    start = found + 2
                    continue
                self._closed(block, found + 1)
                start = found + 1
                continue
            match = self._outside.match(block, start)
            assert match is not None  # the pattern matches the empty string
            start = match.end()
            if start < end:  # a quote that opens a value this block does not finish
                self._inside = True
                self._spans_lines = False
                self.opened_at = self._offset + start - 1
                start += 1
        self._last = block[-1:]
        self._offset += len(data)
        too_long = self._offset - self.opened_at > self._long_value
        if self._inside and too_long and self.long_value_at < 0:
            self.long_value_at = self.opened_at

    def _closed(self, block: bytes, after: int) -> None:
        """The quoted value closed; ``block[after]`` is the byte after its closing quote."""
        self._inside = False
        if self._spans_lines and self.malformed_at < 0:
            self._check_after_close(block, after)

    def _check_after_close(self, block: bytes, at: int) -> None:
        # '"a stray quote ... "quoted" word': the parser would merge the rows between. Only a
        # value across lines counts ('"Best" seller' on one line reads as 'Best seller', as in
        # Python's csv), and spaces or tabs before the delimiter are harmless.
        while at < len(block) and block[at] in _BLANKS:
            at += 1
        if at == len(block):
            self._after_close = True  # the next block says
        elif block[at] not in self._separators:
            self.malformed_at = self.opened_at
