"""Templates in Compose: the sitrep templates a duty officer may start from, the form's
values a template gives, and which of the form's fields it requires."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.config import Settings
from gateway.config_templates import templates_in_force
from gateway.protocol.templates import Template
from gateway.protocol.types import Priority

LANGS = ("en", "nl", "fr", "de")
CASUALTIES = ("dead", "injured", "missing", "evacuated", "displaced")


def sitrep_templates(settings: Settings) -> list[Template]:
    """The templates Compose offers: those for sitreps (alerts are sent through the API)."""
    return [t for t in templates_in_force(settings.templates).values() if t.kind == "sitrep"]


def offered(settings: Settings, name: str) -> Template | None:
    """The sitrep template ``name``, if it is offered."""
    return next((t for t in sitrep_templates(settings) if t.id == name), None)


def _texts(value: Any, default_lang: str) -> dict[str, str]:
    """A text of the defaults by language (a plain string is in ``default_lang``)."""
    if isinstance(value, str):
        return {default_lang: value}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    return {}


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _in(texts: dict[str, str], lang: str) -> str:
    return texts.get(lang) or next(iter(texts.values()), "")


def form_values(template: Template, lang: str) -> dict[str, str]:
    """What the form shows for ``template`` to an operator reading ``lang``: routing, the
    incident and report fields, the summary in every language it has (the form's own
    language ``lang`` when the template has it), the sections, area, casualties, needs
    and requests for assistance."""
    d = template.defaults
    plain = str(d.get("language") or "en")
    summary = _texts(d.get("summary"), plain)
    lang = lang if lang in summary or not summary else next(
        (code for code in LANGS if code in summary), lang)
    values = {"tlp": template.tlp.value, "priority": (template.priority or Priority.ROUTINE).value,
              "language": lang}
    incident = _obj(d.get("incident"))
    for key in ("id", "title", "type"):
        if key in incident:
            values[f"incident_{key}"] = str(incident[key])
    values |= {key: str(d[key]) for key in ("report_number", "supersedes", "purpose",
                                            "severity") if key in d}
    if summary:
        values["summary"] = _in(summary, lang)
        values |= {f"summary_{code}": summary[code] for code in LANGS
                   if code != lang and code in summary}
    sections = _obj(d.get("sections"))
    values |= {key: _in(_texts(sections[key], plain), lang)
               for key in ("situation", "actions_taken", "outlook") if key in sections}
    area = _obj(d.get("affected_area"))
    if area.get("place_names"):
        values["place_names"] = ", ".join(str(p) for p in area["place_names"])
    casualties = _obj(d.get("casualties"))
    values |= {f"casualties_{k}": str(casualties[k]) for k in CASUALTIES if k in casualties}
    values["needs"] = "\n".join(
        ("! " if n.get("urgent") else "") + _in(_texts(n.get("description"), plain), lang)
        for n in d.get("needs", ()) if isinstance(n, Mapping))
    values["assistance"] = "\n".join(
        _in(_texts(r.get("description"), plain), lang)
        for r in d.get("assistance_requests", ()) if isinstance(r, Mapping))
    return {k: v for k, v in values.items() if v}


def required_marks(template: Template | None, field_of: Callable[[tuple[Any, ...]], str]
                   ) -> tuple[frozenset[str], list[str]]:
    """The form fields ``template`` requires, and its required body fields the form has
    no field for (the API can fill those in)."""
    if template is None:
        return frozenset(), []
    marks: set[str] = set()
    elsewhere: list[str] = []
    for path in template.required:
        name = field_of(("sitrep", *path.split(".")))
        if name == "form":
            elsewhere.append(path)
        else:
            marks.add(name)
    return frozenset(marks), elsewhere
