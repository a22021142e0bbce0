"""JSON Schemas of every wire object, generated from the models into ``schemas/``.

``crisisgw schemas --out schemas`` rewrites the files; a test fails when they drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.protocol import reasons
from gateway.protocol.alert import Alert
from gateway.protocol.archive import ArchiveRecord, Header, Trailer
from gateway.protocol.attachments import ChunkBody
from gateway.protocol.auditlog import SignedCheckpoint
from gateway.protocol.card import Credentials, SignedCard
from gateway.protocol.commcheck import CommCheck, FallbackConfirmation
from gateway.protocol.directory import DirectoryUpdate
from gateway.protocol.envelope import Envelope, SignedMessage
from gateway.protocol.escalation import EscalationNotice
from gateway.protocol.evidence import SignedBundle
from gateway.protocol.keyupdate import KeyUpdate
from gateway.protocol.messages import (
    AlertEnvelope,
    CommCheckEnvelope,
    DirectoryEnvelope,
    EscalationEnvelope,
    FallbackEnvelope,
    KeyUpdateEnvelope,
    SitrepEnvelope,
)
from gateway.protocol.receipts import Receipt, ReceiptEnvelope
from gateway.protocol.sitrep import Sitrep
from gateway.service.submit import AlertSubmission, SitrepSubmission

BASE_ID = "https://crisisgw.eu/schemas/v1/"

WIRE_MODELS: dict[str, type[BaseModel]] = {
    "signed-message": SignedMessage,
    "envelope": Envelope,
    "sitrep-envelope": SitrepEnvelope,
    "sitrep": Sitrep,
    "alert-envelope": AlertEnvelope,
    "alert": Alert,
    "commcheck-envelope": CommCheckEnvelope,
    "commcheck": CommCheck,
    "key-update-envelope": KeyUpdateEnvelope,
    "key-update": KeyUpdate,
    "directory-envelope": DirectoryEnvelope,
    "directory": DirectoryUpdate,
    "escalation-envelope": EscalationEnvelope,
    "escalation": EscalationNotice,
    "fallback-envelope": FallbackEnvelope,
    "fallback": FallbackConfirmation,
    "chunk": ChunkBody,
    "receipt-envelope": ReceiptEnvelope,
    "receipt": Receipt,
    "api-sitrep-submission": SitrepSubmission,
    "api-alert-submission": AlertSubmission,
    "audit-checkpoint": SignedCheckpoint,
    "evidence-bundle": SignedBundle,
    "archive-header": Header,
    "archive-record": ArchiveRecord,
    "archive-trailer": Trailer,
    "identity-card": SignedCard,
    "credentials": Credentials,
}


def schema_of(name: str, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one model, as it appears on the wire."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{BASE_ID}{name}.schema.json", **schema}


def reason_code_schema() -> dict[str, Any]:
    """The closed list of reason codes (docs/PROTOCOL.md §7.5) as a schema: one ``const``
    per code, with its description and, as ``x-outcome``, whether it is answered."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{BASE_ID}reason-code.schema.json",
        "title": "ReasonCode",
        "description": "A reason code of protocol v1. 'answered' codes may be carried by a "
                       "rejected receipt; 'security' codes are recorded, never answered.",
        "type": "string",
        "oneOf": [{"const": code, "description": reasons.DESCRIPTIONS[code],
                   "x-outcome": "answered" if code in reasons.RECEIPTED else "security"}
                  for code in sorted(reasons.ALL)],
    }


def render_all() -> dict[str, str]:
    """File name -> file text for every schema."""
    schemas = {name: schema_of(name, model) for name, model in WIRE_MODELS.items()}
    schemas["reason-code"] = reason_code_schema()
    return {f"{name}.schema.json": json.dumps(schema, indent=2, sort_keys=True,
                                              ensure_ascii=False) + "\n"
            for name, schema in schemas.items()}


def write_all(out: Path) -> list[Path]:
    """Write every schema under ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render_all().items():
        path = out / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
