"""Day planning against the database: build the problem, solve, validate, commit.

Plain functions taking a session and the acting user; nothing here commits (the request's
unit of work does, so a refused assignment rolls the whole plan back).  This module is the
one place where the scheduler meets ``fleet`` and ``dispatch``: the pure model
(:mod:`scheduler.dayplan`) and the solver know nothing of the database.

* :func:`plan_day` — approved bookings of the day in the actor's scope, cars in service
  (garage = start and end), active drivers (licence classes; their stored shift 班次, or
  07:00–22:00 local when none is stored; their daily driving limit, 8 h by default):
  :func:`scheduler.dayplan.roster` gives every car a first duty and, when early and late
  shifts leave drivers over, second duties ``"<car>/2"``, which this module maps back to
  the car through :func:`_car`; bookings assigned or under way kept on their car as frozen
  legs;
  travel matrix from :func:`geo.travel.provider_from_settings`; solved, then validated by
  :func:`scheduler.validate.validate` — a plan that fails is refused (422 ``plan_invalid``),
  never returned as OK.
* :func:`commit` — each new assignment through :func:`dispatch.service.assign` with
  ``source=scheduler`` (same checks as a dispatcher's, plus the booking version read when
  planning); the first refusal aborts the request: nothing is committed, 409 naming the
  booking.
* :func:`insert_urgent` — cheapest feasible insertion of one booking into the day's
  committed assignments (:func:`scheduler.insert.insert_booking`, emergencies may bump a
  lower-priority booking), optionally committed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import numpy as np
from geoalchemy2.shape import to_shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import service as dispatch
from dispatch.models import Assignment, AssignmentSource, Booking, BookingStatus, Purpose
from fleet.errors import Conflict, DomainError, Invalid
from fleet.models import Driver, DriverStatus, User, Vehicle, VehicleStatus
from fleet.scope import require_role, visible_departments
from geo.travel import GreatCircleProvider, provider_from_settings
from scheduler import schemas
from scheduler.dayplan import (
    DEFAULT_SHIFT,
    Car,
    Crew,
    Day,
    LatLon,
    MatrixFn,
    Trip,
    Window,
    booking_of,
    build_day,
    day_options,
)
from scheduler.insert import insert_booking
from scheduler.model import Plan, Priority, Route, Stop, StopRef, Unserved, plan_totals
from scheduler.solver import solve
from scheduler.timing import schedule
from scheduler.validate import validate

LOCAL = ZoneInfo("Asia/Shanghai")
#: Hours (local) whose speeds are combined, slowest wins: a plan must hold in the peaks.
MATRIX_HOURS = (8, 12, 18)


class PlanInvalid(DomainError):
    """The solver's plan failed the independent validator: it is not handed out."""

    status_code = 422
    code = "plan_invalid"


@dataclass
class _Context:
    """A built day plus the database rows behind its ids."""

    day: Day
    midnight: datetime
    bookings: dict[str, Booking]
    vehicles: dict[str, Vehicle]
    drivers: dict[str, Driver]
    #: frozen booking ids per vehicle id, and the driver holding each of them
    frozen: dict[str, list[str]]
    held_driver: dict[str, str]


# --- reading the day -----------------------------------------------------------------------
def day_window(day: date) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of ``day`` in UTC."""
    start = datetime(day.year, day.month, day.day, tzinfo=LOCAL).astimezone(UTC)
    return start, start + timedelta(days=1)


def priority_of(b: Booking) -> Priority:
    """Urgent tasks (防汛, 应急…) and emergency purposes first, then receptions and major
    events (leadership), then the rest."""
    if b.urgent_tag or b.purpose == Purpose.emergency:
        return "emergency"
    if b.purpose in (Purpose.reception, Purpose.major_event):
        return "leadership"
    return "ordinary"


def _end_point(b: Booking) -> tuple[LatLon, str]:
    if b.return_trip or not b.stops:
        return (b.pickup_lat, b.pickup_lon), b.pickup_address
    last = b.stops[-1]
    return (last.lat, last.lon), last.address


def _trip(b: Booking, midnight: datetime) -> Trip:
    end, _ = _end_point(b)
    return Trip(str(b.id), (b.pickup_lat, b.pickup_lon), end,
                (b.start_at - midnight).total_seconds(), (b.end_at - midnight).total_seconds(),
                b.passengers, str(b.vehicle_category) if b.vehicle_category else None,
                priority_of(b))


def _garage(v: Vehicle) -> LatLon | None:
    if v.home_garage is None:
        return None
    pt = to_shape(v.home_garage)
    return (pt.y, pt.x)


def _tour_points(b: Booking) -> list[LatLon]:
    pts = [(b.pickup_lat, b.pickup_lon)] + [(s.lat, s.lon) for s in b.stops]
    if b.return_trip and b.stops:
        pts.append((b.pickup_lat, b.pickup_lon))
    return pts


def matrix_fn(routing_url: str | None, day: date) -> MatrixFn:
    """Travel matrix for the day: the configured provider; with the great-circle model the
    slowest of the morning peak, midday and evening peak speeds (conservative)."""
    provider = provider_from_settings(routing_url)
    midnight = day_window(day)[0]
    hours = MATRIX_HOURS if isinstance(provider, GreatCircleProvider) else MATRIX_HOURS[:1]

    def fn(points: Sequence[LatLon]) -> tuple[np.ndarray, np.ndarray]:
        dist = dur = None
        for h in hours:
            m = provider.matrix(list(points), midnight + timedelta(hours=h))
            dist = m.distances_m if dist is None else dist
            dur = m.durations_s if dur is None else np.maximum(dur, m.durations_s)
        return np.asarray(dist, dtype=float), np.asarray(dur, dtype=float)

    return fn


def _scoped(db: Session, actor: User, stmt: Any, column: Any) -> Any:
    scope = visible_departments(db, actor)
    return stmt if scope is None else stmt.where(column.in_(scope))


def _held(db: Session, actor: User, start: datetime, end: datetime
          ) -> list[tuple[Booking, Assignment]]:
    """Bookings of the day holding a car (assigned or under way), earliest first."""
    stmt = (select(Booking, Assignment).join(Assignment, Assignment.booking_id == Booking.id)
            .where(Assignment.active.is_(True),
                   Booking.status.in_((BookingStatus.assigned, BookingStatus.in_progress)),
                   Booking.start_at >= start, Booking.start_at < end)
            .order_by(Booking.start_at, Booking.id))
    return [(b, a) for b, a in db.execute(stmt).tuples()]


def _context(db: Session, actor: User, day: date, routing_url: str | None, *,
             open_bookings: list[Booking], held: list[tuple[Booking, Assignment]],
             freeze_held: bool, extra: Sequence[Booking] = ()) -> _Context:
    midnight, _ = day_window(day)
    vehicles = list(db.scalars(_scoped(db, actor, select(Vehicle).where(
        Vehicle.status == VehicleStatus.in_service).order_by(Vehicle.id), Vehicle.department_id)))
    drivers = list(db.scalars(_scoped(db, actor, select(Driver).where(
        Driver.status == DriverStatus.active).order_by(Driver.id), Driver.department_id)))
    rows = {str(b.id): b for b in [*open_bookings, *(b for b, _ in held), *extra]}
    garages = [g for v in vehicles if (g := _garage(v)) is not None]
    fallback = (tuple(np.mean(garages, axis=0)) if garages else
                next(((b.pickup_lat, b.pickup_lon) for b in rows.values()), (0.0, 0.0)))
    cars = [Car(str(v.id), _garage(v) or fallback, dispatch.capacity(v),
                str(v.category), str(dispatch.required_licence(v))) for v in vehicles]
    crew = [_crew(d) for d in drivers]
    frozen: dict[str, list[str]] = {}
    held_driver: dict[str, str] = {}
    if freeze_held:
        for b, a in held:
            frozen.setdefault(str(a.vehicle_id), []).append(str(b.id))
            held_driver[str(b.id)] = str(a.driver_id)
    trips = [_trip(b, midnight) for b in rows.values()]
    tours = {bid: _tour_points(b) for bid, b in rows.items()}
    day_ = build_day(trips, cars, crew, matrix_fn(routing_url, day), frozen=frozen,
                     extra_points=[p for pts in tours.values() for p in pts],
                     name=f"day {day.isoformat()}")
    dist = day_.problem.distances
    for bid, pts in tours.items():  # metres driven inside each booking
        nodes = [day_.node_of[(round(p[0], 6), round(p[1], 6))] for p in pts]
        day_.trips[bid] = replace(day_.trips[bid], tour_m=float(sum(
            dist[a, c] for a, c in zip(nodes, nodes[1:], strict=False))))
    return _Context(day_, midnight, rows, {str(v.id): v for v in vehicles},
                    {str(d.id): d for d in drivers}, frozen, held_driver)


def _crew(d: Driver) -> Crew:
    """A driver for the planner: licences covered, the stored shift (local wall-clock
    seconds from the day's local midnight; the whole service day when none is stored) and
    the daily driving limit (8 h when none is stored)."""
    shift: Window = DEFAULT_SHIFT
    if d.shift_start is not None and d.shift_end is not None:
        shift = (_seconds(d.shift_start), _seconds(d.shift_end))
    limit = 8 * 3600.0 if d.max_driving_minutes is None else d.max_driving_minutes * 60.0
    return Crew(str(d.id), frozenset(str(c) for c in dispatch.COVERS.get(d.licence_class, ())),
                (shift,), limit)


def _seconds(t: dt_time) -> float:
    return float(t.hour * 3600 + t.minute * 60 + t.second)


# --- output --------------------------------------------------------------------------------
def _at(ctx: _Context, seconds: float) -> datetime:
    return ctx.midnight + timedelta(seconds=float(seconds))


def _stop_out(ctx: _Context, route: Route, s: Stop) -> schemas.StopOut:
    lat, lon = ctx.day.problem.nodes[s.node]
    if s.booking_id is None:
        address = f"车库 garage ({ctx.vehicles[_car(ctx, route.vehicle_id)].plate})"
    else:
        b = ctx.bookings[s.booking_id]
        address = b.pickup_address if s.kind == "pickup" else _end_point(b)[1]
    return schemas.StopOut(kind=s.kind, booking_id=int(s.booking_id) if s.booking_id else None,
                           address=address, lat=lat, lon=lon, arrival=_at(ctx, s.arrival),
                           start=_at(ctx, s.start), departure=_at(ctx, s.departure))


def _car(ctx: _Context, vid: str) -> str:
    """The car (database vehicle id) of a routing vehicle (a duty of that car)."""
    try:
        return ctx.day.problem.vehicle(vid).car_id
    except KeyError:
        return vid


def route_out(ctx: _Context, r: Route) -> schemas.RouteOut:
    v = ctx.vehicles[_car(ctx, r.vehicle_id)]
    d = ctx.drivers.get(r.driver_id or "")
    ids = r.booking_ids()
    frozen = set(ctx.frozen.get(r.vehicle_id, []))
    empty = sum(float(ctx.day.problem.distances[a.node, b.node])
                for a, b in zip(r.stops, r.stops[1:], strict=False))
    tour = sum(ctx.day.trips[i].tour_m for i in ids)
    return schemas.RouteOut(
        vehicle_id=v.id, plate=v.plate, category=str(v.category),
        driver_id=d.id if d else None, driver_name=d.name if d else None,
        bookings=[int(i) for i in ids], frozen=[int(i) for i in ids if i in frozen],
        stops=[_stop_out(ctx, r, s) for s in r.stops], km=round((empty + tour) / 1000, 3),
        empty_km=round(empty / 1000, 3))


def _unserved_out(u: Unserved) -> schemas.UnservedOut:
    return schemas.UnservedOut(booking_id=int(u.booking_id), code=u.code, reason=u.reason,
                               reason_zh=u.reason_zh or u.reason)


def _keep_held_drivers(ctx: _Context, plan: Plan) -> None:
    """A car with frozen legs keeps the driver who holds them, when swapping drivers with
    the route that has that driver (or giving it to the car) leaves the plan valid."""
    by_vehicle = {r.vehicle_id: r for r in plan.routes}
    for vid, bids in ctx.frozen.items():
        want = ctx.held_driver.get(bids[0]) if bids else None
        r = by_vehicle.get(vid)
        if want is None or r is None or r.driver_id == want or want not in ctx.drivers:
            continue
        other = next((x for x in plan.routes if x.driver_id == want), None)
        before = (r.driver_id, other.driver_id if other else None)
        r.driver_id, mine = want, r.driver_id
        if other is not None:
            other.driver_id = mine
        if validate(ctx.day.problem, plan):
            r.driver_id = before[0]
            if other is not None:
                other.driver_id = before[1]


# --- planning ------------------------------------------------------------------------------
def plan_day(db: Session, actor: User, req: schemas.PlanRequest, routing_url: str | None
             ) -> schemas.PlanOut:
    """Plan (and with ``preview=false`` commit) the day."""
    require_role(actor, dispatch.DISPATCHERS, "plan the day")
    if not req.is_preview and not req.options.include_assigned:
        raise Invalid("a plan that re-plans assigned bookings cannot be committed: plan with "
                      "include_assigned=true (or unassign them first)", field="preview")
    start, end = day_window(req.day)
    open_q = _scoped(db, actor, select(Booking).where(
        Booking.status == BookingStatus.approved, Booking.start_at >= start,
        Booking.start_at < end).order_by(Booking.start_at, Booking.id), Booking.department_id)
    open_bookings = list(db.scalars(open_q))
    scope = visible_departments(db, actor)
    held = [(b, a) for b, a in _held(db, actor, start, end)
            if scope is None or b.department_id in scope]
    ctx = _context(db, actor, req.day, routing_url, open_bookings=open_bookings, held=held,
                   freeze_held=req.options.include_assigned)
    problem = ctx.day.problem
    t0 = time.monotonic()
    plan = solve(problem, day_options(req.options.time_limit, len(problem.bookings)))
    _keep_held_drivers(ctx, plan)
    plan_totals(problem, plan)
    seconds = time.monotonic() - t0
    violations = validate(problem, plan)
    if violations:
        raise PlanInvalid(
            f"the solver's plan for {req.day} breaks {len(violations)} rule(s) "
            f"({violations[0].code}: {violations[0].message}); it was not used — re-run, "
            "or report this plan", violations=[{"code": v.code, "message": v.message,
                                                "booking_id": v.booking_id,
                                                "vehicle_id": v.vehicle_id}
                                               for v in violations[:20]])
    frozen_ids = {bid for bids in ctx.frozen.values() for bid in bids}
    routes = [r for r in plan.routes if r.used]
    items = [schemas.AssignmentItem(booking_id=int(bid), vehicle_id=int(_car(ctx, r.vehicle_id)),
                                    driver_id=int(r.driver_id), version=ctx.bookings[bid].version,
                                    start_at=ctx.bookings[bid].start_at,
                                    end_at=ctx.bookings[bid].end_at)
             for r in routes for bid in r.booking_ids()
             if bid not in frozen_ids and r.driver_id is not None]
    unserved = [_unserved_out(u) for u in [*plan.unserved, *ctx.day.rejected]]
    status: Literal["preview", "committed"] = "preview"
    if not req.is_preview and items:
        commit(db, actor, items, req.reason or f"调度计划 {req.day.isoformat()}")
        status = "committed"
    elif not req.is_preview:
        status = "committed"
    empty = plan.total_distance / 1000
    return schemas.PlanOut(
        day=req.day, status=status, valid=True, bookings=len(ctx.bookings),
        served=sum(len(r.booking_ids()) for r in routes), vehicles_used=plan.vehicles_used,
        vehicles_available=len(ctx.vehicles), drivers_available=len(ctx.drivers),
        km=round(ctx.day.km(plan), 3), empty_km=round(empty, 3),
        routes=[route_out(ctx, r) for r in sorted(
            routes, key=lambda r: (int(_car(ctx, r.vehicle_id)), r.vehicle_id))],
        unserved=sorted(unserved, key=lambda u: u.booking_id), assignments=items,
        solve_seconds=round(seconds, 3), engines=str(plan.meta.get("engines", "")),
        log=[str(x) for x in cast(list, plan.meta.get("log", []))])




def commit(db: Session, actor: User, items: Sequence[schemas.AssignmentItem],
           reason: str = "") -> list[schemas.AssignmentItem]:
    """Assign every item through dispatch (same checks as a dispatcher); all or nothing:
    the first refusal raises (409 naming the booking) and the request rolls back."""
    require_role(actor, dispatch.DISPATCHERS, "commit a plan")
    seen: set[int] = set()
    for it in items:
        if it.booking_id in seen:
            raise Invalid(f"booking {it.booking_id} appears twice in the plan",
                          field="assignments")
        seen.add(it.booking_id)
        _assign(db, actor, it.booking_id, it.vehicle_id, it.driver_id, reason, it.version)
    return list(items)


def _assign(db: Session, actor: User, booking_id: int, vehicle_id: int, driver_id: int,
            reason: str, version: int | None = None) -> None:
    try:
        dispatch.assign(db, actor, booking_id, vehicle_id, driver_id,
                        source=AssignmentSource.scheduler, reason=reason or "调度计划",
                        expected_version=version)
    except DomainError as exc:
        detail = {k: v for k, v in exc.detail.items() if k != "booking_id"}
        raise type(exc)(f"booking {booking_id}: {exc.message} — nothing was committed",
                        booking_id=booking_id, **detail) from exc


# --- urgent insertion ----------------------------------------------------------------------
def insert_urgent(db: Session, actor: User, req: schemas.InsertRequest,
                  routing_url: str | None) -> schemas.InsertOut:
    """Where does this booking fit in the day as already committed (and what is bumped)?"""
    require_role(actor, dispatch.DISPATCHERS, "insert bookings into the plan")
    t0 = time.monotonic()
    b = dispatch.get_booking(db, actor, req.booking_id)
    if b.status != BookingStatus.approved:
        raise Conflict(f"booking {b.id} is {b.status}: only an approved booking can be inserted",
                       status=str(b.status))
    day = b.start_at.astimezone(LOCAL).date()
    start, end = day_window(day)
    held = _held(db, actor, start, end)
    ctx = _context(db, actor, day, routing_url, open_bookings=[], held=held,
                   freeze_held=False, extra=[b])
    problem = ctx.day.problem
    # Bookings under way are fixed (never bumped); assigned ones may be re-timed or bumped.
    base = _committed_plan(ctx, held)
    for x, a in held:
        if x.status != BookingStatus.in_progress:
            continue
        route = next((r for r in base.routes if r.vehicle_id == str(a.vehicle_id)), None)
        if route is not None and route.booking_ids()[:1] == [str(x.id)]:
            problem.frozen[str(a.vehicle_id)] = [StopRef(str(x.id), "pickup"),
                                                 StopRef(str(x.id), "delivery")]
    rejected = next((u for u in ctx.day.rejected if u.booking_id == str(b.id)), None)
    target = next((x for x in problem.bookings if x.id == str(b.id)), None)
    if target is None:  # rejected up front (no car of that size)
        return schemas.InsertOut(booking_id=b.id, inserted=False, committed=False,
                                 unserved=_unserved_out(rejected) if rejected else None,
                                 seconds=round(time.monotonic() - t0, 4))
    problem.bookings = [x for x in problem.bookings if x.id != target.id]
    res = insert_booking(problem, base, target, allow_preemption=req.allow_preemption)
    if not res.inserted:
        u = next((x for x in res.plan.unserved if x.booking_id == target.id), None)
        from scheduler.explain import precheck

        u = precheck(problem, target) or u
        return schemas.InsertOut(booking_id=b.id, inserted=False, committed=False,
                                 unserved=_unserved_out(u) if u else None,
                                 seconds=round(time.monotonic() - t0, 4))
    changed = {res.vehicle_id} | {v for v in res.replaced.values() if v}
    bad = [v for v in validate(problem, res.plan)
           if v.vehicle_id in changed or v.booking_id == target.id]
    if bad:
        raise PlanInvalid(f"the insertion of booking {b.id} breaks {bad[0].code}: "
                          f"{bad[0].message}; not used", violations=[v.code for v in bad])
    routes = {r.vehicle_id: r for r in res.plan.routes}
    route = routes[res.vehicle_id]  # type: ignore[index]
    bumped = []
    for victim, moved in res.replaced.items():
        mr = routes.get(moved) if moved else None
        bumped.append(schemas.BumpOut(
            booking_id=int(victim), moved_to_vehicle_id=int(_car(ctx, moved)) if moved else None,
            moved_to_plate=ctx.vehicles[_car(ctx, moved)].plate if moved else None,
            moved_to_driver_id=int(mr.driver_id) if mr and mr.driver_id else None))
    committed = False
    if req.commit:
        if route.driver_id is None:
            raise Conflict(f"booking {b.id}: no driver for vehicle {route.vehicle_id}")
        why = req.reason or "紧急插单"
        for bo in bumped:
            dispatch.unassign(db, actor, bo.booking_id, f"被紧急用车 {b.id} 顶替: {why}")
        _assign(db, actor, b.id, int(_car(ctx, route.vehicle_id)), int(route.driver_id), why)
        for bo in bumped:
            if bo.moved_to_vehicle_id is not None and bo.moved_to_driver_id is not None:
                _assign(db, actor, bo.booking_id, bo.moved_to_vehicle_id,
                        bo.moved_to_driver_id, f"因紧急用车 {b.id} 改派")
        committed = True
    d = ctx.drivers.get(route.driver_id or "")
    return schemas.InsertOut(
        booking_id=b.id, inserted=True, committed=committed,
        vehicle_id=int(_car(ctx, route.vehicle_id)),
        plate=ctx.vehicles[_car(ctx, route.vehicle_id)].plate, driver_id=d.id if d else None,
        driver_name=d.name if d else None, added_km=round(res.added_distance / 1000, 3),
        route=route_out(ctx, route), bumped=bumped, seconds=round(time.monotonic() - t0, 4))


def _committed_plan(ctx: _Context, held: list[tuple[Booking, Assignment]]) -> Plan:
    """The day as committed: each car's assigned bookings in time order, with the driver of
    its first one (timed; a route the model finds infeasible is kept untimed-checked)."""
    problem = ctx.day.problem
    by_id = {x.id: x for x in problem.bookings}
    per_vehicle: dict[str, list[tuple[Booking, Assignment]]] = {}
    for b, a in held:
        if str(b.id) in by_id and str(a.vehicle_id) in ctx.vehicles:
            per_vehicle.setdefault(str(a.vehicle_id), []).append((b, a))
    routes = []
    for vid, items in per_vehicle.items():
        v = problem.vehicle(vid)
        visits = [(by_id[str(b.id)], k) for b, _ in items for k in ("pickup", "delivery")]
        did = str(items[0][1].driver_id)
        d = next((x for x in problem.drivers if x.id == did), None)
        r = (schedule(problem, v, visits, did if d else None, rest=d)
             or schedule(problem, v, visits, did if d else None, check=False))
        if r is not None:
            routes.append(r)
    plan = Plan(routes=routes)
    plan_totals(problem, plan)
    return plan


__all__ = ["PlanInvalid", "booking_of", "commit", "day_window", "insert_urgent", "plan_day"]
