"""CSV that spreadsheets open as data, never as formulas (one sanitiser for every export).

A cell that starts like a formula (``=``, ``+``, ``-``, ``@``, a tab or carriage return,
or their full-width forms U+FF1D, U+FF0B, U+FF0D, U+FF20), even after leading white space such as a
no-break space, is defused with a leading ``'``. Every cell is quoted, and a ``;`` (the
list separator of Dutch, French and German spreadsheets, which may split a cell) starts
a new segment that is checked the same way. Phone numbers and plain numbers (``+32 2 000
00 00``, ``-12.5``) are left as they are: without letters they cannot call anything.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

_FORMULA = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NUMBER_OR_PHONE = re.compile(r"^[+-]?[0-9][0-9 ().,/-]*$")


def _defuse(segment: str) -> str:
    body = segment.lstrip()
    if (segment[:1] in _FORMULA or body[:1] in _FORMULA) and not _NUMBER_OR_PHONE.match(body):
        return "'" + segment
    return segment


def cell(value: Any) -> str:
    """The text of one cell: lists joined by ``, ``, None empty, formulas defused."""
    if value is None:
        return ""
    text = ", ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    return ";".join(_defuse(part) for part in text.split(";"))


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document: the header, then one line per row, every cell quoted and safe."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue()
