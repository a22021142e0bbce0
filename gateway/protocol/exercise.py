"""Exercises on the live federation (pure): a scenario of timed injects, the state of a
run folded from its recorded events, and which injects are due.

A scenario lists injects: at minute ``minute`` of the exercise, centre ``from`` sends
a sitrep or a CAP alert to ``to``. A run is played at ``speed`` (2 = twice as fast);
time paused does not count. Every event of a run (started, paused, resumed, stopped, an
inject sent or failed) is recorded, and the run's state is nothing but the fold of its
events, so that any instance holding the jobs' lease can carry it on after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from gateway.protocol.types import CentreId, FrozenModel, Priority, Tlp

#: The longest exercise, in minutes of scenario time (a week).
MAX_MINUTE = 7 * 24 * 60
MAX_INJECTS = 500
#: A failed inject is tried again after this long, at most ``MAX_TRIES`` times.
RETRY_AFTER = timedelta(seconds=15)
MAX_TRIES = 5


class Inject(FrozenModel):
    """One timed message of a scenario: a sitrep or a CAP alert (as the API takes them,
    without ``mode``: an exercise's messages are always ``exercise`` traffic)."""

    minute: float = Field(ge=0, le=MAX_MINUTE, description="When, from the exercise's start")
    sender: CentreId = Field(alias="from", description="The centre that sends it")
    to: tuple[str, ...] = Field(min_length=1, max_length=64,
                                description="Centre ids and group names")
    tlp: Tlp = Tlp.GREEN
    priority: Priority | None = None
    incident: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=500,
                             description="For the controller; never sent")
    replayed_created: str | None = Field(
        default=None, max_length=40,
        description="A replay's original creation time: the body's times move with it")
    sitrep: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_body(self) -> Inject:
        if (self.sitrep is None) == (self.alert is None):
            raise ValueError("an inject has exactly one of sitrep and alert")
        return self

    @property
    def kind(self) -> str:
        """``sitrep`` or ``alert``."""
        return "sitrep" if self.sitrep is not None else "alert"


class Scenario(FrozenModel):
    """An exercise's script."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    speed: float = Field(default=1.0, gt=0, le=3600,
                         description="Scenario minutes per minute of play")
    injects: tuple[Inject, ...] = Field(alias="inject", min_length=1,
                                        max_length=MAX_INJECTS)

    def centres(self) -> list[str]:
        """The sending centres, in order of first appearance."""
        return list(dict.fromkeys(i.sender for i in self.injects))


class Status(StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event of a run: ``kind`` is ``started``, ``paused``, ``resumed``,
    ``stopped``, ``finished``, ``inject_sent`` or ``inject_failed``."""

    kind: str
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent:
    """An inject that went out: the message's id at its sender."""

    index: int
    sender: str
    message_id: str
    at: datetime


@dataclass
class Run:
    """A run's state: what the fold of its events says."""

    id: str
    name: str
    speed: float
    started_at: datetime
    status: Status = Status.RUNNING
    paused_for: timedelta = timedelta(0)
    paused_since: datetime | None = None
    ended_at: datetime | None = None
    sent: dict[int, Sent] = field(default_factory=dict)
    failures: dict[int, list[tuple[datetime, str]]] = field(default_factory=dict)

    def elapsed(self, now: datetime) -> timedelta:
        """Exercise time played so far (pauses excluded), in wall-clock time."""
        end = self.ended_at or self.paused_since or now
        return max(timedelta(0), end - self.started_at - self.paused_for)

    def minute(self, now: datetime) -> float:
        """The scenario minute reached."""
        return self.elapsed(now).total_seconds() * self.speed / 60


def fold(run_id: str, events: Iterable[Event]) -> Run | None:
    """The state after ``events`` (oldest first); None without a ``started`` event."""
    run: Run | None = None
    for e in events:
        if e.kind == "started":
            run = Run(id=run_id, name=str(e.data.get("name", "")),
                      speed=float(e.data.get("speed", 1.0)), started_at=e.at)
        elif run is None or run.status in (Status.STOPPED, Status.FINISHED):
            continue
        elif e.kind == "paused" and run.status is Status.RUNNING:
            run.status, run.paused_since = Status.PAUSED, e.at
        elif e.kind == "resumed" and run.paused_since is not None:
            run.paused_for += e.at - run.paused_since
            run.status, run.paused_since = Status.RUNNING, None
        elif e.kind in ("stopped", "finished"):
            run.status = Status.STOPPED if e.kind == "stopped" else Status.FINISHED
            run.ended_at = run.paused_since or e.at
        elif e.kind == "inject_sent":
            index = int(e.data["index"])
            run.sent.setdefault(index, Sent(index=index, sender=str(e.data["from"]),
                                            message_id=str(e.data["message_id"]), at=e.at))
        elif e.kind == "inject_failed":
            run.failures.setdefault(int(e.data["index"]), []).append(
                (e.at, str(e.data.get("error", ""))))
    return run


def due(run: Run, scenario: Scenario, now: datetime) -> list[int]:
    """The injects to send now: their minute reached, not sent, not given up, and not
    failed within :data:`RETRY_AFTER`; none unless the run is running."""
    if run.status is not Status.RUNNING:
        return []
    reached = run.minute(now)
    out = []
    for index, inject in enumerate(scenario.injects):
        if index in run.sent or inject.minute > reached:
            continue
        tries = run.failures.get(index, [])
        if len(tries) >= MAX_TRIES or (tries and now - tries[-1][0] < RETRY_AFTER):
            continue
        out.append(index)
    return out


def complete(run: Run, scenario: Scenario) -> bool:
    """Every inject is sent or given up."""
    return all(i in run.sent or len(run.failures.get(i, [])) >= MAX_TRIES
               for i in range(len(scenario.injects)))


def next_at(run: Run, scenario: Scenario, now: datetime) -> datetime | None:
    """When the next unsent inject falls due (None: none left, or not running)."""
    if run.status is not Status.RUNNING:
        return None
    pending = [i.minute for n, i in enumerate(scenario.injects) if n not in run.sent]
    if not pending:
        return None
    wait = (min(pending) - run.minute(now)) * 60 / run.speed
    return now + timedelta(seconds=max(0.0, wait))
