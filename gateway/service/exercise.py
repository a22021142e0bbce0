"""Exercises on the live federation (:mod:`gateway.protocol.exercise`): start a run,
pause, resume and stop it, and play its injects through the real nodes.

An inject from this centre goes through our own submission path; one from another
centre through that centre's API (``[[exercise.centres]]``). Each carries the
Idempotency-Key ``exercise:<run>:<index>``, so an inject sent again after a crash
between its submission and its record is the same message, not a second one. The
player runs on the instance holding the periodic jobs' lease.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from gateway.config import Settings
from gateway.config_exercise import ExerciseCentre
from gateway.errors import GatewayError, NotFound, PolicyRefused, RequestRefused, StateConflict
from gateway.protocol.exercise import Run, Scenario, Status, complete, due, fold
from gateway.protocol.types import parse_optional_time
from gateway.service.exercise_scenario import scenario_of, submission
from gateway.service.ports_jobs import ExerciseStore
from gateway.service.records import IdempotencyKey
from gateway.service.submit import AlertSubmission, SitrepSubmission, Submitter

log = structlog.get_logger(__name__)
#: Scenarios kept checked in memory (the runs of a day, at most).
SCENARIO_CACHE = 64
CONTROLS = {"pause": ("paused", Status.RUNNING), "resume": ("resumed", Status.PAUSED),
            "stop": ("stopped", None)}


class Remote(Protocol):
    """Another centre's API."""

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> Any:
        """The JSON answer; :class:`GatewayError` unless 2xx."""
        ...


class Exercises:
    """Runs exercises: the controller's commands and the player's passes."""

    def __init__(self, *, me: str, settings: Callable[[], Settings], store: ExerciseStore,
                 submitter: Submitter, remote: Callable[[ExerciseCentre], Remote],
                 clock: Callable[[], datetime]) -> None:
        self._me, self._settings, self._store = me, settings, store
        self._submitter, self._remote, self._now = submitter, remote, clock
        #: A run's scenario never changes once started: checked once, not every pass.
        self._scenarios: dict[str, Scenario] = {}

    def remote(self, centre: str) -> Remote | None:
        """``centre``'s API, if this node may reach it."""
        entry = self._settings().exercise.centre(centre)
        return None if entry is None else self._remote(entry)

    async def start(self, scenario: Scenario, by: str, speed: float | None = None) -> str:
        """Start a run of ``scenario``; its id. :class:`PolicyRefused` when an inject
        comes from a centre this node cannot send for."""
        unreachable = [c for c in scenario.centres()
                       if c != self._me and self._settings().exercise.centre(c) is None]
        if unreachable:
            raise PolicyRefused(
                "Centre not reachable", f"injects from {', '.join(unreachable)}: this node "
                "has no [[exercise.centres]] entry for them",
                [{"loc": ["inject", "from"], "msg": f"{c} not configured"} for c in unreachable])
        run_id = str(uuid.uuid4())
        await self._store.record(run_id, "started", by, {
            "name": scenario.name, "speed": speed or scenario.speed,
            "scenario": scenario.model_dump(mode="json", by_alias=True, exclude_none=True)},
            self._now())
        log.info("exercise_started", run_id=run_id, name=scenario.name,
                 injects=len(scenario.injects))
        return run_id

    async def load(self, run_id: str) -> tuple[Run, Scenario]:
        """A run and its scenario; :class:`NotFound` for another id."""
        events = await self._store.events(run_id)
        run = fold(run_id, events)
        if run is None:
            raise NotFound("Not found", f"no exercise {run_id}")
        scenario = self._scenarios.get(run_id)
        if scenario is None:
            scenario = scenario_of(events[0].data["scenario"])
            if len(self._scenarios) >= SCENARIO_CACHE:
                self._scenarios.clear()
            self._scenarios[run_id] = scenario
        return run, scenario

    async def control(self, run_id: str, action: str, by: str) -> Run:
        """Pause, resume or stop a run; :class:`StateConflict` when it is not in a state
        that allows it."""
        kind, needs = CONTROLS[action]
        run, _ = await self.load(run_id)
        if run.status in (Status.STOPPED, Status.FINISHED) or (needs and run.status is not needs):
            raise StateConflict("Not possible now", f"the exercise is {run.status.value}")
        await self._store.record(run_id, kind, by, {}, self._now())
        log.info("exercise_" + kind, run_id=run_id, by=by)
        return (await self.load(run_id))[0]

    async def run_once(self) -> int:
        """One pass of the player over every run in progress: the injects sent."""
        sent = 0
        for entry in await self._store.runs(20):
            if entry["ended"]:
                continue
            try:
                run, scenario = await self.load(entry["id"])
            except RequestRefused as exc:
                log.error("exercise_unreadable", run_id=entry["id"], error=str(exc))
                continue
            for index in due(run, scenario, self._now()):
                sent += await self._inject(run, scenario, index)
            run, _ = await self.load(entry["id"])
            if run.status is Status.RUNNING and complete(run, scenario):
                await self._store.record(run.id, "finished", "exercise", {}, self._now())
                log.info("exercise_finished", run_id=run.id)
        return sent

    async def _inject(self, run: Run, scenario: Scenario, index: int) -> int:
        inject = scenario.injects[index]
        created = parse_optional_time(inject.replayed_created)
        # a replay's times move to the inject's slot, the same at every try (idempotent)
        slot = run.started_at + timedelta(minutes=inject.minute / run.speed)
        try:
            sub = submission(inject, None if created is None else slot - created)
            message_id = await self._submit(run.id, index, inject.sender, sub)
        except (GatewayError, ValueError) as exc:
            error = str(getattr(exc, "detail", None) or exc)[:500]
            await self._store.record(run.id, "inject_failed", "exercise",
                                     {"index": index, "from": inject.sender, "error": error},
                                     self._now())
            log.warning("exercise_inject_failed", run_id=run.id, index=index, error=error)
            return 0
        await self._store.record(run.id, "inject_sent", "exercise", {
            "index": index, "from": inject.sender, "message_id": message_id,
            "type": inject.kind, "minute": inject.minute}, self._now())
        log.info("exercise_inject_sent", run_id=run.id, index=index, sender=inject.sender,
                 message_id=message_id)
        return 1

    async def _submit(self, run_id: str, index: int, sender: str,
                      sub: SitrepSubmission | AlertSubmission) -> str:
        key = f"exercise:{run_id}:{index}"
        body = sub.model_dump(mode="json", exclude_none=True)
        if sender == self._me:
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            idem = IdempotencyKey(client="exercise", key=key, request_sha256=digest)
            if isinstance(sub, SitrepSubmission):
                message_id, _ = await self._submitter.submit_sitrep(sub, idem)
            else:
                message_id, _ = await self._submitter.submit_alert(sub, idem)
            return message_id
        remote = self.remote(sender)
        if remote is None:
            raise GatewayError(f"no [[exercise.centres]] entry for {sender}")
        path = "/v1/sitreps" if isinstance(sub, SitrepSubmission) else "/v1/alerts"
        answer = await remote.call("POST", path, body, {"Idempotency-Key": key})
        return str(answer["id"])
