"""Geodesy against published values, plus round-trip and vectorisation properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.geodesy import (
    bearing_deg,
    destination,
    distance_m,
    haversine_m,
    haversine_matrix_m,
    path_length_m,
    segment_lengths_m,
)


def dms(d: float, m: float, s: float) -> float:
    sign = -1.0 if d < 0 else 1.0
    return sign * (abs(d) + m / 60.0 + s / 3600.0)


# GeographicLib documentation (Karney), Geodesic.WGS84.Inverse examples:
#   JFK (40.6, -73.8) → LHR (51.6, -0.5): s12 = 5551759.400 m, azi1 = 51.198882845579824°
#   Wellington (-41.32, 174.81) → Salamanca (40.96, -5.50): s12 = 19959679.267 m (nearly
#   antipodal — the case where Vincenty's iteration fails to converge)
def test_karney_jfk_to_lhr() -> None:
    assert distance_m(40.6, -73.8, 51.6, -0.5) == pytest.approx(5551759.400, abs=0.001)
    assert bearing_deg(40.6, -73.8, 51.6, -0.5) == pytest.approx(51.198882845579824, abs=1e-9)


def test_karney_wellington_to_salamanca_nearly_antipodal() -> None:
    assert distance_m(-41.32, 174.81, 40.96, -5.50) == pytest.approx(19959679.267, abs=0.001)


# Geoscience Australia's worked Vincenty example (GRS80; GRS80 and WGS-84 differ by 0.1 mm in
# the semi-minor axis, far below the printed precision): Flinders Peak → Buninyong,
# 54 972.271 m, forward azimuth 306°52'05.37".
def test_vincenty_flinders_peak_to_buninyong() -> None:
    a = (dms(-37, 57, 3.72030), dms(144, 25, 29.52440))
    b = (dms(-37, 39, 10.15610), dms(143, 55, 35.38390))
    assert distance_m(*a, *b) == pytest.approx(54972.271, abs=0.001)
    assert bearing_deg(*a, *b) == pytest.approx(dms(306, 52, 5.37), abs=0.01 / 3600)


def test_beijing_to_shanghai() -> None:
    # Tiananmen → People's Square: about 1,066 km (commonly quoted "~1,070 km" straight line).
    ell = distance_m(39.9042, 116.4074, 31.2304, 121.4737)
    sph = haversine_m(39.9042, 116.4074, 31.2304, 121.4737)
    assert 1_060_000 < ell < 1_072_000
    assert abs(sph - ell) / ell < 0.005


def test_bearings_cardinal() -> None:
    assert bearing_deg(0, 0, 1, 0) == pytest.approx(0.0, abs=1e-9)
    assert bearing_deg(0, 0, 0, 1) == pytest.approx(90.0, abs=1e-9)
    assert bearing_deg(0, 0, -1, 0) == pytest.approx(180.0, abs=1e-9)
    assert bearing_deg(0, 0, 0, -1) == pytest.approx(270.0, abs=1e-9)
    assert 0.0 <= bearing_deg(10, 10, 10, 9.999) < 360.0


def test_one_degree_of_latitude_at_equator() -> None:
    # Meridian arc from 0° to 1°N on WGS-84: 110 574.4 m (a standard table value).
    assert distance_m(0, 0, 1, 0) == pytest.approx(110574.4, abs=0.1)


lat_st = st.floats(-80, 80, allow_nan=False)
lon_st = st.floats(-180, 180, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(lat_st, lon_st, st.floats(0, 359.999), st.floats(1.0, 5_000_000.0))
def test_destination_round_trip(lat: float, lon: float, bearing: float, dist: float) -> None:
    lat2, lon2 = destination(lat, lon, bearing, dist)
    assert distance_m(lat, lon, lat2, lon2) == pytest.approx(dist, rel=1e-9, abs=1e-6)
    diff = (bearing_deg(lat, lon, lat2, lon2) - bearing + 180.0) % 360.0 - 180.0
    assert abs(diff) < 1e-6


def test_path_length_is_sum_of_segments() -> None:
    lats = [39.90, 39.91, 39.93, 39.95]
    lons = [116.40, 116.42, 116.41, 116.45]
    segs = segment_lengths_m(lats, lons)
    assert segs.shape == (3,)
    assert path_length_m(lats, lons) == pytest.approx(float(segs.sum()), rel=1e-12)
    assert segs[0] == pytest.approx(distance_m(39.90, 116.40, 39.91, 116.42), rel=1e-12)
    assert path_length_m([1.0], [1.0]) == 0.0
    assert segment_lengths_m([1.0], [1.0]).shape == (0,)


def test_haversine_matrix_matches_scalar() -> None:
    rng = np.random.default_rng(7)
    la, lo = rng.uniform(-60, 60, 15), rng.uniform(-180, 180, 15)
    lb, lob = rng.uniform(-60, 60, 9), rng.uniform(-180, 180, 9)
    m = haversine_matrix_m(la, lo, lb, lob)
    assert m.shape == (15, 9)
    for i in range(15):
        for j in range(9):
            assert m[i, j] == pytest.approx(haversine_m(la[i], lo[i], lb[j], lob[j]), rel=1e-12)
    sq = haversine_matrix_m(la, lo)
    assert sq.shape == (15, 15)
    assert np.allclose(sq, sq.T)
    assert np.all(np.diag(sq) == 0.0)


@settings(max_examples=100, deadline=None)
@given(lat_st, lon_st, lat_st, lon_st)
def test_haversine_close_to_ellipsoid(lat1: float, lon1: float, lat2: float, lon2: float) -> None:
    ell = distance_m(lat1, lon1, lat2, lon2)
    if ell > 1_000:
        assert abs(haversine_m(lat1, lon1, lat2, lon2) - ell) / ell < 0.006
