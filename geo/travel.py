"""Travel distances and times behind one interface, for the scheduler and dispatch.

* :class:`GreatCircleProvider` (the embedded default): haversine × a detour factor, timed
  with an hour-of-day speed profile in local time (Asia/Shanghai): slower in the morning and
  evening peaks, faster at night. A trip crossing hours is integrated through the profile, so
  leaving later never means arriving earlier.
* :class:`OsrmProvider`: the OSRM HTTP API (``/table/v1/{profile}/`` with
  ``annotations=duration,distance``, and ``/route/v1/{profile}/``).
* :class:`ValhallaProvider`: Valhalla's ``/sources_to_targets``.

Points are ``(lat, lon)`` in WGS-84. Matrices are square (every point to every point) with
integer metres and integer seconds. :func:`provider_from_settings` picks one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, Self, TypeAlias, runtime_checkable
from zoneinfo import ZoneInfo

import httpx
import numpy as np
from numpy.typing import NDArray

from geo.geodesy import haversine_m, haversine_matrix_m

log = logging.getLogger(__name__)

LatLon: TypeAlias = tuple[float, float]
IntArray: TypeAlias = NDArray[np.int64]

LOCAL_TZ = "Asia/Shanghai"
DEFAULT_DETOUR_FACTOR = 1.3

# Door-to-door average speeds (km/h) on the detoured distance, by local hour, for a large
# Chinese city: morning peak 07–09, evening peak 17–19, free-flowing nights.
DEFAULT_SPEED_PROFILE: dict[int, float] = {
    0: 45.0, 1: 48.0, 2: 48.0, 3: 48.0, 4: 48.0, 5: 45.0,
    6: 38.0, 7: 25.0, 8: 20.0, 9: 26.0, 10: 32.0, 11: 31.0,
    12: 32.0, 13: 32.0, 14: 31.0, 15: 30.0, 16: 27.0, 17: 21.0,
    18: 20.0, 19: 26.0, 20: 32.0, 21: 36.0, 22: 40.0, 23: 43.0,
}


class TravelTimeError(RuntimeError):
    """A routing engine could not answer (unreachable, timed out, or returned an error)."""


@dataclass(frozen=True)
class TravelMatrix:
    """Square travel matrices: ``distances_m[i, j]`` and ``durations_s[i, j]`` from i to j.

    ``estimated`` marks cells a routing engine could not route and that were filled with the
    great-circle estimate instead (None when every cell came from the engine).
    """

    distances_m: IntArray
    durations_s: IntArray
    estimated: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        if self.distances_m.shape != self.durations_s.shape:
            raise ValueError("distances and durations differ in shape")

    def __len__(self) -> int:
        return int(self.distances_m.shape[0])


@runtime_checkable
class TravelTimeProvider(Protocol):
    """Anything that can answer travel matrices and single routes."""

    def matrix(self, points: Sequence[LatLon], depart: datetime | None = None) -> TravelMatrix:
        """Every point to every point: metres and seconds, as int64 arrays."""
        ...

    def route(self, a: LatLon, b: LatLon, depart: datetime | None = None) -> tuple[int, int]:
        """One trip a → b: (metres, seconds)."""
        ...


# --------------------------------------------------------------------------- great circle


def _validate_profile(profile: Mapping[int, float]) -> np.ndarray:
    """A full 24-hour speed array (m/s) from a partial or full mapping merged over defaults."""
    merged = dict(DEFAULT_SPEED_PROFILE)
    for hour, kmh in profile.items():
        if not (isinstance(hour, int) and 0 <= hour <= 23):
            raise ValueError(f"speed profile hour must be an int 0..23 (got {hour!r})")
        if not (math.isfinite(kmh) and kmh > 0):
            raise ValueError(f"speed profile at hour {hour} must be > 0 km/h (got {kmh!r})")
        merged[hour] = float(kmh)
    return np.array([merged[h] for h in range(24)], dtype=float) / 3.6


def _as_utc(depart: datetime) -> datetime:
    """Aware datetimes as they are; naive ones are taken as UTC (the internal convention)."""
    return depart if depart.tzinfo is not None else depart.replace(tzinfo=UTC)


class GreatCircleProvider:
    """Haversine distance × ``detour_factor``, timed by an hour-of-day speed profile.

    ``speed_profile`` maps local hour (0–23) → km/h and is merged over
    :data:`DEFAULT_SPEED_PROFILE`. Without a departure time the trip is timed as leaving at
    ``default_hour`` (10:00, off-peak daytime).
    """

    def __init__(
        self,
        detour_factor: float = DEFAULT_DETOUR_FACTOR,
        speed_profile: Mapping[int, float] | None = None,
        *,
        tz: str = LOCAL_TZ,
        default_hour: float = 10.0,
    ) -> None:
        if not (math.isfinite(detour_factor) and detour_factor >= 1.0):
            raise ValueError(f"detour_factor must be >= 1 (got {detour_factor})")
        if not 0.0 <= default_hour < 24.0:
            raise ValueError(f"default_hour must be in [0, 24) (got {default_hour})")
        self.detour_factor = float(detour_factor)
        self.tz = ZoneInfo(tz)
        self.default_hour = float(default_hour)
        self._speeds_ms = _validate_profile(speed_profile or {})
        self._day_m = float(self._speeds_ms.sum() * 3600.0)

    @property
    def speed_profile(self) -> dict[int, float]:
        """The effective hour → km/h profile."""
        return {h: float(v * 3.6) for h, v in enumerate(self._speeds_ms)}

    def speed_kmh(self, depart: datetime | None) -> float:
        """Speed for a trip starting at ``depart`` (its local hour)."""
        hour = int(self._local_hour(depart)) % 24
        return float(self._speeds_ms[hour] * 3.6)

    def _local_hour(self, depart: datetime | None) -> float:
        if depart is None:
            return self.default_hour
        t = _as_utc(depart).astimezone(self.tz)
        return t.hour + t.minute / 60.0 + (t.second + t.microsecond / 1e6) / 3600.0

    def durations_for(self, distances_m: np.ndarray, depart: datetime | None) -> np.ndarray:
        """Seconds to drive each distance (already detoured), integrating the profile.

        Piecewise-linear cumulative distance C(t) over whole hours; arrival = C⁻¹(C(t0) + d).
        """
        d = np.asarray(distances_m, dtype=float)
        t0 = self._local_hour(depart)
        longest = float(d.max()) if d.size else 0.0
        days = int(longest // self._day_m) + 2
        hours = np.arange(24 * days + 1, dtype=float)
        per_hour = np.tile(self._speeds_ms * 3600.0, days)
        cum = np.concatenate([[0.0], np.cumsum(per_hour)])
        c0 = float(np.interp(t0, hours, cum))
        arrive = np.interp(c0 + d, cum, hours)
        return (arrive - t0) * 3600.0

    def matrix(self, points: Sequence[LatLon], depart: datetime | None = None) -> TravelMatrix:
        """Every point to every point; 1,200 points take a few tens of milliseconds."""
        pts = _points_array(points)
        if len(pts) == 0:
            empty = np.zeros((0, 0), dtype=np.int64)
            return TravelMatrix(empty, empty.copy())
        dist = haversine_matrix_m(pts[:, 0], pts[:, 1]) * self.detour_factor
        dur = self.durations_for(dist, depart)
        return TravelMatrix(np.rint(dist).astype(np.int64), np.rint(dur).astype(np.int64))

    def route(self, a: LatLon, b: LatLon, depart: datetime | None = None) -> tuple[int, int]:
        """(metres, seconds) from a to b."""
        dist = haversine_m(a[0], a[1], b[0], b[1]) * self.detour_factor
        dur = self.durations_for(np.array([dist]), depart)[0]
        return int(round(dist)), int(round(float(dur)))


def _points_array(points: Sequence[LatLon]) -> np.ndarray:
    pts = np.asarray(points, dtype=float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite (lat, lon) pairs")
    if (np.abs(pts[:, 0]) > 90).any() or (np.abs(pts[:, 1]) > 180).any():
        raise ValueError("points must be (lat, lon) with lat in [-90, 90], lon in [-180, 180]")
    return pts


# --------------------------------------------------------------------------- HTTP engines


class _HttpEngine:
    """Shared HTTP plumbing: one httpx client, timeouts, and errors that say what failed."""

    engine = "routing engine"

    def __init__(
        self, base_url: str, *, timeout_s: float, client: httpx.Client | None,
        fallback: GreatCircleProvider | None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{self.engine} base_url must be http(s)://… (got {base_url!r})")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self._client = client or httpx.Client(timeout=httpx.Timeout(self.timeout_s))
        self._owns_client = client is None
        self.fallback = fallback or GreatCircleProvider()

    def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        try:
            resp = self._client.request(method, url, timeout=self.timeout_s, **kwargs)
        except httpx.TimeoutException as exc:
            raise TravelTimeError(
                f"{self.engine} at {self.base_url} timed out after {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise TravelTimeError(
                f"cannot reach {self.engine} at {self.base_url}: {exc!s}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400 or not isinstance(body, dict):
            detail = self._error_detail(body) or resp.text[:200]
            raise TravelTimeError(
                f"{self.engine} at {self.base_url} answered HTTP {resp.status_code}: {detail}")
        return body

    def _error_detail(self, body: Any) -> str | None:
        return None

    def _blocks(self, n: int, size: int) -> Iterator[np.ndarray]:
        for start in range(0, n, size):
            yield np.arange(start, min(n, start + size))

    def _fill_unrouted(
        self, pts: np.ndarray, dist: np.ndarray, dur: np.ndarray, depart: datetime | None
    ) -> TravelMatrix:
        """Round to ints; fill NaN cells (no route) with the great-circle estimate."""
        missing = np.isnan(dist) | np.isnan(dur)
        if missing.any():
            log.warning("%s: %d of %d cells unrouted, filled with great-circle estimates",
                        self.engine, int(missing.sum()), missing.size)
            est = self.fallback.matrix([tuple(p) for p in pts], depart)
            dist = np.where(missing, est.distances_m, dist)
            dur = np.where(missing, est.durations_s, dur)
        return TravelMatrix(np.rint(dist).astype(np.int64), np.rint(dur).astype(np.int64),
                            missing if missing.any() else None)


def _nan_array(rows: Any, shape: tuple[int, int], what: str, engine: str) -> np.ndarray:
    """A float array from nested lists with nulls as NaN, checked against the expected shape."""
    try:
        arr = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
    except (TypeError, ValueError) as exc:
        raise TravelTimeError(f"{engine} returned malformed {what}") from exc
    if arr.shape != shape:
        raise TravelTimeError(f"{engine} returned {what} of shape {arr.shape}, expected {shape}")
    return arr


class OsrmProvider(_HttpEngine):
    """Travel times from an OSRM server (``osrm-routed``). OSRM ignores departure time.

    Big matrices are split into blocks of ``max_table_size`` sources × destinations, matching
    ``osrm-routed --max-table-size`` (default 100).
    """

    engine = "OSRM"

    def __init__(
        self, base_url: str, *, profile: str = "driving", timeout_s: float = 10.0,
        max_table_size: int = 100, client: httpx.Client | None = None,
        fallback: GreatCircleProvider | None = None,
    ) -> None:
        super().__init__(base_url, timeout_s=timeout_s, client=client, fallback=fallback)
        if max_table_size < 1:
            raise ValueError("max_table_size must be >= 1")
        self.profile = profile
        self.max_table_size = int(max_table_size)

    def _error_detail(self, body: Any) -> str | None:
        if isinstance(body, dict) and "code" in body:
            return f"{body.get('code')}: {body.get('message', '')}".strip()
        return None

    @staticmethod
    def _coords(pts: np.ndarray) -> str:
        return ";".join(f"{lon:.6f},{lat:.6f}" for lat, lon in pts.tolist())

    def matrix(self, points: Sequence[LatLon], depart: datetime | None = None) -> TravelMatrix:
        """Every point to every point via ``/table``; unroutable cells get estimates."""
        pts = _points_array(points)
        n = len(pts)
        dist = np.full((n, n), np.nan)
        dur = np.full((n, n), np.nan)
        for src in self._blocks(n, self.max_table_size):
            for dst in self._blocks(n, self.max_table_size):
                d, t = self._table_block(pts, src, dst)
                dist[np.ix_(src, dst)] = d
                dur[np.ix_(src, dst)] = t
        np.fill_diagonal(dist, 0.0)
        np.fill_diagonal(dur, 0.0)
        return self._fill_unrouted(pts, dist, dur, depart)

    def _table_block(
        self, pts: np.ndarray, src: np.ndarray, dst: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        same = src.size == dst.size and bool((src == dst).all())
        idx = src if same else np.concatenate([src, dst])
        params = {"annotations": "duration,distance"}
        if not same:
            params["sources"] = ";".join(str(i) for i in range(src.size))
            params["destinations"] = ";".join(str(i) for i in range(src.size, idx.size))
        body = self._request("GET", f"/table/v1/{self.profile}/{self._coords(pts[idx])}",
                             params=params)
        self._check_code(body, "table")
        if "distances" not in body:
            raise TravelTimeError("OSRM table response has no 'distances' "
                                  "(annotations=distance needs OSRM >= 5.18)")
        shape = (src.size, dst.size)
        return (_nan_array(body["distances"], shape, "distances", self.engine),
                _nan_array(body.get("durations"), shape, "durations", self.engine))

    def _check_code(self, body: dict[str, Any], service: str) -> None:
        if body.get("code") != "Ok":
            raise TravelTimeError(f"OSRM {service} failed: {self._error_detail(body)}")

    def route(self, a: LatLon, b: LatLon, depart: datetime | None = None) -> tuple[int, int]:
        """(metres, seconds) of OSRM's fastest route a → b."""
        pts = _points_array([a, b])
        body = self._request("GET", f"/route/v1/{self.profile}/{self._coords(pts)}",
                             params={"overview": "false", "steps": "false"})
        self._check_code(body, "route")
        routes = body.get("routes") or []
        if not routes:
            raise TravelTimeError("OSRM route returned no routes")
        return int(round(routes[0]["distance"])), int(round(routes[0]["duration"]))


class ValhallaProvider(_HttpEngine):
    """Travel times from a Valhalla server's ``/sources_to_targets`` (time-dependent).

    The departure time is sent as Valhalla ``date_time`` type 1 (depart at) in local time.
    Matrices are split into ``max_locations`` × ``max_locations`` blocks.
    """

    engine = "Valhalla"

    def __init__(
        self, base_url: str, *, costing: str = "auto", timeout_s: float = 10.0,
        max_locations: int = 50, tz: str = LOCAL_TZ, client: httpx.Client | None = None,
        fallback: GreatCircleProvider | None = None,
    ) -> None:
        super().__init__(base_url, timeout_s=timeout_s, client=client, fallback=fallback)
        if max_locations < 1:
            raise ValueError("max_locations must be >= 1")
        self.costing = costing
        self.max_locations = int(max_locations)
        self.tz = ZoneInfo(tz)

    def _error_detail(self, body: Any) -> str | None:
        if isinstance(body, dict) and "error" in body:
            return f"{body.get('error_code', '')} {body['error']}".strip()
        return None

    def _body(self, sources: np.ndarray, targets: np.ndarray, depart: datetime | None) -> dict:
        body: dict[str, Any] = {
            "sources": [{"lat": lat, "lon": lon} for lat, lon in sources.tolist()],
            "targets": [{"lat": lat, "lon": lon} for lat, lon in targets.tolist()],
            "costing": self.costing,
            "units": "kilometers",
        }
        if depart is not None:
            local = _as_utc(depart).astimezone(self.tz)
            body["date_time"] = {"type": 1, "value": local.strftime("%Y-%m-%dT%H:%M")}
        return body

    def _block(
        self, sources: np.ndarray, targets: np.ndarray, depart: datetime | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(metres, seconds) arrays for one block, NaN where there is no route."""
        body = self._request("POST", "/sources_to_targets",
                             json=self._body(sources, targets, depart))
        table = body.get("sources_to_targets")
        shape = (len(sources), len(targets))
        if isinstance(table, dict):  # verbose=false: {"distances": [[…]], "durations": [[…]]}
            km = _nan_array(table.get("distances"), shape, "distances", self.engine)
            sec = _nan_array(table.get("durations"), shape, "durations", self.engine)
        elif isinstance(table, list):  # verbose: rows of {"distance", "time", …}
            km = _nan_array([[c.get("distance") for c in row] for row in table], shape,
                            "distances", self.engine)
            sec = _nan_array([[c.get("time") for c in row] for row in table], shape,
                             "durations", self.engine)
        else:
            raise TravelTimeError("Valhalla response has no 'sources_to_targets'")
        factor = 1609.344 if body.get("units") == "miles" else 1000.0
        return km * factor, sec

    def matrix(self, points: Sequence[LatLon], depart: datetime | None = None) -> TravelMatrix:
        """Every point to every point via ``/sources_to_targets``."""
        pts = _points_array(points)
        n = len(pts)
        dist = np.full((n, n), np.nan)
        dur = np.full((n, n), np.nan)
        for src in self._blocks(n, self.max_locations):
            for dst in self._blocks(n, self.max_locations):
                d, t = self._block(pts[src], pts[dst], depart)
                dist[np.ix_(src, dst)] = d
                dur[np.ix_(src, dst)] = t
        np.fill_diagonal(dist, 0.0)
        np.fill_diagonal(dur, 0.0)
        return self._fill_unrouted(pts, dist, dur, depart)

    def route(self, a: LatLon, b: LatLon, depart: datetime | None = None) -> tuple[int, int]:
        """(metres, seconds) a → b, as a 1×1 ``/sources_to_targets``."""
        pts = _points_array([a, b])
        d, t = self._block(pts[:1], pts[1:], depart)
        if np.isnan(d[0, 0]) or np.isnan(t[0, 0]):
            raise TravelTimeError("Valhalla found no route between the two points")
        return int(round(d[0, 0])), int(round(t[0, 0]))


# --------------------------------------------------------------------------- factory


def provider_from_settings(
    routing_url: str | None, kind: str = "osrm", **options: Any
) -> TravelTimeProvider:
    """The provider the settings ask for: great-circle when no URL, else OSRM or Valhalla.

    ``options`` go to the chosen provider's constructor (e.g. ``timeout_s``,
    ``detour_factor`` for the great-circle one).
    """
    if not routing_url:
        return GreatCircleProvider(**options)
    kind_norm = kind.strip().lower()
    if kind_norm == "osrm":
        return OsrmProvider(routing_url, **options)
    if kind_norm == "valhalla":
        return ValhallaProvider(routing_url, **options)
    raise ValueError(f"unknown routing engine kind {kind!r}; expected 'osrm' or 'valhalla'")
