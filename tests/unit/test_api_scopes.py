"""API authorisation: every route is documented, and each needs the right scope."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from gateway.config import DEFAULT_SCOPES, ApiSection
from gateway.web.api import ROUTES, required_scope
from gateway.web.openapi import openapi_document


def test_every_route_is_in_the_openapi_document() -> None:
    """So that the Schemathesis run reaches every route (keys, revoke, directory...)."""
    paths = openapi_document()["paths"]
    for method, path, _ in ROUTES:
        documented = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)
        assert documented in paths, path
        assert method.lower() in paths[documented], f"{method} {path}"


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("GET", "/v1/messages", "read"), ("GET", "/v1/audit", "read"),
    ("POST", "/v1/sitreps", "submit"), ("POST", "/v1/alerts", "submit"),
    ("POST", "/v1/commchecks", "submit"),
    ("POST", "/v1/messages/6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f/ack", "acknowledge"),
    ("POST", "/v1/keys/rotate", "admin"), ("POST", "/v1/directory/publish", "admin"),
    ("POST", "/v1/peers/NL-NCC/keys/NL-NCC.k1/revoke", "admin"),
    ("POST", "/v1/anything-new", "admin"), ("DELETE", "/v1/messages", "admin"),
])
def test_each_route_needs_its_scope(method: str, path: str, scope: str) -> None:
    """GETs read; submissions submit; acknowledgements acknowledge; the rest is admin."""
    assert required_scope(method, path) == scope


def test_every_post_route_has_a_deliberate_scope() -> None:
    """No POST route falls to admin by accident: the admin ones are these three."""
    admin = {p for m, p, _ in ROUTES if m == "POST" and required_scope(m, p) == "admin"}
    assert admin == {"/v1/directory/publish", "/v1/keys/rotate",
                     "/v1/peers/{id}/keys/{kid}/revoke"}


def test_a_bare_token_hash_never_has_admin() -> None:
    """Older configurations (a bare hash) keep read, submit and acknowledge only."""
    api = ApiSection(tokens={"legacy": "ab" * 32, "ops": {"sha256": "cd" * 32,
                                                          "scopes": ["admin", "read"]}})
    scopes = {client: s for client, _, s in api.token_hashes()}
    assert scopes["legacy"] == DEFAULT_SCOPES
    assert "admin" not in scopes["legacy"]
    assert scopes["ops"] == {"admin", "read"}
    with pytest.raises(ValidationError):
        ApiSection(tokens={"x": {"sha256": "ab" * 32, "scopes": ["root"]}})
    with pytest.raises(ValidationError):
        ApiSection(tokens={"x": {"sha256": "ab" * 32, "scopes": []}})
