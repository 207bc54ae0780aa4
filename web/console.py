"""Serve the browser console: ``/`` (the single page), its assets, Leaflet, and two small
endpoints the page needs — ``/api/console/config`` (map background) and
``/api/console/city`` (the synthetic city's roads and places as GeoJSON, drawn when no tile
server is configured so the map is never blank).

Mount with ``mount_console(app)`` after ``create_app()``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parent
ASSET_SUFFIXES = (".js", ".css", ".svg", ".png", ".html")
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["console"])


class _Assets(StaticFiles):
    """The console's own files only: never the Python sources beside them."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not path.endswith(ASSET_SUFFIXES) or "__pycache__" in path:
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


def leaflet_dir() -> Path:
    from xstatic.pkg import leaflet

    return Path(leaflet.BASE_DIR)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers=NO_CACHE)


@router.get("/api/console/config")
def console_config(request: Request) -> dict[str, Any]:
    """Map background and display settings of the console (no secrets).

    ``GONGCHE_TILE_URL`` (e.g. ``https://tiles.example.gov.cn/{z}/{x}/{y}.png``) switches on an
    online tile layer; ``GONGCHE_TILE_ATTRIBUTION`` and ``GONGCHE_TILE_CRS`` (``wgs84`` or
    ``gcj02``, the datum of the tiles) describe it. Without a tile URL the console draws the
    city's road network and geofences from GeoJSON.
    """
    settings = getattr(request.app.state, "settings", None)
    tile_url = getattr(settings, "tile_url", None) or os.environ.get("GONGCHE_TILE_URL") or None
    city = _city_geojson()
    lats = [f["geometry"]["coordinates"][1] for f in city["features"]
            if f["geometry"]["type"] == "Point"]
    lons = [f["geometry"]["coordinates"][0] for f in city["features"]
            if f["geometry"]["type"] == "Point"]
    centre = [sum(lats) / len(lats), sum(lons) / len(lons)] if lats else [30.66, 104.06]
    return {
        "tile_url": tile_url,
        "tile_attribution": os.environ.get("GONGCHE_TILE_ATTRIBUTION", ""),
        "tile_crs": os.environ.get("GONGCHE_TILE_CRS", "wgs84"),
        "centre": centre,
        "zoom": 13,
        "timezone": getattr(settings, "timezone", "Asia/Shanghai"),
        "demo": bool(getattr(settings, "demo", False)),
    }


@lru_cache(maxsize=1)
def _city_geojson() -> dict[str, Any]:
    from simulators.city import build_city

    return build_city().to_geojson()


@router.get("/api/console/city")
def city_geojson() -> JSONResponse:
    """The synthetic city (roads, traffic lights, places) as a GeoJSON FeatureCollection."""
    return JSONResponse(_city_geojson(), headers={"Cache-Control": "max-age=3600"})


def mount_console(app: FastAPI) -> FastAPI:
    """Add the console's routes and static files to ``app`` (idempotent)."""
    if getattr(app.state, "console_mounted", False):
        return app
    app.include_router(router)
    app.mount("/console/leaflet", StaticFiles(directory=leaflet_dir()), name="leaflet")
    app.mount("/console", _Assets(directory=WEB_DIR), name="console")
    app.state.console_mounted = True
    return app
