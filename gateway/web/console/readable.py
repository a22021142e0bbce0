"""What the console shows of a peer's message body: only what validates.

A body is peer input. A rejected message keeps whatever the peer sent (it is evidence),
so a page never reaches into a raw body: it asks :func:`preview`, which validates the
body against its type's model first and says "unreadable (reason)" when it does not.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.protocol.alert import Alert
from gateway.protocol.commcheck import CommCheck
from gateway.protocol.directory import DirectoryUpdate
from gateway.protocol.keyupdate import KeyUpdate
from gateway.protocol.sitrep import Sitrep

BODY_MODELS: dict[str, type[BaseModel]] = {
    "sitrep": Sitrep, "alert": Alert, "commcheck": CommCheck, "directory": DirectoryUpdate,
    "key-update": KeyUpdate,
}
PREVIEW_CHARS = 200


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


def validated(msg_type: str, body: Any) -> tuple[BaseModel | None, str | None]:
    """The body as its type's model, or (None, why it cannot be read)."""
    model = BODY_MODELS.get(msg_type)
    if model is None:
        return None, "unknown type"
    try:
        return model.model_validate(body), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return None, f"{where}: {first['msg']}"[:120]


def preview(msg_type: str, body: Any, lang: str) -> dict[str, str | None]:
    """One line for a list of messages: ``text`` (the summary, headline, ...) or, when
    the body does not validate, ``unreadable`` with the reason."""
    model, problem = validated(msg_type, body)
    if model is None:
        return {"text": None, "unreadable": problem}
    if isinstance(model, Sitrep):
        texts = model.summary
        return {"text": _short(texts.get(lang) or next(iter(texts.values()))),
                "unreadable": None}
    if isinstance(model, Alert) and model.infos:
        info = next((i for i in model.infos if i.language.lower().startswith(lang)),
                    model.infos[0])
        return {"text": _short(info.headline or info.event), "unreadable": None}
    return {"text": None, "unreadable": None}


def _matches(tag: str, lang: str) -> bool:
    return tag.lower() == lang or tag.lower().startswith(lang + "-")


def languages(texts: dict[str, str], lang: str) -> list[str]:
    """The languages of a multilingual text, the reader's first (``nl`` matches
    ``nl-BE``), then the others in their order."""
    return sorted(texts, key=lambda tag: not _matches(tag, lang))


def pick(texts: dict[str, str], lang: str) -> str:
    """A multilingual text in the reader's language, else in its first language."""
    return texts[languages(texts, lang)[0]] if texts else ""


def cap_info(infos: tuple[Any, ...], lang: str) -> Any:
    """The CAP ``info`` block in the reader's language, else the first (None: none)."""
    return next((i for i in infos if _matches(i.language, lang)), infos[0] if infos else None)
