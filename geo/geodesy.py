"""Geodesy on the WGS-84 ellipsoid (pyproj.Geod) plus a fast vectorised great-circle.

Accurate functions (``distance_m``, ``bearing_deg``, ``destination``, ``path_length_m``) use
the ellipsoid; ``haversine_matrix_m`` is the spherical approximation used for matrices,
where speed matters more than the last 0.3 %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pyproj import Geod

WGS84 = Geod(ellps="WGS84")
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG), for the spherical approximation


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Ellipsoidal distance in metres between two WGS-84 points."""
    _, _, d = WGS84.inv(lon1, lat1, lon2, lat2)
    return float(d)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north in [0, 360)."""
    az, _, _ = WGS84.inv(lon1, lat1, lon2, lat2)
    return float(az) % 360.0


def destination(lat: float, lon: float, bearing: float, dist_m: float) -> tuple[float, float]:
    """The point reached from (lat, lon) going ``dist_m`` metres on ``bearing``: (lat, lon)."""
    lon2, lat2, _ = WGS84.fwd(lon, lat, bearing, dist_m)
    return float(lat2), float(lon2)


def path_length_m(lats: Sequence[float], lons: Sequence[float]) -> float:
    """Length of the polyline through the points, metres on the ellipsoid."""
    if len(lats) < 2:
        return 0.0
    return float(WGS84.line_length(list(lons), list(lats)))


def segment_lengths_m(
    lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Ellipsoidal length of each consecutive segment (n-1 values)."""
    if len(lats) < 2:
        return np.zeros(0)
    la = np.asarray(lats, dtype=float)
    lo = np.asarray(lons, dtype=float)
    _, _, d = WGS84.inv(lo[:-1], la[:-1], lo[1:], la[1:])
    return np.asarray(d, dtype=float)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean sphere (fast, scalar)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return float(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a)))


def haversine_matrix_m(
    lats_a: Sequence[float] | np.ndarray, lons_a: Sequence[float] | np.ndarray,
    lats_b: Sequence[float] | np.ndarray | None = None,
    lons_b: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Great-circle distance matrix (metres), shape (len(a), len(b)); b defaults to a."""
    la = np.radians(np.asarray(lats_a, dtype=float))[:, None]
    lo = np.radians(np.asarray(lons_a, dtype=float))[:, None]
    if lats_b is None or lons_b is None:
        lb, lob = la.T, lo.T
    else:
        lb = np.radians(np.asarray(lats_b, dtype=float))[None, :]
        lob = np.radians(np.asarray(lons_b, dtype=float))[None, :]
    a = np.sin((lb - la) / 2) ** 2 + np.cos(la) * np.cos(lb) * np.sin((lob - lo) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
