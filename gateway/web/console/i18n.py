"""Console translations: Babel catalogs (gettext .po) loaded at start-up, no build step.

English is the source language; ``locale/<lang>/LC_MESSAGES/console.po`` holds Dutch,
French and German. ``babel.cfg`` at the repository root drives ``pybabel extract``.
"""

from __future__ import annotations

import contextvars
import functools
import gettext
import io
import re
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = {"en": "English", "nl": "Nederlands", "fr": "Français", "de": "Deutsch"}
DEFAULT = "en"
_current: contextvars.ContextVar[str] = contextvars.ContextVar("console_lang", default=DEFAULT)


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of ``lang`` (English: the identity)."""
    if lang == DEFAULT or lang not in LANGUAGES:
        return gettext.NullTranslations()
    path = resources.files("gateway.web.console").joinpath(
        "locale", lang, "LC_MESSAGES", "console.po")
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def use(lang: str) -> None:
    """Make ``lang`` the language of the current request."""
    _current.set(lang if lang in LANGUAGES else DEFAULT)


def current() -> str:
    """The language of the current request."""
    return _current.get()


def _(message: str) -> str:
    """Translate into the current request's language."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Plural-aware translation."""
    return translations(_current.get()).ngettext(singular, plural, n)


def pick(header: str | None) -> str:
    """The best supported language from an Accept-Language header."""
    for part in (header or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


def N_(message: str) -> str:  # noqa: N802 - the gettext convention extraction tools know
    """Mark a string for extraction without translating it here."""
    return message


#: Words the templates translate from data (states, priorities, roles, message types).
VOCABULARY = (
    N_("queued"), N_("sent"), N_("delivered"), N_("acknowledged"), N_("rejected"),
    N_("expired"), N_("flash"), N_("urgent"), N_("routine"), N_("viewer"), N_("operator"),
    N_("admin"), N_("sitrep"), N_("alert"), N_("receipt"), N_("actual"), N_("exercise"),
    N_("test"), N_("initial"), N_("update"), N_("final"), N_("extreme"), N_("severe"),
    N_("moderate"), N_("minor"), N_("unknown"), N_("commcheck"),
)

_KNOWN = frozenset(VOCABULARY)


def label(value: object) -> str:
    """A word from data (a state, a priority, a message type) in the reader's language
    when it is one of :data:`VOCABULARY`; anything else as it is, as plain text that the
    template escapes. Data never reaches gettext: a peer's string is neither translated
    nor formatted, so it can neither inject markup nor break the page with ``%(x)s``."""
    text = "" if value is None else str(value)
    return _(text) if text in _KNOWN else text


#: Unicode controls that reorder text (bidi embeddings, overrides, isolates and marks).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_controls(value: object) -> object:
    """Jinja's finalize: in every value a template prints, show bidi controls as their
    code point (``[U+202E]``) instead of letting them reorder the page, so a peer's
    "gnp.exe" with a right-to-left override reads as it is, not as "exe.png"."""
    if isinstance(value, str) and _BIDI.search(value):
        return _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
    return value
