"""The ledger's schema, versioned: ``PRAGMA user_version`` and ordered migration steps.

A ledger file says which version its schema has; opening it runs the steps from there
to :data:`LATEST`, in one transaction on the writer's connection, before anything else
is written. A file written by an earlier release is first copied next to itself
(``ledger.sqlite3.v<N>.bak``, with SQLite's backup API): an upgrade can always be undone
by stopping the node and putting the copy back. A file from a later release is refused:
this release cannot know what its rows mean.

Steps are history: once released, a step never changes. A new table, column or
index is a new step at the end. Version 0 is "no version yet": a new, empty file, or
a ledger written before versions existed, whose tables step 1 finds in place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway.adapters.sqlite.db import private_files
from gateway.adapters.stores.audit import LEGACY_KINDS
from gateway.adapters.stores.incident_index import rebuild_incident_index
from gateway.errors import LedgerError

log = structlog.get_logger("crisisgw.ledger")

#: The tables of every release up to the first versioned one (step 1).
_V1 = """
CREATE TABLE IF NOT EXISTS outbox (
  id TEXT PRIMARY KEY, type TEXT NOT NULL, created TEXT NOT NULL, expires TEXT NOT NULL,
  priority TEXT NOT NULL, mode TEXT NOT NULL, tlp TEXT NOT NULL, incident TEXT,
  digest TEXT NOT NULL, wire BLOB NOT NULL, submitted_at TEXT NOT NULL,
  answers_sender TEXT, answers_id TEXT
);
CREATE INDEX IF NOT EXISTS outbox_answers ON outbox(answers_sender, answers_id);
CREATE INDEX IF NOT EXISTS outbox_type_time ON outbox(type, submitted_at);
CREATE TABLE IF NOT EXISTS deliveries (
  message_id TEXT NOT NULL REFERENCES outbox(id), recipient TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at TEXT, last_error TEXT,
  sent_at TEXT, delivered_at TEXT, acknowledged_at TEXT, rejected_at TEXT, expired_at TEXT,
  reason TEXT, PRIMARY KEY (message_id, recipient)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS idempotency (
  client TEXT NOT NULL, key TEXT NOT NULL, request_sha256 TEXT NOT NULL,
  message_id TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (client, key)
);
CREATE TABLE IF NOT EXISTS inbox (
  sender TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, priority TEXT NOT NULL,
  mode TEXT NOT NULL, tlp TEXT NOT NULL, incident TEXT, created TEXT, expires TEXT,
  digest TEXT NOT NULL, wire BLOB NOT NULL, received_at TEXT NOT NULL, state TEXT NOT NULL,
  reason TEXT, detail TEXT, acknowledged_at TEXT, acknowledged_by TEXT,
  PRIMARY KEY (sender, id)
);
CREATE INDEX IF NOT EXISTS inbox_received ON inbox(received_at);
CREATE INDEX IF NOT EXISTS inbox_id ON inbox(id);
CREATE TABLE IF NOT EXISTS receipts_in (
  issuer TEXT NOT NULL, id TEXT NOT NULL, message_id TEXT NOT NULL, state TEXT NOT NULL,
  reason TEXT, at TEXT NOT NULL, message_sha256 TEXT NOT NULL, wire BLOB NOT NULL,
  received_at TEXT NOT NULL, PRIMARY KEY (issuer, id)
);
CREATE INDEX IF NOT EXISTS receipts_in_message ON receipts_in(message_id);
CREATE TABLE IF NOT EXISTS directory (
  centre TEXT PRIMARY KEY, created TEXT NOT NULL, message_id TEXT NOT NULL,
  entries TEXT NOT NULL, received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS security_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, reason TEXT NOT NULL,
  detail TEXT NOT NULL, claimed_sender TEXT, claimed_id TEXT, amqp_user TEXT,
  payload_sha256 TEXT NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS security_by_publisher ON security_events(amqp_user, at);
CREATE TABLE IF NOT EXISTS security_suppressed (
  publisher TEXT NOT NULL, day TEXT NOT NULL, reason TEXT NOT NULL,
  count INTEGER NOT NULL, bytes INTEGER NOT NULL, last_at TEXT NOT NULL,
  last_sha256 TEXT NOT NULL, PRIMARY KEY (publisher, day, reason)
);
CREATE TABLE IF NOT EXISTS console_sessions (
  token_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
  expires REAL NOT NULL, lang TEXT NOT NULL, tag TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,
  subject TEXT NOT NULL, content BLOB NOT NULL, content_sha256 TEXT NOT NULL,
  prev TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log(subject);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, head TEXT NOT NULL, wire BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox(incident);
CREATE INDEX IF NOT EXISTS inbox_incident ON inbox(incident);
"""

def _statements(script: str) -> list[str]:
    return [s for s in (part.strip() for part in script.split(";")) if s]


def _v1(conn: sqlite3.Connection) -> None:
    for statement in _statements(_V1):  # not executescript: it would commit
        conn.execute(statement)


def _v2(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE INDEX IF NOT EXISTS audit_log_kind ON audit_log(kind, seq)")
    conn.executemany("UPDATE audit_log SET kind = ? WHERE kind = ?",
                     [(new, old) for old, new in LEGACY_KINDS.items()])


_V3 = """
CREATE TABLE IF NOT EXISTS peer_keys (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, peer TEXT NOT NULL, kid TEXT NOT NULL,
  public_key TEXT NOT NULL, not_before TEXT, not_after TEXT,
  revoked INTEGER NOT NULL DEFAULT 0, unpinned INTEGER NOT NULL DEFAULT 0,
  source TEXT NOT NULL, changed_at TEXT NOT NULL, UNIQUE (peer, kid)
);
CREATE TABLE IF NOT EXISTS own_keys (
  kid TEXT PRIMARY KEY, file TEXT NOT NULL, public_key TEXT NOT NULL,
  current INTEGER NOT NULL, created TEXT NOT NULL, announced_in TEXT, retired_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS own_keys_one_current ON own_keys(current) WHERE current = 1;
"""


def _v3(conn: sqlite3.Connection) -> None:
    for statement in _statements(_V3):
        conn.execute(statement)


_V4 = """
ALTER TABLE deliveries ADD COLUMN receipt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN priority TEXT;
ALTER TABLE deliveries ADD COLUMN created TEXT;
ALTER TABLE deliveries ADD COLUMN expires TEXT;
ALTER TABLE deliveries ADD COLUMN submitted_at TEXT;
UPDATE deliveries SET (receipt, priority, created, expires, submitted_at) = (
  SELECT o.type = 'receipt', o.priority, o.created, o.expires, o.submitted_at
  FROM outbox o WHERE o.id = deliveries.message_id);
DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX deliveries_peer_due ON deliveries(recipient, priority, next_attempt_at)
  WHERE state = 'queued';
CREATE INDEX deliveries_expiry ON deliveries(expires) WHERE state = 'queued';
CREATE INDEX deliveries_unacked ON deliveries(priority, created)
  WHERE receipt = 0 AND state IN ('queued', 'sent', 'delivered');
CREATE INDEX deliveries_state_time ON deliveries(receipt, state, submitted_at, message_id);
CREATE INDEX deliveries_peer_state ON deliveries(receipt, recipient, state, submitted_at,
  message_id);
CREATE INDEX deliveries_peer_time ON deliveries(receipt, recipient, submitted_at, message_id);
CREATE TABLE delivery_counts (
  recipient TEXT NOT NULL, receipt INTEGER NOT NULL, state TEXT NOT NULL,
  n INTEGER NOT NULL, PRIMARY KEY (recipient, receipt, state)
) WITHOUT ROWID;
INSERT INTO delivery_counts
  SELECT recipient, receipt, state, COUNT(*) FROM deliveries GROUP BY 1, 2, 3;
CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters VALUES ('inbox', (SELECT COUNT(*) FROM inbox));
INSERT INTO counters SELECT 'unacknowledged_out:' || priority, COUNT(*) FROM deliveries
  WHERE receipt = 0 AND state IN ('queued', 'sent', 'delivered') GROUP BY priority;
INSERT INTO counters SELECT 'unacknowledged_in:' || priority, COUNT(*) FROM inbox
  WHERE state = 'delivered' GROUP BY priority;
INSERT INTO counters VALUES ('security_events', (SELECT COUNT(*) FROM security_events)
  + (SELECT COALESCE(SUM(count), 0) FROM security_suppressed));
DROP INDEX IF EXISTS outbox_type_time;
DROP INDEX IF EXISTS outbox_incident;
CREATE INDEX outbox_listed ON outbox(submitted_at, id) WHERE type != 'receipt';
CREATE INDEX outbox_type_listed ON outbox(type, submitted_at, id);
CREATE INDEX outbox_incident_listed ON outbox(incident, submitted_at, id);
DROP INDEX IF EXISTS inbox_received;
DROP INDEX IF EXISTS inbox_incident;
CREATE INDEX inbox_listed ON inbox(received_at, sender, id);
CREATE INDEX inbox_sender_listed ON inbox(sender, received_at, id);
CREATE INDEX inbox_type_listed ON inbox(type, received_at, sender, id);
CREATE INDEX inbox_incident_listed ON inbox(incident, received_at, sender, id);
CREATE INDEX inbox_state_listed ON inbox(state, received_at, sender, id);
CREATE INDEX inbox_priority_listed ON inbox(priority, received_at, sender, id);
CREATE INDEX inbox_unacked ON inbox(priority, received_at) WHERE state = 'delivered';
CREATE TABLE incident_index (
  incident TEXT PRIMARY KEY, messages INTEGER NOT NULL, rejected INTEGER NOT NULL,
  last_activity TEXT NOT NULL, title TEXT, title_key TEXT, sitrep_title TEXT,
  sitrep_title_key TEXT, warnings INTEGER NOT NULL, centres TEXT NOT NULL,
  highest_severity TEXT
) WITHOUT ROWID;
CREATE INDEX incident_index_activity ON incident_index(last_activity DESC, incident);
CREATE TABLE incident_centres (
  incident TEXT NOT NULL, centre TEXT NOT NULL, latest_key TEXT, severity TEXT,
  highest INTEGER NOT NULL, numbers INTEGER NOT NULL, duplicates INTEGER NOT NULL,
  superseded_unknown INTEGER NOT NULL, warnings INTEGER NOT NULL,
  PRIMARY KEY (incident, centre)
) WITHOUT ROWID;
CREATE TABLE incident_reports (
  incident TEXT NOT NULL, centre TEXT NOT NULL, message_id TEXT NOT NULL,
  report_number INTEGER NOT NULL, purpose TEXT, supersedes INTEGER, at TEXT NOT NULL,
  recorded_at TEXT NOT NULL, PRIMARY KEY (incident, centre, message_id)
) WITHOUT ROWID;
CREATE INDEX incident_reports_number ON incident_reports(incident, centre, report_number);
CREATE INDEX incident_reports_supersedes ON incident_reports(incident, centre, supersedes)
  WHERE supersedes IS NOT NULL;
CREATE INDEX incident_reports_at ON incident_reports(incident, centre, at);
DROP INDEX IF EXISTS audit_log_subject;
CREATE INDEX audit_log_subject_seq ON audit_log(subject, seq);
CREATE INDEX incident_reports_final ON incident_reports(incident, centre, report_number, at,
  recorded_at, message_id) WHERE purpose = 'final'
"""


def _v4(conn: sqlite3.Connection) -> None:
    for statement in _statements(_V4):
        conn.execute(statement)
    _add_actual(conn)  # the index is rebuilt with today's code, which keeps step 6's column
    factory, conn.row_factory = conn.row_factory, sqlite3.Row
    try:
        rebuild_incident_index(conn)
    finally:
        conn.row_factory = factory


def _add_actual(conn: sqlite3.Connection) -> None:
    """Step 6's column of the incident index, unless an earlier step added it."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(incident_index)")}
    if "actual" not in columns:
        conn.execute("ALTER TABLE incident_index ADD COLUMN actual INTEGER NOT NULL DEFAULT 0")


_V5 = """
CREATE TABLE archives (
  n INTEGER PRIMARY KEY, file TEXT NOT NULL UNIQUE, month TEXT NOT NULL,
  first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, prev TEXT NOT NULL,
  head TEXT NOT NULL, bytes INTEGER NOT NULL, created_at TEXT NOT NULL, state TEXT NOT NULL
);
CREATE TABLE dedup (
  sender TEXT NOT NULL, id TEXT NOT NULL, digest TEXT NOT NULL, state TEXT NOT NULL,
  forget_after TEXT NOT NULL, PRIMARY KEY (sender, id)
) WITHOUT ROWID;
CREATE INDEX dedup_forget ON dedup(forget_after)
"""


def _v5(conn: sqlite3.Connection) -> None:
    for statement in _statements(_V5):
        conn.execute(statement)


_V6 = """
ALTER TABLE deliveries ADD COLUMN actual INTEGER NOT NULL DEFAULT 1;
UPDATE deliveries SET actual = 0 WHERE message_id IN (
  SELECT id FROM outbox WHERE mode != 'actual');
DROP INDEX IF EXISTS deliveries_unacked;
CREATE INDEX deliveries_unacked ON deliveries(priority, created)
  WHERE receipt = 0 AND actual = 1 AND state IN ('queued', 'sent', 'delivered');
CREATE INDEX inbox_unacked_actual ON inbox(priority, received_at)
  WHERE state = 'delivered' AND mode = 'actual';
DELETE FROM counters WHERE name LIKE 'unacknowledged_%';
INSERT INTO counters SELECT 'unacknowledged_out:' || priority, COUNT(*) FROM deliveries
  WHERE receipt = 0 AND actual = 1 AND state IN ('queued', 'sent', 'delivered')
  GROUP BY priority;
INSERT INTO counters SELECT 'unacknowledged_in:' || priority, COUNT(*) FROM inbox
  WHERE state = 'delivered' AND mode = 'actual' GROUP BY priority;
UPDATE incident_index SET actual =
  (SELECT COUNT(*) FROM outbox o WHERE o.incident = incident_index.incident
     AND o.type != 'receipt' AND o.mode = 'actual')
  + (SELECT COUNT(*) FROM inbox i WHERE i.incident = incident_index.incident
     AND i.type != 'receipt' AND i.state != 'rejected' AND i.mode = 'actual')
"""


def _v6(conn: sqlite3.Connection) -> None:
    _add_actual(conn)
    for statement in _statements(_V6):
        conn.execute(statement)


#: Step 7 (both engines): what several instances of one node share besides the data:
#: who runs the periodic jobs, and the failed console logins that throttle the next ones.
JOB_LEASES = """
CREATE TABLE job_leases (
  name TEXT PRIMARY KEY, holder TEXT NOT NULL, until TEXT NOT NULL
)
"""
LOGIN_FAILURES = """
CREATE TABLE login_failures (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, remote TEXT NOT NULL,
  name TEXT NOT NULL, cleared INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX login_failures_remote ON login_failures(remote, at);
CREATE INDEX login_failures_account ON login_failures(name, cleared, at);
CREATE INDEX login_failures_at ON login_failures(at)
"""


def _v7(conn: sqlite3.Connection) -> None:
    conn.execute(JOB_LEASES)
    for statement in _statements(LOGIN_FAILURES):
        conn.execute(statement)


#: Step 8 (both engines): exercise and test traffic kept apart. The inbox and outbox are
#: listed by mode (``?mode=``, and the count of recent exercise traffic behind the
#: console's EXERCISE banner); the incident board reads real incidents and exercises
#: (no actual message) each on its own index.
EXERCISE_APART = """
CREATE INDEX inbox_mode_listed ON inbox(mode, received_at, sender, id)
  WHERE type != 'receipt';
CREATE INDEX outbox_mode_listed ON outbox(mode, submitted_at, id) WHERE type != 'receipt';
CREATE INDEX incident_index_real ON incident_index(last_activity DESC, incident)
  WHERE actual > 0 OR messages = 0;
CREATE INDEX incident_index_exercise ON incident_index(last_activity DESC, incident)
  WHERE actual = 0 AND messages > 0
"""


def _v8(conn: sqlite3.Connection) -> None:
    for statement in _statements(EXERCISE_APART):
        conn.execute(statement)


@dataclass(frozen=True, slots=True)
class Step:
    """One migration: from ``version - 1`` to ``version``."""

    version: int
    summary: str
    run: Callable[[sqlite3.Connection], None]


STEPS = (
    Step(1, "the tables of the releases before versions", _v1),
    Step(2, "audit kinds named noun.verb; an index on kind", _v2),
    Step(3, "learned peer keys and our own rotation history, out of gateway.toml", _v3),
    Step(4, "flat cost with history: counters, an incident index, list and due-time "
            "indexes", _v4),
    Step(5, "retention: the archive files that hold the history moved out, and the ids "
            "of archived messages still inside the dedup window", _v5),
    Step(6, "exercise and test traffic kept out of the unacknowledged and overdue "
            "counts; the incident index counts actual messages", _v6),
    Step(7, "several instances of one node: a lease per periodic job, and failed logins "
            "shared", _v7),
    Step(8, "exercise traffic kept apart: inbox and outbox listed by mode, the incident "
            "board split into real incidents and exercises", _v8),
)
LATEST = STEPS[-1].version


def version_of(conn: sqlite3.Connection) -> int:
    """The schema version a ledger file says it has."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                        "'sqlite_%' LIMIT 1").fetchone() is not None


def _backup(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    target = path.with_name(f"{path.name}.v{version}.bak")
    private_files(target)
    copy = sqlite3.connect(target)
    try:
        conn.backup(copy)
    finally:
        copy.close()
    return target


def migrate(conn: sqlite3.Connection, path: Path | None = None) -> int:
    """Bring the ledger on ``conn`` to :data:`LATEST`; returns the version it had.

    With ``path`` (the file), a ledger that held data is first copied beside it. Raises
    :class:`LedgerError` for a ledger from a later release; a failing step leaves the
    file as it was.
    """
    found = version_of(conn)
    if found > LATEST:
        raise LedgerError(f"ledger {path or ''} has schema version {found}; this release "
                          f"knows versions up to {LATEST}: run the release that wrote it")
    if found == LATEST:
        return found
    if path is not None and _has_tables(conn):
        copy = _backup(conn, path, found)
        log.warning("ledger_backed_up", version=found, copy=str(copy))
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in STEPS[found:]:
            step.run(conn)
            log.info("ledger_migrated", version=step.version, summary=step.summary)
        conn.execute(f"PRAGMA user_version = {LATEST}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
