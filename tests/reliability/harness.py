"""Helpers for the reliability tests: route enumeration, logins, path filling."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIWebSocketRoute

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
          "/redoc", "/api/auth/token"}
# The browser console (web/console.py): the page itself and two documented, secret-free
# endpoints it needs before anyone logs in (map background, the synthetic city's GeoJSON).
CONSOLE_PUBLIC = {"/", "/api/console/config", "/api/console/city"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    route: Any


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for r in routes:
        original = getattr(r, "original_router", None)
        if original is not None:  # FastAPI ≥ 0.16x: included routers stay routers
            ctx = getattr(r, "include_context", None)
            yield from _walk(original.routes, prefix + (getattr(ctx, "prefix", "") or ""))
        elif hasattr(r, "path"):
            yield prefix + r.path, r


def endpoints(app: Any) -> list[Endpoint]:
    """Every (method, path) the application serves, from ``app.routes`` (HEAD left out)."""
    out = []
    for path, r in _walk(list(app.routes)):
        if isinstance(r, APIWebSocketRoute):
            out.append(Endpoint("WS", path, r))
            continue
        for m in sorted(getattr(r, "methods", None) or []):
            if m != "HEAD":
                out.append(Endpoint(m, path, r))
    return out


def fill(path: str, value: object = 1, **known: object) -> str:
    """``/api/bookings/{booking_id}`` → ``/api/bookings/1`` (names in ``known`` win)."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1).split(":")[0]
        if name in known:
            return str(known[name])
        if name in ("period",):
            return "2024-05"
        if name in ("day", "date"):
            return "2024-05-06"
        if name in ("chain",):
            return "main"
        return str(value)
    return re.sub(r"\{([^}]+)\}", sub, path)
