"""Geofences (电子围栏): polygons and circles, a fast point index, debounced enter/exit.

* :class:`Fence` — one geofence in WGS-84 lon/lat (shapely x = lon, y = lat). A polygon fence
  holds a (Multi)Polygon; a circle fence holds its centre Point and ``radius_m``. Circle
  containment is metric — the ellipsoidal distance to the centre, never a buffer in degrees.
* :class:`FenceIndex` — an STRtree over the fences' bounding geometry answering
  ``fences_containing(lat, lon)`` for a stream of fixes (and a vectorised batch variant).
* :class:`FenceTracker` — per terminal, turns raw containment into debounced ``enter`` /
  ``exit`` events (N consecutive fixes, T seconds, and a hysteresis margin in metres), so GNSS
  drift along a boundary does not flap.
* GeoJSON in and out (:func:`fence_from_geojson`, :func:`fence_to_geojson`). A GeoJSON circle
  is a Point feature with a ``radius_m`` property (GeoJSON has no circle type).

Invalid input raises :class:`FenceError` (a ``ValueError``) whose message names the problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal, TypeAlias

import numpy as np
import shapely
from numpy.typing import ArrayLike
from pyproj import Transformer
from shapely import MultiPolygon, Point, Polygon, STRtree, box
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from geo.geodesy import EARTH_RADIUS_M, WGS84, distance_m

FenceId: TypeAlias = str | int
FenceKind: TypeAlias = Literal["polygon", "circle"]
Transition: TypeAlias = Literal["enter", "exit"]

# Haversine on the mean sphere differs from the ellipsoidal distance by < 0.6 %; inside this
# relative band around the radius a circle test falls back to the exact ellipsoidal distance.
_SPHERE_BAND = 0.01
_SPHERE_BAND_ABS_M = 1.0
# Margin on a circle's bounding box, so the tree never misses a point that is inside.
_BBOX_MARGIN = 1.01


class FenceError(ValueError):
    """A geofence definition is invalid; the message names the fence and the problem."""


# --------------------------------------------------------------------------- helpers


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle metres on the mean sphere with the math module (≈1 µs)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(
        math.radians(lon2 - lon1) / 2
    ) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


def _check_lat_lon(lat: float, lon: float, what: str) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise FenceError(f"{what}: coordinate is not a finite number (lon={lon}, lat={lat})")
    if not -90.0 <= lat <= 90.0:
        raise FenceError(f"{what}: latitude {lat} out of range [-90, 90] (lon={lon})")
    if not -180.0 <= lon <= 180.0:
        raise FenceError(f"{what}: longitude {lon} out of range [-180, 180] (lat={lat})")


def _label(fence_id: object, name: object) -> str:
    return f"fence {fence_id!r} ({name})" if name else f"fence {fence_id!r}"


# --------------------------------------------------------------------------- Fence


@dataclass(frozen=True)
class Fence:
    """One geofence (电子围栏) in WGS-84 lon/lat.

    ``geometry`` is a Polygon/MultiPolygon for ``kind='polygon'`` and the centre Point for
    ``kind='circle'`` (then ``radius_m`` is required). Prefer the :meth:`polygon` and
    :meth:`circle` constructors. Points on a polygon's boundary count as inside.
    """

    id: FenceId
    name: str
    kind: FenceKind
    geometry: BaseGeometry
    radius_m: float | None = None
    speed_limit_kmh: float | None = None
    tags: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", frozenset(self.tags))
        label = _label(self.id, self.name)
        if self.id is None or (isinstance(self.id, str) and not self.id.strip()):
            raise FenceError(f"{label}: id must not be empty")
        if self.speed_limit_kmh is not None and not (
            math.isfinite(self.speed_limit_kmh) and self.speed_limit_kmh > 0
        ):
            raise FenceError(f"{label}: speed_limit_kmh must be > 0 (got {self.speed_limit_kmh})")
        if self.kind == "circle":
            _validate_circle(self, label)
        elif self.kind == "polygon":
            _validate_polygon(self.geometry, label)
            if self.radius_m is not None:
                raise FenceError(f"{label}: radius_m is only for circle fences")
        else:
            raise FenceError(f"{label}: kind must be 'polygon' or 'circle' (got {self.kind!r})")
        shapely.prepare(self.geometry)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def polygon(
        cls,
        id: FenceId,  # noqa: A002 - the natural name
        name: str,
        lonlat: Sequence[Sequence[float]],
        holes: Sequence[Sequence[Sequence[float]]] = (),
        *,
        speed_limit_kmh: float | None = None,
        tags: Iterable[str] = (),
    ) -> Fence:
        """A polygon fence from an outer ring of (lon, lat) pairs (closed automatically)."""
        label = _label(id, name)
        shell = _ring(lonlat, label, close=True)
        inner = [_ring(h, label, close=True) for h in holes]
        return cls(id, name, "polygon", Polygon(shell, inner), None, speed_limit_kmh,
                   frozenset(tags))

    @classmethod
    def circle(
        cls,
        id: FenceId,  # noqa: A002 - the natural name
        name: str,
        lat: float,
        lon: float,
        radius_m: float,
        *,
        speed_limit_kmh: float | None = None,
        tags: Iterable[str] = (),
    ) -> Fence:
        """A circle fence: centre (lat, lon) and a radius in metres."""
        return cls(id, name, "circle", Point(lon, lat), radius_m, speed_limit_kmh,
                   frozenset(tags))

    # ------------------------------------------------------------------ queries

    @property
    def centre(self) -> tuple[float, float]:
        """(lat, lon) of the circle centre, or of the polygon's representative point."""
        p = self.geometry if self.kind == "circle" else self.geometry.representative_point()
        return float(p.y), float(p.x)

    def contains(self, lat: float, lon: float) -> bool:
        """True if the WGS-84 point is inside the fence (boundary included)."""
        if self.kind == "circle":
            return self._circle_contains(lat, lon)
        return bool(shapely.intersects_xy(self.geometry, lon, lat))

    def _circle_contains(self, lat: float, lon: float) -> bool:
        clat, clon = self.geometry.y, self.geometry.x
        r = self.radius_m or 0.0
        d = _haversine(lat, lon, clat, clon)
        band = r * _SPHERE_BAND + _SPHERE_BAND_ABS_M
        if d < r - band:
            return True
        if d > r + band:
            return False
        return distance_m(clat, clon, lat, lon) <= r

    def signed_distance_m(self, lat: float, lon: float) -> float:
        """Metres from the point to the fence boundary: negative inside, positive outside.

        Circles use the ellipsoidal distance to the centre; polygons are measured in an
        azimuthal equidistant projection centred on the fence (error < 1e-4 for city-sized
        fences), which is plenty for hysteresis margins.
        """
        if self.kind == "circle":
            clat, clon = self.geometry.y, self.geometry.x
            return distance_m(clat, clon, lat, lon) - (self.radius_m or 0.0)
        x, y = self._to_local.transform(lon, lat)
        p = Point(x, y)
        d = float(shapely.distance(self._local_boundary, p))
        return -d if self.contains(lat, lon) else d

    @cached_property
    def _to_local(self) -> Transformer:
        lat, lon = self.centre
        return Transformer.from_crs(
            "EPSG:4326", f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m",
            always_xy=True,
        )

    @cached_property
    def _local_boundary(self) -> BaseGeometry:
        tr = self._to_local

        def project(xy: np.ndarray) -> np.ndarray:
            x, y = tr.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(self.geometry.boundary, project)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min_lon, min_lat, max_lon, max_lat) covering the whole fence (circles: geodesic)."""
        if self.kind == "polygon":
            b = self.geometry.bounds
            return float(b[0]), float(b[1]), float(b[2]), float(b[3])
        clat, clon = self.geometry.y, self.geometry.x
        r = (self.radius_m or 0.0) * _BBOX_MARGIN + _SPHERE_BAND_ABS_M
        lons, lats, _ = WGS84.fwd([clon] * 4, [clat] * 4, [0.0, 90.0, 180.0, 270.0], [r] * 4)
        return float(min(lons)), float(min(lats)), float(max(lons)), float(max(lats))

    @property
    def index_geometry(self) -> BaseGeometry:
        """What the STRtree stores: the polygon itself, or a circle's bounding box."""
        return self.geometry if self.kind == "polygon" else box(*self.bounds)


def _ring(
    coords: Sequence[Sequence[float]], label: str, *, close: bool
) -> list[tuple[float, float]]:
    """Validate one ring of (lon, lat[, alt]) positions; optionally close it."""
    pts: list[tuple[float, float]] = []
    for pos in coords:
        if len(pos) < 2:
            raise FenceError(f"{label}: position {list(pos)!r} needs at least lon and lat")
        lon, lat = float(pos[0]), float(pos[1])
        _check_lat_lon(lat, lon, label)
        pts.append((lon, lat))
    if close and pts and pts[0] != pts[-1]:
        pts.append(pts[0])
    if len(pts) < 4:
        raise FenceError(f"{label}: a polygon ring needs at least 3 distinct corners "
                         f"(4 positions closed), got {len(pts)} positions")
    if pts[0] != pts[-1]:
        raise FenceError(f"{label}: polygon ring is not closed (first {pts[0]} != last {pts[-1]})")
    return pts


def _validate_polygon(geom: BaseGeometry, label: str) -> None:
    if not isinstance(geom, Polygon | MultiPolygon):
        raise FenceError(f"{label}: polygon fence needs a Polygon or MultiPolygon, "
                         f"got {geom.geom_type}")
    if geom.is_empty:
        raise FenceError(f"{label}: polygon is empty")
    coords = shapely.get_coordinates(geom)
    for lon, lat in coords:
        _check_lat_lon(float(lat), float(lon), label)
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        if "intersection" in reason.lower():
            raise FenceError(f"{label}: self-intersecting polygon: {reason}")
        raise FenceError(f"{label}: invalid polygon: {reason}")
    if geom.area <= 0:
        raise FenceError(f"{label}: polygon has zero area")


def _validate_circle(fence: Fence, label: str) -> None:
    geom = fence.geometry
    if not isinstance(geom, Point) or geom.is_empty:
        raise FenceError(f"{label}: circle fence needs its centre as a Point, got "
                         f"{getattr(geom, 'geom_type', type(geom).__name__)}")
    _check_lat_lon(geom.y, geom.x, label)
    r = fence.radius_m
    if r is None or not math.isfinite(r) or r <= 0:
        raise FenceError(f"{label}: circle radius_m must be > 0 (got {r})")
    if r > 1_000_000:
        raise FenceError(f"{label}: circle radius_m {r} is over 1,000 km; use a polygon")
    west, south, east, north = fence.bounds
    if north >= 90.0 or south <= -90.0 or east - west > 180.0 or east < west:
        raise FenceError(f"{label}: circle crosses a pole or the antimeridian (not supported)")


# --------------------------------------------------------------------------- index


class FenceIndex:
    """A spatial index over fences: which fences contain this fix?

    Polygons are answered exactly by the STRtree's predicate query; circles are stored as
    their bounding boxes and refined by metric distance to the centre.
    """

    def __init__(self, fences: Iterable[Fence]) -> None:
        self._fences: tuple[Fence, ...] = tuple(fences)
        self._by_id: dict[FenceId, Fence] = {}
        for f in self._fences:
            if f.id in self._by_id:
                raise FenceError(f"duplicate fence id {f.id!r}")
            self._by_id[f.id] = f
        self._is_circle = np.array([f.kind == "circle" for f in self._fences], dtype=bool)
        geoms = [f.index_geometry for f in self._fences]
        shapely.prepare(geoms)
        self._tree = STRtree(geoms)
        self._grid = _OccupancyGrid([f.bounds for f in self._fences])

    def __len__(self) -> int:
        return len(self._fences)

    def __iter__(self) -> Iterator[Fence]:
        return iter(self._fences)

    def __contains__(self, fence_id: object) -> bool:
        return fence_id in self._by_id

    def get(self, fence_id: FenceId) -> Fence | None:
        """The fence with this id, or None."""
        return self._by_id.get(fence_id)

    def fences_containing(self, lat: float, lon: float) -> list[FenceId]:
        """Ids of the fences containing the WGS-84 point, in the index's order."""
        if not self._grid.maybe(lat, lon):
            return []
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        if not len(hits):
            return []
        fences = self._fences
        out: list[FenceId] = []
        for i in sorted(hits.tolist()):
            f = fences[i]
            if f.kind == "circle" and not f._circle_contains(lat, lon):
                continue
            out.append(f.id)
        return out

    def speed_limit_kmh(self, lat: float, lon: float) -> float | None:
        """The strictest speed limit of the fences containing the point, or None."""
        limits = [
            f.speed_limit_kmh
            for fid in self.fences_containing(lat, lon)
            if (f := self._by_id[fid]).speed_limit_kmh is not None
        ]
        return min(limits) if limits else None

    def fences_containing_many(self, lats: ArrayLike, lons: ArrayLike) -> list[list[FenceId]]:
        """Vectorised :meth:`fences_containing` for a batch of points."""
        la = np.asarray(lats, dtype=float)
        lo = np.asarray(lons, dtype=float)
        result: list[list[FenceId]] = [[] for _ in range(la.size)]
        if la.size == 0 or not self._fences:
            return result
        pt_idx, f_idx = self._tree.query(shapely.points(lo, la), predicate="intersects")
        keep = self._refine_circles(la, lo, pt_idx, f_idx)
        order = np.lexsort((f_idx[keep], pt_idx[keep]))
        for p, f in zip(pt_idx[keep][order].tolist(), f_idx[keep][order].tolist(), strict=True):
            result[p].append(self._fences[f].id)
        return result

    def _refine_circles(
        self, la: np.ndarray, lo: np.ndarray, pt_idx: np.ndarray, f_idx: np.ndarray
    ) -> np.ndarray:
        """Boolean mask over the candidate pairs: polygons pass, circles by metric distance."""
        keep = np.ones(pt_idx.shape, dtype=bool)
        circ = self._is_circle[f_idx]
        if not circ.any():
            return keep
        pi, fi = pt_idx[circ], f_idx[circ]
        clat = np.array([self._fences[i].geometry.y for i in fi.tolist()])
        clon = np.array([self._fences[i].geometry.x for i in fi.tolist()])
        rad = np.array([self._fences[i].radius_m for i in fi.tolist()], dtype=float)
        p1, p2 = np.radians(la[pi]), np.radians(clat)
        a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(
            np.radians(clon - lo[pi]) / 2) ** 2
        d = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
        inside = d <= rad
        near = np.abs(d - rad) <= rad * _SPHERE_BAND + _SPHERE_BAND_ABS_M
        if near.any():
            _, _, exact = WGS84.inv(clon[near], clat[near], lo[pi][near], la[pi][near])
            inside[near] = np.asarray(exact) <= rad[near]
        keep[circ] = inside
        return keep


class _OccupancyGrid:
    """A coarse bitmap of cells touched by some fence's bounding box.

    Most fixes of a fleet are in no fence; for those a lookup here (well under a microsecond)
    answers "none" without building a shapely Point or querying the tree.
    """

    def __init__(self, bounds: Sequence[tuple[float, float, float, float]], cells: int = 512):
        self.nx = self.ny = 0
        self.x0 = self.y0 = math.inf
        self.x1 = self.y1 = -math.inf
        if not bounds:
            return
        b = np.asarray(bounds, dtype=float)
        self.x0, self.y0 = float(b[:, 0].min()), float(b[:, 1].min())
        self.x1, self.y1 = float(b[:, 2].max()), float(b[:, 3].max())
        self.nx = self.ny = cells
        self.sx = cells / max(self.x1 - self.x0, 1e-9)
        self.sy = cells / max(self.y1 - self.y0, 1e-9)
        occ = np.zeros((cells, cells), dtype=np.uint8)
        for x0, y0, x1, y1 in b.tolist():
            i0, i1 = self._cell(y0, self.y0, self.sy), self._cell(y1, self.y0, self.sy)
            j0, j1 = self._cell(x0, self.x0, self.sx), self._cell(x1, self.x0, self.sx)
            occ[i0:i1 + 1, j0:j1 + 1] = 1
        self._occ = occ.tobytes()

    def _cell(self, v: float, v0: float, scale: float) -> int:
        return min(self.nx - 1, max(0, int((v - v0) * scale)))

    def maybe(self, lat: float, lon: float) -> bool:
        """False only if no fence's bounding box can contain the point (NaN → False)."""
        if not (self.x0 <= lon <= self.x1 and self.y0 <= lat <= self.y1):
            return False
        i = min(self.ny - 1, int((lat - self.y0) * self.sy))
        j = min(self.nx - 1, int((lon - self.x0) * self.sx))
        return bool(self._occ[i * self.nx + j])


# --------------------------------------------------------------------------- tracker


@dataclass(frozen=True)
class DebounceRule:
    """When a raw inside/outside change becomes an enter/exit event.

    ``min_fixes`` consecutive fixes and ``min_seconds`` elapsed (from the first fix of the run
    to the current one) must both hold (``mode='all'``) or either (``mode='any'``; an unset
    ``min_seconds=0`` does not count there). ``hysteresis_m``: to enter, a point must be at
    least this deep inside; to exit, at least this far outside — drift within the band keeps
    the current state.
    """

    min_fixes: int = 2
    min_seconds: float = 0.0
    hysteresis_m: float = 0.0
    mode: Literal["all", "any"] = "all"

    def __post_init__(self) -> None:
        if self.min_fixes < 1:
            raise ValueError(f"min_fixes must be >= 1 (got {self.min_fixes})")
        if self.min_seconds < 0 or self.hysteresis_m < 0:
            raise ValueError("min_seconds and hysteresis_m must be >= 0")
        if self.mode not in ("all", "any"):
            raise ValueError(f"mode must be 'all' or 'any' (got {self.mode!r})")

    def satisfied(self, count: int, elapsed_s: float) -> bool:
        """True if a run of ``count`` fixes spanning ``elapsed_s`` seconds confirms a change."""
        fixes_ok = count >= self.min_fixes
        time_ok = elapsed_s >= self.min_seconds
        if self.mode == "all":
            return fixes_ok and time_ok
        return fixes_ok or (self.min_seconds > 0 and time_ok)


@dataclass(frozen=True)
class FenceEvent:
    """A confirmed transition: the terminal entered or left a fence.

    ``time`` is the fix that confirmed it; ``since`` the first fix of the run (the better
    estimate of when the boundary was actually crossed).
    """

    fence_id: FenceId
    transition: Transition
    time: datetime
    since: datetime
    lat: float
    lon: float
    terminal_id: str | None = None


@dataclass
class _Pending:
    inside: bool
    since: datetime
    count: int


class FenceTracker:
    """Debounced enter/exit detection for one terminal against a :class:`FenceIndex`.

    Feed fixes in time order with :meth:`update`; fixes older than the last one are ignored.
    ``initially_inside`` seeds the confirmed state (e.g. restored after a restart) so no
    spurious ``enter`` is emitted; ``terminal_id`` is copied into every event.
    """

    def __init__(
        self,
        index: FenceIndex,
        rule: DebounceRule | None = None,
        initially_inside: Iterable[FenceId] = (),
        terminal_id: str | None = None,
    ) -> None:
        self.rule = rule or DebounceRule()
        self.terminal_id = terminal_id
        self._index = index
        self._inside: set[FenceId] = {f for f in initially_inside if f in index}
        self._pending: dict[FenceId, _Pending] = {}
        self._last_time: datetime | None = None

    @property
    def inside(self) -> frozenset[FenceId]:
        """Ids of the fences the terminal is confirmed to be inside."""
        return frozenset(self._inside)

    def set_index(self, index: FenceIndex) -> None:
        """Swap in a rebuilt index; state for fences that no longer exist is dropped silently."""
        self._index = index
        self._inside = {f for f in self._inside if f in index}
        self._pending = {f: p for f, p in self._pending.items() if f in index}

    def update(self, lat: float, lon: float, time: datetime) -> list[FenceEvent]:
        """Process one fix; return the transitions it confirms (usually none)."""
        if self._last_time is not None and time < self._last_time:
            return []
        self._last_time = time
        containing = self._index.fences_containing(lat, lon)
        candidates = dict.fromkeys([*containing, *self._inside, *self._pending])
        raw_in = set(containing)
        events: list[FenceEvent] = []
        for fid in candidates:
            observed = self._observe(fid, fid in raw_in, lat, lon)
            event = self._advance(fid, observed, lat, lon, time)
            if event is not None:
                events.append(event)
        return events

    def _observe(self, fid: FenceId, raw_inside: bool, lat: float, lon: float) -> bool:
        """The state this fix argues for, after the hysteresis band."""
        was_inside = fid in self._inside
        margin = self.rule.hysteresis_m
        if margin <= 0 or raw_inside == was_inside:
            return raw_inside
        fence = self._index.get(fid)
        if fence is None:
            return False
        sd = fence.signed_distance_m(lat, lon)
        if was_inside:  # raw says outside: leave only when clearly outside
            return sd < margin
        return sd <= -margin  # raw says inside: enter only when clearly inside

    def _advance(
        self, fid: FenceId, observed: bool, lat: float, lon: float, time: datetime
    ) -> FenceEvent | None:
        confirmed = fid in self._inside
        if observed == confirmed:
            self._pending.pop(fid, None)
            return None
        run = self._pending.get(fid)
        if run is None or run.inside != observed:
            run = self._pending[fid] = _Pending(observed, time, 0)
        run.count += 1
        if not self.rule.satisfied(run.count, (time - run.since).total_seconds()):
            return None
        del self._pending[fid]
        if observed:
            self._inside.add(fid)
        else:
            self._inside.discard(fid)
        return FenceEvent(fid, "enter" if observed else "exit", time, run.since, lat, lon,
                          self.terminal_id)


# --------------------------------------------------------------------------- GeoJSON


def fence_from_geojson(obj: Mapping[str, Any] | str) -> Fence:
    """A Fence from a GeoJSON Feature (dict or JSON text).

    Polygon/MultiPolygon → polygon fence; Point with ``properties.radius_m`` → circle fence.
    The id is the Feature's ``id`` or ``properties.id``; ``name``, ``speed_limit_kmh`` and
    ``tags`` (list of strings) come from ``properties``.
    """
    feat = _load_feature(obj)
    props = feat.get("properties") or {}
    fence_id = feat.get("id", props.get("id"))
    if fence_id is None:
        raise FenceError("GeoJSON feature has no id (Feature.id or properties.id)")
    name = str(props.get("name", ""))
    label = _label(fence_id, name)
    geom = feat.get("geometry")
    if not isinstance(geom, Mapping):
        raise FenceError(f"{label}: GeoJSON feature has no geometry")
    common: dict[str, Any] = {
        "speed_limit_kmh": _opt_float(props.get("speed_limit_kmh"), "speed_limit_kmh", label),
        "tags": _tags(props.get("tags"), label),
    }
    gtype = geom.get("type")
    coords = geom.get("coordinates")
    if gtype == "Point":
        return _circle_from_geojson(fence_id, name, coords, props, label, common)
    if gtype == "Polygon":
        return Fence(fence_id, name, "polygon", _polygon(coords, label), **common)
    if gtype == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise FenceError(f"{label}: MultiPolygon has no polygons")
        parts = [_polygon(c, label) for c in coords]
        return Fence(fence_id, name, "polygon", MultiPolygon(parts), **common)
    raise FenceError(f"{label}: unsupported geometry type {gtype!r} "
                     "(expected Polygon, MultiPolygon, or Point with radius_m)")


def _load_feature(obj: Mapping[str, Any] | str) -> Mapping[str, Any]:
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise FenceError(f"GeoJSON is not valid JSON: {exc}") from exc
    if not isinstance(obj, Mapping) or obj.get("type") != "Feature":
        got = obj.get("type") if isinstance(obj, Mapping) else type(obj).__name__
        raise FenceError(f"expected a GeoJSON Feature, got {got!r}")
    return obj


def _circle_from_geojson(
    fence_id: FenceId, name: str, coords: Any, props: Mapping[str, Any], label: str,
    common: dict[str, Any],
) -> Fence:
    if not isinstance(coords, list | tuple) or len(coords) < 2:
        raise FenceError(f"{label}: Point needs [lon, lat] coordinates, got {coords!r}")
    radius = _opt_float(props.get("radius_m"), "radius_m", label)
    if radius is None:
        raise FenceError(f"{label}: a Point fence is a circle and needs properties.radius_m")
    lon, lat = float(coords[0]), float(coords[1])
    _check_lat_lon(lat, lon, label)
    return Fence(fence_id, name, "circle", Point(lon, lat), radius, **common)


def _polygon(rings: Any, label: str) -> Polygon:
    if not isinstance(rings, list | tuple) or not rings:
        raise FenceError(f"{label}: Polygon has no rings")
    shell, *holes = (_ring(r, label, close=False) for r in rings)
    return Polygon(shell, holes)


def _opt_float(value: Any, name: str, label: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise FenceError(f"{label}: {name} must be a number (got {value!r})") from exc


def _tags(value: Any, label: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise FenceError(f"{label}: tags must be a list of strings (got {value!r})")
    return frozenset(str(t) for t in value)


def fence_to_geojson(
    fence: Fence, *, circle_as_polygon: bool = False, segments: int = 64
) -> dict[str, Any]:
    """A GeoJSON Feature for the fence.

    Circles become a Point with ``properties.radius_m`` (round-trips through
    :func:`fence_from_geojson`), or with ``circle_as_polygon=True`` a geodesic polygon of
    ``segments`` sides for map display (``radius_m`` and the centre stay in the properties).
    """
    props: dict[str, Any] = {"id": fence.id, "name": fence.name, "kind": fence.kind}
    if fence.speed_limit_kmh is not None:
        props["speed_limit_kmh"] = fence.speed_limit_kmh
    if fence.tags:
        props["tags"] = sorted(fence.tags)
    if fence.kind == "circle":
        props["radius_m"] = fence.radius_m
        clat, clon = fence.centre
        if circle_as_polygon:
            props["centre"] = [clon, clat]
            geometry = mapping(circle_polygon(clat, clon, fence.radius_m or 0.0,
                                                               segments))
        else:
            geometry = {"type": "Point", "coordinates": [clon, clat]}
    else:
        geometry = mapping(fence.geometry)
    return {"type": "Feature", "id": fence.id, "geometry": _plain(geometry), "properties": props}


def _plain(obj: Any) -> Any:
    """Tuples → lists, so the dict is JSON-shaped and compares equal after a JSON round trip."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def circle_polygon(lat: float, lon: float, radius_m: float, segments: int = 64) -> Polygon:
    """A geodesic circle as a lon/lat polygon (for display; containment uses distance)."""
    az = np.linspace(0.0, 360.0, segments, endpoint=False)
    lons, lats, _ = WGS84.fwd(np.full(segments, lon), np.full(segments, lat), az,
                              np.full(segments, radius_m))
    return Polygon(np.column_stack([lons, lats]))


def fences_from_geojson(obj: Mapping[str, Any] | str) -> list[Fence]:
    """Fences from a GeoJSON FeatureCollection (dict or JSON text)."""
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise FenceError(f"GeoJSON is not valid JSON: {exc}") from exc
    if not isinstance(obj, Mapping) or obj.get("type") != "FeatureCollection":
        got = obj.get("type") if isinstance(obj, Mapping) else type(obj).__name__
        raise FenceError(f"expected a GeoJSON FeatureCollection, got {got!r}")
    return [fence_from_geojson(f) for f in obj.get("features") or []]


def fences_to_geojson(fences: Iterable[Fence], **kwargs: Any) -> dict[str, Any]:
    """A GeoJSON FeatureCollection for the fences (kwargs as for :func:`fence_to_geojson`)."""
    return {"type": "FeatureCollection",
            "features": [fence_to_geojson(f, **kwargs) for f in fences]}
