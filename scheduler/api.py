"""Thin REST router of the day planner (``/api/plans``).

* ``POST /api/plans`` — plan a day; ``preview=true`` (default) only answers, ``preview=false``
  commits the plan's new assignments in the same request.
* ``POST /api/plans/commit`` — commit the ``assignments`` of an earlier preview (stateless:
  the client sends them back; each carries the booking version read when planning, so a
  booking changed since is refused).  All or nothing: 409 naming the booking.
* ``POST /api/plans/insert`` — an urgent booking into the day as committed: where it goes,
  what is bumped; ``commit=true`` applies it.

Dispatchers and admins only (supervisors, staff and approvers: 403).
"""

from __future__ import annotations

from fleet.deps import AppSettings, CurrentUser, DbSession
from fleet.routing import ApiRouter
from fleet.scope import require_role
from scheduler import schemas, service

router = ApiRouter(prefix="/api/plans", tags=["scheduler"])
_ROLES = service.dispatch.DISPATCHERS


@router.post("", response_model=schemas.PlanOut)
def plan(data: schemas.PlanRequest, db: DbSession, user: CurrentUser,
         settings: AppSettings) -> object:
    """Plan the day's approved bookings on the cars and drivers in service (调度计划)."""
    require_role(user, _ROLES, "plan the day")
    return service.plan_day(db, user, data, settings.routing_url)


@router.post("/commit", response_model=schemas.CommitOut)
def commit(data: schemas.CommitRequest, db: DbSession, user: CurrentUser) -> object:
    """Commit a previewed plan's assignments (all or nothing)."""
    require_role(user, _ROLES, "commit a plan")
    return {"committed": service.commit(db, user, data.assignments,
                                        data.reason or "调度计划")}


@router.post("/insert", response_model=schemas.InsertOut)
def insert(data: schemas.InsertRequest, db: DbSession, user: CurrentUser,
           settings: AppSettings) -> object:
    """Insert an urgent booking into the committed day (紧急插单), bumping if it must."""
    require_role(user, _ROLES, "insert bookings into the plan")
    return service.insert_urgent(db, user, data, settings.routing_url)
