"""``[[templates]]``: the centre's own message templates, next to the built-in ones
(``gateway/builtin_templates.toml``), in the model of :mod:`gateway.protocol.templates`.

Every template is checked when the configuration is loaded; an invalid one stops the
node from starting (and a reload is refused), with the template and the field named.
A centre's template with the id of a built-in one replaces it. Example::

    [[templates]]
    id = "dike-breach"
    kind = "sitrep"                       # or "alert" (a CAP alert)
    field = "civil-protection"            # a field of work of the contact directory
    to = ["BE-NCCN", "field:civil-protection"]
    tlp = "AMBER"
    priority = "flash"
    required = ["incident.id", "incident.title", "affected_area.place_names",
                "sections.situation"]

    [templates.title]                     # all four languages
    en = "Dike breach"
    nl = "Dijkdoorbraak"
    fr = "Rupture de digue"
    de = "Deichbruch"

    [templates.defaults]                  # body fields filled in beforehand
    report_number = 1
    severity = "extreme"
    summary = { en = "A dike has breached.", nl = "Een dijk is doorgebroken.",
                fr = "Une digue a cédé.", de = "Ein Deich ist gebrochen." }
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from importlib import resources
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

from gateway.errors import ConfigError
from gateway.protocol.templates import Template

BUILTIN_FILE = "builtin_templates.toml"


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else str(e["msg"])
        for e in exc.errors(include_url=False))


def parse_templates(entries: Any) -> tuple[Template, ...]:
    """Templates from ``[[templates]]`` tables. Raises ``ValueError`` naming the
    template (its id, else its place) and each bad field; ids must be distinct."""
    if not isinstance(entries, list | tuple):
        raise ValueError("templates are [[templates]] tables")  # noqa: TRY004 - a validator raises ValueError
    out: list[Template] = []
    for index, entry in enumerate(entries):
        if isinstance(entry, Template):  # settings validated again (model_copy and co)
            out.append(entry)
            continue
        name = entry.get("id") if isinstance(entry, dict) else None
        label = f"template {name!r}" if isinstance(name, str) else f"template {index + 1}"
        try:
            template = Template.model_validate(entry)
        except ValidationError as exc:
            raise ValueError(f"{label}: {_describe(exc)}") from exc
        if any(t.id == template.id for t in out):
            raise ValueError(f"{label}: two templates have this id")
        out.append(template)
    return tuple(out)


def _centre_templates(value: Any) -> tuple[Template, ...]:
    try:
        return parse_templates(value)
    except ValueError as exc:  # without pydantic's "Value error, " in front
        raise PydanticCustomError("template_invalid", "{detail}", {"detail": str(exc)}) from exc


#: The ``templates`` of the settings: the centre's own, checked as they are loaded.
CentreTemplates = Annotated[tuple[Template, ...], BeforeValidator(_centre_templates)]


@functools.cache
def builtin_templates() -> tuple[Template, ...]:
    """The templates shipped with the gateway. Raises :class:`ConfigError` if the file
    shipped is broken (a defect of the release, caught by its tests)."""
    try:
        text = resources.files("gateway").joinpath(BUILTIN_FILE).read_text(encoding="utf-8")
        return parse_templates(tomllib.loads(text).get("templates", []))
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"{BUILTIN_FILE}: {exc}") from exc


def templates_in_force(own: Sequence[Template]) -> dict[str, Template]:
    """Every template by id: the built-in ones, each replaced by the centre's template of
    the same id, then the centre's others, in the order of its file."""
    return {t.id: t for t in builtin_templates()} | {t.id: t for t in own}
