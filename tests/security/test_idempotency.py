"""An Idempotency-Key binds the whole request (finding 10): a CAP XML replay with other
recipients in the query is refused, not answered with the first message."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import Federation

pytestmark = pytest.mark.broker
CAP = Path(__file__).resolve().parents[1] / "assets" / "cap" / "oasis-appendix-a2.xml"


async def _post(fed: Federation, query: str, key: str, content_type: str = "application/cap+xml"
                ) -> tuple[int, dict[str, str], str]:
    node = fed.nodes["BE-NCCN"]
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{node.port}/v1/alerts?{query}", data=CAP.read_bytes(),
            headers={"Authorization": f"Bearer {node.token}", "Content-Type": content_type,
                     "Idempotency-Key": key}) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_the_key_covers_the_query_and_the_media_type(federation: Federation) -> None:
    """Same key and body: the same query replays; another `to`, `tlp` or media type is a
    422 that says why."""
    await federation.wait_ready()
    key = f"sec-{uuid.uuid4().hex}"
    status, _, first = await _post(federation, "to=NL-NCC&tlp=AMBER", key)
    assert status == 202, first
    status, headers, again = await _post(federation, "tlp=AMBER&to=NL-NCC", key)
    assert status == 202
    assert headers.get("Idempotent-Replayed") == "true"
    assert again == first
    for query, media in (("to=LU-HCPN&tlp=AMBER", "application/cap+xml"),
                         ("to=NL-NCC&tlp=RED", "application/cap+xml"),
                         ("to=NL-NCC&tlp=AMBER", "application/xml")):
        status, headers, text = await _post(federation, query, key, media)
        assert status == 422, (query, media, text)
        assert "different request" in text
        assert headers["Content-Type"].startswith("application/problem+json")
