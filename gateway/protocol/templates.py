"""Message templates: pre-approved sitreps and CAP alerts per field of work (pure).

A template holds what a submission of its kind starts from: default recipients, TLP
and priority, body fields (the pre-approved wording, in the four console languages where
the message's texts carry languages), and the body fields its submitter must fill in.
:func:`apply_template` turns a caller's members into a submission; the caller then
validates it as any other (``SitrepSubmission``, ``AlertSubmission``).

How the caller's members meet the template's (:func:`merge`):

- objects merge key by key, the caller's value winning;
- a text (``summary``, a section, a need's or a request's ``description``) is replaced
  whole: a caller's summary replaces the template's in every language;
- two lists of objects merge item by item (the caller's first over the template's
  first, ...); any other list of the caller's replaces the template's.

A template is checked when it is loaded (:mod:`gateway.protocol.template_check`): its
defaults must be valid body fields, and a submission that fills in exactly the required
fields must be a complete body; a required field may not have a default as well.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from gateway.errors import InvalidBody
from gateway.protocol.directory import FieldOfWork
from gateway.protocol.template_check import ABSENT, body_problems, lookup, split_path
from gateway.protocol.types import CENTRE_ID_PATTERN, GROUP_PATTERN, FrozenModel, Priority, Tlp

TEMPLATE_ID_PATTERN = r"^[a-z][a-z0-9-]{1,63}$"
#: A body field: names and list positions separated by dots (``incident.id``,
#: ``assistance_requests.0.description``).
FIELD_PATH_PATTERN = r"^[a-z_]{1,64}(\.([a-z_]{1,64}|[0-9]{1,3})){0,7}$"
_FIELDS = "|".join(re.escape(f.value) for f in FieldOfWork)
#: What ``to`` takes: a centre id, a group, or the contact points of a field of work.
RECIPIENT_PATTERN = (f"^(?:{CENTRE_ID_PATTERN[1:-1]}|{GROUP_PATTERN[1:-1]}"
                     f"|field:(?:{_FIELDS}))$")
#: Texts that are replaced whole, never merged language by language.
TEXT_KEYS = frozenset({"summary", "situation", "actions_taken", "outlook", "description"})

TemplateId = Annotated[str, StringConstraints(pattern=TEMPLATE_ID_PATTERN)]
FieldPath = Annotated[str, StringConstraints(pattern=FIELD_PATH_PATTERN)]
Recipient = Annotated[str, StringConstraints(pattern=RECIPIENT_PATTERN)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TemplateTitle(FrozenModel):
    """A template's name in each language of the console: all four are required."""

    en: Title
    nl: Title
    fr: Title
    de: Title

    def pick(self, lang: str) -> str:
        """The title in ``lang`` (English for a language it has no title in)."""
        value = getattr(self, lang, None) if lang in ("en", "nl", "fr", "de") else None
        return str(value or self.en)


class Template(FrozenModel):
    """A pre-approved message: routing and body defaults, and what the submitter fills."""

    id: TemplateId
    kind: Literal["sitrep", "alert"]
    field: FieldOfWork
    title: TemplateTitle
    to: tuple[Recipient, ...] = Field(default=(), max_length=64,
                                      description="Default recipients, as `to` takes them")
    tlp: Tlp
    priority: Priority | None = None
    required: tuple[FieldPath, ...] = Field(
        default=(), max_length=64, description="Body fields the submitter must fill in")
    defaults: dict[str, Any] = Field(default_factory=dict,
                                     description="Body fields filled in beforehand")

    @model_validator(mode="after")
    def _coherent(self) -> Template:
        problems = body_problems(self.kind, self.defaults, self.required)
        if problems:
            raise PydanticCustomError("template_invalid", "{detail}",
                                      {"detail": "; ".join(problems)})
        return self


def merge(base: Any, given: Any, key: str | None = None) -> Any:
    """``given`` over ``base`` (a copy; neither is changed), by the rules of this
    module's docstring."""
    if isinstance(base, Mapping) and isinstance(given, Mapping) and key not in TEXT_KEYS:
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for k, v in given.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if (isinstance(base, list | tuple) and isinstance(given, list | tuple) and base
            and given and all(isinstance(x, Mapping) for x in (*base, *given))):
        longest = max(len(base), len(given))
        return [merge(base[i], given[i]) if i < len(base) and i < len(given)
                else copy.deepcopy(base[i] if i < len(base) else given[i])
                for i in range(longest)]
    return copy.deepcopy(given)


def _blank(value: Any) -> bool:
    return value is ABSENT or value is None or (isinstance(value, str) and not value.strip())


def is_empty(value: Any) -> bool:
    """Whether a required field counts as not filled in: absent, null, blank text, or a
    list or object with nothing but blanks in it (``[]``, ``{"en": ""}``)."""
    if isinstance(value, Mapping):
        return all(_blank(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_blank(v) for v in value)
    return _blank(value)


def fill_template(template: Template, submission: Mapping[str, Any]) -> dict[str, Any]:
    """The submission that ``template`` and the caller's members make (the caller's
    ``template`` member left out): the template's recipients, TLP, priority and body
    fields first, the caller's members over them. Not checked, not validated."""
    base: dict[str, Any] = {"tlp": template.tlp.value, template.kind: template.defaults}
    if template.to:
        base["to"] = list(template.to)
    if template.priority is not None:
        base["priority"] = template.priority.value
    filled: dict[str, Any] = merge(base, {k: v for k, v in submission.items()
                                          if k != "template"})
    return filled


def missing_fields(template: Template, filled: Mapping[str, Any]) -> list[dict[str, object]]:
    """The required fields that a filled-in submission leaves empty, as problem entries
    (``loc`` ``[kind, *path]``, ``code`` ``template_required``)."""
    body = filled.get(template.kind)
    out: list[dict[str, object]] = []
    for path in template.required:
        if is_empty(lookup(body, split_path(path))):
            out.append({"loc": [template.kind, *(int(s) if s.isdigit() else s
                                                 for s in split_path(path))],
                        "field": f"{template.kind}.{path}",
                        "msg": f"required by the template {template.id}",
                        "type": "missing", "code": "template_required"})
    return out


def apply_template(template: Template, submission: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`fill_template`, then every required field must be filled in. Raises
    :class:`InvalidBody` naming each one left empty. The result is not validated: the
    caller validates it as a submission of the template's kind."""
    filled = fill_template(template, submission)
    missing = missing_fields(template, filled)
    if missing:
        names = ", ".join(str(m["field"]) for m in missing)
        raise InvalidBody("Required fields missing",
                          f"the template {template.id} needs {names}", missing)
    return filled
