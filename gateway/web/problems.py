"""RFC 9457 problem details and the middleware that turns every error into one.

The one place where errors get HTTP statuses: services raise errors named after what
happened (:mod:`gateway.errors`), and :data:`STATUS` says what each means over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from gateway.errors import (
    Ambiguous,
    IdempotencyConflict,
    InvalidBody,
    InvalidRequest,
    LedgerError,
    MalformedInput,
    NoSuchForm,
    NotFound,
    PolicyRefused,
    RequestRefused,
    StateConflict,
    XmlError,
)

log = structlog.get_logger("crisisgw.web")
PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "https://crisisgw.eu/problems/"


class UnsupportedMediaType(RequestRefused):
    """The body is not of a media type the route takes."""


class PayloadTooLarge(RequestRefused):
    """The body is larger than the route's limit."""


class RequestTimeout(RequestRefused):
    """The body did not arrive in time."""


#: The HTTP status of each refusal (the most specific class listed wins).
STATUS: dict[type[RequestRefused], int] = {
    InvalidRequest: 400, Ambiguous: 400, NotFound: 404, RequestTimeout: 408,
    StateConflict: 409, PayloadTooLarge: 413, UnsupportedMediaType: 415, InvalidBody: 422,
    PolicyRefused: 422, IdempotencyConflict: 422, NoSuchForm: 422,
}


def status_of(exc: RequestRefused) -> int:
    """The HTTP status for a refusal (400 for one not listed)."""
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 400)


def problem(status: int, title: str, detail: str, *, slug: str | None = None,
            errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or title.lower().replace(" ", "-")),
        "title": title, "status": status, "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return web.Response(status=status, text=json.dumps(body, ensure_ascii=False),
                        content_type=PROBLEM_TYPE, headers=headers)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"loc": [...], "field": "a.b", "msg": ...}]``."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        out.append({"loc": loc, "field": ".".join(str(p) for p in loc) or "(body)",
                    "msg": err["msg"], "type": err["type"]})
    return out


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(  # noqa: PLR0911 - one return per error family, flat on purpose
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Translate every error into problem+json; unexpected ones are logged, never leaked."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, exc.text or exc.reason,
                       headers={k: v for k, v in exc.headers.items()
                                if k in ("WWW-Authenticate", "Allow", "Retry-After")})
    except RequestRefused as exc:
        return problem(status_of(exc), exc.title, exc.detail, errors=exc.errors or None)
    except ValidationError as exc:
        errors = validation_errors(exc)
        fields = ", ".join(e["field"] for e in errors[:10])
        return problem(422, "Invalid body", f"invalid fields: {fields}", slug="validation",
                       errors=errors)
    except MalformedInput as exc:
        return problem(400, "Malformed JSON", exc.detail, slug=exc.reason)
    except XmlError as exc:
        return problem(422, "Invalid XML", str(exc), slug="invalid-xml",
                       errors=exc.errors or None)
    except LedgerError as exc:
        log.error("ledger_unavailable", error=str(exc))
        if exc.disk_full:
            return problem(507, "Insufficient storage", "the ledger's disk is full; retry later",
                           headers={"Retry-After": "30"})
        return problem(503, "Ledger unavailable", "retry later", headers={"Retry-After": "5"})
    except Exception:
        log.exception("unhandled_error", path=request.path)
        return problem(500, "Internal error", "the error was logged", slug="internal")
