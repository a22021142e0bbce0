"""Schemathesis against a real node's own /v1/openapi.json (one node process on the real
RabbitMQ, its own vhosts): every operation, with schema-valid (positive) and
schema-violating (negative) requests. No request may give a 5xx; every response must be
documented (status code, content type, response schema); every 4xx is problem+json with a
title and a detail."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.common import byte_mutation, fuzz_settings, record, total
from tests.fuzz.test_fuzz_cap import DOCUMENTS, tree_mutation
from tests.integration.harness import Federation

pytestmark = pytest.mark.broker

CENTRE = "BE-NCCN"
PEER = "NL-NCC"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
AnyCase = Case[Any]
#: Examples per operation and generation mode in CI (x the budget multiplier).
PER_OPERATION = 80
SLOW_OPERATIONS = frozenset({"POST /v1/commchecks", "POST /v1/keys/rotate",
                             "POST /v1/directory/publish"})


@dataclass
class Api:
    """A running node's API: base URL, bearer header and one HTTP session."""

    base_url: str
    headers: dict[str, str]
    session: requests.Session


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One node (BE-NCCN) of a fresh federation, its peers provisioned but not running."""
    fed = Federation.create(Path(tmp_path_factory.mktemp("fuzz-api")))
    try:
        fed.start(CENTRE)
        asyncio.run(fed.wait_ready())
        node = fed.nodes[CENTRE]
        with requests.Session() as session:
            yield Api(f"http://127.0.0.1:{node.port}",
                      {"Authorization": f"Bearer {node.token}"}, session)
    finally:
        fed.destroy()


def _problem_check(response: Response) -> None:
    """A 4xx is application/problem+json with a non-empty title and detail."""
    if not 400 <= response.status_code < 500:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/problem+json"), (
        f"{response.status_code} with content type {content_type!r}")
    body = json.loads(response.content or b"null")
    assert isinstance(body, dict), body
    assert str(body.get("title", "")).strip(), body
    assert str(body.get("detail", "")).strip(), body
    assert body.get("status") == response.status_code, body


def _routable(case: AnyCase) -> AnyCase:
    """Half of the submissions go to a real peer without a (random, likely past) expiry,
    so that the whole submit path (policy, signing, ledger, dispatch) is fuzzed too."""
    if isinstance(case.body, dict) and len(json.dumps(case.body, default=str)) % 2:
        case.body["to"] = [PEER]
        case.body.pop("expires", None)
    return case


def _fuzz_operation(api: Api, strategy: SearchStrategy[AnyCase], mode: str, examples: int) -> None:
    @fuzz_settings(ci=examples)
    @given(case=strategy)
    def run(case: AnyCase) -> None:
        response = case.call(base_url=api.base_url, session=api.session, headers=api.headers,
                             timeout=30)
        record(f"api.{mode}", f"{response.status_code}")
        case.validate_response(response, checks=CHECKS, headers=api.headers)
        _problem_check(response)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])
def test_every_operation_survives_generated_requests(api: Api, mode: GenerationMode) -> None:
    """Generated requests to every documented operation never give a 5xx, stay within
    the documented responses, and every 4xx is a problem+json with title and detail."""
    schema = schemathesis.openapi.from_url(f"{api.base_url}/v1/openapi.json",
                                           headers=api.headers, timeout=30)
    label = f"api.{mode.value}"
    before, start = total(label), time.monotonic()
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document is invalid: {result}"
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        if mode is GenerationMode.NEGATIVE and not any(
                len(part) for part in (operation.path_parameters, operation.headers,
                                       operation.cookies, operation.query, operation.body)):
            continue  # nothing to make invalid (/healthz, /readyz, /metrics)
        strategy = operation.as_strategy(generation_mode=mode)
        if operation.method.upper() == "POST" and operation.path in ("/v1/sitreps",
                                                                      "/v1/alerts"):
            strategy = strategy.map(_routable)
        # each of these starts a test, rotates our key or broadcasts to every peer
        examples = 5 if name in SLOW_OPERATIONS else PER_OPERATION
        try:
            _fuzz_operation(api, strategy, mode.value, examples)
        except Exception as exc:  # noqa: BLE001 - collected, reported together below
            failures.append(f"{name}: {str(exc).strip()[:2000]}")
        operations += 1
    sent = total(label) - before
    print(f"\nschemathesis {mode.value}: {sent} requests to {operations} operations "
          f"in {time.monotonic() - start:.1f}s")
    assert not failures, "\n\n".join(failures)
    assert operations >= 15
    assert sent >= operations


@fuzz_settings(ci=600)
@given(doc=tree_mutation() | st.sampled_from(DOCUMENTS).flatmap(byte_mutation),
       to=st.sampled_from([PEER, "", "NL-NCC,LU-HCPN", "nobody"]),
       media=st.sampled_from(["application/cap+xml", "application/xml"]))
def test_cap_xml_over_http_never_gives_a_5xx(api: Api, doc: bytes, to: str, media: str) -> None:
    """Mutated CAP 1.2 documents POSTed to /v1/alerts as XML are accepted (202) or
    refused with a problem+json 4xx naming the reason; never a 5xx."""
    response = api.session.post(f"{api.base_url}/v1/alerts", params={"to": to}, data=doc,
                                headers={**api.headers, "Content-Type": media}, timeout=30)
    record("api.cap-xml", f"{response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert body["title"].strip()
        assert body["detail"].strip()
    else:
        assert response.status_code == 202, response.text
