"""Thin REST router for dispatch: bookings, approvals, assignment, scope rules, trip
matching, suspicions, audit trail and statistics (``/api/dispatch``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query, Response, status
from pydantic import BaseModel, Field

from dispatch import matching, rules, schemas, service, stats
from dispatch.models import BookingStatus, Purpose, SuspicionStatus
from fleet.api import PageParams, json_response
from fleet.deps import CurrentUser, DbSession
from fleet.errors import Invalid
from fleet.models import Role
from fleet.routing import ApiRouter
from fleet.scope import require_role
from fleet.service import get_vehicle

router = ApiRouter(prefix="/api/dispatch", tags=["dispatch"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
From = Annotated[datetime | None, Query(alias="from")]
To = Annotated[datetime | None, Query(alias="to")]


def _aware(*times: datetime | None) -> None:
    for t in times:
        if t is not None and t.tzinfo is None:
            raise Invalid("times need a time zone (e.g. 2026-05-01T00:00:00+08:00)",
                          field="from")


def _page(p: service.Paged, items: list[object]) -> dict[str, object]:
    return {"items": items, "total": p.total, "offset": p.offset, "limit": p.limit}


# --- bookings ----------------------------------------------------------------------------
@router.post("/bookings/evaluate", response_model=schemas.Evaluation)
def evaluate(data: schemas.BookingCreate, db: DbSession, user: CurrentUser) -> object:
    """Check a draft against the service scope (保障范围) before submitting it."""
    return service.evaluate_draft(db, user, data)


@router.post("/bookings", response_model=schemas.BookingRead,
             status_code=status.HTTP_201_CREATED)
def create_booking(data: schemas.BookingCreate, db: DbSession, user: CurrentUser) -> object:
    # a booking just created holds no car yet: no assignment to look up
    return json_response(service.booking_read(db, service.create_booking(db, user, data), None),
                         status.HTTP_201_CREATED)


@router.get("/bookings", response_model=schemas.Page[schemas.BookingRead])
def list_bookings(db: DbSession, user: CurrentUser, page: PageParams,
                  status: BookingStatus | None = None, department_id: int | None = None,
                  purpose: Purpose | None = None, start: From = None, end: To = None) -> object:
    _aware(start, end)
    p = service.list_bookings(db, user, page.offset, page.limit, status=status,
                              department_id=department_id, purpose=purpose, start=start,
                              end=end)
    return json_response(_BookingPage(items=list(p.items), total=p.total, offset=p.offset,
                                      limit=p.limit))


_BookingPage = schemas.Page[schemas.BookingRead]


@router.get("/bookings/{booking_id}", response_model=schemas.BookingRead)
def get_booking(booking_id: int, db: DbSession, user: CurrentUser) -> object:
    return json_response(service.read_booking(db, user, booking_id))


@router.patch("/bookings/{booking_id}", response_model=schemas.BookingRead)
def update_booking(booking_id: int, data: schemas.BookingUpdate, db: DbSession,
                   user: CurrentUser) -> object:
    return service.booking_read(db, service.update_booking(db, user, booking_id, data))


class VersionIn(BaseModel):
    version: int | None = None


@router.post("/bookings/{booking_id}/submit", response_model=schemas.BookingRead)
def submit(booking_id: int, db: DbSession, user: CurrentUser,
           data: VersionIn | None = None) -> object:
    version = data.version if data else None
    return service.booking_read(db, service.submit(db, user, booking_id, version))


@router.post("/bookings/{booking_id}/approve", response_model=schemas.BookingRead)
def approve(booking_id: int, data: schemas.Decide, db: DbSession, user: CurrentUser) -> object:
    return service.booking_read(db, service.approve(db, user, booking_id, data.reason,
                                                    data.version))


@router.post("/bookings/{booking_id}/reject", response_model=schemas.BookingRead)
def reject(booking_id: int, data: schemas.Reason, db: DbSession, user: CurrentUser) -> object:
    return service.booking_read(db, service.reject(db, user, booking_id, data.reason,
                                                   data.version))


@router.post("/bookings/{booking_id}/review", response_model=schemas.BookingRead)
def review(booking_id: int, data: schemas.Review, db: DbSession, user: CurrentUser) -> object:
    return service.booking_read(db, service.review(db, user, booking_id, data.decision,
                                                   data.reason))


@router.post("/bookings/{booking_id}/cancel", response_model=schemas.BookingRead)
def cancel(booking_id: int, data: schemas.Reason, db: DbSession, user: CurrentUser) -> object:
    return service.booking_read(db, service.cancel(db, user, booking_id, data.reason,
                                                   data.version))


@router.post("/bookings/{booking_id}/assign", response_model=schemas.BookingRead)
def assign(booking_id: int, data: schemas.AssignIn, db: DbSession, user: CurrentUser) -> object:
    service.assign(db, user, booking_id, data.vehicle_id, data.driver_id, reason=data.reason,
                   expected_version=data.version)
    return service.booking_read(db, service.get_booking(db, user, booking_id))


@router.post("/bookings/{booking_id}/unassign", response_model=schemas.BookingRead)
def unassign(booking_id: int, data: schemas.Reason, db: DbSession, user: CurrentUser) -> object:
    return service.booking_read(db, service.unassign(db, user, booking_id, data.reason,
                                                     data.version))


@router.post("/bookings/{booking_id}/start", response_model=schemas.BookingRead)
def start(booking_id: int, db: DbSession, user: CurrentUser) -> object:
    return service.booking_read(db, service.start(db, user, booking_id))


@router.post("/bookings/{booking_id}/complete", response_model=schemas.BookingRead)
def complete(booking_id: int, data: schemas.CompleteIn, db: DbSession,
             user: CurrentUser) -> object:
    return service.booking_read(db, service.complete(db, user, booking_id,
                                                     distance_m=data.distance_m,
                                                     reason=data.reason))


@router.get("/bookings/{booking_id}/approvals", response_model=list[schemas.ApprovalRead])
def approvals(booking_id: int, db: DbSession, user: CurrentUser) -> object:
    return service.approvals(db, user, booking_id)


@router.get("/bookings/{booking_id}/history", response_model=list[schemas.AuditRead])
def history(booking_id: int, db: DbSession, user: CurrentUser) -> object:
    return service.history(db, user, booking_id)


# --- scope rules -------------------------------------------------------------------------
@router.get("/rules", response_model=list[schemas.RuleRead])
def list_rules(db: DbSession, user: CurrentUser) -> object:
    return rules.list_rules(db, user)


@router.post("/rules", response_model=schemas.RuleRead, status_code=status.HTTP_201_CREATED)
def create_rule(data: schemas.RuleCreate, db: DbSession, user: CurrentUser) -> object:
    return rules.create_rule(db, user, data)


@router.get("/rules/{rule_id}", response_model=schemas.RuleRead)
def get_rule(rule_id: int, db: DbSession, user: CurrentUser) -> object:
    return rules.get_rule(db, user, rule_id)


@router.patch("/rules/{rule_id}", response_model=schemas.RuleRead)
def update_rule(rule_id: int, data: schemas.RuleUpdate, db: DbSession,
                user: CurrentUser) -> object:
    return rules.update_rule(db, user, rule_id, data)


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(rule_id: int, db: DbSession, user: CurrentUser) -> Response:
    rules.delete_rule(db, user, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- trip matching and suspicions --------------------------------------------------------
@router.post("/vehicles/{vehicle_id}/match", response_model=list[schemas.MatchRead])
def match_vehicle(vehicle_id: int, db: DbSession, user: CurrentUser,
                  start: Annotated[datetime, Query(alias="from")],
                  end: Annotated[datetime, Query(alias="to")]) -> object:
    """Segment the car's stored positions over the period and match its trips."""
    require_role(user, [Role.dispatcher, Role.admin], "run trip matching")
    get_vehicle(db, user, vehicle_id)
    _aware(start, end)
    if end <= start:
        raise Invalid("'to' must be after 'from'", field="to")
    return [schemas.MatchRead(trip_start=r.trip_start, trip_end=r.trip_end,
                              distance_m=r.distance_m, booking_id=r.booking_id,
                              verdict=r.verdict, suspicion_id=r.suspicion_id)
            for r in matching.match_period(db, vehicle_id, start, end)]


@router.get("/suspicions", response_model=list[schemas.SuspicionRead])
def list_suspicions(db: DbSession, user: CurrentUser, status: SuspicionStatus | None = None,
                    vehicle_id: int | None = None, start: From = None, end: To = None
                    ) -> object:
    _aware(start, end)
    return stats.list_suspicions(db, user, status=status, vehicle_id=vehicle_id, start=start,
                                 end=end)


@router.get("/suspicions/{suspicion_id}", response_model=schemas.SuspicionRead)
def get_suspicion(suspicion_id: int, db: DbSession, user: CurrentUser) -> object:
    return stats.get_suspicion(db, user, suspicion_id)


class ResolveIn(BaseModel):
    status: Literal["cleared", "confirmed"]
    reason: str = Field(min_length=1, max_length=1000)


@router.post("/suspicions/{suspicion_id}/resolve", response_model=schemas.SuspicionRead)
def resolve_suspicion(suspicion_id: int, data: ResolveIn, db: DbSession,
                      user: CurrentUser) -> object:
    return stats.resolve_suspicion(db, user, suspicion_id, SuspicionStatus(data.status),
                                   data.reason)


# --- audit trail and statistics ----------------------------------------------------------
@router.get("/audit", response_model=None)
def audit_trail(db: DbSession, user: CurrentUser, booking_id: int | None = None,
                entity: str | None = None, start: From = None, end: To = None,
                format: Literal["json", "csv", "xlsx"] = "json") -> object:
    _aware(start, end)
    entries = stats.audit_entries(db, user, booking_id=booking_id, entity=entity, start=start,
                                  end=end)
    if format == "csv":
        return Response(stats.audit_csv(entries), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
    if format == "xlsx":
        return Response(stats.audit_xlsx(entries), media_type=XLSX,
                        headers={"Content-Disposition": 'attachment; filename="audit.xlsx"'})
    return [schemas.AuditRead.model_validate(e).model_dump(mode="json") for e in entries]


@router.get("/stats", response_model=None)
def booking_stats(db: DbSession, user: CurrentUser,
                  start: Annotated[datetime, Query(alias="from")],
                  end: Annotated[datetime, Query(alias="to")],
                  format: Literal["json", "xlsx"] = "json") -> object:
    _aware(start, end)
    result = stats.booking_stats(db, user, start, end)
    if format == "xlsx":
        return Response(stats.stats_xlsx(result), media_type=XLSX,
                        headers={"Content-Disposition": 'attachment; filename="stats.xlsx"'})
    return result
