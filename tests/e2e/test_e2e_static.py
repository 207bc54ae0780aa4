"""The console's server side without a browser: what is served, what is refused, the map
background setting and the city GeoJSON."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from web.console import mount_console


@pytest.fixture
def client() -> TestClient:
    return TestClient(mount_console(mount_console(FastAPI())))  # idempotent


def test_index_assets_and_leaflet_are_served_offline(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    for src in ("/console/leaflet/leaflet.js", "/console/leaflet/leaflet.css",
                "/console/app.js", "/console/app.css"):
        assert src in r.text, src
        assert client.get(src).status_code == 200, src
    assert client.get("/console/i18n.js").status_code == 200  # imported by app.js
    assert client.get("/console/leaflet/images/marker-icon.png").status_code == 200
    assert "http://" not in r.text and "https://" not in r.text  # no CDN
    # data reaches the page as text: the one innerHTML read escapes Leaflet's attribution
    app_js = client.get("/console/app.js").text
    assert app_js.count("innerHTML") == 1 and "return d.innerHTML" in app_js
    assert "insertAdjacentHTML" not in app_js and "outerHTML" not in app_js


def test_python_sources_beside_the_assets_are_not_served(client: TestClient) -> None:
    for path in ("/console/console.py", "/console/__init__.py", "/console/../fleet/app.py",
                 "/console/__pycache__/console.cpython-311.pyc"):
        assert client.get(path).status_code == 404, path


def test_map_background_is_the_city_unless_a_tile_url_is_set(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = client.get("/api/console/config").json()
    assert cfg["tile_url"] is None
    assert 30 < cfg["centre"][0] < 31.5 and 103.5 < cfg["centre"][1] < 105
    city = client.get("/api/console/city").json()
    kinds = {f["properties"]["kind"] for f in city["features"]}
    assert {"road", "place"} <= kinds
    monkeypatch.setenv("GONGCHE_TILE_URL", "https://tiles.example.gov.cn/{z}/{x}/{y}.png")
    assert client.get("/api/console/config").json()["tile_url"].startswith("https://tiles.")
