"""A synthetic city road network (模拟城市路网) for simulators, tests and the console map.

The network is a jittered grid around a centre point (default: a Chengdu-like city at
30.66 N, 104.06 E, about 10 km across).  Every ``arterial_every``-th grid line is an
arterial (主干道), the outer ring and the middle cross are an expressway-like ring road
(快速路), the rest are local streets (支路).  A seeded fraction of local street segments is
removed (keeping the network connected) so routes are not all Manhattan staircases.
Traffic lights (红绿灯) sit at some intersections; named places (行政中心, 车库, 宾馆, 区政府)
are snapped to nodes.

Everything is deterministic for a given ``seed``.  Shortest paths use Dijkstra on travel time
(heapq); :meth:`City.to_geojson` exports roads, lights and places.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from geo.geodesy import destination, distance_m

RoadClass = Literal["expressway", "arterial", "local"]

#: Speed limits per road class, km/h (城市道路限速).
SPEED_LIMITS_KMH: dict[str, float] = {"expressway": 80.0, "arterial": 60.0, "local": 40.0}

#: Chinese names per road class, used in GeoJSON properties.
ROAD_CLASS_ZH: dict[str, str] = {"expressway": "快速路", "arterial": "主干道", "local": "支路"}


@dataclass(frozen=True, slots=True)
class Node:
    """An intersection (路口)."""

    id: int
    lat: float
    lon: float
    light: TrafficLight | None = None


@dataclass(frozen=True, slots=True)
class TrafficLight:
    """A fixed-time signal (红绿灯): red while ``(t + offset_s) % cycle_s < red_s``."""

    cycle_s: float
    red_s: float
    offset_s: float

    def is_red(self, t_s: float) -> bool:
        """Whether the light is red at epoch seconds ``t_s``."""
        return (t_s + self.offset_s) % self.cycle_s < self.red_s

    def next_green_s(self, t_s: float) -> float:
        """Epoch seconds at which the light next turns (or is) green."""
        phase = (t_s + self.offset_s) % self.cycle_s
        if phase >= self.red_s:
            return t_s
        return t_s + (self.red_s - phase)


@dataclass(frozen=True, slots=True)
class Edge:
    """A directed road segment between two intersections."""

    u: int
    v: int
    road_class: RoadClass
    name: str
    length_m: float

    @property
    def speed_limit_kmh(self) -> float:
        """Speed limit of this road (限速), km/h."""
        return SPEED_LIMITS_KMH[self.road_class]

    @property
    def travel_time_s(self) -> float:
        """Free-flow travel time at the speed limit, seconds."""
        return self.length_m / (self.speed_limit_kmh / 3.6)


@dataclass(frozen=True, slots=True)
class Place:
    """A named place (地点): the administrative centre, a garage, hotel or district office."""

    id: str
    name: str
    kind: str
    node: int
    lat: float
    lon: float


@dataclass(slots=True)
class RouteLeg:
    """A drivable route: node ids, polyline, per-segment speed limits and lights at vertices."""

    nodes: list[int]
    lats: list[float]
    lons: list[float]
    speed_limits_kmh: list[float]  # one per segment (len(lats) - 1)
    lights: list[TrafficLight | None]  # one per vertex (len(lats))
    road_names: list[str] = field(default_factory=list)

    @property
    def length_m(self) -> float:
        """Geodesic length of the polyline, metres."""
        return sum(
            distance_m(self.lats[i], self.lons[i], self.lats[i + 1], self.lons[i + 1])
            for i in range(len(self.lats) - 1)
        )


class City:
    """The road graph with places; build one with :func:`build_city`."""

    def __init__(self, nodes: dict[int, Node], edges: Iterable[Edge], places: Iterable[Place],
                 centre: tuple[float, float]) -> None:
        self.nodes = nodes
        self.centre = centre
        self.adj: dict[int, dict[int, Edge]] = {n: {} for n in nodes}
        for e in edges:
            self.adj[e.u][e.v] = e
        self.places: dict[str, Place] = {p.id: p for p in places}

    @property
    def edges(self) -> list[Edge]:
        """All directed edges."""
        return [e for nbrs in self.adj.values() for e in nbrs.values()]

    def place(self, key: str) -> Place:
        """A place by id or by Chinese name."""
        if key in self.places:
            return self.places[key]
        for p in self.places.values():
            if p.name == key:
                return p
        raise KeyError(f"unknown place {key!r}")

    def shortest_path(self, source: int, target: int, weight: str = "time") -> list[int]:
        """Dijkstra (heapq) from node ``source`` to ``target``; ``weight`` is time or length."""
        if source == target:
            return [source]
        dist: dict[int, float] = {source: 0.0}
        prev: dict[int, int] = {}
        heap: list[tuple[float, int]] = [(0.0, source)]
        done: set[int] = set()
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            if u == target:
                break
            for v, e in self.adj[u].items():
                w = e.travel_time_s if weight == "time" else e.length_m
                nd = d + w
                if nd < dist.get(v, math.inf):
                    dist[v] = nd
                    prev[v] = u
                    heapq.heappush(heap, (nd, v))
        if target not in dist:
            raise ValueError(f"no path from {source} to {target}")
        path = [target]
        while path[-1] != source:
            path.append(prev[path[-1]])
        return path[::-1]

    def route(self, stops: Sequence[str | int]) -> RouteLeg:
        """A route through places (ids/names) or node ids, chained shortest paths."""
        node_ids = [s if isinstance(s, int) else self.place(s).node for s in stops]
        path: list[int] = [node_ids[0]]
        for a, b in zip(node_ids, node_ids[1:], strict=False):
            path.extend(self.shortest_path(a, b)[1:])
        return self.leg_from_nodes(path)

    def leg_from_nodes(self, path: Sequence[int]) -> RouteLeg:
        """Turn a node path into a :class:`RouteLeg` (polyline, limits, lights)."""
        lats = [self.nodes[n].lat for n in path]
        lons = [self.nodes[n].lon for n in path]
        limits: list[float] = []
        names: list[str] = []
        for a, b in zip(path, path[1:], strict=False):
            e = self.adj[a][b]
            limits.append(e.speed_limit_kmh)
            names.append(e.name)
        lights: list[TrafficLight | None] = [self.nodes[n].light for n in path]
        # Lights only matter where the car passes through; not at its origin or destination.
        if lights:
            lights[0] = None
            lights[-1] = None
        return RouteLeg(list(path), lats, lons, limits, lights, names)

    def nearest_node(self, lat: float, lon: float) -> int:
        """The node closest to a point."""
        return min(self.nodes.values(), key=lambda n: (n.lat - lat) ** 2 + (n.lon - lon) ** 2).id

    def to_geojson(self) -> dict[str, Any]:
        """GeoJSON FeatureCollection: roads (one LineString per undirected edge), lights, places."""
        features: list[dict[str, Any]] = []
        seen: set[tuple[int, int]] = set()
        for e in self.edges:
            key = (min(e.u, e.v), max(e.u, e.v))
            if key in seen:
                continue
            seen.add(key)
            a, b = self.nodes[e.u], self.nodes[e.v]
            features.append({
                "type": "Feature",
                "geometry": {"type": "LineString",
                             "coordinates": [[a.lon, a.lat], [b.lon, b.lat]]},
                "properties": {"kind": "road", "road_class": e.road_class,
                               "road_class_zh": ROAD_CLASS_ZH[e.road_class], "name": e.name,
                               "speed_limit_kmh": e.speed_limit_kmh,
                               "length_m": round(e.length_m, 1)},
            })
        for n in self.nodes.values():
            if n.light is not None:
                features.append({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [n.lon, n.lat]},
                    "properties": {"kind": "traffic_light", "node": n.id,
                                   "cycle_s": n.light.cycle_s, "red_s": n.light.red_s},
                })
        for p in self.places.values():
            features.append({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]},
                "properties": {"kind": "place", "id": p.id, "name": p.name,
                               "place_kind": p.kind, "node": p.node},
            })
        return {"type": "FeatureCollection", "features": features}


_STREET_NAMES_NS = ["人民路", "青年路", "文化路", "解放路", "建设路", "东风路", "和平路",
                    "友谊路", "光华路", "新华路", "红星路", "锦江路", "天府路", "长顺路"]
_STREET_NAMES_EW = ["顺城街", "东大街", "西大街", "中山街", "府河街", "蜀都大道", "金河路",
                    "盐市口街", "春熙路", "草堂路", "浣花路", "玉林路", "芳草街", "桂溪路"]

_PLACES: list[tuple[str, str, str, float, float]] = [
    # id, name, kind, fraction east, fraction north (0..1 across the grid)
    ("admin-centre", "行政中心", "admin_centre", 0.50, 0.50),
    ("garage-central", "车辆综合保障中心车库", "garage", 0.55, 0.45),
    ("garage-east", "东区车库", "garage", 0.85, 0.40),
    ("garage-west", "西区车库", "garage", 0.15, 0.60),
    ("hotel-jinjiang", "锦江宾馆", "hotel", 0.45, 0.30),
    ("hotel-tianfu", "天府宾馆", "hotel", 0.70, 0.75),
    ("hotel-airport", "机场宾馆", "hotel", 0.10, 0.10),
    ("district-east", "东城区政府", "district_office", 0.90, 0.55),
    ("district-west", "西城区政府", "district_office", 0.10, 0.45),
    ("district-south", "南城区政府", "district_office", 0.50, 0.05),
    ("district-north", "北城区政府", "district_office", 0.45, 0.95),
    ("district-hightech", "高新区管委会", "district_office", 0.80, 0.10),
]


def build_city(seed: int = 7, centre: tuple[float, float] = (30.66, 104.06),
               size_m: float = 10_000.0, spacing_m: float = 500.0, arterial_every: int = 4,
               jitter_m: float = 40.0, drop_local: float = 0.12,
               light_prob_arterial: float = 0.8, light_prob_local: float = 0.25) -> City:
    """Build the deterministic synthetic city (模拟城市).

    ``size_m`` across with intersections every ``spacing_m``; grid lines with index divisible
    by ``arterial_every`` are arterials, the outer ring and the middle cross are expressway.
    """
    rng = random.Random(seed)
    n = int(round(size_m / spacing_m)) + 1
    half = (n - 1) * spacing_m / 2
    mid = (n - 1) // 2

    def line_class(k: int) -> RoadClass:
        if k in (0, n - 1, mid):
            return "expressway"
        if k % arterial_every == 0:
            return "arterial"
        return "local"

    nodes: dict[int, Node] = {}
    for i in range(n):  # i: column (east), j: row (north)
        for j in range(n):
            east = -half + i * spacing_m + rng.uniform(-jitter_m, jitter_m)
            north = -half + j * spacing_m + rng.uniform(-jitter_m, jitter_m)
            lat, lon = destination(centre[0], centre[1], 0.0, north)
            lat, lon = destination(lat, lon, 90.0, east)
            cls_a, cls_b = line_class(i), line_class(j)
            light: TrafficLight | None = None
            if "expressway" not in (cls_a, cls_b):
                p = light_prob_arterial if "arterial" in (cls_a, cls_b) else light_prob_local
                if cls_a == cls_b == "local":
                    p = light_prob_local * 0.4
                if rng.random() < p:
                    cycle = rng.choice([60.0, 90.0, 120.0])
                    light = TrafficLight(cycle, cycle * rng.uniform(0.35, 0.55),
                                         rng.uniform(0, cycle))
            nodes[i * n + j] = Node(i * n + j, lat, lon, light)

    undirected: list[tuple[int, int, RoadClass, str]] = []
    for i in range(n):
        for j in range(n):
            u = i * n + j
            if i + 1 < n:  # east-west street along row j
                undirected.append((u, (i + 1) * n + j, line_class(j),
                                   _STREET_NAMES_EW[j % len(_STREET_NAMES_EW)]))
            if j + 1 < n:  # north-south street along column i
                undirected.append((u, i * n + j + 1, line_class(i),
                                   _STREET_NAMES_NS[i % len(_STREET_NAMES_NS)]))

    kept = _drop_local_edges(undirected, drop_local, rng, len(nodes))
    edges: list[Edge] = []
    for u, v, cls, name in kept:
        length = distance_m(nodes[u].lat, nodes[u].lon, nodes[v].lat, nodes[v].lon)
        edges.append(Edge(u, v, cls, name, length))
        edges.append(Edge(v, u, cls, name, length))

    places: list[Place] = []
    for pid, name, kind, fx, fy in _PLACES:
        i = min(n - 2, max(1, int(round(fx * (n - 1)))))
        j = min(n - 2, max(1, int(round(fy * (n - 1)))))
        node = nodes[i * n + j]
        places.append(Place(pid, name, kind, node.id, node.lat, node.lon))
    return City(nodes, edges, places, centre)


def _drop_local_edges(undirected: list[tuple[int, int, RoadClass, str]], frac: float,
                      rng: random.Random, n_nodes: int) -> list[tuple[int, int, RoadClass, str]]:
    """Remove a fraction of local edges, skipping any removal that disconnects the graph."""
    kept = list(undirected)
    candidates = [k for k, e in enumerate(undirected) if e[2] == "local"]
    rng.shuffle(candidates)
    target = int(frac * len(candidates))
    removed: set[int] = set()
    for k in candidates:
        if len(removed) >= target:
            break
        trial = removed | {k}
        if _connected([e for idx, e in enumerate(undirected) if idx not in trial], n_nodes):
            removed = trial
    kept = [e for idx, e in enumerate(undirected) if idx not in removed]
    return kept


def _connected(edges: list[tuple[int, int, RoadClass, str]], n_nodes: int) -> bool:
    """Whether the undirected edge list connects all nodes (union-find)."""
    parent = list(range(n_nodes))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    comps = n_nodes
    for u, v, _, _ in edges:
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[ru] = rv
            comps -= 1
    return comps == 1
