"""Synthetic city: determinism, connectivity, shortest paths, GeoJSON."""

from __future__ import annotations

import json

from geo.geodesy import distance_m
from simulators.city import SPEED_LIMITS_KMH, build_city


def test_city_is_deterministic() -> None:
    a, b = build_city(seed=3), build_city(seed=3)
    assert json.dumps(a.to_geojson(), sort_keys=True) == json.dumps(b.to_geojson(), sort_keys=True)
    c = build_city(seed=4)
    assert json.dumps(a.to_geojson()) != json.dumps(c.to_geojson())


def test_city_shape_and_places() -> None:
    city = build_city()
    lats = [n.lat for n in city.nodes.values()]
    lons = [n.lon for n in city.nodes.values()]
    width = distance_m(30.66, min(lons), 30.66, max(lons))
    height = distance_m(min(lats), 104.06, max(lats), 104.06)
    assert 9_000 < width < 11_000 and 9_000 < height < 11_000
    assert city.place("行政中心").kind == "admin_centre"
    kinds = {p.kind for p in city.places.values()}
    assert {"admin_centre", "garage", "hotel", "district_office"} <= kinds
    classes = {e.road_class for e in city.edges}
    assert classes == set(SPEED_LIMITS_KMH)
    assert any(n.light is not None for n in city.nodes.values())


def test_shortest_path_is_connected_and_not_longer_than_alternatives() -> None:
    city = build_city()
    path = city.shortest_path(city.place("garage-west").node, city.place("district-east").node)
    for u, v in zip(path, path[1:], strict=False):
        assert v in city.adj[u]
    leg = city.route(["garage-west", "district-east"])
    straight = distance_m(leg.lats[0], leg.lons[0], leg.lats[-1], leg.lons[-1])
    assert straight <= leg.length_m < 2.0 * straight
    by_len = city.shortest_path(path[0], path[-1], weight="length")
    len_by_len = city.leg_from_nodes(by_len).length_m
    assert len_by_len <= leg.length_m + 1e-6


def test_geojson_export() -> None:
    gj = build_city().to_geojson()
    assert gj["type"] == "FeatureCollection"
    kinds = {f["properties"]["kind"] for f in gj["features"]}
    assert kinds == {"road", "traffic_light", "place"}
    road = next(f for f in gj["features"] if f["properties"]["kind"] == "road")
    assert road["geometry"]["type"] == "LineString"
    lon, lat = road["geometry"]["coordinates"][0]
    assert 103.9 < lon < 104.2 and 30.5 < lat < 30.8
    json.dumps(gj, ensure_ascii=False)
