"""Thin REST router of the ledger (/api/ledger): scope and roles are checked in services."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import File, Query, Response, UploadFile, status

from fleet.deps import CurrentUser, DbSession
from fleet.models import VehicleCategory
from fleet.routing import ApiRouter
from ledger import (
    costs,
    etc,
    lifecycle,
    mileage,
    purchase,
    quota,
    reports,
    schemas,
    service,
)
from ledger.models import EntryKind, RequestStatus

router = ApiRouter(prefix="/api/ledger", tags=["ledger"])
Month = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")]


# --- entries and the chain ---------------------------------------------------------------
@router.get("/entries", response_model=schemas.EntryPage)
def list_entries(db: DbSession, user: CurrentUser, month: str | None = None,
                 vehicle_id: int | None = None, department_id: int | None = None,
                 kind: EntryKind | None = None,
                 offset: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> object:
    items, total = service.list_entries(db, user, period=month, vehicle_id=vehicle_id,
                                        department_id=department_id, kind=kind,
                                        offset=offset, limit=limit)
    return {"items": items, "total": total}


@router.get("/verify", response_model=list[schemas.VerifyRead])
def verify(db: DbSession, user: CurrentUser) -> object:
    return [{"chain": r.chain, "ok": r.ok, "checked": r.checked, "broken_seq": r.broken_seq,
             "broken_id": r.broken_id, "reason": r.reason}
            for r in service.verify_chain(db, user)]


@router.post("/entries/{entry_id}/correct", response_model=list[schemas.EntryRead],
             status_code=status.HTTP_201_CREATED)
def correct(entry_id: int, body: schemas.CorrectionCreate, db: DbSession,
            user: CurrentUser) -> object:
    return service.correct_entry(db, user, entry_id, body.reason, body.amount_fen,
                                 body.occurred_on)


# --- costs -------------------------------------------------------------------------------
@router.post("/costs", response_model=schemas.EntryRead, status_code=status.HTTP_201_CREATED)
def record_cost(body: schemas.CostCreate, db: DbSession, user: CurrentUser) -> object:
    return costs.record_cost(db, user, body.vehicle_id, body.category, body.amount_fen,
                             body.occurred_on, body.note, body.reference)


@router.get("/costs/rollup", response_model=list[schemas.RollupRead])
def rollup(month: Month, db: DbSession, user: CurrentUser) -> object:
    return [{"department_id": r.department_id, "by_category": r.by_category,
             "running_fen": r.running_fen, "purchase_fen": r.purchase_fen}
            for r in costs.rollup(db, user, month)]


@router.get("/reports/sangong")
def sangong(month: Month, db: DbSession, user: CurrentUser) -> Response:
    """三公经费 (公务用车购置及运行维护费) for a month as an Excel workbook."""
    data = reports.write_workbook(reports.sangong_data(db, user, month))
    return Response(data, media_type="application/vnd.openxmlformats-officedocument."
                                      "spreadsheetml.sheet",
                    headers={"Content-Disposition":
                             f'attachment; filename="sangong-{month}.xlsx"'})


# --- mileage -----------------------------------------------------------------------------
def _month_read(m: mileage.MonthMileage) -> dict[str, object]:
    return {"vehicle_id": m.vehicle_id, "period": m.period, "total_m": m.total_m,
            "booked_m": m.booked_m, "unbooked_m": m.unbooked_m, "trips": m.trips,
            "days": [{"day": d.day, "total_m": d.total_m, "booked_m": d.booked_m,
                      "unbooked_m": d.unbooked_m, "trips": d.trips} for d in m.days],
            "terminal_m": m.reconciliation.terminal_m, "manual_m": m.reconciliation.manual_m,
            "flags": m.reconciliation.notes, "closed": m.closed}


@router.get("/mileage/{vehicle_id}", response_model=schemas.MonthMileageRead)
def month_mileage(vehicle_id: int, month: Month, db: DbSession, user: CurrentUser) -> object:
    return _month_read(mileage.month_mileage(db, user, vehicle_id, month))


@router.post("/mileage/{vehicle_id}/close", response_model=schemas.EntryRead,
             status_code=status.HTTP_201_CREATED)
def close_month(vehicle_id: int, month: Month, db: DbSession, user: CurrentUser) -> object:
    return mileage.close_month(db, user, vehicle_id, month)


@router.post("/odometer-readings", status_code=status.HTTP_201_CREATED)
def odometer(body: schemas.OdometerCreate, db: DbSession, user: CurrentUser) -> object:
    r = mileage.record_odometer(db, user, body.vehicle_id, body.read_at, body.odometer_m,
                                body.note)
    return {"id": r.id, "vehicle_id": r.vehicle_id, "odometer_m": r.odometer_m}


# --- ETC ---------------------------------------------------------------------------------
@router.post("/etc/imports", response_model=schemas.ImportRead,
             status_code=status.HTTP_201_CREATED)
async def import_etc(db: DbSession, user: CurrentUser,
                     file: Annotated[UploadFile, File()]) -> object:
    content = await file.read()
    r = etc.import_statement(db, user, file.filename or "statement.csv", content)
    return {"import_id": r.import_id, "rows": r.rows, "total_fen": r.total_fen,
            "matched": r.matched, "unbooked": r.unbooked, "unmatched": r.unmatched}


@router.put("/etc/stations", status_code=status.HTTP_200_OK)
def set_station(body: schemas.StationSet, db: DbSession, user: CurrentUser) -> object:
    st = etc.set_station(db, user, body.name, body.lat, body.lon)
    return {"name": st.name, "lat": st.lat, "lon": st.lon}


@router.get("/etc/charges", response_model=list[schemas.EtcChargeRead])
def etc_charges(db: DbSession, user: CurrentUser, month: str | None = None,
                vehicle_id: int | None = None, anomalies: bool = False) -> object:
    return etc.list_charges(db, user, month, vehicle_id, anomalies)


# --- quota -------------------------------------------------------------------------------
@router.post("/quotas", status_code=status.HTTP_201_CREATED)
def set_quota(body: schemas.QuotaCreate, db: DbSession, user: CurrentUser) -> object:
    q = quota.set_quota(db, user, body.department_id, body.category, body.approved,
                        body.effective_from, body.document)
    return {"id": q.id, "department_id": q.department_id, "category": q.category,
            "approved": q.approved, "effective_from": q.effective_from}


def _qs(s: quota.QuotaStatus) -> dict[str, object]:
    return {"department_id": s.department_id, "category": s.category, "approved": s.approved,
            "count": s.count, "over": s.over, "room": s.room}


@router.get("/quotas/status", response_model=list[schemas.QuotaStatusRead])
def quota_status(db: DbSession, user: CurrentUser, on: date | None = None) -> object:
    return [_qs(s) for s in quota.quota_status(db, user, on or date.today())]


@router.get("/quotas/over", response_model=list[schemas.QuotaStatusRead])
def over_quota(db: DbSession, user: CurrentUser, on: date | None = None) -> object:
    return [_qs(s) for s in quota.over_quota(db, user, on or date.today())]


# --- purchase control --------------------------------------------------------------------
@router.get("/purchase-rules", response_model=list[schemas.RuleRead])
def list_rules(db: DbSession, user: CurrentUser) -> object:
    return purchase.list_rules(db)


@router.put("/purchase-rules/{category}", response_model=schemas.RuleRead)
def put_rule(category: VehicleCategory, body: schemas.RuleWrite, db: DbSession,
             user: CurrentUser) -> object:
    return purchase.upsert_rule(db, user, category, **body.model_dump(exclude_unset=True))


@router.delete("/purchase-rules/{category}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(category: VehicleCategory, db: DbSession, user: CurrentUser) -> None:
    purchase.delete_rule(db, user, category)


@router.post("/purchases", response_model=schemas.PurchaseRead,
             status_code=status.HTTP_201_CREATED)
def submit_purchase(body: schemas.PurchaseCreate, db: DbSession, user: CurrentUser) -> object:
    return purchase.submit(db, user, purchase.RequestData(**body.model_dump()))


@router.get("/purchases", response_model=list[schemas.PurchaseRead])
def list_purchases(db: DbSession, user: CurrentUser,
                   status_: Annotated[RequestStatus | None, Query(alias="status")] = None
                   ) -> object:
    return purchase.list_requests(db, user, status_)


@router.get("/purchases/{request_id}", response_model=schemas.PurchaseRead)
def get_purchase(request_id: int, db: DbSession, user: CurrentUser) -> object:
    return purchase.get_request(db, user, request_id)


@router.get("/purchases/{request_id}/steps", response_model=list[schemas.StepRead])
def purchase_steps(request_id: int, db: DbSession, user: CurrentUser) -> object:
    return purchase.steps(db, user, request_id)


@router.post("/purchases/{request_id}/approve", response_model=schemas.PurchaseRead)
def approve(request_id: int, body: schemas.Note, db: DbSession, user: CurrentUser) -> object:
    return purchase.approve(db, user, request_id, body.note)


@router.post("/purchases/{request_id}/refuse", response_model=schemas.PurchaseRead)
def refuse(request_id: int, body: schemas.Note, db: DbSession, user: CurrentUser) -> object:
    return purchase.refuse(db, user, request_id, body.note)


@router.post("/purchases/{request_id}/withdraw", response_model=schemas.PurchaseRead)
def withdraw(request_id: int, body: schemas.Note, db: DbSession, user: CurrentUser) -> object:
    return purchase.withdraw(db, user, request_id, body.note)


@router.post("/purchases/{request_id}/deliver", status_code=status.HTTP_201_CREATED)
def deliver(request_id: int, body: schemas.Delivery, db: DbSession,
            user: CurrentUser) -> object:
    v = purchase.deliver(db, user, request_id, plate=body.plate, vin=body.vin,
                         delivered_on=body.delivered_on, price_fen=body.price_fen,
                         home_garage=body.home_garage)
    return {"vehicle_id": v.id, "plate": v.plate}


# --- life cycle --------------------------------------------------------------------------
@router.post("/vehicles/{vehicle_id}/transfer", response_model=schemas.EntryRead,
             status_code=status.HTTP_201_CREATED)
def transfer(vehicle_id: int, body: schemas.TransferCreate, db: DbSession,
             user: CurrentUser) -> object:
    return lifecycle.transfer(db, user, vehicle_id, body.to_department_id, body.reason,
                              body.on, body.document)


@router.post("/vehicles/{vehicle_id}/marking", response_model=schemas.EntryRead,
             status_code=status.HTTP_201_CREATED)
def marking(vehicle_id: int, body: schemas.MarkingSet, db: DbSession,
            user: CurrentUser) -> object:
    return lifecycle.set_marking(db, user, vehicle_id, body.marked, body.reason)


@router.post("/vehicles/{vehicle_id}/retire", response_model=schemas.EntryRead,
             status_code=status.HTTP_201_CREATED)
def retire(vehicle_id: int, body: schemas.RetireCreate, db: DbSession,
           user: CurrentUser) -> object:
    return lifecycle.retire(db, user, vehicle_id, body.reason, body.on)


@router.post("/vehicles/{vehicle_id}/dispose", response_model=schemas.EntryRead,
             status_code=status.HTTP_201_CREATED)
def dispose(vehicle_id: int, body: schemas.DisposalCreate, db: DbSession,
            user: CurrentUser) -> object:
    return lifecycle.dispose_by_auction(db, user, vehicle_id, body.proceeds_fen, body.sold_on,
                                        body.auction_ref, body.buyer)


@router.get("/vehicles/{vehicle_id}/history", response_model=list[schemas.EntryRead])
def vehicle_history(vehicle_id: int, db: DbSession, user: CurrentUser) -> object:
    return lifecycle.history(db, user, vehicle_id)
