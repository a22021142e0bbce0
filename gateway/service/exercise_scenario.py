"""Exercise scenarios: parsed and checked at the edge, turned into API submissions, and
made from a past incident (a replay with its texts and relative timing).
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gateway.errors import InvalidBody
from gateway.protocol.exercise import Inject, Scenario
from gateway.protocol.types import Mode, format_time, parse_optional_time
from gateway.service.submit import AlertSubmission, SitrepSubmission

#: The prefix of a replayed incident's id: the replay never joins the real incident.
REPLAY_PREFIX = "EX-"


def _errors(exc: ValidationError, where: list[str | int]) -> list[dict[str, object]]:
    return [{"loc": [*where, *err["loc"]], "msg": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)[:20]]


def parse_scenario(text: str) -> Scenario:
    """A scenario from its TOML text, every inject checked as the API would check it;
    :class:`InvalidBody` names the inject and the field otherwise."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidBody("Invalid scenario", f"not TOML: {exc}") from exc
    return scenario_of(raw)


def scenario_of(raw: dict[str, Any]) -> Scenario:
    """A scenario from its parsed form (TOML tables, or the JSON the API takes)."""
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise InvalidBody("Invalid scenario", f"{exc.error_count()} invalid fields",
                          _errors(exc, [])) from exc
    for index, inject in enumerate(scenario.injects):
        try:
            submission(inject)
        except ValidationError as exc:
            raise InvalidBody("Invalid scenario",
                              f"inject {index} (minute {inject.minute:g}) is not a valid "
                              f"{inject.kind}", _errors(exc, ["inject", index])) from exc
    return scenario


def submission(inject: Inject, shift: timedelta | None = None
               ) -> SitrepSubmission | AlertSubmission:
    """What the API is given for ``inject``: always ``exercise`` traffic (a CAP alert's
    status is ``Exercise``); with ``shift`` (a replay), the body's times move by it."""
    routing: dict[str, Any] = {"to": list(inject.to), "tlp": inject.tlp.value}
    if inject.priority is not None:
        routing["priority"] = inject.priority.value
    if inject.incident is not None:
        routing["incident"] = inject.incident
    if inject.sitrep is not None:
        sitrep = _shift_sitrep(inject.sitrep, shift) if shift else inject.sitrep
        return SitrepSubmission.model_validate(
            {**routing, "mode": Mode.EXERCISE.value, "sitrep": sitrep})
    assert inject.alert is not None
    alert = {**inject.alert, "status": "Exercise"}
    alert = _shift_alert(alert, shift) if shift else alert
    return AlertSubmission.model_validate({**routing, "mode": Mode.EXERCISE.value,
                                           "alert": alert})


def _moved(value: Any, shift: timedelta) -> Any:
    """A time moved by ``shift``, in its own form: ``Z`` (the protocol's) or with the
    offset it was written with (CAP's)."""
    if not isinstance(value, str):
        return value
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is None:
        return value
    return format_time(when + shift) if value.endswith("Z") else \
        (when + shift).isoformat(timespec="seconds")


def _shift_sitrep(sitrep: dict[str, Any], shift: timedelta) -> dict[str, Any]:
    period = sitrep.get("period")
    if not isinstance(period, dict):
        return sitrep
    return {**sitrep, "period": {k: _moved(v, shift) for k, v in period.items()}}


def _shift_alert(alert: dict[str, Any], shift: timedelta) -> dict[str, Any]:
    infos = [{k: _moved(v, shift) if k in ("effective", "onset", "expires") else v
              for k, v in info.items()} if isinstance(info, dict) else info
             for info in alert.get("infos", ())]
    return {**alert, "sent": _moved(alert.get("sent"), shift), "infos": infos}


def replayed(incident: str, speed: float, messages: list[dict[str, Any]],
             suffix: str) -> Scenario:
    """A scenario replaying ``messages`` of a past incident (each ``from``, ``to``,
    ``type``, ``created``, ``tlp``, ``priority`` and the signed ``body``) at their
    relative times, under the incident id ``EX-<incident>``; each CAP alert gets a new
    identifier (``<identifier>-<suffix>``) and its times, like a sitrep's period, move
    with the replay."""
    times = [parse_optional_time(m["created"]) for m in messages]
    start = min((t for t in times if t is not None), default=None)
    if start is None:
        raise InvalidBody("Nothing to replay", f"incident {incident} has no sitrep or alert")
    replay_id = (REPLAY_PREFIX + incident)[:64]
    injects = []
    for m, created in zip(messages, times, strict=True):
        body = dict(m["body"])
        item: dict[str, Any] = {
            "minute": round(((created or start) - start).total_seconds() / 60, 3),
            "from": m["from"], "to": list(m["to"]), "tlp": m["tlp"],
            "priority": m["priority"], "incident": replay_id,
            "note": f"replay of {m['type']} {m['id']} ({m['created']})",
            "replayed_created": m["created"]}
        if m["type"] == "sitrep":
            body["incident"] = {**body.get("incident", {}), "id": replay_id}
            item["sitrep"] = body
        else:
            body["identifier"] = f"{body.get('identifier', 'alert')}-{suffix}"[:200]
            body["incidents"] = replay_id
            body.pop("references", None)  # the identifiers it names are the real ones
            item["alert"] = body
        injects.append(item)
    return scenario_of({"name": f"Replay of {incident}", "speed": speed, "inject": injects,
                        "description": f"The messages of incident {incident}, replayed "
                                       "as an exercise at their relative times."})
