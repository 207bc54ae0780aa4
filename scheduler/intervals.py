"""Local search for days of fixed-interval bookings (the official-car day).

On an official-car day (:mod:`scheduler.dayplan`) every booking holds its car for a fixed
interval: service starts exactly at the booked time and the car is free again at a known
time and place; a car carries one booking at a time.  A route is then nothing but the
bookings of a duty sorted by start time, and whether booking *j* can follow booking *i* on a
car is one precomputed boolean (free time of *i* + drive to *j*'s pickup ≤ start of *j*).
This module exploits that to search far faster than a general engine can:

* **ejection-chain insertion** of unserved bookings (most important first): straight into
  a gap, or by pushing the one or two bookings in the way onto other duties, or — when
  they cannot move — by displacing bookings of lower priority;
* **distance moves**: relocating a booking, and exchanging the tails of two duties at a
  point in time (2-opt*, at random partners and driven by each booking's nearest possible
  successors), which re-pairs the chains of bookings with the garages;
* when no move helps any more, **ruin and recreate** (a dozen bookings near in space and
  time taken out and put back with the unserved ones nearby), kept only when better.

Built from scratch (cheapest insertion, most important and earliest first) or from another
engine's routes (:meth:`IntervalSearch.load`).

Every move keeps every route feasible in the fixed-interval sense; the solver re-times the
result with the drivers' break rule and driving limit and the validator has the last word.
The objective is lexicographic: priority-weighted bookings served, then distance.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Mapping, Sequence

import numpy as np

from scheduler.model import PRIORITY_WEIGHT, Booking, Problem, Vehicle
from scheduler.timing import Visit

EPS = 1e-6


def applicable(problem: Problem, bookings: Sequence[Booking],
               vehicles: Sequence[Vehicle]) -> bool:
    """Fixed pickup times, pickup-and-delivery pairs, one booking on board at a time."""
    if problem.frozen or not bookings or not vehicles:
        return False
    least = min(b.passengers for b in bookings)
    if any(v.seats >= 2 * least for v in vehicles):
        return False
    return all(b.pickup is not None and b.pickup_window[0] == b.pickup_window[1]
               and b.max_ride is None for b in bookings)


class IntervalSearch:
    """Routes as start-sorted lists of booking indices per duty, improved in place."""

    def __init__(self, problem: Problem, bookings: Sequence[Booking],
                 vehicles: Sequence[Vehicle], allowed: Mapping[str, Sequence[str]],
                 seed: int = 0) -> None:
        self.p, self.bookings, self.vehicles = problem, list(bookings), list(vehicles)
        self.rng = random.Random(seed)
        dist, dur = problem.distances, problem.durations
        n, m = len(self.bookings), len(self.vehicles)
        self.bidx = {b.id: i for i, b in enumerate(self.bookings)}
        self.vidx = {v.id: k for k, v in enumerate(self.vehicles)}
        P = np.array([b.pickup for b in self.bookings], dtype=np.int64)
        E = np.array([b.delivery for b in self.bookings], dtype=np.int64)
        s = np.array([b.pickup_window[0] for b in self.bookings], dtype=float)
        arrive = s + np.array([b.pickup_service for b in self.bookings]) + dur[P, E]
        lo_d = np.array([b.delivery_window[0] for b in self.bookings], dtype=float)
        free = np.maximum(arrive, lo_d) + np.array([b.delivery_service for b in self.bookings])
        G = np.array([v.origin for v in self.vehicles], dtype=np.int64)
        H = np.array([v.destination for v in self.vehicles], dtype=np.int64)
        a = np.array([v.window[0] for v in self.vehicles], dtype=float)
        z = np.array([v.window[1] for v in self.vehicles], dtype=float)
        self.s = s.tolist()
        #: F[i][j]: j can follow i on one car
        self.F = (free[:, None] + dur[np.ix_(E, P)] <= s[None, :] + EPS)
        np.fill_diagonal(self.F, False)
        self.C = dist[np.ix_(E, P)]
        #: start cost/feasibility per duty, end cost per duty
        self.SC = dist[np.ix_(G, P)]
        self.EC = dist[np.ix_(E, H)]
        start_ok = a[:, None] + dur[np.ix_(G, P)] <= s[None, :] + EPS
        end_ok = free[:, None] + dur[np.ix_(E, H)] <= z[None, :] + EPS
        ok = np.zeros((n, m), dtype=bool)
        for i, b in enumerate(self.bookings):
            for vid in allowed.get(b.id, ()):
                k = self.vidx.get(vid)
                if k is not None:
                    ok[i, k] = True
        #: A[i, k]: booking i may be served alone by duty k
        self.A = ok & start_ok.T & end_ok
        self.Fl = self.F.tolist()
        self.Cl = self.C.tolist()
        self.SCl = self.SC.tolist()
        self.ECl = self.EC.tolist()
        self.duties_of = [np.flatnonzero(self.A[i]).tolist() for i in range(n)]
        #: the nearest possible successors of each booking (by empty running)
        near = np.where(self.F, self.C, np.inf)
        kk = min(8, max(1, n - 1))
        part = np.argpartition(near, kk - 1, axis=1)[:, :kk] if n > 1 else np.zeros((n, 0),
                                                                                     dtype=int)
        self.succ: list[list[int]] = []
        for i, row in enumerate(part.tolist()):
            cand = sorted(row, key=lambda j, i=i: float(near[i, j]))  # type: ignore[misc]
            self.succ.append([int(j) for j in cand if np.isfinite(near[i, j])])
        self.w = [PRIORITY_WEIGHT[b.priority] for b in self.bookings]
        self.routes: list[list[int]] = [[] for _ in range(m)]
        #: start times of each route's bookings (kept in step with ``routes``, for bisect)
        self.st: list[list[float]] = [[] for _ in range(m)]
        self.where: list[int] = [-1] * n
        self.trace: list | None = None
        #: relatedness of bookings for the ruin step: pickup distance + 10 m per second apart
        self.rel = dist[np.ix_(P, P)] + 10.0 * np.abs(s[:, None] - s[None, :])
        self.moves = {"insert": 0, "eject": 0, "displace": 0, "relocate": 0, "tails": 0,
                      "lns": 0}

    # -- state --------------------------------------------------------------------------
    def load(self, routes: Mapping[str, Sequence[Visit]]) -> None:
        """Start from visit sequences (e.g. vroom's); infeasible routes are trimmed."""
        for vid, seq in routes.items():
            k = self.vidx.get(vid)
            if k is None:
                continue
            for b, kind in seq:
                i = self.bidx.get(b.id)
                if kind == "pickup" and i is not None and self.where[i] < 0 \
                        and self.fits(k, i):
                    self._put(k, i)

    def export(self) -> dict[str, list[Visit]]:
        """Visit sequences per duty (pickup, delivery per booking, in time order)."""
        out: dict[str, list[Visit]] = {}
        for k, r in enumerate(self.routes):
            if r:
                out[self.vehicles[k].id] = [(self.bookings[i], kind) for i in r
                                            for kind in ("pickup", "delivery")]
        return out

    def served_weight(self) -> int:
        return sum(self.w[i] for i in range(len(self.bookings)) if self.where[i] >= 0)

    def route_cost(self, k: int, r: Sequence[int] | None = None) -> float:
        r = self.routes[k] if r is None else r
        if not r:
            return 0.0
        c = self.SCl[k][r[0]] + self.ECl[r[-1]][k]
        for x, y in zip(r, r[1:], strict=False):
            c += self.Cl[x][y]
        return c

    def cost(self) -> float:
        return sum(self.route_cost(k) for k in range(len(self.routes)))

    def _pos(self, k: int, i: int) -> int:
        return bisect.bisect_left(self.st[k], self.s[i])

    def _set(self, k: int, r: list[int]) -> None:
        self.routes[k] = r
        self.st[k] = [self.s[x] for x in r]

    def _put(self, k: int, i: int) -> None:
        pos = self._pos(k, i)
        self.routes[k].insert(pos, i)
        self.st[k].insert(pos, self.s[i])
        self.where[i] = k

    def _drop(self, k: int, i: int) -> None:
        pos = self.routes[k].index(i)
        del self.routes[k][pos]
        del self.st[k][pos]

    def _take(self, i: int) -> None:
        self._drop(self.where[i], i)
        self.where[i] = -1

    # -- insertion ----------------------------------------------------------------------
    def fits(self, k: int, i: int) -> bool:
        """Can booking ``i`` go straight into duty ``k``?"""
        if not self.A[i, k]:
            return False
        r = self.routes[k]
        pos = self._pos(k, i)
        if pos > 0 and not self.Fl[r[pos - 1]][i]:
            return False
        return not (pos < len(r) and not self.Fl[i][r[pos]])

    def _delta(self, k: int, i: int, r: Sequence[int], pos: int) -> float:
        prev = r[pos - 1] if pos > 0 else None
        nxt = r[pos] if pos < len(r) else None
        add = (self.Cl[prev][i] if prev is not None else self.SCl[k][i]) + \
              (self.Cl[i][nxt] if nxt is not None else self.ECl[i][k])
        if prev is not None and nxt is not None:
            old = self.Cl[prev][nxt]
        elif prev is not None:
            old = self.ECl[prev][k]
        elif nxt is not None:
            old = self.SCl[k][nxt]
        else:
            old = 0.0
        return add - old

    def best_direct(self, i: int, skip: int = -1) -> tuple[float, int] | None:
        """Cheapest duty that takes ``i`` without moving anything: (added metres, duty)."""
        best = None
        si = self.s[i]
        for k in self.duties_of[i]:
            if k == skip:
                continue
            r = self.routes[k]
            pos = bisect.bisect_left(self.st[k], si) if r else 0
            if pos > 0 and not self.Fl[r[pos - 1]][i]:
                continue
            if pos < len(r) and not self.Fl[i][r[pos]]:
                continue
            d = self._delta(k, i, r, pos)
            if best is None or d < best[0]:
                best = (d, k)
        return best

    def _block(self, k: int, i: int) -> tuple[int, int]:
        """The run of bookings of duty ``k`` that stand in the way of ``i``: [lo, hi)."""
        r = self.routes[k]
        pos = bisect.bisect_left(self.st[k], self.s[i])
        lo = pos
        while lo > 0 and not self.Fl[r[lo - 1]][i]:
            lo -= 1
        hi = pos
        while hi < len(r) and not self.Fl[i][r[hi]]:
            hi += 1
        return lo, hi

    def insert(self, i: int, depth: int = 2) -> bool:
        """Place unserved ``i``: straight in, or by ejecting what stands in the way onto
        other duties (up to ``depth`` bookings), or by displacing lower-priority ones."""
        found = self.best_direct(i)
        if found is not None:
            self._put(found[1], i)
            self.moves["insert"] += 1
            return True
        best: tuple[tuple[int, float], int, list[int], list[tuple[int, int]]] | None = None
        for k in self.duties_of[i]:
            lo, hi = self._block(k, i)
            block = self.routes[k][lo:hi]
            if not block or len(block) > depth:
                continue
            # move the blockers elsewhere (each to its cheapest free duty)
            saved = self.routes[k]
            self._set(k, saved[:lo] + [i] + saved[hi:])
            moved: list[tuple[int, int]] = []
            lost = 0
            extra = 0.0
            placed: list[tuple[int, int]] = []
            for c in block:
                self.where[c] = -1
            for c in block:
                alt = self.best_direct(c, skip=k)
                if alt is None:
                    lost += self.w[c]
                    continue
                self._put(alt[1], c)
                placed.append((c, alt[1]))
                extra += alt[0]
                moved.append((c, alt[1]))
            gain = self.w[i] - lost
            # undo, remember
            for c, kk in placed:
                self._drop(kk, c)
            self._set(k, saved)
            for c in block:
                self.where[c] = k
            if gain <= 0:
                continue
            key = (gain, -extra)
            if best is None or key > best[0]:
                best = (key, k, block, moved)
        if best is None:
            return False
        _key, k, block, moved = best
        for c in block:
            self._take(c)
        self._put(k, i)
        for c, kk in moved:
            if self.fits(kk, c):
                self._put(kk, c)
        self.moves["eject" if len(moved) == len(block) else "displace"] += 1
        return True

    # -- distance -----------------------------------------------------------------------
    def relocate(self, i: int) -> bool:
        """Move served ``i`` to the duty where it costs least, if cheaper."""
        k = self.where[i]
        r = self.routes[k]
        pos = r.index(i)
        without = r[:pos] + r[pos + 1:]
        saving = self.route_cost(k) - self.route_cost(k, without)
        alt = self.best_direct(i, skip=k)
        if alt is None or alt[0] >= saving - 1e-6:
            return False
        self._take(i)
        self._put(alt[1], i)
        self.moves["relocate"] += 1
        return True

    def tails(self, k1: int, k2: int) -> bool:
        """2-opt*: exchange the tails of duties ``k1`` and ``k2`` at the best point."""
        r1, r2 = self.routes[k1], self.routes[k2]
        if not r1 and not r2:
            return False
        before = self.route_cost(k1) + self.route_cost(k2)
        best = None
        times = sorted({self.s[x] for x in r1 + r2})
        for t in times:
            c1 = bisect.bisect_left(self.st[k1], t)
            c2 = bisect.bisect_left(self.st[k2], t)
            h1, t1, h2, t2 = r1[:c1], r1[c1:], r2[:c2], r2[c2:]
            if not t1 and not t2:
                continue
            n1, n2 = h1 + t2, h2 + t1
            if not (self._ok(k1, n1, len(h1)) and self._ok(k2, n2, len(h2))):
                continue
            after = self.route_cost(k1, n1) + self.route_cost(k2, n2)
            if after < before - 1e-6 and (best is None or after < best[0]):
                best = (after, n1, n2)
        if best is None:
            return False
        _c, n1, n2 = best
        self._exchange(k1, n1, k2, n2)
        return True

    def link(self, i: int) -> bool:
        """2-opt* driven by neighbour lists: make a near successor ``j`` (on another duty)
        follow ``i`` — ``i``'s duty takes ``j`` and what follows it, ``j``'s duty takes what
        followed ``i``.  Best improving candidate is applied."""
        k1 = self.where[i]
        r1 = self.routes[k1]
        p = r1.index(i)
        best = None
        base1 = self.route_cost(k1)
        for j in self.succ[i]:
            k2 = self.where[j]
            if k2 < 0 or k2 == k1:
                continue
            r2 = self.routes[k2]
            q = r2.index(j)
            n1, n2 = r1[:p + 1] + r2[q:], r2[:q] + r1[p + 1:]
            if not (self._ok(k1, n1, p + 1) and self._ok(k2, n2, q)):
                continue
            delta = (self.route_cost(k1, n1) + self.route_cost(k2, n2)
                     - base1 - self.route_cost(k2))
            if delta < -1e-6 and (best is None or delta < best[0]):
                best = (delta, k2, n1, n2)
        if best is None:
            return False
        _d, k2, n1, n2 = best
        self._exchange(k1, n1, k2, n2)
        return True

    def _exchange(self, k1: int, n1: list[int], k2: int, n2: list[int]) -> None:
        """Apply a tail exchange: duties ``k1`` and ``k2`` now drive ``n1`` and ``n2``."""
        self._set(k1, n1)
        self._set(k2, n2)
        for x in n1:
            self.where[x] = k1
        for x in n2:
            self.where[x] = k2
        self.moves["tails"] += 1

    def _ok(self, k: int, r: Sequence[int], cut: int) -> bool:
        """Route ``r`` on duty ``k`` is feasible (allowed duty for the new tail, and the
        connection at ``cut``)."""
        for i in r[cut:]:
            if not self.A[i, k]:
                return False
        if cut == 0:
            return True
        if not self.A[r[0], k] or not self.A[r[-1], k]:
            return False
        return cut >= len(r) or bool(self.Fl[r[cut - 1]][r[cut]])

    # -- ruin and recreate ---------------------------------------------------------------
    def _key(self) -> tuple[int, float]:
        return self.served_weight(), -self.cost()

    def lns(self, deadline: float, size: int = 12) -> None:
        """Ruin and recreate until ``deadline``: take out ``size`` related bookings (near in
        space and time), put them back (cheapest gap, then ejection) with the unserved ones
        nearby, keep the result when it is lexicographically better (served weight, then
        distance), otherwise restore."""
        n = len(self.bookings)
        best = self._key()
        while time.monotonic() < deadline:
            served = [i for i in range(n) if self.where[i] >= 0]
            if not served:
                return
            seed = self.rng.choice(served)
            row = self.rel[seed]
            pick = np.argpartition(row, min(n - 1, 3 * size))[:3 * size + 1].tolist()
            near = sorted(pick, key=lambda j: float(row[j]))
            out = [j for j in near if self.where[j] >= 0][:size]
            idle = [j for j in near if self.where[j] < 0][:size]
            snap = [(k, r[:]) for k, r in enumerate(self.routes)]
            where = self.where[:]
            for j in out:
                self._take(j)
            for j in sorted(out + idle, key=lambda x: (-self.w[x], self.s[x])):
                if self.where[j] < 0:
                    found = self.best_direct(j)
                    if found is not None:
                        self._put(found[1], j)
            for j in sorted(out + idle, key=lambda x: (-self.w[x], self.s[x])):
                if self.where[j] < 0:
                    self.insert(j, depth=1)
            key = self._key()
            if key > best:
                best = key
                self.moves["lns"] += 1
                continue
            for k, r in snap:
                if r != self.routes[k]:
                    self._set(k, r)
            self.where = where

    # -- driver -------------------------------------------------------------------------
    def run(self, deadline: float, unserved_first: bool = True) -> None:
        """Descend (insertion rounds, distance rounds) until no move helps, then ruin and
        recreate until ``deadline``."""
        self.descend(deadline, unserved_first)
        self.lns(deadline)

    def descend(self, deadline: float, unserved_first: bool = True) -> None:
        """Alternate insertion rounds and distance rounds until ``deadline``."""
        n = len(self.bookings)
        order = sorted(range(n), key=lambda i: (-self.w[i], self.s[i]))
        # neighbours for tail exchange: duties sharing bookings' allowed sets
        m = len(self.vehicles)
        rounds, placed = 0, True
        while time.monotonic() < deadline:
            changed = False
            # Insertion is the costly part; after a round that placed nothing, the distance
            # moves alone rarely open a gap, so it is retried only every third round.
            if unserved_first and (placed or rounds % 3 == 0):
                placed = False
                for i in order:
                    if time.monotonic() > deadline:
                        return
                    if self.where[i] < 0 and self.insert(i):
                        changed = placed = True
            rounds += 1
            served = [i for i in range(n) if self.where[i] >= 0]
            self.rng.shuffle(served)
            for i in served:
                if time.monotonic() > deadline:
                    return
                if self.where[i] >= 0:
                    changed |= self.relocate(i)
                if self.where[i] >= 0:
                    changed |= self.link(i)
            used = [k for k in range(m) if self.routes[k]]
            self.rng.shuffle(used)
            for k1 in used:
                if time.monotonic() > deadline:
                    return
                for k2 in self.rng.sample(range(m), min(m, 12)):
                    if k2 != k1 and self.tails(k1, k2):
                        changed = True
                        break
            if self.trace is not None:
                self.trace.append((rounds, time.monotonic(), dict(self.moves), self.cost()))
            if not changed:
                return
