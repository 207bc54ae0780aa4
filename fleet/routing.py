"""The router every API package declares its endpoints on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope

from fleet.deps import UnitOfWorkRoute


class ApiRouter(APIRouter):
    """An ``APIRouter`` whose routes are :class:`fleet.deps.UnitOfWorkRoute` and which
    declines, at once, a path outside its prefix.

    FastAPI matches a request against every route of every included router in turn, each a
    regular expression and some bookkeeping: a booking read tried some fifty routes of the
    organisation and telematics routers first (a tenth of its CPU under ``gongche bench
    api``). No route of a router with a prefix can match a path that does not start with
    it, so the router says so before trying them.
    """

    def __init__(self, prefix: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("route_class", UnitOfWorkRoute)
        super().__init__(prefix=prefix, **kwargs)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.prefix and not _route_path(scope).startswith(self.prefix):
            return Match.NONE, {}
        return super().matches(scope)


def _route_path(scope: Scope) -> str:
    """The path routes match against: without the ``root_path`` a proxy mounts the app at
    (as Starlette's own, private, ``get_route_path``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("/", ""):
        return path[len(root):]
    return path
