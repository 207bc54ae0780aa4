"""Earliest-start scheduling of a stop sequence (shared by solver, insertion, baselines).

Given a vehicle and an ordered list of ``(booking, kind)`` visits, compute arrival, service
start and departure at every stop in floating point from the problem's matrices, and the
load on board.  Returns ``None`` when the sequence breaks a window, the seats or the
vehicle's availability.  The validator does *not* use this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.model import Booking, Driver, Problem, Route, Stop, Vehicle

Visit = tuple[Booking, str]


def visit_node(b: Booking, kind: str) -> int:
    """Node of a visit."""
    if kind == "pickup":
        assert b.pickup is not None
        return b.pickup
    return b.delivery


def visit_window(b: Booking, kind: str) -> tuple[float, float]:
    """Time window of a visit."""
    return b.pickup_window if kind == "pickup" else b.delivery_window


def visit_service(b: Booking, kind: str) -> float:
    """Service duration of a visit."""
    return b.pickup_service if kind == "pickup" else b.delivery_service


def initial_load(visits: Sequence[Visit]) -> int:
    """Passengers on board at the start: delivery-only jobs are loaded at the garage."""
    return sum(b.passengers for b, k in visits if k == "delivery" and b.pickup is None)


def schedule(problem: Problem, vehicle: Vehicle, visits: Sequence[Visit],
             driver_id: str | None = None, check: bool = True,
             rest: Driver | None = None,
             not_before: dict[tuple[str, str], float] | None = None) -> Route | None:
    """Timed route for ``visits`` (earliest start everywhere) or ``None`` if infeasible.

    With ``rest`` (the paired driver) the simple break rule is scheduled: when the next leg
    would take continuous driving past ``break_after``, the car stays ``break_duration``
    longer at the current stop (a wait of that length already counts as the break).
    ``not_before`` delays service starts (e.g. to the solver's times, so that a pickup is not
    started early only to make the passenger's ride too long).
    """
    dur = problem.durations
    load = initial_load(visits)
    if check and load > vehicle.seats:
        return None
    t = float(vehicle.window[0])
    node = vehicle.origin
    stops = [Stop("start", node, None, t, t, t, load)]
    picked: dict[str, float] = {}
    driving = 0.0
    for b, kind in visits:
        nxt = visit_node(b, kind)
        leg = float(dur[node, nxt])
        if rest is not None:
            driving, extra = _rest_before(rest, stops[-1], driving, leg)
            t += extra
            stops[-1].departure = t
        arrival = t + leg
        lo, hi = visit_window(b, kind)
        start = max(arrival, lo)
        if not_before:
            start = max(start, not_before.get((b.id, kind), start))
        if check and start > hi + 1e-9:
            return None
        load += b.passengers if kind == "pickup" else -b.passengers
        if check and load > vehicle.seats:
            return None
        t = start + visit_service(b, kind)
        if kind == "pickup":
            picked[b.id] = t
        elif (check and b.max_ride is not None and b.id in picked
              and start - picked[b.id] > b.max_ride + 1e-9):
            return None
        stops.append(Stop(kind, nxt, b.id, arrival, start, t, load))  # type: ignore[arg-type]
        node = nxt
    end = vehicle.destination
    leg = float(dur[node, end])
    if rest is not None:
        _, extra = _rest_before(rest, stops[-1], driving, leg)
        t += extra
        stops[-1].departure = t
    arrival = t + leg
    if check and arrival > vehicle.window[1] + 1e-9:
        return None
    stops.append(Stop("end", end, None, arrival, arrival, arrival, load))
    _leave_late(problem, stops, rest)
    return Route(vehicle.id, driver_id, stops)


def _rest_before(d: Driver, here: Stop, driving: float, leg: float) -> tuple[float, float]:
    """(driving since the last break after the leg, extra stay needed at ``here``)."""
    stay = here.departure - here.arrival if here.kind != "start" else d.break_duration
    if stay >= d.break_duration:
        driving = 0.0
    if driving + leg <= d.break_after:
        return driving + leg, 0.0
    return leg, d.break_duration - stay


def _leave_late(problem: Problem, stops: list[Stop], rest: Driver | None) -> None:
    """Leave the garage as late as the first stop allows (no wait at the first stop).

    Keeps the driver's working span tight without changing any service start.  Skipped
    when the wait at the first stop is the driver's break.
    """
    if len(stops) < 3:
        return
    first = stops[1]
    travel = float(problem.durations[stops[0].node, first.node])
    leave = first.start - travel
    if leave <= stops[0].departure:
        return
    if rest is not None and first.departure - first.arrival >= rest.break_duration and \
            first.departure - (leave + travel) < rest.break_duration and \
            _driving(problem, stops) > rest.break_after:
        return
    stops[0].arrival = stops[0].start = stops[0].departure = leave
    first.arrival = leave + travel


def visits_of(problem: Problem, route: Route,
              by_id: dict[str, Booking] | None = None) -> list[Visit]:
    """The ``(booking, kind)`` sequence of a route (without start and end)."""
    if by_id is None:
        by_id = {b.id: b for b in problem.bookings}
    return [(by_id[s.booking_id], s.kind) for s in route.stops
            if s.booking_id is not None]


def _driving(problem: Problem, stops: list[Stop]) -> float:
    """Seconds of driving along the stops (no break is ever due below ``break_after``)."""
    dur = problem.durations
    return float(sum(dur[a.node, b.node] for a, b in zip(stops, stops[1:], strict=False)))
