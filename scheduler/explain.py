"""Why was a booking not served?  (OR-Tools complaint 7: "infeasible with no reason".)

Two layers:

1. :func:`precheck` — static tests that need no search and fire before the solver runs
   (the booking is then kept out of the model): no vehicle of that category, too many
   passengers, no driver on shift with the licence, pickup unreachable from every garage
   within availability, delivery unreachable after the pickup, no way back to the garage.
2. :func:`explain_unserved` — for bookings the solver dropped, re-solve with exactly one
   constraint relaxed and report the first relaxation that makes the booking fit.  The
   re-solve is the exact insertion of :mod:`scheduler.insert` into the final plan (the other
   bookings keep their places), which answers in milliseconds.

Every answer carries a stable ``code``, an English sentence and a zh-CN sentence.
"""

from __future__ import annotations

from dataclasses import replace

from scheduler.model import Booking, Plan, Problem, Unserved, Vehicle

#: code → (English, zh-CN) templates; ``{id}`` is the booking id.
MESSAGES: dict[str, tuple[str, str]] = {
    "no_vehicle_category": ("Booking {id} needs a vehicle of category {category}; the fleet "
                            "has none.", "用车单 {id} 需要 {category} 类车辆，车队中没有。"),
    "no_allowed_vehicle": ("None of the vehicles allowed for booking {id} exists.",
                           "用车单 {id} 指定的车辆均不存在。"),
    "too_many_passengers": ("Booking {id} has {passengers} passengers; the largest suitable "
                            "vehicle has {seats} seats.",
                            "用车单 {id} 有 {passengers} 名乘客，最大的可用车辆只有 {seats} 座。"),
    "no_driver_licence": ("No driver on shift holds licence {licence} required by booking "
                          "{id}.", "没有在班驾驶员持有用车单 {id} 所需的 {licence} 驾照。"),
    "no_driver_on_shift": ("No driver is on shift during the time of booking {id}.",
                           "用车单 {id} 的时段内没有驾驶员在班。"),
    "pickup_unreachable": ("No suitable vehicle can reach the pickup of booking {id} before "
                           "its window closes, starting from its garage when it becomes "
                           "available.", "没有合适车辆能在上车时间窗关闭前从车库赶到用车单 {id} "
                           "的上车点。"),
    "delivery_unreachable": ("The drop-off window of booking {id} closes before a vehicle can "
                             "get there from the pickup.",
                             "用车单 {id} 从上车点出发无法在下车时间窗内到达。"),
    "return_unreachable": ("After serving booking {id} no suitable vehicle can return to its "
                           "garage within its availability.",
                           "执行用车单 {id} 后，没有车辆能在可用时间内返回车库。"),
    "solver_time": ("Booking {id} fits in the plan; the solver ran out of time before placing "
                    "it. Re-run with a longer time limit.",
                    "用车单 {id} 本可安排，求解时间不足，请延长时限后重算。"),
    "time_window_conflict": ("Booking {id} fits only if its time window moves: every suitable "
                             "vehicle is busy with other bookings at that time.",
                             "用车单 {id} 的时间窗内所有合适车辆都被其他任务占用，"
                             "调整时间方可安排。"),
    "seats_full": ("Booking {id} fits only with more seats: suitable vehicles are full at that "
                   "time.", "用车单 {id} 时段内合适车辆座位已满。"),
    "fleet_busy": ("Booking {id} would fit on one more vehicle of the allowed kind: the fleet "
                   "is fully used.", "再增加一辆合适车辆即可安排用车单 {id}，当前车队已满负荷。"),
    "driver_rules": ("Booking {id} fits only if driver rules (shifts, licences, driving time, "
                     "breaks) are relaxed.",
                     "只有放宽驾驶员规则（班次、驾照、驾驶时长、休息）才能安排用车单 {id}。"),
    "not_explained": ("Booking {id} could not be placed; the time limit cut its explanation "
                      "short (re-run with a longer time limit for the reason).",
                      "用车单 {id} 无法安排；时限内未能给出原因，延长时限可得详细原因。"),
    "not_inserted": ("Booking {id} could not be placed; no single relaxation explains it.",
                     "用车单 {id} 无法安排，单项放宽约束均无法解释。"),
}


def unserved(code: str, b: Booking, **kw: object) -> Unserved:
    """Build an :class:`Unserved` with both sentences."""
    en, zh = MESSAGES[code]
    fields = {"id": b.id, "category": b.category, "passengers": b.passengers,
              "licence": b.licence, **kw}
    return Unserved(b.id, code, en.format(**fields), zh.format(**fields))


def _kind_fits(b: Booking, v: Vehicle) -> bool:
    if b.category is not None and b.category != v.category:
        return False
    return b.allowed_vehicles is None or v.id in b.allowed_vehicles


def _reach(problem: Problem, b: Booking, v: Vehicle) -> str | None:
    """First reachability failure on vehicle ``v`` (None = reachable)."""
    dur = problem.durations
    t = v.window[0]
    here = v.origin
    if b.pickup is not None:
        arr = t + float(dur[here, b.pickup])
        if arr > b.pickup_window[1] + 1e-9 or arr > v.window[1]:
            return "pickup_unreachable"
        t = max(arr, b.pickup_window[0]) + b.pickup_service
        here = b.pickup
    arr = t + float(dur[here, b.delivery])
    if arr > b.delivery_window[1] + 1e-9:
        return "delivery_unreachable" if b.pickup is not None else "pickup_unreachable"
    t = max(arr, b.delivery_window[0]) + b.delivery_service
    if t + float(dur[b.delivery, v.destination]) > v.window[1] + 1e-9:
        return "return_unreachable"
    return None


_SHIFTS: dict[int, tuple[object, dict[tuple[float, float], frozenset[str]]]] = {}


def reachable(problem: Problem, b: Booking, v: Vehicle) -> bool:
    """``v`` could serve ``b`` on its own (from its garage, within its window)."""
    return _reach(problem, b, v) is None


def _shift_licences(problem: Problem) -> dict[tuple[float, float], frozenset[str]]:
    """Distinct shifts → licences held by some driver on that shift (cached per list)."""
    key = id(problem.drivers)
    hit = _SHIFTS.get(key)
    if hit is not None and hit[0] is problem.drivers:
        return hit[1]
    out: dict[tuple[float, float], set[str]] = {}
    for d in problem.drivers:
        for sh in d.shifts:
            out.setdefault(tuple(sh), set()).update(d.licences)  # type: ignore[arg-type]
    frozen = {k: frozenset(v) for k, v in out.items()}
    if len(_SHIFTS) > 64:
        _SHIFTS.clear()
    _SHIFTS[key] = (problem.drivers, frozen)
    return frozen


def _fits_shift(problem: Problem, b: Booking, shift: tuple[float, float]) -> bool:
    """Can ``b`` be served entirely inside ``shift`` (ignoring the drive from the garage)?"""
    a, z = shift
    t = a
    if b.pickup is not None:
        t = max(t, b.pickup_window[0])
        if t > b.pickup_window[1] + 1e-9:
            return False
        t += b.pickup_service + float(problem.durations[b.pickup, b.delivery])
    t = max(t, b.delivery_window[0])
    return t <= b.delivery_window[1] + 1e-9 and t + b.delivery_service <= z + 1e-9


def precheck(problem: Problem, b: Booking) -> Unserved | None:
    """Static reason why ``b`` can never be served, or ``None``.

    "No driver on shift": a driver drives one duty inside one shift, so the booking must
    fit inside some driver's shift — picked up and dropped off (at the earliest times its
    windows and the direct drive allow) between the shift's start and end.
    """
    kind_ok = [v for v in problem.vehicles if _kind_fits(b, v)]
    if not kind_ok:
        return unserved("no_vehicle_category" if b.category else "no_allowed_vehicle", b)
    seats = max(v.seats for v in kind_ok)
    if b.passengers > seats:
        return unserved("too_many_passengers", b, seats=seats)
    fitting = [v for v in kind_ok if v.seats >= b.passengers]
    if problem.drivers:
        on_shift = [lic for sh, lic in _shift_licences(problem).items()
                    if _fits_shift(problem, b, sh)]
        if not on_shift:
            return unserved("no_driver_on_shift", b)
        if b.licence and not any(b.licence in lic for lic in on_shift):
            return unserved("no_driver_licence", b)
    # Duties of one garage and window are alike: test each kind once.
    kinds = {(v.origin, v.destination, v.window): v for v in fitting}
    failures = [_reach(problem, b, v) for v in kinds.values()]
    if any(f is None for f in failures):
        return None
    # Report the failure that got furthest along the trip.
    order = ["return_unreachable", "delivery_unreachable", "pickup_unreachable"]
    return unserved(next(c for c in order if c in failures), b)


def _relaxed_fits(problem: Problem, plan: Plan, b: Booking) -> bool:
    from scheduler.insert import best_insertion

    return best_insertion(problem, plan, b) is not None


def _relaxations(problem: Problem, b: Booking) -> list[tuple[str, Problem, Booking]]:
    """One problem per relaxed constraint, in reporting order."""
    horizon = (min(v.window[0] for v in problem.vehicles),
               max(v.window[1] for v in problem.vehicles))
    wide = replace(b, pickup_window=horizon, delivery_window=horizon, max_ride=None)
    more_seats = replace(problem, vehicles=[replace(v, seats=max(v.seats, 10_000))
                                            for v in problem.vehicles])
    spare = [replace(v, id=f"{v.id}+spare", fixed_cost=0, position=None)
             for v in problem.vehicles if _kind_fits(b, v)][:1]
    extra = replace(problem, vehicles=problem.vehicles + spare,
                    drivers=problem.drivers + ([replace(problem.drivers[0], id="spare-driver",
                                                        licences=frozenset({b.licence} if
                                                                           b.licence else ()))]
                                               if problem.drivers else []))
    no_drivers = replace(problem, drivers=[])
    # Most specific first: seats and driver rules name one resource; moving the time
    # window or adding a car are the broader remedies.
    return [("seats_full", more_seats, b), ("driver_rules", no_drivers, b),
            ("time_window_conflict", problem, wide), ("fleet_busy", extra, b)]


def explain_unserved(problem: Problem, plan: Plan, dropped: list[Booking],
                     deadline: float | None = None, at_least: int = 20) -> list[Unserved]:
    """A reason for every booking the solver left out.

    Past ``deadline`` (``time.monotonic()``) only the static pre-check runs; bookings it
    cannot explain get ``not_explained`` (big days: each relaxation is an insertion over
    every route). The first ``at_least`` are always explained in full, so a small day on a
    busy machine still says why.
    """
    import time

    out: list[Unserved] = []
    for i, b in enumerate(dropped):
        pre = precheck(problem, b)
        if pre is not None:
            out.append(pre)
            continue
        if deadline is not None and i >= at_least and time.monotonic() > deadline:
            out.append(unserved("not_explained", b))
            continue
        if _relaxed_fits(_without(problem, b), plan, b):
            out.append(unserved("solver_time", b))
            continue
        for code, prob, booking in _relaxations(_without(problem, b), b):
            if _relaxed_fits(prob, plan, booking):
                out.append(unserved(code, b))
                break
        else:
            out.append(unserved("not_inserted", b))
    return out


def _without(problem: Problem, b: Booking) -> Problem:
    """Shallow copy whose booking list excludes nothing but is safe to extend."""
    return replace(problem, bookings=list(problem.bookings))
