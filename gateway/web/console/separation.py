"""Exercise and test traffic kept apart from real traffic on the console.

Every message carries its envelope ``mode``: ``actual``, ``exercise`` or ``test``. The
console shows exercise and test traffic, marked, but never mixed with real traffic:

* counts and alarms (the Inbox badge, overdue figures, the list of what waits, the
  alert bar, its sound and notifications) take actual messages only;
* the incident board lists real incidents; an incident whose every message is exercise
  or test traffic is on the exercise board (``/console/incidents?mode=exercise``);
* maps draw actual areas; exercise and test areas are on maps of their own, marked
  EXERCISE (the exercise board's, and a second map on an incident page);
* while exercise messages were sent or received recently (:data:`BANNER_WINDOW`),
  every page carries an EXERCISE IN PROGRESS banner linking to the exercise board.

What only decides is pure; :func:`exercise_traffic` makes the two indexed counts the
banner needs (schema step 8), once per page and once per live snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web

from gateway.formats.geo import Feature
from gateway.protocol.types import format_time
from gateway.service.node import NodeApi

ACTUAL = "actual"
#: The modes that are not about a real event, shown apart from actual traffic.
DRILL_MODES = ("exercise", "test")
#: The modes a list filter (``?mode=``) accepts.
LIST_MODES = (ACTUAL, *DRILL_MODES)
#: Recent traffic of this mode raises the banner (tests, such as communication tests,
#: are routine and do not).
BANNER_MODE = "exercise"
BANNER_WINDOW = timedelta(hours=2)
#: Where the banner and the incident board lead for exercises.
EXERCISE_BOARD = "/console/incidents?mode=exercise"
#: The live page name of the exercise board (see gateway/web/console/live.py).
EXERCISE_PAGE = "incidents:exercise"
#: The banner's figures for the page being drawn (set by the console's middleware).
EXERCISE_TRAFFIC: web.RequestKey[dict[str, int]] = web.RequestKey(
    "console_exercise_traffic", dict)


def is_drill(mode: str | None) -> bool:
    """Whether a message of ``mode`` is exercise or test traffic (no mode: actual)."""
    return mode is not None and mode != ACTUAL


def list_filter(query: Mapping[str, str]) -> dict[str, str]:
    """The ``mode`` filter of a list page, if ``?mode=`` names a mode (else none)."""
    mode = query.get("mode")
    return {"mode": mode} if mode in LIST_MODES else {}


def exercise_board(query: Mapping[str, str]) -> bool:
    """Whether the incident list asked for is the exercise board (``?mode=exercise`` or
    ``?mode=test``); any other value gives the real board."""
    return query.get("mode") in DRILL_MODES


def thread_is_exercise(thread: Mapping[str, Any]) -> bool:
    """Whether an incident thread (``build_thread``) is an exercise: it has messages and
    none of them is actual."""
    timeline = thread.get("timeline") or []
    return bool(timeline) and all(is_drill(t.get("mode") or ACTUAL) for t in timeline)


def split_features(features: Iterable[Feature]) -> tuple[list[Feature], list[Feature]]:
    """(actual, exercise and test) features, by their ``mode`` property, each in order."""
    actual: list[Feature] = []
    drill: list[Feature] = []
    for feature in features:
        props = feature.get("properties") or {}
        (drill if is_drill(props.get("mode")) else actual).append(feature)
    return actual, drill


def banner(count: int) -> dict[str, int]:
    """The banner's figures: ``count`` exercise messages in the last ``hours``."""
    return {"count": count, "hours": int(BANNER_WINDOW.total_seconds() // 3600)}


async def exercise_traffic(node: NodeApi) -> dict[str, int]:
    """How many exercise messages we sent and received in the last
    :data:`BANNER_WINDOW`: two counts on the ledger's mode indexes, bounded by the
    window however long the history."""
    since = format_time(node.clock.now() - BANNER_WINDOW)
    received = await node.ledger.inbox.recent(BANNER_MODE, since)
    sent = await node.ledger.outbox.recent(BANNER_MODE, since)
    return banner(received + sent)
