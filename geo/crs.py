"""China's map coordinate systems: WGS-84 ⇄ GCJ-02 (火星坐标) ⇄ BD-09 (百度坐标).

Storage in gongche is WGS-84; these transforms are for the edges only (map tiles from AMap /
Tencent / Baidu, imports of addresses geocoded by those services).

* **GCJ-02** (国测局坐标, "火星坐标") is WGS-84 plus an obfuscating offset of a few hundred metres,
  computed with the public reverse-engineered algorithm (Krasovsky ellipsoid and the
  ``transformLat``/``transformLon`` polynomials). Points outside China's rough bounding box
  (the rule used by eviltransform: lon 72.004–137.8347, lat 0.8293–55.8271) are unchanged.
* **BD-09** (百度坐标) is GCJ-02 with Baidu's further polar-coordinate perturbation, applied
  everywhere (no out-of-China rule), as in every public implementation.

Forward transforms are closed-form. Inverses are solved by fixed-point iteration to a residual
below ``tol_deg`` (default 1e-9°, about 0.1 mm) with an iteration cap. Within ~0.01° of the
bounding box's edge GCJ-02 is discontinuous (the offset switches off), so a GCJ point there
may have no WGS-84 preimage; the inverse then returns its best effort after ``max_iter`` steps
(about 3 in a million random points in the box, all in open sea or desert at the edge).

Every function takes and returns ``(lat, lon)`` in degrees, like the rest of gongche; the
``*_array`` variants take numpy arrays (or anything array-like) and return a pair of arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

CoordSystem: TypeAlias = Literal["wgs84", "gcj02", "bd09"]
FloatArray: TypeAlias = NDArray[np.float64]

KRASOVSKY_A = 6378245.0  # Krasovsky 1940 semi-major axis (m), used by GCJ-02
KRASOVSKY_EE = 0.00669342162296594323  # Krasovsky first eccentricity squared
X_PI = math.pi * 3000.0 / 180.0  # Baidu's BD-09 constant

# China's rough bounding box (the commonly used out-of-China rule).
CHINA_LON_MIN, CHINA_LON_MAX = 72.004, 137.8347
CHINA_LAT_MIN, CHINA_LAT_MAX = 0.8293, 55.8271

DEFAULT_TOL_DEG = 1e-9
DEFAULT_MAX_ITER = 30


@dataclass(frozen=True, slots=True)
class _Ops:
    """The few math functions the formulas need, for scalars (math) or arrays (numpy)."""

    sin: Callable
    cos: Callable
    sqrt: Callable
    fabs: Callable
    atan2: Callable


_SCALAR = _Ops(math.sin, math.cos, math.sqrt, math.fabs, math.atan2)
_VECTOR = _Ops(np.sin, np.cos, np.sqrt, np.fabs, np.arctan2)


# --------------------------------------------------------------------------- out-of-China rule


def out_of_china(lat: float, lon: float) -> bool:
    """True if the point lies outside China's rough bounding box (GCJ-02 leaves it alone)."""
    return not (CHINA_LON_MIN <= lon <= CHINA_LON_MAX and CHINA_LAT_MIN <= lat <= CHINA_LAT_MAX)


def out_of_china_array(lats: ArrayLike, lons: ArrayLike) -> NDArray[np.bool_]:
    """Vectorised :func:`out_of_china`."""
    la, lo = _as_arrays(lats, lons)
    inside = (lo >= CHINA_LON_MIN) & (lo <= CHINA_LON_MAX)
    inside &= (la >= CHINA_LAT_MIN) & (la <= CHINA_LAT_MAX)
    return ~inside


# --------------------------------------------------------------------------- GCJ-02 core


def _transform_lat(x: Any, y: Any, m: _Ops) -> Any:
    """The public latitude polynomial; x = lon - 105, y = lat - 35."""
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * m.sqrt(m.fabs(x))
    ret = ret + (20.0 * m.sin(6.0 * x * math.pi) + 20.0 * m.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret = ret + (20.0 * m.sin(y * math.pi) + 40.0 * m.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret = ret + (160.0 * m.sin(y / 12.0 * math.pi) + 320.0 * m.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x: Any, y: Any, m: _Ops) -> Any:
    """The public longitude polynomial; x = lon - 105, y = lat - 35."""
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * m.sqrt(m.fabs(x))
    ret = ret + (20.0 * m.sin(6.0 * x * math.pi) + 20.0 * m.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret = ret + (20.0 * m.sin(x * math.pi) + 40.0 * m.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret = ret + (150.0 * m.sin(x / 12.0 * math.pi) + 300.0 * m.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _gcj_offset(lat: Any, lon: Any, m: _Ops) -> tuple[Any, Any]:
    """GCJ-02 minus WGS-84 at a WGS-84 point, degrees: (dlat, dlon). No out-of-China rule."""
    dlat = _transform_lat(lon - 105.0, lat - 35.0, m)
    dlon = _transform_lon(lon - 105.0, lat - 35.0, m)
    radlat = lat / 180.0 * math.pi
    s = m.sin(radlat)
    magic = 1.0 - KRASOVSKY_EE * s * s
    sqrtmagic = m.sqrt(magic)
    dlat = (dlat * 180.0) / ((KRASOVSKY_A * (1.0 - KRASOVSKY_EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (KRASOVSKY_A / sqrtmagic * m.cos(radlat) * math.pi)
    return dlat, dlon


# --------------------------------------------------------------------------- BD-09 core


def _gcj_to_bd(lat: Any, lon: Any, m: _Ops) -> tuple[Any, Any]:
    z = m.sqrt(lon * lon + lat * lat) + 0.00002 * m.sin(lat * X_PI)
    theta = m.atan2(lat, lon) + 0.000003 * m.cos(lon * X_PI)
    return z * m.sin(theta) + 0.006, z * m.cos(theta) + 0.0065


def _bd_to_gcj_approx(lat: Any, lon: Any, m: _Ops) -> tuple[Any, Any]:
    """Baidu's published approximate inverse (error up to ~1e-6°); refined by iteration."""
    x = lon - 0.0065
    y = lat - 0.006
    z = m.sqrt(x * x + y * y) - 0.00002 * m.sin(y * X_PI)
    theta = m.atan2(y, x) - 0.000003 * m.cos(x * X_PI)
    return z * m.sin(theta), z * m.cos(theta)


# --------------------------------------------------------------------------- scalar API


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 → GCJ-02 (火星坐标). Outside China the point is returned unchanged."""
    if out_of_china(lat, lon):
        return lat, lon
    dlat, dlon = _gcj_offset(lat, lon, _SCALAR)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(
    lat: float, lon: float, *, tol_deg: float = DEFAULT_TOL_DEG, max_iter: int = DEFAULT_MAX_ITER
) -> tuple[float, float]:
    """GCJ-02 (火星坐标) → WGS-84, iterated until the forward image is within ``tol_deg``."""
    if out_of_china(lat, lon):
        return lat, lon
    return _invert_scalar(wgs84_to_gcj02, lat, lon, lat, lon, tol_deg, max_iter)


def gcj02_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 (火星坐标) → BD-09 (百度坐标)."""
    return _gcj_to_bd(lat, lon, _SCALAR)


def bd09_to_gcj02(
    lat: float, lon: float, *, tol_deg: float = DEFAULT_TOL_DEG, max_iter: int = DEFAULT_MAX_ITER
) -> tuple[float, float]:
    """BD-09 (百度坐标) → GCJ-02, Baidu's approximate inverse refined to ``tol_deg``."""
    glat, glon = _bd_to_gcj_approx(lat, lon, _SCALAR)
    return _invert_scalar(gcj02_to_bd09, lat, lon, glat, glon, tol_deg, max_iter)


def wgs84_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 → BD-09 (百度坐标), via GCJ-02."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lat, lon))


def bd09_to_wgs84(
    lat: float, lon: float, *, tol_deg: float = DEFAULT_TOL_DEG, max_iter: int = DEFAULT_MAX_ITER
) -> tuple[float, float]:
    """BD-09 (百度坐标) → WGS-84, via GCJ-02."""
    glat, glon = bd09_to_gcj02(lat, lon, tol_deg=tol_deg, max_iter=max_iter)
    return gcj02_to_wgs84(glat, glon, tol_deg=tol_deg, max_iter=max_iter)


def _invert_scalar(
    forward: Callable[[float, float], tuple[float, float]],
    lat: float, lon: float, guess_lat: float, guess_lon: float,
    tol_deg: float, max_iter: int,
) -> tuple[float, float]:
    """Solve ``forward(x) == (lat, lon)`` by fixed-point iteration x ← x − (forward(x) − target).

    The offsets vary slowly (their derivative is ~1e-3), so each step gains about three
    digits; two or three steps reach 1e-9°. ``max_iter`` caps pathological inputs.
    """
    x_lat, x_lon = guess_lat, guess_lon
    for _ in range(max_iter):
        f_lat, f_lon = forward(x_lat, x_lon)
        e_lat, e_lon = f_lat - lat, f_lon - lon
        if abs(e_lat) < tol_deg and abs(e_lon) < tol_deg:
            break
        x_lat, x_lon = x_lat - e_lat, x_lon - e_lon
    return x_lat, x_lon


# --------------------------------------------------------------------------- array API


def _as_arrays(lats: ArrayLike, lons: ArrayLike) -> tuple[FloatArray, FloatArray]:
    la = np.asarray(lats, dtype=np.float64)
    lo = np.asarray(lons, dtype=np.float64)
    if la.shape != lo.shape:
        raise ValueError(f"lats and lons differ in shape: {la.shape} vs {lo.shape}")
    return la, lo


def wgs84_to_gcj02_array(lats: ArrayLike, lons: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`wgs84_to_gcj02`."""
    la, lo = _as_arrays(lats, lons)
    dlat, dlon = _gcj_offset(la, lo, _VECTOR)
    outside = out_of_china_array(la, lo)
    return np.where(outside, la, la + dlat), np.where(outside, lo, lo + dlon)


def gcj02_to_wgs84_array(
    lats: ArrayLike, lons: ArrayLike,
    *, tol_deg: float = DEFAULT_TOL_DEG, max_iter: int = DEFAULT_MAX_ITER,
) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`gcj02_to_wgs84`."""
    la, lo = _as_arrays(lats, lons)
    outside = out_of_china_array(la, lo)
    x_lat, x_lon = _invert_array(wgs84_to_gcj02_array, la, lo, la, lo, tol_deg, max_iter)
    return np.where(outside, la, x_lat), np.where(outside, lo, x_lon)


def gcj02_to_bd09_array(lats: ArrayLike, lons: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`gcj02_to_bd09`."""
    la, lo = _as_arrays(lats, lons)
    return _gcj_to_bd(la, lo, _VECTOR)


def bd09_to_gcj02_array(
    lats: ArrayLike, lons: ArrayLike,
    *, tol_deg: float = DEFAULT_TOL_DEG, max_iter: int = DEFAULT_MAX_ITER,
) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`bd09_to_gcj02`."""
    la, lo = _as_arrays(lats, lons)
    g_lat, g_lon = _bd_to_gcj_approx(la, lo, _VECTOR)
    return _invert_array(gcj02_to_bd09_array, la, lo, g_lat, g_lon, tol_deg, max_iter)


def wgs84_to_bd09_array(lats: ArrayLike, lons: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`wgs84_to_bd09`."""
    return gcj02_to_bd09_array(*wgs84_to_gcj02_array(lats, lons))


def bd09_to_wgs84_array(
    lats: ArrayLike, lons: ArrayLike,
    *, tol_deg: float = DEFAULT_TOL_DEG, max_iter: int = DEFAULT_MAX_ITER,
) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`bd09_to_wgs84`."""
    g_lat, g_lon = bd09_to_gcj02_array(lats, lons, tol_deg=tol_deg, max_iter=max_iter)
    return gcj02_to_wgs84_array(g_lat, g_lon, tol_deg=tol_deg, max_iter=max_iter)


def _invert_array(
    forward: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    lats: FloatArray, lons: FloatArray, guess_lat: FloatArray, guess_lon: FloatArray,
    tol_deg: float, max_iter: int,
) -> tuple[FloatArray, FloatArray]:
    """Array form of :func:`_invert_scalar`; each step only touches unconverged elements."""
    shape = np.shape(lats)
    t_lat, t_lon = np.ravel(lats), np.ravel(lons)
    x_lat = np.array(guess_lat, dtype=np.float64).ravel()
    x_lon = np.array(guess_lon, dtype=np.float64).ravel()
    todo = np.arange(x_lat.size)
    for _ in range(max_iter):
        if todo.size == 0:
            break
        f_lat, f_lon = forward(x_lat[todo], x_lon[todo])
        e_lat, e_lon = f_lat - t_lat[todo], f_lon - t_lon[todo]
        open_ = (np.abs(e_lat) >= tol_deg) | (np.abs(e_lon) >= tol_deg)
        todo, e_lat, e_lon = todo[open_], e_lat[open_], e_lon[open_]
        x_lat[todo] -= e_lat
        x_lon[todo] -= e_lon
    return x_lat.reshape(shape), x_lon.reshape(shape)


# --------------------------------------------------------------------------- by name

_SCALAR_TRANSFORMS: dict[tuple[str, str], Callable[[float, float], tuple[float, float]]] = {
    ("wgs84", "gcj02"): wgs84_to_gcj02,
    ("gcj02", "wgs84"): gcj02_to_wgs84,
    ("gcj02", "bd09"): gcj02_to_bd09,
    ("bd09", "gcj02"): bd09_to_gcj02,
    ("wgs84", "bd09"): wgs84_to_bd09,
    ("bd09", "wgs84"): bd09_to_wgs84,
}

_ARRAY_TRANSFORMS: dict[
    tuple[str, str], Callable[[ArrayLike, ArrayLike], tuple[FloatArray, FloatArray]]
] = {
    ("wgs84", "gcj02"): wgs84_to_gcj02_array,
    ("gcj02", "wgs84"): gcj02_to_wgs84_array,
    ("gcj02", "bd09"): gcj02_to_bd09_array,
    ("bd09", "gcj02"): bd09_to_gcj02_array,
    ("wgs84", "bd09"): wgs84_to_bd09_array,
    ("bd09", "wgs84"): bd09_to_wgs84_array,
}


def _check_systems(src: str, dst: str) -> None:
    known = ("wgs84", "gcj02", "bd09")
    for name in (src, dst):
        if name not in known:
            raise ValueError(f"unknown coordinate system {name!r}; expected one of {known}")


def transform(lat: float, lon: float, src: CoordSystem, dst: CoordSystem) -> tuple[float, float]:
    """Transform one point between named systems ('wgs84', 'gcj02', 'bd09')."""
    _check_systems(src, dst)
    if src == dst:
        return lat, lon
    return _SCALAR_TRANSFORMS[(src, dst)](lat, lon)


def transform_array(
    lats: ArrayLike, lons: ArrayLike, src: CoordSystem, dst: CoordSystem
) -> tuple[FloatArray, FloatArray]:
    """Transform arrays of points between named systems ('wgs84', 'gcj02', 'bd09')."""
    _check_systems(src, dst)
    if src == dst:
        la, lo = _as_arrays(lats, lons)
        return la.copy(), lo.copy()
    return _ARRAY_TRANSFORMS[(src, dst)](lats, lons)
