"""WGS-84 ⇄ GCJ-02 (火星坐标) ⇄ BD-09 (百度坐标) against published pairs and by property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo import crs
from geo.crs import (
    bd09_to_gcj02,
    bd09_to_gcj02_array,
    bd09_to_wgs84,
    bd09_to_wgs84_array,
    gcj02_to_bd09,
    gcj02_to_bd09_array,
    gcj02_to_wgs84,
    gcj02_to_wgs84_array,
    out_of_china,
    out_of_china_array,
    transform,
    transform_array,
    wgs84_to_bd09,
    wgs84_to_bd09_array,
    wgs84_to_gcj02,
    wgs84_to_gcj02_array,
)
from geo.geodesy import distance_m

# Source: googollee/eviltransform test suite (python/test.py, go/transform_test.go; MIT):
# (wgs_lat, wgs_lon, gcj_lat, gcj_lon), the GCJ side produced by its forward transform.
EVILTRANSFORM_PAIRS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]

# Source: wandergis/coordtransform (test/app.js; MIT), an independent implementation, for the
# input (lon 116.404, lat 39.915). Its GCJ→WGS and BD→GCJ are the one-step approximations,
# so ours (iterated to 1e-9°) must agree with those only to ~1e-6°.
CT_IN = (39.915, 116.404)
CT_WGS_TO_GCJ = (39.91640428150164, 116.41024449916938)
CT_GCJ_TO_BD = (39.92133699351021, 116.41036949371029)
CT_BD_TO_GCJ_APPROX = (39.90865673957631, 116.39762729119315)
CT_GCJ_TO_WGS_APPROX = (39.91359571849836, 116.39775550083061)


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM_PAIRS)
def test_wgs_to_gcj_published(wlat: float, wlon: float, glat: float, glon: float) -> None:
    lat, lon = wgs84_to_gcj02(wlat, wlon)
    assert lat == pytest.approx(glat, abs=1e-11)
    assert lon == pytest.approx(glon, abs=1e-11)


@pytest.mark.parametrize(("wlat", "wlon", "glat", "glon"), EVILTRANSFORM_PAIRS)
def test_gcj_to_wgs_recovers_published(wlat: float, wlon: float, glat: float, glon: float) -> None:
    lat, lon = gcj02_to_wgs84(glat, glon)
    assert abs(lat - wlat) < 1e-8 and abs(lon - wlon) < 1e-8
    assert distance_m(lat, lon, wlat, wlon) < 0.005  # well under a centimetre


def test_coordtransform_pairs() -> None:
    assert wgs84_to_gcj02(*CT_IN) == pytest.approx(CT_WGS_TO_GCJ, abs=1e-11)
    assert gcj02_to_bd09(*CT_IN) == pytest.approx(CT_GCJ_TO_BD, abs=1e-11)
    assert bd09_to_gcj02(*CT_IN) == pytest.approx(CT_BD_TO_GCJ_APPROX, abs=1e-6)
    assert gcj02_to_wgs84(*CT_IN) == pytest.approx(CT_GCJ_TO_WGS_APPROX, abs=1e-6)


def test_exact_inverses_beat_the_one_step_approximations() -> None:
    # Our inverses map back onto the input; the published one-step values do not quite.
    assert gcj02_to_bd09(*bd09_to_gcj02(*CT_IN)) == pytest.approx(CT_IN, abs=1e-9)
    assert wgs84_to_gcj02(*gcj02_to_wgs84(*CT_IN)) == pytest.approx(CT_IN, abs=1e-9)
    approx_err = np.abs(np.subtract(wgs84_to_gcj02(*CT_GCJ_TO_WGS_APPROX), CT_IN)).max()
    assert approx_err > 1e-7


def test_offsets_are_hundreds_of_metres_in_cities() -> None:
    for wlat, wlon, _, _ in EVILTRANSFORM_PAIRS:
        d = distance_m(wlat, wlon, *wgs84_to_gcj02(wlat, wlon))
        assert 100 < d < 800
        b = distance_m(wlat, wlon, *wgs84_to_bd09(wlat, wlon))
        assert 300 < b < 1500


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(35.6812, 139.7671), (51.5074, -0.1278), (40.7128, -74.006), (-33.8688, 151.2093),
     (55.9, 100.0), (0.5, 110.0), (30.0, 71.9)],
)
def test_out_of_china_unchanged(lat: float, lon: float) -> None:
    assert out_of_china(lat, lon)
    assert wgs84_to_gcj02(lat, lon) == (lat, lon)
    assert gcj02_to_wgs84(lat, lon) == (lat, lon)
    la, lo = wgs84_to_gcj02_array([lat], [lon])
    assert (la[0], lo[0]) == (lat, lon)


def test_bounding_box_rule() -> None:
    assert not out_of_china(39.9, 116.4)
    assert not out_of_china(crs.CHINA_LAT_MIN, crs.CHINA_LON_MIN)
    assert out_of_china(crs.CHINA_LAT_MAX + 1e-6, 116.0)
    mask = out_of_china_array([39.9, 35.68, 22.5], [116.4, 139.77, 114.1])
    assert mask.tolist() == [False, True, False]


china_lat = st.floats(18.0, 53.0, allow_nan=False)
china_lon = st.floats(74.0, 134.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(china_lat, china_lon)
def test_wgs_gcj_round_trip(lat: float, lon: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lat, lon))
    assert abs(back[0] - lat) < 1e-7 and abs(back[1] - lon) < 1e-7


@settings(max_examples=300, deadline=None)
@given(china_lat, china_lon)
def test_gcj_inverse_accuracy(lat: float, lon: float) -> None:
    w = gcj02_to_wgs84(lat, lon)
    f = wgs84_to_gcj02(*w)
    assert abs(f[0] - lat) < 1e-9 and abs(f[1] - lon) < 1e-9


@settings(max_examples=300, deadline=None)
@given(china_lat, china_lon)
def test_bd_round_trips(lat: float, lon: float) -> None:
    g = bd09_to_gcj02(*gcj02_to_bd09(lat, lon))
    # the iteration stops when the forward residual is < 1e-9°; the position error is that
    # residual divided by a Jacobian within 1e-4 of identity
    assert abs(g[0] - lat) < 2e-9 and abs(g[1] - lon) < 2e-9
    w = bd09_to_wgs84(*wgs84_to_bd09(lat, lon))
    assert abs(w[0] - lat) < 1e-7 and abs(w[1] - lon) < 1e-7


def test_arrays_match_scalars() -> None:
    rng = np.random.default_rng(3)
    lats = np.concatenate([rng.uniform(18, 53, 200), [35.68, 51.5]])
    lons = np.concatenate([rng.uniform(74, 134, 200), [139.77, -0.13]])
    pairs = [
        (wgs84_to_gcj02_array, wgs84_to_gcj02),
        (gcj02_to_wgs84_array, gcj02_to_wgs84),
        (gcj02_to_bd09_array, gcj02_to_bd09),
        (bd09_to_gcj02_array, bd09_to_gcj02),
        (wgs84_to_bd09_array, wgs84_to_bd09),
        (bd09_to_wgs84_array, bd09_to_wgs84),
    ]
    for vec, scalar in pairs:
        la, lo = vec(lats, lons)
        # both iterate to 1e-9°; composed inverses may differ by a few of those
        expect = np.array([scalar(a, b) for a, b in zip(lats, lons, strict=True)])
        assert np.abs(la - expect[:, 0]).max() < 5e-9, vec.__name__
        assert np.abs(lo - expect[:, 1]).max() < 5e-9, vec.__name__


def test_arrays_keep_shape_and_accept_empty() -> None:
    la, lo = wgs84_to_gcj02_array(np.full((2, 3), 39.9), np.full((2, 3), 116.4))
    assert la.shape == lo.shape == (2, 3)
    la, lo = gcj02_to_wgs84_array([], [])
    assert la.shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        wgs84_to_gcj02_array([1.0, 2.0], [1.0])


def test_transform_by_name() -> None:
    p = (31.2304, 121.4737)
    assert transform(*p, "wgs84", "gcj02") == wgs84_to_gcj02(*p)
    assert transform(*p, "bd09", "wgs84") == bd09_to_wgs84(*p)
    assert transform(*p, "gcj02", "gcj02") == p
    la, lo = transform_array([p[0]], [p[1]], "wgs84", "bd09")
    assert (la[0], lo[0]) == pytest.approx(wgs84_to_bd09(*p), abs=1e-12)
    with pytest.raises(ValueError, match="unknown coordinate system"):
        transform(*p, "wgs84", "utm")  # type: ignore[arg-type]


def test_iteration_cap_is_respected() -> None:
    g = wgs84_to_gcj02(39.9, 116.4)
    assert gcj02_to_wgs84(*g, max_iter=0) == g  # no step taken: returns the start
    one = gcj02_to_wgs84(*g, max_iter=1)  # one step: already within ~1e-6° of the answer
    assert abs(one[0] - 39.9) < 1e-5 and abs(one[1] - 116.4) < 1e-5
