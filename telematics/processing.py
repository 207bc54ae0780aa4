"""From stored positions to trips, stops and events — incrementally and by recomputation.

:class:`TelematicsProcessor` hooks into the writer (``StreamWriter(on_stored=proc.on_stored)``)
and, per terminal, keeps an :class:`~telematics.segment.IncrementalSegmenter` and an
:class:`~telematics.events.EventDetector` in memory:

* closed stop+trip pairs the segmenter emits are stored (``provisional = false``); a late fix
  inside the in-memory history makes it say ``replace_from`` and the stored items from there
  are replaced; a fix older than that history (or a processor restart) reloads the affected
  span from the database (:func:`resegment_terminal`), anchored on the raw start of the last
  stored stop confirmed before it — so the stored result always equals a batch
  segmentation of the whole history (:func:`telematics.segment.resegment`);
* the open tail (current stop, trip in progress) is stored with ``provisional = true`` and
  rewritten every ``tail_every`` fixes and on :meth:`TelematicsProcessor.tick`;
* live fixes (newer than the terminal's newest, and not a blind-area resend) go through the
  event rules; events are stored (idempotently) and published on Redis channel ``events``
  after the commit.  Late fixes are stored and re-segmented but fire nothing.

:func:`recompute` re-segments any period of one vehicle from its positions (API/CLI), with the
same anchoring, so incremental and recomputed results agree.
"""

from __future__ import annotations

import json
import threading
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import redis
from geoalchemy2.shape import to_shape
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from fleet.fix import Fix
from fleet.logging import get_logger
from fleet.models import Terminal, Vehicle
from fleet.settings import Settings
from gateway.sink import Routed
from geo.fences import FenceIndex
from telematics import fences_store
from telematics.events import (
    EventDetector,
    EventParams,
    EventRecord,
    VehicleInfo,
    WorkCalendar,
    overnight_events,
)
from telematics.mileage import odometer_check
from telematics.models import Event, Holiday, Position
from telematics.models import Stop as StopRow
from telematics.models import Trip as TripRow
from telematics.segment import (
    DiameterSegmenter,
    IncrementalSegmenter,
    SegmentationUpdate,
    SegmentParams,
    Stop,
    Trip,
    make_segmenter,
)

log = get_logger(__name__)
EVENTS_CHANNEL = "events"
COLD_LOOKBACK = timedelta(hours=24)


# --------------------------------------------------------------------------- storage helpers


_POS_COLS = (Position.terminal_id, Position.time, Position.lat, Position.lon,
             Position.speed_kmh, Position.course, Position.altitude_m, Position.hdop,
             Position.satellites, Position.valid, Position.protocol, Position.alarm,
             Position.status, Position.extras)


def load_fixes(db: Session, terminal_id: str, start: datetime | None = None,
               end: datetime | None = None) -> list[Fix]:
    """Stored fixes of one terminal in [start, end], oldest first."""
    stmt = select(*_POS_COLS).where(Position.terminal_id == terminal_id)
    if start is not None:
        stmt = stmt.where(Position.time >= start)
    if end is not None:
        stmt = stmt.where(Position.time <= end)
    out = []
    for r in db.execute(stmt.order_by(Position.time)):
        out.append(Fix(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                       r[10], r[11], r[12], dict(r[13] or {})))
    return out


def _odometer(db: Session, terminal_id: str, trip: Trip) -> tuple[float | None, bool]:
    rows = db.execute(select(Position.time, Position.extras).where(
        Position.terminal_id == terminal_id, Position.time.in_([trip.start, trip.end]))).all()
    fixes = [Fix(terminal_id, t, 0.0, 0.0, extras=dict(x or {})) for t, x in rows]
    chk = odometer_check(fixes, trip.distance_m)
    if chk.odometer_km is None:
        return None, False
    return chk.odometer_km * 1000.0, chk.flagged


def store_segments(db: Session, terminal_id: str, vehicle_id: int | None, trips: Iterable[Trip],
                   stops: Iterable[Stop], provisional: bool = False) -> tuple[int, int]:
    """Insert trips and stops of one terminal; returns (trips, stops) inserted."""
    nt = ns = 0
    for t in trips:
        odo_m, flag = _odometer(db, terminal_id, t)
        db.add(TripRow(vehicle_id=vehicle_id, terminal_id=terminal_id, start_time=t.start,
                       end_time=t.end, start_lat=t.start_lat, start_lon=t.start_lon,
                       end_lat=t.end_lat, end_lon=t.end_lon, distance_m=t.distance_m,
                       duration_s=t.duration_s, max_speed_kmh=t.max_speed_kmh,
                       avg_speed_kmh=t.avg_speed_kmh, odometer_m=odo_m, odometer_flag=flag,
                       closed=t.closed, end_reason=t.end_reason, provisional=provisional))
        nt += 1
    for s in stops:
        db.add(StopRow(vehicle_id=vehicle_id, terminal_id=terminal_id, start_time=s.start,
                       end_time=s.end, lat=s.lat, lon=s.lon, duration_s=s.duration_s,
                       raw_start=s.raw_start, confirm_time=s.confirm_time, reason=s.reason,
                       closed=s.closed, provisional=provisional))
        ns += 1
    db.flush()
    return nt, ns


def delete_segments(db: Session, terminal_id: str, start: datetime | None = None,
                    before: datetime | None = None, provisional: bool | None = None) -> None:
    """Delete stored trips/stops of a terminal starting in [start, before)."""
    for model in (TripRow, StopRow):
        stmt = delete(model).where(model.terminal_id == terminal_id)
        if start is not None:
            stmt = stmt.where(model.start_time >= start)
        if before is not None:
            stmt = stmt.where(model.start_time < before)
        if provisional is not None:
            stmt = stmt.where(model.provisional.is_(provisional))
        db.execute(stmt.execution_options(synchronize_session="fetch"))


def anchor_stop(db: Session, terminal_id: str, earliest: datetime) -> StopRow | None:
    """The last stored, final stop confirmed before ``earliest`` (segmentation restarts at its
    raw start without changing anything before it)."""
    stmt = (select(StopRow).where(StopRow.terminal_id == terminal_id,
                                  StopRow.provisional.is_(False), StopRow.closed.is_(True),
                                  StopRow.confirm_time < earliest,
                                  StopRow.raw_start.is_not(None))
            .order_by(StopRow.start_time.desc()).limit(1))
    return db.scalar(stmt)


def store_events(db: Session, events: Sequence[EventRecord]) -> list[EventRecord]:
    """Insert events, skipping ones already stored (same terminal, type, time, key)."""
    if not events:
        return []
    rows = [{"vehicle_id": e.vehicle_id, "terminal_id": e.terminal_id, "type": e.type,
             "time": e.time, "key": e.key[:64], "lat": e.lat, "lon": e.lon, "value": e.value,
             "threshold": e.threshold, "fence_id": e.fence_id, "detail": e.detail,
             "created_at": datetime.now(UTC)} for e in events]
    table = Event.__table__
    ins = pg_insert(table) if db.get_bind().dialect.name == "postgresql" else \
        sqlite_insert(table)
    stmt = ins.on_conflict_do_nothing(
        index_elements=["terminal_id", "type", "time", "key"]).returning(
        table.c.terminal_id, table.c.type, table.c.time, table.c.key)
    new = set()
    for r in rows:  # one by one: RETURNING per row tells which were new
        for t, k, tm, key in db.execute(stmt, [r]).all():
            new.add((t, k, tm, key))
    return [e for e in events
            if (e.terminal_id, e.type, e.time, e.key[:64]) in new]


def load_calendar(db: Session, params: EventParams) -> WorkCalendar:
    special = {h.day: h.workday for h in db.scalars(select(Holiday))}
    return WorkCalendar(special, params.work_start, params.work_end)


def vehicle_info(db: Session, vehicle_id: int | None) -> VehicleInfo | None:
    if vehicle_id is None:
        return None
    v = db.get(Vehicle, vehicle_id)
    if v is None:
        return None
    home = None
    if v.home_garage is not None:
        pt = to_shape(v.home_garage)
        home = (float(pt.y), float(pt.x))
    return VehicleInfo(v.id, str(v.category), home)


# --------------------------------------------------------------------------- recomputation


def _tail_index(trips: list[Trip], stops: list[Stop]) -> datetime | None:
    """Start of the provisional tail: items after the last closed trip (None: all final)."""
    closed = [t for t in trips if t.closed]
    if not closed:
        return trips[0].start if trips else (stops[0].start if stops else None)
    last = closed[-1]
    later = [s.start for s in stops if s.start >= last.end] + \
            [t.start for t in trips if t.start > last.start]
    return min(later) if later else None


def resegment_terminal(db: Session, terminal_id: str, vehicle_id: int | None,
                       start: datetime | None, end: datetime | None = None,
                       params: SegmentParams | None = None,
                       now: datetime | None = None) -> tuple[list[Trip], list[Stop]]:
    """Recompute and store trips/stops of a terminal for the span touching [start, end].

    Restarts at the raw start of the last stored stop confirmed before ``start`` (or
    ``COLD_LOOKBACK`` before it when there is none) and runs up to the end of the first stored
    final stop after ``end`` (or the newest fix), replacing stored items in between.
    """
    seg = make_segmenter(params)
    earliest = start or datetime.min.replace(tzinfo=UTC)
    anchor = anchor_stop(db, terminal_id, earliest) if start is not None else None
    if anchor is not None:
        load_from: datetime | None = anchor.raw_start
        keep_from: datetime | None = anchor.start_time
    else:
        load_from = keep_from = None if start is None else start - COLD_LOOKBACK
        # Nothing final to anchor on: start right after the last stored item's end.
        prev_end = None
        if start is not None:
            prev_end = db.scalar(select(func.max(StopRow.end_time)).where(
                StopRow.terminal_id == terminal_id, StopRow.start_time < keep_from))
        if prev_end is not None and keep_from is not None and prev_end > keep_from:
            keep_from = load_from = prev_end
    stop_at: StopRow | None = None
    if end is not None:
        stop_at = db.scalar(select(StopRow).where(
            StopRow.terminal_id == terminal_id, StopRow.provisional.is_(False),
            StopRow.closed.is_(True), StopRow.start_time > end)
            .order_by(StopRow.start_time).limit(1))
    load_to = stop_at.end_time if stop_at is not None else None
    before = stop_at.start_time if stop_at is not None else None
    fixes = load_fixes(db, terminal_id, load_from, load_to)
    res = seg.segment(fixes, now=now)

    def keep(t: datetime) -> bool:
        return (keep_from is None or t >= keep_from) and (before is None or t < before)

    trips = [t for t in res.trips if keep(t.start)]
    stops = [s for s in res.stops if keep(s.start)]
    delete_segments(db, terminal_id, keep_from, before)
    tail = _tail_index(res.trips, res.stops) if before is None else None
    final_t = [t for t in trips if tail is None or t.start < tail]
    final_s = [s for s in stops if tail is None or s.start < tail]
    store_segments(db, terminal_id, vehicle_id, final_t, final_s)
    store_segments(db, terminal_id, vehicle_id, trips[len(final_t):], stops[len(final_s):],
                   provisional=True)
    return trips, stops


def terminals_of_vehicle(db: Session, vehicle_id: int, start: datetime,
                         end: datetime) -> list[str]:
    rows = db.scalars(select(Position.terminal_id).where(
        Position.vehicle_id == vehicle_id, Position.time >= start, Position.time <= end)
        .distinct())
    return sorted(rows)


def recompute(db: Session, vehicle_id: int, start: datetime, end: datetime,
              params: SegmentParams | None = None,
              now: datetime | None = None) -> tuple[int, int]:
    """Recompute the stored trips and stops of a vehicle over [start, end]."""
    nt = ns = 0
    for terminal in terminals_of_vehicle(db, vehicle_id, start, end):
        trips, stops = resegment_terminal(db, terminal, vehicle_id, start, end, params, now)
        nt, ns = nt + len(trips), ns + len(stops)
    return nt, ns


# --------------------------------------------------------------------------- processor


@dataclass
class ProcessorConfig:
    segment: SegmentParams = field(default_factory=SegmentParams)
    events: EventParams = field(default_factory=EventParams)
    recompute_every: int = 60
    tail_every: int = 300
    refresh_s: float = 2.0  # how often fences, calendar and vehicles are re-read


def processor_config(settings: Settings) -> ProcessorConfig:
    """The trip and event parameters set by ``GONGCHE_TRIP_*`` and ``GONGCHE_EVENT_*``."""
    segment = replace(SegmentParams(), min_trip_distance_m=settings.trip_min_distance_m,
                      min_trip_duration_s=settings.trip_min_duration_s,
                      min_parking_s=settings.trip_min_parking_s,
                      no_data_s=settings.trip_no_data_s,
                      use_ignition=settings.trip_use_ignition)
    defaults = EventParams()
    events = replace(defaults, work_start=settings.event_work_start,
                     work_end=settings.event_work_end,
                     category_limits_kmh={**defaults.category_limits_kmh,
                                          **settings.event_speed_limits_kmh},
                     default_limit_kmh=settings.event_default_limit_kmh,
                     overspeed_min_s=settings.event_overspeed_min_s,
                     offline_after_s=settings.event_offline_after_s)
    return ProcessorConfig(segment=segment, events=events)


@dataclass
class _Term:
    terminal_id: str
    vehicle_id: int | None
    seg: IncrementalSegmenter
    detector: EventDetector
    since_tail: int = 0
    last_live: datetime | None = None


@dataclass
class BatchResult:
    events: list[EventRecord] = field(default_factory=list)
    late: int = 0
    reloaded: list[str] = field(default_factory=list)


class TelematicsProcessor:
    """Trips, stops and events as positions are stored (see module doc)."""

    def __init__(self, engine: Engine, client: redis.Redis | None = None,
                 config: ProcessorConfig | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.client = client
        self.config = config or ProcessorConfig()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._terms: dict[str, _Term] = {}
        self._index = FenceIndex([])
        self._fence_version: object = None
        self._calendar = WorkCalendar()
        self._vehicles: dict[int, VehicleInfo | None] = {}
        self._refreshed = -1e9
        self._pending: list[EventRecord] = []

    # -- hooks -------------------------------------------------------------------------
    def on_stored(self, items: Sequence[Routed]) -> None:
        """The writer's hook: never raises (positions are stored; log and go on)."""
        try:
            self.process(items)
        except Exception as exc:  # a processing bug must not stall ingest
            log.error("processing_failed", error=str(exc)[:300])

    def process(self, items: Sequence[Routed]) -> BatchResult:
        """Segment and detect events for a batch of stored fixes; commit; publish events."""
        groups: dict[str, list[Routed]] = {}
        for it in items:
            groups.setdefault(it.fix.terminal_id, []).append(it)
        result = BatchResult()
        with Session(self.engine) as db, db.begin():
            self._refresh(db)
            for terminal, group in groups.items():
                self._process_terminal(db, terminal, group, result)
            result.events = store_events(db, result.events + self._take_pending())
        self._publish(result.events)
        return result

    def run_ticks(self, stop: threading.Event, every_s: float = 60.0) -> None:
        """Call :meth:`tick` every ``every_s`` seconds until ``stop`` is set."""
        while not stop.wait(every_s):
            try:
                self.tick()
            except Exception as exc:  # the next tick retries; never kill the worker
                log.error("telematics_tick_failed", error=str(exc)[:300])

    def tick(self, now: datetime | None = None) -> list[EventRecord]:
        """Periodic work: close trips after no data, rewrite tails, terminal offline check."""
        now = now or self.clock()
        with Session(self.engine) as db, db.begin():
            self._refresh(db, force=True)
            for st in self._terms.values():
                upd = st.seg.tick(now)
                self._apply(db, st, upd)
                self._write_tail(db, st)
            events = offline_events(db, now, self.config.events) + self._take_pending()
            events = store_events(db, events)
        self._publish(events)
        return events

    def forget(self, terminal_id: str | None = None) -> None:
        """Drop in-memory state (all terminals when None); it is rebuilt from the database."""
        if terminal_id is None:
            self._terms.clear()
        else:
            self._terms.pop(terminal_id, None)

    # -- internals ---------------------------------------------------------------------
    def _take_pending(self) -> list[EventRecord]:
        out, self._pending = self._pending, []
        return out

    def _overnight(self, db: Session, st: _Term, stops: Sequence[Stop]) -> None:
        if stops:
            self._pending.extend(overnight_events(stops, self._vehicle(db, st.vehicle_id),
                                                  st.terminal_id, self.config.events))

    def _refresh(self, db: Session, force: bool = False) -> None:
        now = _time.monotonic()
        if not force and now - self._refreshed < self.config.refresh_s:
            return
        self._refreshed = now
        version = fences_store.fences_version(db)
        if version != self._fence_version:
            self._index = fences_store.load_index(db)
            self._fence_version = version
            for st in self._terms.values():
                st.detector.set_index(self._index)
        self._calendar = load_calendar(db, self.config.events)
        for st in self._terms.values():
            st.detector.calendar = self._calendar
        self._vehicles.clear()

    def _vehicle(self, db: Session, vehicle_id: int | None) -> VehicleInfo | None:
        if vehicle_id is None:
            return None
        if vehicle_id not in self._vehicles:
            self._vehicles[vehicle_id] = vehicle_info(db, vehicle_id)
        return self._vehicles[vehicle_id]

    def _new_term(self, db: Session, terminal_id: str, vehicle_id: int | None) -> _Term:
        seg = IncrementalSegmenter(DiameterSegmenter(self.config.segment),
                                   recompute_every=self.config.recompute_every)
        det = EventDetector(terminal_id, self._vehicle(db, vehicle_id), self._index,
                            self.config.events, self._calendar)
        return _Term(terminal_id, vehicle_id, seg, det)

    def _process_terminal(self, db: Session, terminal: str, group: list[Routed],
                          result: BatchResult) -> None:
        vehicle_id = next((g.vehicle_id for g in reversed(group) if g.vehicle_id), None)
        fixes = sorted((g.fix for g in group), key=lambda f: f.time)
        st = self._terms.get(terminal)
        if st is None or (vehicle_id is not None and st.vehicle_id != vehicle_id):
            last_live = st.last_live if st is not None else None
            st = self._reload(db, terminal, vehicle_id, fixes[0].time)
            st.last_live = last_live
            result.reloaded.append(terminal)
        else:
            upd = st.seg.push_many(fixes)
            if upd.needs_resegment_from is not None:
                last_live = st.last_live
                st = self._reload(db, terminal, vehicle_id, upd.needs_resegment_from)
                st.last_live = last_live
                result.reloaded.append(terminal)
            else:
                self._apply(db, st, upd)
        late = False
        for f in fixes:
            if f.extras.get("batch") or (st.last_live is not None and f.time <= st.last_live):
                result.late += 1
                late = True
                continue
            st.last_live = f.time
            result.events.extend(st.detector.update(f))
        st.since_tail += len(fixes)
        if late or st.since_tail >= self.config.tail_every:
            self._write_tail(db, st)

    def _reload(self, db: Session, terminal: str, vehicle_id: int | None,
                earliest: datetime) -> _Term:
        """(Re)build a terminal's segmenter from the database, anchored before ``earliest``."""
        st = self._new_term(db, terminal, vehicle_id)
        anchor = anchor_stop(db, terminal, earliest)
        if anchor is not None:
            keep_from: datetime | None = anchor.start_time
            load_from = anchor.raw_start
        else:
            keep_from = load_from = earliest - COLD_LOOKBACK
        delete_segments(db, terminal, keep_from)
        fixes = load_fixes(db, terminal, load_from)
        upd = st.seg.push_many(fixes)
        if keep_from is not None:
            upd.trips = [t for t in upd.trips if t.start >= keep_from]
            upd.stops = [s for s in upd.stops if s.start >= keep_from]
        upd.replace_from = None
        self._apply(db, st, upd)
        self._write_tail(db, st)
        self._terms[terminal] = st
        return st

    def _apply(self, db: Session, st: _Term, upd: SegmentationUpdate) -> None:
        if upd.needs_resegment_from is not None:
            self._reload(db, st.terminal_id, st.vehicle_id, upd.needs_resegment_from)
            return
        if upd.replace_from is not None:
            delete_segments(db, st.terminal_id, upd.replace_from)
            st.since_tail = self.config.tail_every  # rewrite the tail too
        if upd.trips or upd.stops:
            delete_segments(db, st.terminal_id, provisional=True)
            store_segments(db, st.terminal_id, st.vehicle_id, upd.trips, upd.stops)
            self._overnight(db, st, upd.stops)
            st.since_tail = self.config.tail_every

    def _write_tail(self, db: Session, st: _Term) -> None:
        """Rewrite the provisional tail (current stop / trip in progress) of a terminal."""
        st.since_tail = 0
        res = st.seg.flush()
        trips = res.trips[len(st.seg.trips):]
        stops = res.stops[len(st.seg.stops):]
        delete_segments(db, st.terminal_id, provisional=True)
        store_segments(db, st.terminal_id, st.vehicle_id, trips, stops, provisional=True)
        self._overnight(db, st, stops)

    def _publish(self, events: Sequence[EventRecord]) -> None:
        if not events or self.client is None:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for e in events:
                pipe.publish(EVENTS_CHANNEL, json.dumps(e.to_json(), ensure_ascii=False))
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("events_publish_failed", error=str(exc)[:200])


def offline_events(db: Session, now: datetime, params: EventParams | None = None
                   ) -> list[EventRecord]:
    """``offline`` for every active bound terminal silent for ``offline_after_s`` (periodic).

    The event's time is last fix + threshold, so repeated checks store it once.
    """
    p = params or EventParams()
    after = timedelta(seconds=p.offline_after_s)
    last = dict(db.execute(select(Position.terminal_id, func.max(Position.time))
                           .group_by(Position.terminal_id)).all())
    out = []
    for term in db.scalars(select(Terminal).where(Terminal.active.is_(True),
                                                  Terminal.vehicle_id.is_not(None))):
        t = last.get(term.id)
        if t is None:
            continue
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        if now - t >= after:
            out.append(EventRecord("offline", t + after, term.id, term.vehicle_id,
                                   value=round((now - t).total_seconds()),
                                   threshold=p.offline_after_s,
                                   detail={"last_fix": t.isoformat()}))
    return out


def check_offline(engine: Engine, now: datetime | None = None,
                  client: redis.Redis | None = None,
                  params: EventParams | None = None) -> list[EventRecord]:
    """Run the terminal-offline check in its own transaction and publish new events."""
    now = now or datetime.now(UTC)
    with Session(engine) as db, db.begin():
        events = store_events(db, offline_events(db, now, params))
    if client is not None and events:
        for e in events:
            client.publish(EVENTS_CHANNEL, json.dumps(e.to_json(), ensure_ascii=False))
    return events


__all__ = ["EVENTS_CHANNEL", "ProcessorConfig", "TelematicsProcessor", "check_offline",
           "load_fixes", "offline_events", "recompute", "resegment_terminal", "store_events"]


