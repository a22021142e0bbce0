"""Console catalogs: every string of the templates and code is translated in nl, fr, de."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from gateway.web.console import i18n

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "gateway" / "web" / "console"
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def _source_messages() -> set[str]:
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(CONSOLE), METHODS, OPTIONS):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("lang", ["nl", "fr", "de"])
def test_every_console_string_is_translated(lang: str) -> None:
    """Each extracted message has a non-empty translation with the same placeholders."""
    with (CONSOLE / "locale" / lang / "LC_MESSAGES" / "console.po").open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    source = _source_messages()
    assert len(source) > 50
    for msgid in source:
        entry = catalog.get(msgid)
        assert entry is not None, f"{lang}: missing {msgid!r}"
        assert entry.string, f"{lang}: untranslated {msgid!r}"
        placeholders = sorted(re.findall(r"%\(\w+\)s", msgid))
        assert sorted(re.findall(r"%\(\w+\)s", str(entry.string))) == placeholders


def test_translation_switches_with_the_request_language() -> None:
    """The same message renders in each language chosen for the request."""
    seen = {}
    for lang in ("en", "nl", "fr", "de"):
        i18n.use(lang)
        seen[lang] = i18n._("Overview")
    i18n.use("en")
    assert seen == {"en": "Overview", "nl": "Overzicht", "fr": "Vue d'ensemble",
                    "de": "Übersicht"}


@pytest.mark.parametrize(("header", "expected"), [
    ("nl-BE,nl;q=0.9,en;q=0.8", "nl"), ("de-DE", "de"), ("es-ES,fr;q=0.5", "fr"), ("", "en"),
])
def test_accept_language_picks_a_supported_language(header: str, expected: str) -> None:
    """The first supported language of Accept-Language is used before the user chooses."""
    assert i18n.pick(header) == expected
