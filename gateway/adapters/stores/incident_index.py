"""The incident index: one summary row per incident, kept in the transaction that stores
a message on it (schema step 4), so the incident list never re-reads the history.

It holds what :func:`gateway.service.incidents.summarise_incidents` computes from every
stored message, and gives the same rows:

* ``incident_index``: per incident, the counts (and how many of the messages are
  actual, not exercise or test: schema step 6), the last activity, the best title
  candidates (with the ordering key that chose them), the centres, the highest
  severity and the number of gap warnings;
* ``incident_centres``: per incident and centre, its latest sitrep (key, severity) and
  what its gap warnings are made of: highest report number, how many distinct numbers,
  how many numbers carried by more than one message, how many reports supersede a
  number that never came;
* ``incident_reports``: one small row per sitrep with a report number (no body), on
  which those counts are kept with indexed lookups only.

Every update costs a few indexed statements, whatever the length of the history or of
the incident. The counts do not depend on the order messages arrive in, so a rebuild
(:func:`rebuild_incident_index`) gives the rows that live updates gave. It is read by
:func:`gateway.adapters.stores.incidents.summaries`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gateway.adapters.stores.incidents import received_item, sent_item
from gateway.adapters.stores.sql import Conn
from gateway.protocol.types import format_time
from gateway.service.incidents import SEVERITY_RANK, SITREP, ThreadItem
from gateway.service.records import InboxEntry, OutgoingMessage

_ZERO_CENTRE = ("INSERT INTO incident_centres VALUES (?, ?, NULL, NULL, 0, 0, 0, 0, 0)"
                " ON CONFLICT DO NOTHING")

_INDEX_COLUMNS = ("incident", "messages", "rejected", "last_activity", "title", "title_key",
                  "sitrep_title", "sitrep_title_key", "warnings", "centres",
                  "highest_severity", "actual")
_PUT_INDEX = (
    f"INSERT INTO incident_index ({', '.join(_INDEX_COLUMNS)})"  # noqa: S608 - fixed names
    f" VALUES ({', '.join(':' + c for c in _INDEX_COLUMNS)}) ON CONFLICT (incident) DO UPDATE"
    f" SET {', '.join(f'{c} = excluded.{c}' for c in _INDEX_COLUMNS[1:])}")


def _t(item: ThreadItem) -> tuple[str, str]:
    """(when, recorded_at) as stored: fixed-width UTC strings that sort as the times do."""
    when = item.created or item.recorded_at
    return format_time(when), format_time(item.recorded_at)


def _better(key: list[Any], stored: str | None) -> bool:
    return stored is None or tuple(key) > tuple(json.loads(stored))


def _exists(conn: Conn, sql: str, *args: Any) -> bool:
    return conn.execute(sql, args).fetchone() is not None


def _after_final(conn: Conn, incident: str, centre: str) -> int:
    """1 if a report follows the centre's first final one (by number or by time)."""
    final = conn.execute(
        "SELECT report_number, at FROM incident_reports WHERE incident=? AND centre=?"
        " AND purpose='final' ORDER BY report_number, at, recorded_at, message_id LIMIT 1",
        (incident, centre)).fetchone()
    if final is None:
        return 0
    later = _exists(conn, "SELECT 1 FROM incident_reports WHERE incident=? AND centre=?"
                    " AND report_number > ? LIMIT 1", incident, centre, final[0]) or \
        _exists(conn, "SELECT 1 FROM incident_reports WHERE incident=? AND centre=?"
                " AND at > ? LIMIT 1", incident, centre, final[1])
    return int(later)


def _report(conn: Conn, item: ThreadItem, centre: str) -> None:
    """Add one sitrep with a report number to its centre's counts."""
    incident, number = item.incident, item.report_number
    assert number is not None
    when, recorded = _t(item)
    same = conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM incident_reports WHERE"
                        " incident=? AND centre=? AND report_number=? LIMIT 2) AS same_number",
                        (incident, centre, number)).fetchone()[0]
    cur = conn.execute(
        "INSERT INTO incident_reports VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        (incident, centre, item.id, number, item.purpose, item.supersedes, when, recorded))
    if cur.rowcount == 0:
        return  # already counted (a rebuild over a live index)
    row = conn.execute("SELECT * FROM incident_centres WHERE incident=? AND centre=?",
                       (incident, centre)).fetchone()
    numbers, duplicates, unknown = row["numbers"], row["duplicates"], row["superseded_unknown"]
    if same == 0:
        numbers += 1
        unknown -= conn.execute(
            "SELECT COUNT(*) FROM incident_reports WHERE incident=? AND centre=?"
            " AND supersedes=? AND message_id != ?",
            (incident, centre, number, item.id)).fetchone()[0]
    elif same == 1:
        duplicates += 1
    if item.supersedes is not None and not _exists(
            conn, "SELECT 1 FROM incident_reports WHERE incident=? AND centre=?"
            " AND report_number=? LIMIT 1", incident, centre, item.supersedes):
        unknown += 1
    highest = max(row["highest"], number)
    key = [number, when, recorded, item.id]
    latest, severity = row["latest_key"], row["severity"]
    if _better(key, latest):
        latest, severity = json.dumps(key), item.severity
    warnings = int(highest > numbers) + unknown + duplicates + _after_final(
        conn, incident, centre)
    conn.execute(
        "UPDATE incident_centres SET latest_key=?, severity=?, highest=?, numbers=?,"
        " duplicates=?, superseded_unknown=?, warnings=? WHERE incident=? AND centre=?",
        (latest, severity, highest, numbers, duplicates, unknown, warnings, incident, centre))


def _centres(conn: Conn, incident: str) -> tuple[str, str | None, int]:
    """(centres as JSON, highest severity of their latest sitreps, warnings in all)."""
    rows = conn.execute("SELECT centre, severity, warnings FROM incident_centres"
                        " WHERE incident=? ORDER BY centre", (incident,)).fetchall()
    known = [r["severity"] for r in rows if r["severity"] is not None]
    highest = max(known, key=SEVERITY_RANK.__getitem__) if known else None
    return (json.dumps([r["centre"] for r in rows]), highest,
            sum(r["warnings"] for r in rows))


def record(conn: Conn, item: ThreadItem) -> None:
    """Add one message on an incident (sent or received, receipts never) to the index."""
    incident = item.incident
    when, recorded = _t(item)
    row = conn.execute("SELECT * FROM incident_index WHERE incident=?",
                       (incident,)).fetchone()
    values: dict[str, Any] = dict(row) if row is not None else {
        "incident": incident, "messages": 0, "rejected": 0, "last_activity": recorded,
        "title": None, "title_key": None, "sitrep_title": None, "sitrep_title_key": None,
        "warnings": 0, "centres": "[]", "highest_severity": None, "actual": 0}
    values["last_activity"] = max(values["last_activity"], recorded)
    if not item.in_picture:
        values["rejected"] += 1
    else:
        values["messages"] += 1
        values["actual"] += item.mode == "actual"
        if item.title:
            key = [when, recorded, item.sender, item.id]
            if _better(key, values["title_key"]):
                values["title"], values["title_key"] = item.title, json.dumps(key)
            if item.type == SITREP and _better(key, values["sitrep_title_key"]):
                values["sitrep_title"], values["sitrep_title_key"] = item.title, json.dumps(key)
        conn.execute(_ZERO_CENTRE, (incident, item.sender))
        if item.is_report:
            _report(conn, item, item.sender)
        values["centres"], values["highest_severity"], values["warnings"] = _centres(
            conn, incident)
    conn.execute(_PUT_INDEX, values)


def record_sent(conn: Conn, m: OutgoingMessage, submitted_at: Any) -> None:
    """Index one of our messages as it is stored (``submitted_at`` a datetime)."""
    record(conn, sent_item({
        "id": m.id, "type": m.type, "created": format_time(m.created), "priority": m.priority,
        "mode": m.mode, "tlp": m.tlp, "incident": m.incident, "wire": m.wire,
        "submitted_at": format_time(submitted_at)}, []))


def record_received(conn: Conn, e: InboxEntry) -> None:
    """Index a received message as it is stored."""
    record(conn, received_item({
        "sender": e.sender, "id": e.id, "type": e.type, "priority": e.priority,
        "mode": e.mode, "tlp": e.tlp, "incident": e.incident,
        "created": None if e.created is None else format_time(e.created), "wire": e.wire,
        "received_at": format_time(e.received_at), "state": e.state, "reason": e.reason,
        "acknowledged_at": None, "acknowledged_by": None}))


def _stored_items(conn: Conn) -> Iterator[ThreadItem]:
    for row in conn.execute(
            "SELECT id, type, created, priority, mode, tlp, incident, wire, submitted_at"
            " FROM outbox WHERE incident IS NOT NULL AND type != 'receipt'"):
        yield sent_item(row, [])
    for row in conn.execute(
            "SELECT sender, id, type, priority, mode, tlp, incident, created, wire,"
            " received_at, state, reason, acknowledged_at, acknowledged_by"
            " FROM inbox WHERE incident IS NOT NULL AND type != 'receipt'"):
        yield received_item(row)


def rebuild_incident_index(conn: Conn) -> int:
    """Build the index from every stored message (schema step 4); returns how many."""
    for table in ("incident_index", "incident_centres", "incident_reports"):
        conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
    count = 0
    for item in _stored_items(conn):
        record(conn, item)
        count += 1
    return count
