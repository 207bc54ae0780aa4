"""Bookings (用车申请), the approval chain (审批), assignment (派车) and the state machine.

Plain functions taking a session and the acting user; nothing here commits (the caller owns
the unit of work).  Scope and role checks live here, so the API, the scheduler's commit and
the trip matcher obey the same rules.

State machine::

    draft ─submit→ submitted ─approve(department[, extra], dispatch)→ approved ─assign→
    assigned ─start→ in_progress ─complete→ completed
    (submitted: reject → rejected;  draft/submitted/approved/assigned: cancel → cancelled;
     assigned: unassign → approved;  submit of a refused booking → rejected;
     submit with an urgent task (防汛, 应急…) → approved at once, reviewed afterwards)

Concurrency: every write locks the booking row (``SELECT … FOR UPDATE`` on PostgreSQL) and the
row carries an optimistic ``version``; assignment also locks the vehicle and driver rows, so
two dispatchers (or a dispatcher and the scheduler) cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, or_, select, true
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.exc import StaleDataError

from dispatch import rules, schemas
from dispatch.models import (
    Approval,
    ApprovalStage,
    Assignment,
    AssignmentSource,
    Booking,
    BookingStatus,
    BookingStop,
    Decision,
    Purpose,
    ScopeOutcome,
)
from fleet import audit
from fleet.db import utcnow
from fleet.errors import Conflict, Forbidden, Invalid, NotFound
from fleet.models import (
    Department,
    Driver,
    DriverStatus,
    LicenceClass,
    Role,
    User,
    Vehicle,
    VehicleStatus,
)
from fleet.scope import (
    check_visible,
    department_subtree,
    require_role,
    scope_root,
    subtree_clause,
)
from fleet.service import Paged

S = BookingStatus
#: What may happen next from each status (answered with every 409).
ALLOWED: dict[BookingStatus, tuple[str, ...]] = {
    S.draft: ("update", "submit", "cancel"),
    S.submitted: ("approve", "reject", "cancel"),
    S.approved: ("assign", "cancel"),
    S.assigned: ("start", "unassign", "cancel"),
    S.in_progress: ("complete",),
    S.completed: (),
    S.rejected: (),
    S.cancelled: (),
}
BOOKERS = (Role.staff, Role.approver, Role.dispatcher, Role.admin)
DISPATCHERS = (Role.dispatcher, Role.admin)
#: Statuses in which an assignment holds its car and driver.
HOLDING = (S.assigned, S.in_progress)
PAST_SLACK = timedelta(minutes=5)
MAX_WINDOW = timedelta(days=7)

# Licence classes (准驾车型) and what each covers (GB/公安部令 139: A1 ⊃ A3, B1, B2, C1 ⊃ C2).
COVERS: dict[LicenceClass, set[LicenceClass]] = {
    LicenceClass.A1: {LicenceClass.A1, LicenceClass.A3, LicenceClass.B1, LicenceClass.B2,
                      LicenceClass.C1, LicenceClass.C2},
    LicenceClass.A2: {LicenceClass.A2, LicenceClass.B1, LicenceClass.B2, LicenceClass.C1,
                      LicenceClass.C2},
    LicenceClass.A3: {LicenceClass.A3, LicenceClass.C1, LicenceClass.C2},
    LicenceClass.B1: {LicenceClass.B1, LicenceClass.C1, LicenceClass.C2},
    LicenceClass.B2: {LicenceClass.B2, LicenceClass.C1, LicenceClass.C2},
    LicenceClass.C1: {LicenceClass.C1, LicenceClass.C2},
    LicenceClass.C2: {LicenceClass.C2},
}


def required_licence(vehicle: Vehicle) -> LicenceClass:
    """大型客车 (≥ 20 seats) A1, 中型客车 (10-19) B1, cars C2 (automatic; C1 covers it)."""
    if vehicle.seats >= 20:
        return LicenceClass.A1
    if vehicle.seats >= 10:
        return LicenceClass.B1
    return LicenceClass.C2


def capacity(vehicle: Vehicle) -> int:
    """Passenger seats: the seat count (核定载人数) includes the driver's."""
    return max(0, vehicle.seats - 1)


# --- reading -----------------------------------------------------------------------------
def active_assignment(db: Session, booking_id: int) -> Assignment | None:
    return db.scalar(select(Assignment).where(Assignment.booking_id == booking_id,
                                              Assignment.active.is_(True)))


_LOOK_UP = object()  # booking_read's default: query the active assignment


def booking_read(db: Session, b: Booking | SimpleNamespace, assignment: Any = _LOOK_UP
                 ) -> schemas.BookingRead:
    """The API view of a booking (or of a row with its attributes and ``stops``); pass
    ``assignment`` (or None) when it is already known."""
    a = active_assignment(db, b.id) if assignment is _LOOK_UP else assignment
    allowed = list(ALLOWED[b.status])
    if b.review_pending:
        allowed.append("review")
    return schemas.BookingRead(
        id=b.id, requester_id=b.requester_id, department_id=b.department_id, purpose=b.purpose,
        urgent_tag=b.urgent_tag, passengers=b.passengers,
        pickup=schemas.Place(address=b.pickup_address, lat=b.pickup_lat, lon=b.pickup_lon),
        destinations=[schemas.Place(address=s.address, lat=s.lat, lon=s.lon) for s in b.stops],
        start_at=b.start_at, end_at=b.end_at, return_trip=b.return_trip,
        vehicle_category=b.vehicle_category, notes=b.notes, status=b.status, stage=b.stage,
        scope_outcome=b.scope_outcome, scope_reasons=b.scope_reasons,
        review_pending=b.review_pending, submitted_at=b.submitted_at, started_at=b.started_at,
        completed_at=b.completed_at, distance_m=b.distance_m, version=b.version,
        allowed=allowed,
        assignment=schemas.AssignmentRead.model_validate(a) if a is not None else None,
    )


def read_booking(db: Session, actor: User, booking_id: int) -> schemas.BookingRead:
    """``booking_read(get_booking(...))`` in one query: the booking, its stops and its active
    assignment, and the scope check in SQL (out of scope is not found, as in get_booking)."""
    scope = scope_root(actor)
    row = db.execute(_read_statement(scope), {"booking_id": booking_id}).unique().first()
    if row is None:
        raise NotFound(f"booking {booking_id} not found")
    b, a = row
    return booking_read(db, b, a)


@lru_cache(maxsize=4096)
def _read_statement(scope_root: int | None) -> Any:
    # Built once per department scope: constructing (and cache-keying) it cost more than
    # running it. ``scope_root`` None: the actor sees every department.
    stmt = (select(Booking, Assignment)
            .outerjoin(Assignment, (Assignment.booking_id == Booking.id)
                       & Assignment.active.is_(True))
            .where(Booking.id == bindparam("booking_id"))
            .options(joinedload(Booking.stops)))
    if scope_root is not None:
        stmt = stmt.where(subtree_clause(Booking.department_id, scope_root))
    return stmt


def get_booking(db: Session, actor: User, booking_id: int) -> Booking:
    b = db.get(Booking, booking_id)
    if b is None:
        raise NotFound(f"booking {booking_id} not found")
    check_visible(db, actor, b.department_id, "booking", booking_id)
    return b


def list_bookings(db: Session, actor: User, offset: int = 0, limit: int = 50, *,
                  status: BookingStatus | None = None, department_id: int | None = None,
                  purpose: Purpose | None = None, start: datetime | None = None,
                  end: datetime | None = None) -> Paged:
    """A page of the bookings the actor may see, as API views (``BookingRead``).

    This is the API's busiest list, so it reads rows, not ORM objects (materialising a page
    of bookings, stops and assignments as mapped instances cost more than the queries), in
    two queries: the page with each booking's active assignment and the total count (a
    window over the same rows), the department scope evaluated in SQL; the page's stops.
    Only a page past the end, which has no row to carry the total, counts separately. (One
    query per assignment, a selectin load of the stops, a read of the department tree and
    a count of its own were five more.)
    """
    scope = scope_root(actor)
    filters = {"status": status, "department_id": department_id or None, "purpose": purpose,
               "start": start, "end": end}
    given = tuple(k for k, v in filters.items() if v)
    count, page = _list_statements(scope, given)
    params = {k: filters[k] for k in given}
    held = Assignment.__table__
    rows = db.execute(page, {**params, "offset": offset, "limit": limit}).all()
    total = rows[0].total_ if rows else (db.scalar(count, params) or 0)
    stops: dict[int, list[Any]] = {}
    if rows:
        for stop in db.execute(_PAGE_STOPS, {"ids": [r.id for r in rows]}):
            stops.setdefault(stop.booking_id, []).append(stop)
    items = []
    for r in rows:
        a = (SimpleNamespace(**{c.name: r._mapping[f"a_{c.name}"] for c in held.c})
             if r.a_id is not None else None)
        items.append(booking_read(db, SimpleNamespace(**r._mapping, stops=stops.get(r.id, [])),
                                  a))
    return Paged(items, int(total), offset, limit)


_ASSIGNMENT_COLUMNS = [c.label(f"a_{c.name}") for c in Assignment.__table__.c]
_PAGE_STOPS = (select(BookingStop.__table__)
               .where(BookingStop.__table__.c.booking_id.in_(bindparam("ids", expanding=True)))
               .order_by(BookingStop.__table__.c.booking_id, BookingStop.__table__.c.seq))


@lru_cache(maxsize=4096)
def _list_statements(scope_root: int | None, given: tuple[str, ...]) -> tuple[Any, Any]:
    """The list's count and page statements, built once per department scope and set of
    filters given (the values, offset and limit are bound parameters): constructing and
    cache-keying them cost more than running them. ``scope_root`` None: all departments."""
    bookings, held = Booking.__table__, Assignment.__table__
    where = []
    if scope_root is not None:
        where.append(subtree_clause(bookings.c.department_id, scope_root))
    conditions = {"status": lambda: bookings.c.status == bindparam("status"),
                  "department_id": lambda: bookings.c.department_id == bindparam("department_id"),
                  "purpose": lambda: bookings.c.purpose == bindparam("purpose"),
                  "start": lambda: bookings.c.end_at > bindparam("start"),
                  "end": lambda: bookings.c.start_at < bindparam("end")}
    where += [conditions[k]() for k in given]
    count = select(func.count()).select_from(bookings).where(*where)
    page = (select(bookings, *_ASSIGNMENT_COLUMNS, func.count().over().label("total_"))
            .outerjoin(held, (held.c.booking_id == bookings.c.id) & held.c.active.is_(True))
            .where(*where).order_by(bookings.c.start_at, bookings.c.id)
            .offset(bindparam("offset")).limit(bindparam("limit")))
    return count, page


def approvals(db: Session, actor: User, booking_id: int) -> list[Approval]:
    get_booking(db, actor, booking_id)
    return list(db.scalars(select(Approval).where(Approval.booking_id == booking_id)
                           .order_by(Approval.id)))


def history(db: Session, actor: User, booking_id: int) -> list[Any]:
    """The booking's audit trail (申请、审批、派车、执行全过程)."""
    get_booking(db, actor, booking_id)
    return audit.history(db, "booking", booking_id)


# --- drafts and validation ---------------------------------------------------------------
def _department_for(db: Session, actor: User, department_id: int | None) -> int:
    """The department booked for: it exists, is active and lies in the actor's scope.

    One query: whether it is in scope is computed with it (visible_clause).
    """
    dep_id = department_id or actor.department_id
    row = db.execute(_department_statement(scope_root(actor)), {"dep_id": dep_id}).first()
    if row is None or not row[0]:
        raise Invalid(f"unknown department {dep_id}", field="department_id")
    if not row[1]:
        raise Forbidden("you can book only for your own department (and its sub-units)")
    return dep_id


@lru_cache(maxsize=4096)
def _department_statement(scope_root: int | None) -> Any:
    # Built once per department scope, as the booking read's (_read_statement).
    scope = true() if scope_root is None else subtree_clause(Department.id, scope_root)
    return select(Department.active, scope).where(Department.id == bindparam("dep_id"))


def largest_capacity(db: Session, category: Any = None) -> int:
    if category is None:
        seats = db.scalar(_LARGEST_SEATS)
    else:
        seats = db.scalar(_LARGEST_SEATS_OF, {"category": category})
    return max(0, int(seats) - 1) if seats else 0


_LARGEST_SEATS = select(func.max(Vehicle.seats)).where(
    Vehicle.status == VehicleStatus.in_service)
_LARGEST_SEATS_OF = _LARGEST_SEATS.where(Vehicle.category == bindparam("category"))


def validate_booking(db: Session, data: schemas.BookingBase, now: datetime | None = None) -> None:
    """Field-level rules (422 naming the field): past, inverted, too long, too many people."""
    now = now or utcnow()
    if data.start_at < now - PAST_SLACK:
        raise Invalid("the requested time is in the past", field="start_at")
    if data.end_at <= data.start_at:
        raise Invalid("the window ends before it starts (end_at must be after start_at)",
                      field="end_at")
    if data.end_at - data.start_at > MAX_WINDOW:
        raise Invalid("a booking may span at most 7 days", field="end_at")
    cap = largest_capacity(db, data.vehicle_category)
    if data.passengers > cap:
        what = f"{data.vehicle_category} car" if data.vehicle_category else "car"
        raise Invalid(f"{data.passengers} passengers exceed the largest {what} in service "
                      f"({cap} passenger seats)", field="passengers")


def draft_of(department_id: int, data: schemas.BookingBase) -> rules.Draft:
    points = [(data.pickup.lat, data.pickup.lon)] + [(d.lat, d.lon) for d in data.destinations]
    return rules.Draft(department_id, str(data.purpose),
                       str(data.vehicle_category) if data.vehicle_category else None,
                       points, data.start_at, data.end_at)


def _draft_of_booking(b: Booking) -> rules.Draft:
    points = [(b.pickup_lat, b.pickup_lon)] + [(s.lat, s.lon) for s in b.stops]
    return rules.Draft(b.department_id, str(b.purpose),
                       str(b.vehicle_category) if b.vehicle_category else None,
                       points, b.start_at, b.end_at)


def evaluate_draft(db: Session, actor: User, data: schemas.BookingCreate) -> schemas.Evaluation:
    """The scope check of a draft before submitting (nothing is stored)."""
    dep_id = _department_for(db, actor, data.department_id)
    validate_booking(db, data)
    return rules.evaluate(db, draft_of(dep_id, data))


def create_booking(db: Session, actor: User, data: schemas.BookingCreate) -> Booking:
    require_role(actor, BOOKERS, "create bookings")
    dep_id = _department_for(db, actor, data.department_id)
    validate_booking(db, data)
    b = Booking(
        requester_id=actor.id, department_id=dep_id, purpose=data.purpose,
        urgent_tag=data.urgent_tag, passengers=data.passengers,
        pickup_address=data.pickup.address, pickup_lat=data.pickup.lat,
        pickup_lon=data.pickup.lon, start_at=data.start_at, end_at=data.end_at,
        return_trip=data.return_trip, vehicle_category=data.vehicle_category, notes=data.notes,
        status=S.draft, scope_reasons=[], review_pending=False, distance_m=0.0,
        stops=[BookingStop(seq=i, address=d.address, lat=d.lat, lon=d.lon)
               for i, d in enumerate(data.destinations)],
    )
    db.add(b)
    db.flush()
    audit.record(db, actor, "create", "booking", b.id, purpose=b.purpose,
                 department_id=dep_id, start_at=b.start_at, end_at=b.end_at,
                 passengers=b.passengers)
    if data.submit:
        submit(db, actor, b.id)
    return b


def _lock(db: Session, actor: User | None, booking_id: int,
          expected_version: int | None = None) -> Booking:
    """Load the booking for a write: row lock (PostgreSQL) + scope + optimistic version."""
    stmt = (select(Booking).where(Booking.id == booking_id).with_for_update()
            .execution_options(populate_existing=True))
    b = db.scalar(stmt)
    if b is None:
        raise NotFound(f"booking {booking_id} not found")
    if actor is not None:
        check_visible(db, actor, b.department_id, "booking", booking_id)
    if expected_version is not None and expected_version != b.version:
        raise Conflict(f"booking {b.id} was changed by someone else (version {b.version}, you "
                       f"read {expected_version}): reload and retry", version=b.version)
    return b


def _allow(b: Booking, action: str) -> None:
    if action not in ALLOWED[b.status]:
        allowed = list(ALLOWED[b.status])
        raise Conflict(f"cannot {action} booking {b.id}: it is {b.status}"
                       + (f" (allowed: {', '.join(allowed)})" if allowed else " (final)"),
                       status=str(b.status), allowed=allowed)


def _flush(db: Session, b: Booking) -> None:
    try:
        db.flush()
    except StaleDataError as exc:
        raise Conflict(f"booking {b.id} was changed concurrently: reload and retry") from exc


def _is_requester_side(db: Session, actor: User, b: Booking) -> bool:
    if actor.id == b.requester_id or actor.role in DISPATCHERS:
        return True
    return actor.role in (Role.staff, Role.approver) and \
        b.department_id in department_subtree(db, actor.department_id)


def update_booking(db: Session, actor: User, booking_id: int,
                   data: schemas.BookingUpdate) -> Booking:
    require_role(actor, BOOKERS, "change bookings")
    b = _lock(db, actor, booking_id, data.version)
    _allow(b, "update")
    if not _is_requester_side(db, actor, b):
        raise Forbidden("only the requester's department can change a draft")
    current = booking_read(db, b)
    merged = schemas.BookingBase(**{
        **current.model_dump(include=set(schemas.BookingBase.model_fields)),
        **data.model_dump(exclude_unset=True, exclude={"version"}),
    })
    validate_booking(db, merged)
    changes = data.model_dump(exclude_unset=True, exclude={"version"}, mode="json")
    b.purpose, b.urgent_tag, b.passengers = merged.purpose, merged.urgent_tag, merged.passengers
    b.pickup_address, b.pickup_lat, b.pickup_lon = (merged.pickup.address, merged.pickup.lat,
                                                    merged.pickup.lon)
    b.start_at, b.end_at, b.return_trip = merged.start_at, merged.end_at, merged.return_trip
    b.vehicle_category, b.notes = merged.vehicle_category, merged.notes
    if data.destinations is not None:
        b.stops = [BookingStop(seq=i, address=d.address, lat=d.lat, lon=d.lon)
                   for i, d in enumerate(data.destinations)]
    audit.record(db, actor, "update", "booking", b.id, **changes)
    _flush(db, b)
    return b


# --- submission and approval chain -------------------------------------------------------
def submit(db: Session, actor: User, booking_id: int, expected_version: int | None = None
           ) -> Booking:
    """Submit a draft: scope review, then the approval chain (or skip ahead if urgent)."""
    require_role(actor, BOOKERS, "submit bookings")
    b = _lock(db, actor, booking_id, expected_version)
    _allow(b, "submit")
    if not _is_requester_side(db, actor, b):
        raise Forbidden("only the requester's department can submit a booking")
    if b.start_at < utcnow() - PAST_SLACK:
        raise Invalid("the requested time is in the past", field="start_at")
    ev = rules.evaluate(db, _draft_of_booking(b))
    b.scope_outcome = ev.outcome
    b.scope_reasons = [h.model_dump(mode="json") for h in ev.reasons]
    b.submitted_at = utcnow()
    messages = "; ".join(h.message for h in ev.reasons)
    if ev.outcome == ScopeOutcome.refused:
        b.status, b.stage = S.rejected, None
        db.add(Approval(booking_id=b.id, stage=ApprovalStage.department,
                        decision=Decision.rejected, actor_id=None,
                        reason=f"保障范围审核: {messages}"))
        audit.record(db, actor, "submit", "booking", b.id, reason=messages,
                     outcome=ev.outcome, status=b.status)
    elif b.urgent_tag:
        b.status, b.stage, b.review_pending = S.approved, ApprovalStage.done, True
        audit.record(db, actor, "submit", "booking", b.id,
                     reason=f"紧急任务({b.urgent_tag})先行保障, 事后审核",
                     outcome=ev.outcome, status=b.status, urgent_tag=b.urgent_tag)
    else:
        b.status, b.stage = S.submitted, ApprovalStage.department
        audit.record(db, actor, "submit", "booking", b.id, reason=messages,
                     outcome=ev.outcome, status=b.status)
    _flush(db, b)
    return b


def _check_stage_authority(db: Session, actor: User, b: Booking, stage: ApprovalStage) -> None:
    if actor.role == Role.admin:
        return
    if stage == ApprovalStage.department or stage == ApprovalStage.post_review:
        if actor.role != Role.approver:
            require_role(actor, [Role.approver, Role.admin],
                         f"decide the department approval (单位审批) of booking {b.id}")
        return  # _lock already checked the booking is in the approver's subtree
    if stage == ApprovalStage.extra:
        if actor.role != Role.approver or actor.department_id == b.department_id:
            raise Forbidden(f"booking {b.id} needs approval by a higher level (上级审批): "
                            + "; ".join(r["message"] for r in b.scope_reasons))
        return
    if stage == ApprovalStage.dispatch:
        require_role(actor, DISPATCHERS, f"decide the dispatch review (调度审核) of booking {b.id}")


def approve(db: Session, actor: User, booking_id: int, reason: str = "",
            expected_version: int | None = None) -> Booking:
    """Approve the booking's current stage: department → (extra) → dispatch → approved."""
    if actor.role == Role.supervisor:
        require_role(actor, [], "approve bookings")
    b = _lock(db, actor, booking_id, expected_version)
    _allow(b, "approve")
    stage = b.stage or ApprovalStage.department
    _check_stage_authority(db, actor, b, stage)
    db.add(Approval(booking_id=b.id, stage=stage, decision=Decision.approved,
                    actor_id=actor.id, reason=reason))
    if stage == ApprovalStage.department:
        needs_extra = b.scope_outcome == ScopeOutcome.needs_approval
        b.stage = ApprovalStage.extra if needs_extra else ApprovalStage.dispatch
    elif stage == ApprovalStage.extra:
        b.stage = ApprovalStage.dispatch
    else:
        b.stage, b.status = ApprovalStage.done, S.approved
    audit.record(db, actor, "approve", "booking", b.id, reason=reason, stage=stage,
                 status=b.status, next_stage=b.stage)
    _flush(db, b)
    return b


def reject(db: Session, actor: User, booking_id: int, reason: str,
           expected_version: int | None = None) -> Booking:
    if actor.role == Role.supervisor:
        require_role(actor, [], "reject bookings")
    b = _lock(db, actor, booking_id, expected_version)
    _allow(b, "reject")
    stage = b.stage or ApprovalStage.department
    _check_stage_authority(db, actor, b, stage)
    db.add(Approval(booking_id=b.id, stage=stage, decision=Decision.rejected,
                    actor_id=actor.id, reason=reason))
    b.status, b.stage = S.rejected, None
    audit.record(db, actor, "reject", "booking", b.id, reason=reason, stage=stage)
    _flush(db, b)
    return b


def review(db: Session, actor: User, booking_id: int, decision: Decision, reason: str) -> Booking:
    """After-the-fact review (事后审核) of an urgent booking that skipped the chain.

    Rejecting one not yet under way withdraws it (and frees its car); one already driven
    stays as it is, flagged by the recorded rejection for the supervisors.
    """
    if actor.role == Role.supervisor:
        require_role(actor, [], "review bookings")
    b = _lock(db, actor, booking_id)
    if not b.review_pending:
        raise Conflict(f"booking {b.id} has no pending after-the-fact review",
                       status=str(b.status), allowed=list(ALLOWED[b.status]))
    _check_stage_authority(db, actor, b, ApprovalStage.post_review)
    db.add(Approval(booking_id=b.id, stage=ApprovalStage.post_review, decision=decision,
                    actor_id=actor.id, reason=reason))
    b.review_pending = False
    if decision == Decision.rejected and b.status in (S.approved, S.assigned):
        _release(db, actor, b, reason)
        b.status = S.rejected
    audit.record(db, actor, "review", "booking", b.id, reason=reason, decision=decision,
                 status=b.status)
    _flush(db, b)
    return b


def cancel(db: Session, actor: User, booking_id: int, reason: str,
           expected_version: int | None = None) -> Booking:
    require_role(actor, BOOKERS, "cancel bookings")
    b = _lock(db, actor, booking_id, expected_version)
    _allow(b, "cancel")
    if not _is_requester_side(db, actor, b):
        raise Forbidden("only the requester's department or a dispatcher can cancel")
    _release(db, actor, b, reason)
    previous = b.status
    b.status, b.stage = S.cancelled, None
    audit.record(db, actor, "cancel", "booking", b.id, reason=reason, previous=previous)
    _flush(db, b)
    return b


# --- assignment --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Problem:
    """Why a vehicle/driver cannot serve a booking (the scheduler can show these)."""

    field: str
    message: str
    conflicting_booking: int | None = None


def _overlapping(db: Session, column: Any, ident: int, b: Booking) -> Assignment | None:
    stmt = (select(Assignment).join(Booking, Booking.id == Assignment.booking_id)
            .where(column == ident, Assignment.active.is_(True),
                   Assignment.booking_id != b.id, Booking.status.in_(HOLDING),
                   Assignment.start_at < b.end_at, Assignment.end_at > b.start_at)
            .order_by(Assignment.start_at).limit(1))
    return db.scalar(stmt)


def assignment_problems(db: Session, b: Booking, vehicle: Vehicle, driver: Driver
                        ) -> list[Problem]:
    """Every reason the pair cannot take the booking (empty: it can)."""
    out: list[Problem] = []
    if vehicle.status != VehicleStatus.in_service:
        out.append(Problem("vehicle_id", f"vehicle {vehicle.plate} is {vehicle.status}"))
    if capacity(vehicle) < b.passengers:
        out.append(Problem("vehicle_id", f"vehicle {vehicle.plate} has {capacity(vehicle)} "
                                         f"passenger seats, booking needs {b.passengers}"))
    if b.vehicle_category is not None and vehicle.category != b.vehicle_category:
        out.append(Problem("vehicle_id", f"vehicle {vehicle.plate} is {vehicle.category}, "
                                         f"booking asks for {b.vehicle_category}"))
    if driver.status != DriverStatus.active:
        out.append(Problem("driver_id", f"driver {driver.name} is {driver.status}"))
    need = required_licence(vehicle)
    if need not in COVERS.get(driver.licence_class, set()):
        out.append(Problem("driver_id", f"driver {driver.name} holds {driver.licence_class}, "
                                        f"vehicle {vehicle.plate} needs {need}"))
    clash = _overlapping(db, Assignment.vehicle_id, vehicle.id, b)
    if clash is not None:
        out.append(Problem("vehicle_id", f"vehicle {vehicle.plate} is already assigned to "
                                         f"booking {clash.booking_id} at that time",
                           clash.booking_id))
    clash = _overlapping(db, Assignment.driver_id, driver.id, b)
    if clash is not None:
        out.append(Problem("driver_id", f"driver {driver.name} is already assigned to "
                                        f"booking {clash.booking_id} at that time",
                           clash.booking_id))
    return out


def check_assignment(db: Session, booking_id: int, vehicle_id: int, driver_id: int
                     ) -> list[Problem]:
    """Read-only pre-check for the scheduler: the problems ``assign`` would refuse with."""
    b, v, d = db.get(Booking, booking_id), db.get(Vehicle, vehicle_id), db.get(Driver, driver_id)
    if b is None or v is None or d is None:
        raise NotFound("booking, vehicle or driver not found")
    return assignment_problems(db, b, v, d)


def _locked(db: Session, model: Any, ident: int, what: str) -> Any:
    obj = db.scalar(select(model).where(model.id == ident).with_for_update()
                    .execution_options(populate_existing=True))
    if obj is None:
        raise Invalid(f"{what} {ident} not found", field=f"{what}_id")
    return obj


def assign(db: Session, actor: User, booking_id: int, vehicle_id: int, driver_id: int, *,
           source: AssignmentSource = AssignmentSource.manual, reason: str = "",
           expected_version: int | None = None) -> Assignment:
    """Assign a car and a driver (派车) to an approved booking.

    Called by the API (manual) and by the scheduler's commit (``source=scheduler``).  Locks
    the booking, the vehicle and the driver; refuses with 409 naming the problem (and the
    conflicting booking for overlaps).
    """
    require_role(actor, DISPATCHERS, "assign vehicles")
    b = _lock(db, actor, booking_id, expected_version)
    _allow(b, "assign")
    vehicle = _locked(db, Vehicle, vehicle_id, "vehicle")
    driver = _locked(db, Driver, driver_id, "driver")
    problems = assignment_problems(db, b, vehicle, driver)
    if problems:
        p = problems[0]
        extra: dict[str, Any] = {"field": p.field, "problems": [x.message for x in problems]}
        if p.conflicting_booking is not None:
            extra["conflicting_booking"] = p.conflicting_booking
        raise Conflict(p.message, **extra)
    a = Assignment(booking_id=b.id, vehicle_id=vehicle.id, driver_id=driver.id,
                   start_at=b.start_at, end_at=b.end_at, active=True, source=source,
                   assigned_by=actor.id, assigned_at=utcnow())
    db.add(a)
    b.status = S.assigned
    audit.record(db, actor, "assign", "booking", b.id, reason=reason, vehicle_id=vehicle.id,
                 plate=vehicle.plate, driver_id=driver.id, source=source)
    _flush(db, b)
    return a


def _release(db: Session, actor: User | None, b: Booking, reason: str) -> None:
    a = active_assignment(db, b.id)
    if a is not None:
        a.active, a.released_at = False, utcnow()
        audit.record(db, actor, "release", "booking", b.id, reason=reason,
                     vehicle_id=a.vehicle_id, driver_id=a.driver_id)


def unassign(db: Session, actor: User, booking_id: int, reason: str,
             expected_version: int | None = None) -> Booking:
    require_role(actor, DISPATCHERS, "unassign vehicles")
    b = _lock(db, actor, booking_id, expected_version)
    _allow(b, "unassign")
    _release(db, actor, b, reason)
    b.status = S.approved
    audit.record(db, actor, "unassign", "booking", b.id, reason=reason)
    _flush(db, b)
    return b


# --- execution ---------------------------------------------------------------------------
def start(db: Session, actor: User | None, booking_id: int, at: datetime | None = None,
          reason: str = "") -> Booking:
    """Mark under way (出车): by a dispatcher, or by trip matching (``actor`` None)."""
    if actor is not None:
        require_role(actor, DISPATCHERS, "start bookings")
    b = _lock(db, actor, booking_id)
    _allow(b, "start")
    b.status, b.started_at = S.in_progress, at or utcnow()
    audit.record(db, actor, "start", "booking", b.id, reason=reason or "出车",
                 at=b.started_at)
    _flush(db, b)
    return b


def complete(db: Session, actor: User | None, booking_id: int, at: datetime | None = None,
             distance_m: float | None = None, reason: str = "") -> Booking:
    """Mark completed (收车) with the mileage driven for it."""
    if actor is not None:
        require_role(actor, DISPATCHERS, "complete bookings")
    b = _lock(db, actor, booking_id)
    _allow(b, "complete")
    b.status, b.completed_at = S.completed, at or utcnow()
    if distance_m is not None:
        b.distance_m = float(distance_m)
    audit.record(db, actor, "complete", "booking", b.id, reason=reason or "收车",
                 at=b.completed_at, distance_m=b.distance_m)
    _flush(db, b)
    return b


def holding_assignments(db: Session, vehicle_id: int, start_at: datetime, end_at: datetime
                        ) -> list[tuple[Assignment, Booking]]:
    """Assignments of a vehicle whose booking window touches [start_at, end_at]."""
    stmt = (select(Assignment, Booking).join(Booking, Booking.id == Assignment.booking_id)
            .where(Assignment.vehicle_id == vehicle_id,
                   or_(Assignment.active.is_(True), Booking.status == S.completed),
                   Booking.status.in_((S.assigned, S.in_progress, S.completed)),
                   Assignment.start_at < end_at, Assignment.end_at > start_at)
            .order_by(Assignment.start_at))
    return [(a, b) for a, b in db.execute(stmt).tuples()]
