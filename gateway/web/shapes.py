"""The JSON shapes in which the API and the console show the ledger's records, and the
lookup of a stored message that both use.

The stores return typed records (:mod:`gateway.service.records`); these functions give
them the shapes documented in the OpenAPI document and used by the templates.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from gateway.formats.geo import MAX_FEATURES, Feature, alert_features, sitrep_features
from gateway.protocol.alert import Alert
from gateway.protocol.canonical import canonical_bytes
from gateway.protocol.sitrep import Sitrep
from gateway.protocol.types import format_time
from gateway.service.node import NodeApi
from gateway.service.records import (
    AuditEntry,
    InboxEntry,
    OutgoingView,
    SecurityEventView,
    StoredDirectory,
    StoredReceipt,
    SuppressedCount,
    signed_parts,
)

#: CAP alerts of an incident drawn on its map (the latest).
MAP_ALERTS = 10

def message_json(view: OutgoingView) -> dict[str, Any]:
    """One of our messages with its recipients (``GET /v1/messages/{id}``)."""
    envelope, signature = signed_parts(view.wire)
    return {
        "id": view.id, "type": view.type, "incident": view.incident,
        "priority": view.priority, "mode": view.mode, "tlp": view.tlp,
        "created": view.created, "expires": view.expires, "submitted_at": view.submitted_at,
        "sha256": view.sha256, "envelope": envelope, "signature": signature,
        "recipients": [asdict(r) for r in view.recipients],
    }


def receipt_json(receipt: StoredReceipt) -> dict[str, Any]:
    """A signed receipt a peer sent, with the signed object itself."""
    envelope, signature = signed_parts(receipt.wire)
    return {"issuer": receipt.issuer, "id": receipt.id, "state": receipt.state,
            "reason": receipt.reason, "at": receipt.at, "received_at": receipt.received_at,
            "signed": {"envelope": envelope, "signature": signature}}


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """An audit-log entry; ``action``, ``target`` and ``detail`` are the names of the
    operator-action log this log replaced."""
    detail = entry.data.get("detail", "")
    return {"seq": entry.seq, "at": entry.at, "kind": entry.kind, "actor": entry.actor,
            "subject": entry.subject, "data": dict(entry.data), "hash": entry.hash,
            "action": entry.kind, "target": entry.subject,
            "detail": detail if isinstance(detail, str) else ""}


def security_json(event: SecurityEventView | SuppressedCount) -> dict[str, Any]:
    """A security event (without payload), or a count of suppressed ones."""
    return asdict(event)


def directory_json(stored: StoredDirectory) -> dict[str, Any]:
    """A centre's contact points as received."""
    return {"created": stored.created, "received_at": stored.received_at,
            "message_id": stored.message_id,
            "entries": [e.model_dump(mode="json") for e in stored.entries]}


def inbox_view(entry: InboxEntry) -> dict[str, Any]:
    """An incoming message as the API shows it."""
    signed = json.loads(entry.wire)
    envelope = signed.get("envelope", {})
    return {
        "id": entry.id, "from": entry.sender, "type": entry.type, "priority": entry.priority,
        "mode": entry.mode, "tlp": entry.tlp, "incident": entry.incident,
        "created": envelope.get("created"), "expires": envelope.get("expires"),
        "received_at": format_time(entry.received_at), "state": entry.state,
        "reason": entry.reason, "detail": entry.detail,
        "acknowledged_at": entry.acknowledged_at and format_time(entry.acknowledged_at),
        "acknowledged_by": entry.acknowledged_by, "sha256": entry.digest,
        "body": envelope.get("body"), "envelope": envelope, "signature": signed.get("signature"),
    }


async def stored_message(node: NodeApi, message_id: str) -> tuple[
        str, dict[str, Any], bytes, list[dict[str, Any]]] | None:
    """(direction, view, signed wire bytes, receipts) of one of our messages or of an
    incoming one; None when there is no such message."""
    stored = await node.ledger.outbox.get(message_id)
    if stored is not None:
        view = message_json(stored)
        wire = canonical_bytes({"envelope": view["envelope"], "signature": view["signature"]})
        return "out", view, wire, [receipt_json(r) for r in
                                   await node.ledger.receipts.for_message(message_id)]
    entries = [e for e in await node.ledger.inbox.find(message_id) if e.type != "receipt"]
    if not entries:
        return None
    return "in", inbox_view(entries[0]), entries[0].wire, []


def view_features(view: dict[str, Any], direction: str) -> list[Feature]:
    """Where a stored message (``stored_message``'s view) applies, as GeoJSON features
    labelled with who sent it, its priority and mode; only a body that validates is
    drawn."""
    envelope = view.get("envelope") if isinstance(view.get("envelope"), dict) else {}
    body = envelope.get("body") if envelope else None
    props = {"id": view["id"], "centre": envelope.get("from") if envelope else None,
             "type": view["type"], "priority": view["priority"], "mode": view["mode"],
             "direction": direction}
    if view["type"] == "sitrep":
        try:
            return sitrep_features(Sitrep.model_validate(body), props)
        except ValidationError:
            return []
    if view["type"] == "alert":
        try:
            return alert_features(Alert.model_validate(body), props)
        except ValidationError:
            return []
    return []


async def incident_features(node: NodeApi, thread: dict[str, Any]) -> list[Feature]:
    """The incident's map: every centre's latest sitrep area, and the areas of its
    latest CAP alerts (:data:`MAP_ALERTS` actual ones and as many exercise or test ones
    at most, so that an exercise never pushes a real alert off the map)."""
    ids = [c["message_id"] for c in thread.get("centres", [])]
    alerts = [t for t in thread.get("timeline", []) if t.get("type") == "alert"]
    for real in (True, False):
        ids += [t["id"] for t in alerts if (t.get("mode") in (None, "actual")) is real
                ][-MAP_ALERTS:]
    features: list[Feature] = []
    for message_id in dict.fromkeys(ids):
        found = await stored_message(node, message_id)
        if found is not None:
            features += view_features(found[1], found[0])
    return features[:MAX_FEATURES]
