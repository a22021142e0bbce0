"""Another centre's node, reached through its HTTP API with an exercise token
(``[[exercise.centres]]``): what the exercise player submits injects through and the
after-action report reads delivery, reading and acknowledgement times from.

Failures come back as :class:`GatewayError` with a short reason; the token is read
from its file at each call and never logged.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp

from gateway.config_exercise import ExerciseCentre
from gateway.errors import GatewayError

TIMEOUT = aiohttp.ClientTimeout(total=15)


class RemoteApi:
    """One centre's API."""

    def __init__(self, centre: ExerciseCentre) -> None:
        self._c = centre

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        token = self._c.token_file.read_text(encoding="utf-8").strip()
        return {"Authorization": f"Bearer {token}", "User-Agent": "crisisgw-exercise",
                **(extra or {})}

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._c.ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self._c.ca_file))

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> Any:
        """The JSON answer of ``method path``; :class:`GatewayError` unless 2xx."""
        url = self._c.api_url.rstrip("/") + path
        try:
            hdrs = self._headers(headers)
            async with aiohttp.ClientSession(timeout=TIMEOUT) as http, http.request(
                    method, url, json=body, headers=hdrs, ssl=self._ssl()) as resp:
                text = await resp.text()
                if resp.status // 100 != 2:
                    try:
                        detail = json.loads(text).get("detail", "")
                    except (ValueError, AttributeError):
                        detail = text[:200]
                    raise GatewayError(f"{self._c.id}: HTTP {resp.status} {str(detail)[:300]}")
                return json.loads(text) if text else None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise GatewayError(f"{self._c.id}: {type(exc).__name__}: {str(exc)[:200]}") from exc
