"""The router every API package declares its endpoints on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope

from fleet.deps import UnitOfWorkRoute


class ApiRouter(APIRouter):
    """An ``APIRouter`` whose routes are :class:`fleet.deps.UnitOfWorkRoute` and which
    declines, at once, a path that none of its routes can match by its first two segments.

    FastAPI matches a request against every route of every included router in turn, each a
    regular expression and some bookkeeping: a booking read tried some fifty routes of the
    organisation and telematics routers first (a tenth of its CPU under ``gongche bench
    api``). Where every route's path starts with two literal segments (``/api/dispatch``,
    ``/api/live``…), a path that starts with none of them cannot match here, so the router
    says so before trying them; a router with a route like ``/{anything}`` tries them all.
    """

    def __init__(self, prefix: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("route_class", UnitOfWorkRoute)
        super().__init__(prefix=prefix, **kwargs)
        self._heads: tuple[int, frozenset[str] | None] = (-1, None)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        heads = self._route_heads()
        if heads is not None and _head(_route_path(scope)) not in heads:
            return Match.NONE, {}
        return super().matches(scope)

    def _route_heads(self) -> frozenset[str] | None:
        """The first two segments of every route's path, or None where some route's are
        not literal (recomputed when routes are added)."""
        known, heads = self._heads
        if known != len(self.routes):
            paths = [getattr(route, "path", None) for route in self.routes]
            ok = all(p is not None and "{" not in _head(p) for p in paths)
            heads = frozenset(_head(p) for p in paths if p is not None) if ok else None
            self._heads = (len(self.routes), heads)
        return heads


def _head(path: str) -> str:
    """``/api/dispatch/bookings/7`` → ``/api/dispatch``."""
    parts = path.split("/", 3)
    return "/".join(parts[:3])


def _route_path(scope: Scope) -> str:
    """The path routes match against: without the ``root_path`` a proxy mounts the app at
    (as Starlette's own, private, ``get_route_path``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("/", ""):
        return path[len(root):]
    return path
