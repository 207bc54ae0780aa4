"""ETC import (all-or-nothing, line numbers), matching on simulated trips, mileage closing."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.errors import Conflict, Invalid
from ledger import costs, etc, mileage
from ledger.models import CostCategory, EtcCharge, LedgerEntry, MatchStatus
from telematics.mileage import CST
from tests import factories as f
from tests.ledger.conftest import HIGHWAY, Org, highway_fixes, highway_track, store_fixes

HEADER = "车牌号,ETC卡号,入口站,入口时间,出口站,出口时间,金额(元)\n"


def _local(t) -> str:  # type: ignore[no-untyped-def]
    return t.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


def _setup(db: Session, org: Org):  # type: ignore[no-untyped-def]
    v = f.vehicle(db, org.admin, org.a)
    store_fixes(db, v.id, highway_fixes())
    coords = HIGHWAY["geometry"]["coordinates"]
    etc.set_station(db, org.admin, "成都东站", coords[2][1], coords[2][0])
    etc.set_station(db, org.admin, "龙泉站", coords[-3][1], coords[-3][0])
    etc.set_station(db, org.admin, "远方站", coords[0][1] + 0.5, coords[0][0] + 0.5)
    return v


def _statement(plate: str) -> str:
    trip = highway_track().trips[0]
    t0, t1 = trip.start + timedelta(minutes=1), trip.end - timedelta(minutes=1)
    far = trip.end + timedelta(hours=5)
    return HEADER + "".join([
        f"{plate},C001,成都东站,{_local(t0)},龙泉站,{_local(t1)},25.50\n",  # explained
        f"{plate},C001,成都东站,{_local(far)},龙泉站,{_local(far + timedelta(minutes=20))},"
        "30.00\n",  # no trip at that time
        f"{plate},C001,远方站,{_local(t0 + timedelta(seconds=5))},远方站,"
        f"{_local(t1 - timedelta(seconds=5))},12.00\n",  # trip at that time, elsewhere
    ])


def test_import_matches_simulated_trip(db: Session, org: Org) -> None:
    v = _setup(db, org)
    result = etc.import_statement(db, org.admin, "may.csv", _statement(v.plate).encode(),
                                  is_booked=lambda t: True)
    assert (result.rows, result.total_fen) == (3, 6750)
    assert (result.matched, result.unbooked, result.unmatched) == (1, 0, 2)
    charges = etc.list_charges(db, org.supervisor, "2024-05")
    by_amount = {c.amount_fen: c for c in charges}
    assert by_amount[2550].match_status == MatchStatus.matched
    assert "route" in by_amount[2550].match_note
    assert by_amount[3000].match_status == MatchStatus.unmatched
    assert "pass" in by_amount[1200].match_note  # time fits, route does not
    anomalies = etc.list_charges(db, org.supervisor, "2024-05", anomalies_only=True)
    assert {c.amount_fen for c in anomalies} == {3000, 1200}
    # every charge is a toll cost in the ledger
    assert costs.vehicle_costs(db, None, v.id, "2024-05") == {"toll": 6750}
    # dispatch's evidence lookup
    trip = highway_track().trips[0]
    found = etc.etc_charges_for(db, v.id, trip.start, trip.end)
    assert {e.amount_fen for e in found} == {2550, 1200}
    # staff of another department see nothing of it
    assert etc.list_charges(db, org.staff_b, "2024-05") == []
    assert len(etc.list_charges(db, org.staff_a, "2024-05")) == 3


def test_charge_on_unbooked_trip_is_an_anomaly(db: Session, org: Org) -> None:
    v = _setup(db, org)
    result = etc.import_statement(db, org.admin, "may.csv", _statement(v.plate).encode(),
                                  is_booked=lambda t: False)
    assert (result.matched, result.unbooked, result.unmatched) == (0, 1, 2)


def test_time_overlap_only_without_station_coordinates(db: Session, org: Org) -> None:
    v = f.vehicle(db, org.admin, org.a)
    store_fixes(db, v.id, highway_fixes())
    result = etc.import_statement(db, org.admin, "may.csv", _statement(v.plate).encode(),
                                  is_booked=lambda t: True)
    assert (result.matched, result.unmatched) == (2, 1)  # no coordinates: time decides


def test_malformed_rows_are_reported_and_nothing_is_imported(db: Session, org: Org) -> None:
    v = f.vehicle(db, org.admin, org.a)
    before = db.scalar(select(func.count()).select_from(LedgerEntry))
    body = HEADER + (f"{v.plate},C9,甲,2024-05-06 09:00:00,乙,2024-05-06 09:30:00,10.00\n"
                     f"{v.plate},C9,甲,yesterday,乙,2024-05-06 10:30:00,10.00\n"
                     f"{v.plate},C9,甲,2024-05-06 11:00:00,乙,2024-05-06 11:30:00,-3\n"
                     f"川Z99999,C9,甲,2024-05-06 12:00:00,乙,2024-05-06 12:30:00,1.005\n"
                     f"{v.plate},,甲,2024-05-06 13:00:00,乙,2024-05-06 12:30:00,1\n")
    with pytest.raises(Invalid) as err:
        etc.import_statement(db, org.admin, "bad.csv", body.encode(), match=False)
    lines = {e["line"] for e in err.value.detail["errors"]}
    assert lines == {3, 4, 5, 6}
    assert "4 malformed" in err.value.message
    assert db.scalar(select(func.count()).select_from(LedgerEntry)) == before
    assert db.scalar(select(func.count()).select_from(EtcCharge)) == 0


def test_excel_statement_and_duplicate_file(db: Session, org: Org) -> None:
    v = f.vehicle(db, org.admin, org.a)
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER.strip().split(","))
    from datetime import datetime

    ws.append([v.plate, "C7", "甲", datetime(2024, 5, 7, 9, 0), "乙",
               datetime(2024, 5, 7, 9, 40), 15.5])
    ws.append([v.plate, "C7", "乙", datetime(2024, 5, 7, 17, 0), "甲",
               datetime(2024, 5, 7, 17, 40), "15.50"])
    buf = io.BytesIO()
    wb.save(buf)
    result = etc.import_statement(db, org.admin, "may.xlsx", buf.getvalue(),
                                  is_booked=lambda t: True)
    assert (result.rows, result.total_fen, result.unmatched) == (2, 3100, 2)
    with pytest.raises(Conflict):
        etc.import_statement(db, org.admin, "again.xlsx", buf.getvalue())


def test_daily_mileage_booked_split_and_month_closing(db: Session, org: Org) -> None:
    v = _setup(db, org)
    truth = highway_track().trips[0]
    booked = mileage.month_mileage(db, org.admin, v.id, "2024-05", is_booked=lambda t: True)
    assert booked.trips == 1
    assert booked.total_m == pytest.approx(truth.distance_m, rel=0.03)
    assert booked.unbooked_m == 0
    assert booked.reconciliation.terminal_m is not None
    assert not booked.reconciliation.terminal_flagged
    mileage.record_odometer(db, org.admin, v.id, truth.start - timedelta(minutes=2), 1_000_000)
    mileage.record_odometer(db, org.admin, v.id, truth.end + timedelta(minutes=2), 1_000_000
                            + round(truth.distance_m) + 9_000)  # 9 km too much
    m = mileage.month_mileage(db, org.admin, v.id, "2024-05", is_booked=lambda t: False)
    assert m.booked_m == 0 and m.unbooked_m == pytest.approx(m.total_m)
    assert m.reconciliation.manual_flagged
    costs.record_cost(db, org.admin, v.id, CostCategory.parking, 500,
                      truth.start.astimezone(CST).date())
    closing = mileage.close_month(db, org.admin, v.id, "2024-05", is_booked=lambda t: True)
    assert closing.payload["costs_fen"] == {"parking": 500}
    assert closing.distance_m == round(booked.total_m)
    with pytest.raises(Conflict, match="closed"):
        costs.record_cost(db, org.admin, v.id, CostCategory.fuel, 100,
                          truth.start.astimezone(CST).date())
    with pytest.raises(Conflict, match="already closed"):
        mileage.close_month(db, org.admin, v.id, "2024-05")
