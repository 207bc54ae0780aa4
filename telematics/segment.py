"""Trips (行程) and stops (停车) from a vehicle's fixes — batch, incremental and re-computation.

Strategy classes share one interface, ``Segmenter.segment(fixes) -> Segmentation``:

* :class:`DiameterSegmenter` — a stop is a run of points that stay within ``stop_diameter_m``
  for at least ``min_parking_s`` (movingpandas' diameter-over-window detector).  Once
  confirmed, the stop lasts until the mean of ``exit_points`` consecutive fixes leaves the
  disc of radius ``stop_diameter_m / 2`` around the stop's recent centre.  Parking drift (σ up
  to 10 m plus a wander of tens of metres) never leaves it; a vehicle that drives off does
  within seconds.  Stop boundaries are then refined with the reported speed (or, without it,
  the distance to the stop centre) so a trip starts when the car starts to move.
* :class:`IgnitionSegmenter` — stops are ignition-off (熄火) runs of at least
  ``min_parking_s``; ignition comes from ``extras['ignition']`` or JT/T 808 status bit 0 (ACC).

Common rules (Traccar's classic parameters, defaults justified):

* ``min_trip_distance_m`` 500 m **or** ``min_trip_duration_s`` 300 s *with* the two stops at
  least one stop diameter apart.  Plain "300 s" alone would turn a car shuffling inside a
  compound car park for five minutes into a 行程; the displacement condition keeps those in
  the stop.  A movement that does not qualify merges the stops on either side.
* ``min_parking_s`` 300 s: traffic lights (≤ 120 s) and queues never become stops.
* ``no_data_s`` 3600 s: a gap this long during which the vehicle moved (end points more than
  a stop diameter apart) closes the trip at the last fix; the next fix starts afresh.  A gap
  without displacement is simply part of a stop (terminals sleep while parked).

Trips tile the time line with stops: a trip starts at the end of the stop before it and ends
at the start of the stop after it.  Trip distance comes from :mod:`telematics.mileage`
(smoothed path over the moving span, padded ``pad_s`` into both stops); the stops themselves
accrue exactly 0.

Late and out-of-order fixes: :class:`IncrementalSegmenter` re-segments from an anchor so the
result always equals :func:`resegment` (batch) over the sorted data.  For the writer working
from the database, :func:`affected_span` documents how to choose the span to recompute.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from fleet.fix import Fix
from telematics.mileage import MileageParams, clean_fixes, local_xy, span_cumulative_m

EndReason = Literal["stop", "gap", "open"]
#: A candidate movement: (first fix, last fix, padded cumulative distance, pad lo, pad hi).
_Cand = tuple[int, int, np.ndarray, int, int]


@dataclass(frozen=True, slots=True)
class SegmentParams:
    """Segmentation parameters (per-device overridable, Traccar ``report.trip.*`` style)."""

    min_trip_distance_m: float = 500.0
    min_trip_duration_s: float = 300.0
    min_parking_s: float = 300.0
    no_data_s: float = 3600.0
    stop_diameter_m: float = 100.0
    exit_points: int = 5
    centre_window_s: float = 300.0
    stop_speed_kmh: float = 3.0
    pad_s: float = 20.0
    use_ignition: bool = False
    mileage: MileageParams = field(default_factory=MileageParams)


@dataclass(slots=True)
class Stop:
    """A stop (停车): where, from when to when; ``closed`` once the vehicle left for good."""

    start: datetime
    end: datetime
    lat: float
    lon: float
    closed: bool = True
    reason: str = "parking"
    raw_start: datetime | None = field(default=None, compare=False, repr=False)
    confirm_time: datetime | None = field(default=None, compare=False, repr=False)

    @property
    def duration_s(self) -> float:
        """Length of the stop in seconds."""
        return (self.end - self.start).total_seconds()


@dataclass(slots=True)
class Trip:
    """A trip (行程) between two stops, with distance (里程) and speed statistics."""

    start: datetime
    end: datetime
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float
    max_speed_kmh: float
    avg_speed_kmh: float
    closed: bool = True
    end_reason: EndReason = "stop"

    @property
    def duration_s(self) -> float:
        """Length of the trip in seconds."""
        return (self.end - self.start).total_seconds()


@dataclass(slots=True)
class Segmentation:
    """Result of segmenting one vehicle's fixes."""

    trips: list[Trip] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    gaps_m: float = 0.0
    fixes: list[Fix] = field(default_factory=list)
    cumulative_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    timeline: list[tuple[str, int]] = field(default_factory=list, repr=False)

    @property
    def distance_m(self) -> float:
        """Total mileage: trips plus bridged no-data gaps."""
        return sum(t.distance_m for t in self.trips) + self.gaps_m


@dataclass(slots=True)
class _Span:
    """A stationary span over cleaned-fix indices, with its detector bookkeeping."""

    i0: int
    i1: int
    raw_i0: int
    confirm_i: int
    reason: str = "parking"


# --------------------------------------------------------------------------- ignition


def ignition_of(fix: Fix) -> bool | None:
    """Ignition (ACC) state: ``extras['ignition']`` or JT/T 808 status bit 0; None if unknown."""
    ign = fix.extras.get("ignition")
    if isinstance(ign, bool):
        return ign
    if fix.protocol == "jt808":
        return bool(fix.status & 0x1)
    return None


# --------------------------------------------------------------------------- detectors


def diameter_spans(fixes: Sequence[Fix], p: SegmentParams) -> list[_Span]:
    """Stationary spans by diameter over a time window (streaming state machine)."""
    n = len(fixes)
    if n == 0:
        return []
    x, y, _ = local_xy(fixes)
    t = np.fromiter((f.time.timestamp() for f in fixes), float, n)
    spd = np.fromiter((f.speed_kmh for f in fixes), float, n)
    xl, yl, tl = x.tolist(), y.tolist(), t.tolist()  # fast scalar access
    d_max = p.stop_diameter_m
    radius = d_max / 2.0
    px = py = 0.0  # running sums over pending
    spans: list[_Span] = []
    w0 = 0
    j = 0
    in_stop = False
    raw0 = conf = 0
    centre: deque[int] = deque()
    sx = sy = 0.0
    pending: deque[int] = deque()
    replay: deque[int] = deque()
    while j < n or replay:
        k = replay.popleft() if replay else j
        if not replay and k == j:
            j += 1
        if not in_stop:
            if k > w0:
                d = np.hypot(x[w0:k] - x[k], y[w0:k] - y[k])
                far = np.nonzero(d > d_max)[0]
                if far.size:
                    w0 = w0 + int(far[-1]) + 1
            if tl[k] - tl[w0] >= p.min_parking_s:
                in_stop, raw0, conf = True, w0, k
                centre = deque(range(w0, k + 1))
                sx, sy = float(x[w0:k + 1].sum()), float(y[w0:k + 1].sum())
                pending = deque()
                px = py = 0.0
            continue
        pending.append(k)
        px += xl[k]
        py += yl[k]
        if len(pending) > p.exit_points:
            c = pending.popleft()
            px -= xl[c]
            py -= yl[c]
            centre.append(c)
            sx += xl[c]
            sy += yl[c]
            while len(centre) > 10 and tl[c] - tl[centre[0]] > p.centre_window_s:
                o = centre.popleft()
                sx -= xl[o]
                sy -= yl[o]
        if len(pending) == p.exit_points:
            cx, cy = sx / len(centre), sy / len(centre)
            mx, my = px / len(pending), py / len(pending)
            if math.hypot(mx - cx, my - cy) > radius:
                end = pending[0] - 1
                spans.append(_refine(raw0, conf, end, list(pending), x, y, t, spd, p,
                                     (cx, cy)))
                in_stop = False
                w0 = pending[0]
                replay = deque(list(pending)[1:])
                pending = deque()
    if in_stop:
        spans.append(_refine(raw0, conf, n - 1, [], x, y, t, spd, p, None))
    return spans


def _refine(raw0: int, conf: int, end: int, exit_pts: list[int], x: np.ndarray, y: np.ndarray,
            t: np.ndarray, spd: np.ndarray, p: SegmentParams,
            centre_end: tuple[float, float] | None) -> _Span:
    """Move a detected stop's boundaries to where the vehicle really stood still.

    Uses only data up to confirmation for the start and up to the exit for the end, so the
    result does not change as more fixes arrive (needed for incremental = batch).
    """
    v_stop = p.stop_speed_kmh
    r_in = p.stop_diameter_m / 4.0
    window = range(raw0, conf + 1)
    start = raw0
    if any(spd[i] >= v_stop for i in window):
        for i in window:
            if spd[i] < v_stop and (i + 1 > conf or spd[i + 1] < v_stop):
                start = i
                break
    else:
        cx = statistics.median(x[i] for i in window)
        cy = statistics.median(y[i] for i in window)
        for i in window:
            if np.hypot(x[i] - cx, y[i] - cy) <= r_in:
                start = i
                break
    stop_end = end
    if centre_end is not None:
        if any(spd[i] >= v_stop for i in exit_pts):
            while stop_end > start and spd[stop_end] >= v_stop:
                stop_end -= 1
        else:
            cx, cy = centre_end
            while stop_end > start and np.hypot(x[stop_end] - cx, y[stop_end] - cy) > r_in:
                stop_end -= 1
    return _Span(start, max(start, stop_end), raw0, conf)


def ignition_spans(fixes: Sequence[Fix], p: SegmentParams) -> list[_Span]:
    """Stops as ignition-off runs of at least ``min_parking_s`` (unknown = previous state)."""
    spans: list[_Span] = []
    state = True
    run0: int | None = None
    n = len(fixes)
    for i, f in enumerate(fixes):
        ign = ignition_of(f)
        state = state if ign is None else ign
        if not state and run0 is None:
            run0 = i
        if state and run0 is not None:
            _close_ign_run(fixes, run0, i - 1, p, spans, closed_by=i)
            run0 = None
    if run0 is not None:
        _close_ign_run(fixes, run0, n - 1, p, spans, closed_by=None)
    return spans


def _close_ign_run(fixes: Sequence[Fix], i0: int, i1: int, p: SegmentParams,
                   spans: list[_Span], closed_by: int | None) -> None:
    end_t = fixes[closed_by].time if closed_by is not None else fixes[i1].time
    if closed_by is None or (end_t - fixes[i0].time).total_seconds() >= p.min_parking_s:
        # An open ignition-off run at the data end is a (provisional) stop only once long.
        if closed_by is None and (fixes[i1].time - fixes[i0].time).total_seconds() \
                < p.min_parking_s:
            return
        spans.append(_Span(i0, i1, i0, i0, "ignition"))


# --------------------------------------------------------------------------- segmenters


class Segmenter:
    """Base strategy: cleaning, sessions (no-data gaps), trips between stationary spans."""

    def __init__(self, params: SegmentParams | None = None) -> None:
        self.params = params or SegmentParams()

    def spans(self, fixes: Sequence[Fix]) -> list[_Span]:
        """Stationary spans of one session (override in strategies)."""
        raise NotImplementedError

    def segment(self, fixes: Iterable[Fix], now: datetime | None = None,
                prevalidated: bool = False) -> Segmentation:
        """Trips and stops of one vehicle; ``now`` closes a trailing trip after ``no_data_s``."""
        p = self.params
        clean = clean_fixes(fixes, p.mileage, validate=not prevalidated)
        fs = clean.fixes
        out = Segmentation(rejected=clean.rejected, fixes=fs, cumulative_m=np.zeros(len(fs)))
        if not fs:
            return out
        sessions = self._sessions(fs)
        base = 0.0
        for si, (a, b) in enumerate(sessions):
            if si:
                gap = p.mileage.gap_factor * _dist(fs[a - 1], fs[a])
                out.gaps_m += gap
                base += gap
                out.timeline.append(("gap", a))
            last = si == len(sessions) - 1
            gap_closed = not last or (
                now is not None and (now - fs[b - 1].time).total_seconds() >= p.no_data_s)
            base = self._session(fs, a, b, gap_closed, out, base)
        return out

    def _sessions(self, fs: list[Fix]) -> list[tuple[int, int]]:
        """Split at no-data gaps with displacement (moving gaps)."""
        p = self.params
        cuts = [0]
        for i in range(1, len(fs)):
            if ((fs[i].time - fs[i - 1].time).total_seconds() >= p.no_data_s
                    and _dist(fs[i - 1], fs[i]) > p.stop_diameter_m):
                cuts.append(i)
        cuts.append(len(fs))
        return list(zip(cuts, cuts[1:], strict=False))

    def _session(self, fs: list[Fix], a: int, b: int, gap_closed: bool, out: Segmentation,
                 base: float) -> float:
        """Segment fixes [a, b) into stops and trips; returns the running odometer."""
        p = self.params
        local = [
            _Span(s.i0 + a, s.i1 + a, s.raw_i0 + a, s.confirm_i + a, s.reason)
            for s in self.spans(fs[a:b])
        ]
        # Candidate movements: before the first stop, between stops, after the last one.
        merged: list[_Span] = []
        trips: list[_Cand] = []  # (i0, i1, cum, lo, hi)
        prev: _Span | None = None
        idx_start = a
        for s in local:
            lo_t = fs[prev.i1].time - timedelta(seconds=p.pad_s) if prev else fs[a].time
            hi_t = fs[s.i0].time + timedelta(seconds=p.pad_s)
            i0 = prev.i1 if prev else idx_start
            cand = self._candidate(fs, i0, s.i0, lo_t, hi_t, a, b)
            if prev is None:
                if cand is not None and s.i0 > a and self._qualifies(fs, cand, None, s):
                    trips.append(cand)
                merged.append(s)
            elif cand is not None and self._qualifies(fs, cand, prev, s):
                trips.append(cand)
                merged.append(s)
            else:
                merged[-1] = _Span(prev.i0, s.i1, prev.raw_i0, prev.confirm_i, prev.reason)
            prev = merged[-1]
        # Trailing movement after the last stop (or the whole session if no stop).
        tail_i0 = prev.i1 if prev else a
        tail_trip = None
        if tail_i0 < b - 1:
            lo_t = fs[prev.i1].time - timedelta(seconds=p.pad_s) if prev else fs[a].time
            cand = self._candidate(fs, tail_i0, b - 1, lo_t, fs[b - 1].time, a, b)
            if cand is not None and self._qualifies(fs, cand, prev, None):
                tail_trip = cand
        # Emit in time order and fill the per-fix odometer.
        cum = out.cumulative_m
        pos = a
        all_trips = trips + ([tail_trip] if tail_trip else [])
        events: list[tuple[int, _Span | None, _Cand | None]] = [(s.i0, s, None) for s in merged]
        events += [(tr[0], None, tr) for tr in all_trips]
        events.sort(key=lambda e: (e[0], 0 if e[2] is not None else 1))
        for k, (_, span, cand) in enumerate(events):
            if span is not None:
                s = span
                cum[pos:s.i1 + 1] = base
                pos = s.i1 + 1
                closed = k < len(events) - 1 or gap_closed
                out.stops.append(self._stop(fs, s, closed))
                out.timeline.append(("stop", len(out.stops) - 1))
            elif cand is not None:
                i0, i1, tcum, lo, _hi = cand
                # The trip's distance covers its padded span (pads reach into the stops,
                # where the smoother accrues next to nothing); per-fix odometer follows it.
                dist = float(tcum[-1] - tcum[0])
                rel = tcum[i0 - lo:i1 - lo + 1] - tcum[0]
                cum[pos:i0] = base
                cum[i0:i1 + 1] = base + rel
                is_last = k == len(events) - 1
                closed = (not is_last) or gap_closed
                reason: EndReason = "stop" if not is_last else ("gap" if gap_closed else "open")
                out.trips.append(self._trip(fs, i0, i1, dist, closed, reason))
                out.timeline.append(("trip", len(out.trips) - 1))
                base += dist
                pos = i1 + 1
        cum[pos:b] = base
        return base

    def _candidate(self, fs: list[Fix], i0: int, i1: int, lo_t: datetime, hi_t: datetime,
                   a: int, b: int) -> _Cand | None:
        """Smoothed cumulative distance over a candidate movement padded into its stops."""
        if i1 <= i0:
            return None
        lo = max(a, bisect.bisect_left(fs, lo_t, lo=a, hi=b, key=lambda f: f.time))
        hi = min(b - 1, bisect.bisect_right(fs, hi_t, lo=a, hi=b, key=lambda f: f.time) - 1)
        lo, hi = min(lo, i0), max(hi, i1)
        cum = span_cumulative_m(fs[lo:hi + 1], self.params.mileage)
        return (i0, i1, cum, lo, hi)

    def _qualifies(self, fs: list[Fix], cand: _Cand,
                   before: _Span | None, after: _Span | None) -> bool:
        """Trip if ≥ min distance, or ≥ min duration and it actually went somewhere."""
        p = self.params
        i0, i1, cum, _lo, _hi = cand
        dist = float(cum[-1] - cum[0])
        if dist >= p.min_trip_distance_m:
            return True
        duration = (fs[i1].time - fs[i0].time).total_seconds()
        if duration < p.min_trip_duration_s:
            return False
        return _dist(fs[i0], fs[i1]) >= p.stop_diameter_m

    def _stop(self, fs: list[Fix], s: _Span, closed: bool) -> Stop:
        lat = statistics.median(f.lat for f in fs[s.i0:s.i1 + 1])
        lon = statistics.median(f.lon for f in fs[s.i0:s.i1 + 1])
        return Stop(fs[s.i0].time, fs[s.i1].time, lat, lon, closed, s.reason,
                    fs[s.raw_i0].time, fs[s.confirm_i].time)

    def _trip(self, fs: list[Fix], i0: int, i1: int, dist: float, closed: bool,
              reason: EndReason) -> Trip:
        a, b = fs[i0], fs[i1]
        dur = (b.time - a.time).total_seconds()
        vmax = max((f.speed_kmh for f in fs[i0:i1 + 1]), default=0.0)
        avg = dist / dur * 3.6 if dur > 0 else 0.0
        vmax = max(vmax, avg)
        return Trip(a.time, b.time, a.lat, a.lon, b.lat, b.lon, dist, vmax, avg, closed, reason)


class DiameterSegmenter(Segmenter):
    """Stops by diameter over a time window (movingpandas-style), drift-proof."""

    def spans(self, fixes: Sequence[Fix]) -> list[_Span]:
        return diameter_spans(fixes, self.params)


class IgnitionSegmenter(Segmenter):
    """Stops are ignition-off (ACC off) periods of at least ``min_parking_s``."""

    def spans(self, fixes: Sequence[Fix]) -> list[_Span]:
        return ignition_spans(fixes, self.params)


def make_segmenter(params: SegmentParams | None = None,
                   fixes: Sequence[Fix] | None = None) -> Segmenter:
    """Ignition strategy when ``use_ignition`` (and the fixes report ignition), else diameter."""
    p = params or SegmentParams()
    if p.use_ignition and (fixes is None or any(ignition_of(f) is not None for f in fixes)):
        return IgnitionSegmenter(p)
    return DiameterSegmenter(p)


def _dist(a: Fix, b: Fix) -> float:
    from geo.geodesy import haversine_m

    return haversine_m(a.lat, a.lon, b.lat, b.lon)


# --------------------------------------------------------------------------- late data


def resegment(fixes_in_span: Iterable[Fix], params: SegmentParams | None = None,
              segmenter: Segmenter | None = None, now: datetime | None = None) -> Segmentation:
    """Recompute trips and stops over a span of stored fixes (batch over the sorted data).

    Used by the writer after late/out-of-order fixes (blind-area resends).  Choose the span
    with :func:`affected_span`: it must start at the *raw start* of a stop confirmed before
    the earliest late fix (or at the first fix of the vehicle / after a no-data gap), and end
    at the end of a closed stop after the latest late fix (or the newest fix).  Within such a
    span the result equals segmenting the vehicle's whole history; replace stored trips and
    stops that start at or after the span's first stop start.
    """
    seg = segmenter or make_segmenter(params)
    return seg.segment(list(fixes_in_span), now=now)


def affected_span(stored: Segmentation, earliest_late: datetime
                  ) -> tuple[datetime | None, datetime | None]:
    """(from, to) times to reload and resegment after fixes arriving late at ``earliest_late``.

    ``from`` is the raw start of the last stop confirmed before the late fix (None = from the
    vehicle's first fix); ``to`` is the end of the first closed stop starting after it (None =
    up to the newest fix).  Delete trips/stops starting at or after the returned stop start.
    """
    start: datetime | None = None
    for s in stored.stops:
        if s.confirm_time is not None and s.confirm_time < earliest_late:
            start = s.raw_start
    end: datetime | None = None
    for s in stored.stops:
        if s.start > earliest_late and s.closed:
            end = s.end
            break
    return start, end


@dataclass(slots=True)
class SegmentationUpdate:
    """What changed after a push: replace stored items from ``replace_from``, then add these.

    ``needs_resegment_from`` is set when a fix older than the in-memory history arrived: the
    writer must reload from the database and call :func:`resegment` (see :func:`affected_span`).
    """

    trips: list[Trip] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    replace_from: datetime | None = None
    needs_resegment_from: datetime | None = None

    def __bool__(self) -> bool:
        return bool(self.trips or self.stops or self.replace_from or self.needs_resegment_from)


@dataclass(slots=True)
class _Anchor:
    time: datetime  # re-segment buffered fixes from here
    confirm: datetime  # data before this cannot change what follows
    emitted_from: datetime  # items starting at/after this are not emitted yet


class IncrementalSegmenter:
    """Segmentation as fixes arrive (实时行程/停车): emits closed stop+trip pairs.

    Internally it re-runs the batch segmenter over the fixes since an *anchor* — the raw start
    of the stop after the last closed trip — every ``recompute_every`` fixes (so closed items
    appear with that much delay; call :meth:`tick` to force it).  A late fix that falls before
    the anchor's confirmation moves the anchor back to the last stop confirmed before it and
    the update says ``replace_from`` (replacement items follow with the next recompute).
    Because a stop's detection from its raw start does not depend on earlier data, the
    emitted result always equals :func:`resegment` over all fixes.
    """

    def __init__(self, segmenter: Segmenter | None = None, recompute_every: int = 60,
                 history_s: float = 6 * 3600.0) -> None:
        self.segmenter = segmenter or DiameterSegmenter()
        self.recompute_every = recompute_every
        self.history_s = history_s
        self._fixes: list[tuple[datetime, int, Fix]] = []
        self._counter = 0
        self._since = 0
        self._max_time: datetime | None = None
        self._anchors: list[_Anchor] = []  # history of anchors, oldest first
        self._pruned = False
        self.trips: list[Trip] = []
        self.stops: list[Stop] = []
        self.rejected: Counter[str] = Counter()

    def push(self, fix: Fix) -> SegmentationUpdate:
        """Accept one fix (any order)."""
        return self.push_many([fix])

    def push_many(self, fixes: Iterable[Fix]) -> SegmentationUpdate:
        """Accept a batch of fixes (e.g. a blind-area resend) and return what changed."""
        upd = SegmentationUpdate()
        earliest_late: datetime | None = None
        for f in fixes:
            self._counter += 1
            if self._max_time is not None and f.time <= self._max_time:
                earliest_late = f.time if earliest_late is None else min(earliest_late, f.time)
            oldest = self._fixes[0][0] if self._fixes else None
            if oldest is not None and f.time < oldest:
                upd.needs_resegment_from = min(upd.needs_resegment_from or f.time, f.time)
                continue
            bisect.insort(self._fixes, (f.time, self._counter, f), key=lambda e: (e[0], e[1]))
            self._max_time = f.time if self._max_time is None else max(self._max_time, f.time)
            self._since += 1
        if earliest_late is not None:
            self._rewind(earliest_late, upd)  # cheap; the recompute follows on schedule
        if self._since >= self.recompute_every:
            self._recompute(upd)
        return upd

    def tick(self, now: datetime) -> SegmentationUpdate:
        """Recompute now (closes a trip after ``no_data_s`` without data)."""
        upd = SegmentationUpdate()
        self._recompute(upd, now)
        return upd

    def flush(self) -> Segmentation:
        """Everything so far: emitted closed items plus the open tail (batch-equivalent)."""
        tail = self._run()
        out = Segmentation(trips=list(self.trips), stops=list(self.stops),
                           rejected=self.rejected + tail.rejected)
        cut = self._anchor.emitted_from if self._anchors else None
        out.trips += [t for t in tail.trips if cut is None or t.start >= cut]
        out.stops += [s for s in tail.stops if cut is None or s.start >= cut]
        return out

    @property
    def _anchor(self) -> _Anchor:
        return self._anchors[-1]

    def _run(self, now: datetime | None = None) -> Segmentation:
        start = self._anchor.time if self._anchors else None
        fs = [f for t, _, f in self._fixes if start is None or t >= start]
        return self.segmenter.segment(fs, now=now)

    def _rewind(self, earliest_late: datetime, upd: SegmentationUpdate) -> None:
        """Move the anchor back to the last one whose decisions precede the late fix."""
        moved = False
        while self._anchors and self._anchor.confirm >= earliest_late:
            self._anchors.pop()
            moved = True
        if not moved:
            return
        if not self._anchors and self._pruned:
            # Older than what we keep in memory: the writer recomputes from the database.
            upd.needs_resegment_from = earliest_late
        cut = self._anchor.emitted_from if self._anchors else None
        if cut is None:
            self.trips, self.stops = [], []
            upd.replace_from = self._fixes[0][0] if self._fixes else earliest_late
        else:
            self.trips = [t for t in self.trips if t.start < cut]
            self.stops = [s for s in self.stops if s.start < cut]
            upd.replace_from = cut

    def _recompute(self, upd: SegmentationUpdate, now: datetime | None = None) -> None:
        self._since = 0
        res = self._run(now)
        cut = self._anchor.emitted_from if self._anchors else None
        # Emit everything up to the last closed trip or gap, then move the anchor.
        last = -1
        for k, (kind, idx) in enumerate(res.timeline):
            if kind == "trip" and res.trips[idx].closed or kind == "gap":
                last = k
        if last < 0:
            return
        for kind, idx in res.timeline[: last + 1]:
            if kind == "trip":
                t = res.trips[idx]
                if cut is None or t.start >= cut:
                    self.trips.append(t)
                    upd.trips.append(t)
            elif kind == "stop":
                s = res.stops[idx]
                if cut is None or s.start >= cut:
                    self.stops.append(s)
                    upd.stops.append(s)
        nxt = res.timeline[last + 1] if last + 1 < len(res.timeline) else None
        if nxt is not None and nxt[0] == "stop":
            s = res.stops[nxt[1]]
            assert s.raw_start is not None and s.confirm_time is not None
            self._anchors.append(_Anchor(s.raw_start, s.confirm_time, s.start))
        else:
            # After a gap: restart at the first fix after the gap (or after the last fix).
            i = res.timeline[last][1] if res.timeline[last][0] == "gap" else None
            if i is not None:
                t0 = res.fixes[i].time
            else:
                t0 = res.fixes[-1].time + timedelta(microseconds=1)
            self._anchors.append(_Anchor(t0, t0, t0))
        self._prune()

    def _prune(self) -> None:
        """Forget fixes older than both the history window and the current anchor."""
        if not self._fixes or self._max_time is None:
            return
        keep_from = min(self._anchor.time, self._max_time - timedelta(seconds=self.history_s))
        k = bisect.bisect_left(self._fixes, keep_from, key=lambda e: e[0])
        if k:
            del self._fixes[:k]
            self._pruned = True
        while len(self._anchors) > 1 and self._anchors[0].time < keep_from:
            self._anchors.pop(0)
