"""Fill a running demo federation with one of everything a ledger holds (see README.md).

    python tests/assets/ledgers/make_v1.py --dir DEMO_DIR --base-port PORT

Only the HTTP API, the console and one AMQP publish are used, so the script works on any
release that has them. It sends, from NL-NCC's point of view: a sitrep and an alert to
it (with an Idempotency-Key), a sitrep from it, an acknowledgement, a communication test,
a console login, a garbage message in its inbox (a security event), and waits for the
receipts. The ledger of NL-NCC is then copied by hand after the demo stops.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import ssl
import sys
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from gateway.config import load_settings

CENTRES = ("BE-NCCN", "NL-NCC", "LU-HCPN", "DE-NW")
CA = Path("/etc/rabbitmq/crisisgw-tls/ca.pem")
CAP = Path(__file__).resolve().parents[1] / "cap" / "oasis-appendix-a2.xml"


def _sitrep(incident: str, number: int, summary: str) -> dict[str, Any]:
    return {"incident": {"id": incident, "title": "Flooding of the Meuse"},
            "report_number": number, "severity": "severe", "summary": summary}


async def _wait_delivered(http: aiohttp.ClientSession, base: str, token: str,
                          message_id: str) -> None:
    for _ in range(100):
        async with http.get(f"{base}/v1/messages/{message_id}",
                            headers={"Authorization": f"Bearer {token}"}) as resp:
            data = await resp.json()
        if all(r["state"] in ("delivered", "acknowledged") for r in data["recipients"]):
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"{message_id} was not delivered: {data}")


async def main() -> None:
    """Send the traffic."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--base-port", type=int, required=True)
    args = parser.parse_args()
    url = {c: f"http://127.0.0.1:{args.base_port + i}" for i, c in enumerate(CENTRES)}
    token = {c: (args.dir / c / "api-token").read_text().strip() for c in CENTRES}

    def auth(c: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token[c]}"}

    async with aiohttp.ClientSession() as http:
        async with http.post(url["BE-NCCN"] + "/v1/sitreps", headers={
                **auth("BE-NCCN"), "Idempotency-Key": "asset-1"}, json={
                "to": ["NL-NCC", "LU-HCPN"], "tlp": "GREEN",
                "sitrep": _sitrep("BE-2026-0001", 1, "Water levels rising at Liège.")}) as r:
            be_sitrep = (await r.json())["id"]
        async with http.post(url["LU-HCPN"] + "/v1/alerts?to=NL-NCC", headers={
                **auth("LU-HCPN"), "Content-Type": "application/cap+xml"},
                data=CAP.read_bytes()) as r:
            lu_alert = (await r.json())["id"]
        async with http.post(url["NL-NCC"] + "/v1/sitreps", headers=auth("NL-NCC"), json={
                "to": ["BE-NCCN", "DE-NW"], "tlp": "AMBER", "priority": "urgent",
                "sitrep": _sitrep("BE-2026-0001", 1, "Dikes in Limburg hold.")}) as r:
            nl_sitrep = (await r.json())["id"]
        await _wait_delivered(http, url["BE-NCCN"], token["BE-NCCN"], be_sitrep)
        await _wait_delivered(http, url["LU-HCPN"], token["LU-HCPN"], lu_alert)
        await _wait_delivered(http, url["NL-NCC"], token["NL-NCC"], nl_sitrep)
        async with http.post(url["NL-NCC"] + f"/v1/messages/{be_sitrep}/ack",
                             headers=auth("NL-NCC")) as r:
            assert r.status < 300, await r.text()
        async with http.post(url["NL-NCC"] + "/v1/commchecks", headers=auth("NL-NCC"),
                             json={}) as r:
            assert r.status < 300, await r.text()
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as console:
            async with console.get(url["NL-NCC"] + "/console/login") as r:
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', await r.text())
            assert csrf is not None
            password = (args.dir / "NL-NCC" / "operator-password").read_text().strip()
            form = {"name": "operator", "password": password, "csrf_token": csrf.group(1)}
            async with console.post(url["NL-NCC"] + "/console/login", data=form,
                                    allow_redirects=False) as r:
                print("console login", r.status, file=sys.stderr)

    lu = load_settings(args.dir / "LU-HCPN" / "gateway.toml")
    peer = lu.peer("NL-NCC")
    assert peer is not None
    inbox = peer.inbox_url.get_secret_value()
    ctx = ssl.create_default_context(cadata=CA.read_text()) if inbox.startswith("amqps") \
        else None
    conn = await aio_pika.connect(inbox, ssl_context=ctx)
    async with conn:
        channel = await conn.channel()
        exchange = await channel.get_exchange("crisisgw.inbox", ensure=False)
        await exchange.publish(aio_pika.Message(b'{"not": "a signed message"'),
                               routing_key="NL-NCC")
    await asyncio.sleep(3)  # the receipts of the ack and of the test, the security event
    print("sent", be_sitrep, lu_alert, nl_sitrep, file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
