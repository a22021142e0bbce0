"""One CSV sanitiser for every export: no cell opens as a formula, in any locale."""

from __future__ import annotations

import csv
import io

import pytest

from gateway.formats.spreadsheet import cell, to_csv


@pytest.mark.parametrize(("value", "expected"), [
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("  =1", "'  =1"),
    ("\u00a0=1", "'\u00a0=1"),            # a no-break space before the formula
    ("\uff1dHYPERLINK(1)", "'\uff1dHYPERLINK(1)"),  # full-width equals sign
    ("a;=HYPERLINK(1)", "a;'=HYPERLINK(1)"),  # ';' splits cells in NL, BE, DE, FR locales
    ("a; @x;b", "a;' @x;b"),
], ids=["hyperlink", "dde", "arith", "at", "tab", "cr", "spaces", "nbsp", "fullwidth",
        "semicolon", "semicolon-space"])
def test_formulas_are_defused(value: str, expected: str) -> None:
    """Anything that would start a formula, even after white space or a ';', gets a '."""
    assert cell(value) == expected


@pytest.mark.parametrize("value", ["+32 2 000 00 00", "+31 (0)70 000 0000", "-12.5",
                                   "+4", "0032 2 000", "Liège", "", "a-b=c"])
def test_phone_numbers_numbers_and_text_stay_as_they_are(value: str) -> None:
    """A phone number or a plain number cannot call anything: it is left alone."""
    assert cell(value) == value


def test_a_document_quotes_every_cell_and_reads_back() -> None:
    """Every cell is quoted; lists are joined; None is empty; the reader gets the values."""
    text = to_csv(["a", "b", "c"], [["=1", ["x", "y"], None], ['say "hi"\nthere', 3, "ok"]])
    assert text.splitlines()[0] == '"a","b","c"'
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'=1", "x, y", ""]
    assert rows[2] == ['say "hi"\nthere', "3", "ok"]
