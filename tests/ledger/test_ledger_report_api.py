"""三公经费 workbook ties to the ledger; the API and CLI with roles and scope."""

from __future__ import annotations

import io
from datetime import date

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from fleet.models import Role
from ledger import costs, reports, service
from ledger.cli import ledger_app
from ledger.models import RUNNING_CATEGORIES, CostCategory, LedgerEntry
from tests import factories as f
from tests.ledger.conftest import Org


def _book_month(db: Session, org: Org) -> None:
    va = f.vehicle(db, org.admin, org.a)
    vb = f.vehicle(db, org.admin, org.b)
    costs.record_cost(db, org.admin, va.id, CostCategory.fuel, 45_678, date(2030, 3, 3))
    costs.record_cost(db, org.admin, va.id, CostCategory.maintenance, 120_000, date(2030, 3, 9))
    wrong = costs.record_cost(db, org.admin, vb.id, CostCategory.insurance, 500_000,
                              date(2030, 3, 10))
    service.correct_entry(db, org.admin, wrong.id, "保单金额有误", amount_fen=480_000)
    costs.record_cost(db, org.admin, vb.id, CostCategory.parking, 1_500, date(2030, 3, 31))
    costs.record_cost(db, org.admin, vb.id, CostCategory.toll, 2_550, date(2030, 4, 1))


def test_workbook_totals_tie_to_ledger(db: Session, org: Org) -> None:
    _book_month(db, org)
    data = reports.sangong_data(db, org.supervisor, "2030-03")
    wb = load_workbook(io.BytesIO(reports.write_workbook(data)))
    ws = wb[reports.SHEET]
    rows = list(ws.iter_rows(min_row=4, values_only=True))
    header = [c.value for c in ws[3]]
    total_row = rows[-1]
    assert total_row[0] == "合计"
    ledger_total = db.scalar(select(func.sum(LedgerEntry.amount_fen)).where(
        LedgerEntry.period == "2030-03",
        LedgerEntry.category.in_([CostCategory.purchase, *RUNNING_CATEGORIES])))
    assert round(total_row[-1] * 100) == ledger_total == 45_678 + 120_000 + 480_000 + 1_500
    for cat in RUNNING_CATEGORIES:
        col = header.index(reports.COST_ZH[cat])
        expect = db.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
            LedgerEntry.period == "2030-03", LedgerEntry.category == cat))
        assert round(total_row[col] * 100) == expect
    by_dep = {r[1]: round(r[-1] * 100) for r in rows[:-1]}
    assert by_dep == {org.a.id: 165_678, org.b.id: 481_500}


def test_api_roles_and_scope(client: TestClient, db: Session, org: Org) -> None:
    v = f.vehicle(db, org.admin, org.a)
    db.commit()
    admin, sup = f.login(client, org.admin), f.login(client, org.supervisor)
    staff_a, staff_b = f.login(client, org.staff_a), f.login(client, org.staff_b)
    body = {"vehicle_id": v.id, "category": "fuel", "amount_fen": 30_000,
            "occurred_on": "2030-05-02"}
    r = client.post("/api/ledger/costs", json=body, headers=sup.headers)
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    r = client.post("/api/ledger/costs", json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    entry = r.json()
    assert len(entry["hash"]) == 64
    r = client.get("/api/ledger/entries", params={"month": "2030-05"}, headers=staff_a.headers)
    assert r.json()["total"] == 1
    r = client.get("/api/ledger/entries", params={"month": "2030-05"}, headers=staff_b.headers)
    assert r.json()["total"] == 0
    r = client.get("/api/ledger/costs/rollup", params={"month": "2030-05"},
                   headers=sup.headers)
    assert r.json()[0]["running_fen"] == 30_000
    r = client.get("/api/ledger/reports/sangong", params={"month": "2030-05"},
                   headers=sup.headers)
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert client.get("/api/ledger/reports/sangong", params={"month": "2030-05"},
                      headers=staff_a.headers).status_code == 403
    r = client.get("/api/ledger/verify", headers=sup.headers)
    assert all(c["ok"] for c in r.json())
    csv = ("车牌号,ETC卡号,入口站,入口时间,出口站,出口时间,金额(元)\n"
           f"{v.plate},C1,甲,2030-05-02 09:00:00,乙,bad,10\n")
    r = client.post("/api/ledger/etc/imports", files={"file": ("s.csv", csv.encode())},
                    headers=admin.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 2
    r = client.post("/api/ledger/purchases", headers=staff_a.headers, json={
        "department_id": org.a.id, "kind": "purchase", "category": "general",
        "brand_model": "吉利 帝豪EV", "price_fen": 12_000_000, "energy_type": "electric"})
    assert r.status_code == 201 and r.json()["decision_ok"] is False  # no quota yet
    assert client.get("/api/ledger/purchases", headers=staff_b.headers).json() == []
    assert len(client.get("/api/ledger/purchases", headers=sup.headers).json()) == 1
    r = client.put("/api/ledger/purchase-rules/general", json={"price_cap_fen": 16_000_000},
                   headers=admin.headers)
    assert r.status_code == 200 and r.json()["price_cap_fen"] == 16_000_000
    r = client.post(f"/api/ledger/vehicles/{v.id}/transfer", headers=admin.headers,
                    json={"to_department_id": org.b.id, "reason": "机构改革"})
    assert r.status_code == 201 and r.json()["kind"] == "transfer"
    assert client.get(f"/api/vehicles/{v.id}", headers=admin.headers).json()[
        "department_id"] == org.b.id


def test_cli_verify_and_report(tmp_path, settings, engine, db: Session, org: Org,
                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    if not settings.is_sqlite:
        return  # one backend is enough for the command wiring
    monkeypatch.setenv("GONGCHE_DATABASE_URL", settings.database_url)
    from fleet.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(ledger_app, ["verify"])
        assert r.exit_code == 0, r.output
        out = tmp_path / "r.xlsx"
        r = runner.invoke(ledger_app, ["report", str(out), "--month", "2030-03"])
        assert r.exit_code == 0, r.output
        assert load_workbook(out)[reports.SHEET]["A1"].value.startswith("2030-03")
        bad = tmp_path / "bad.csv"
        bad.write_text("plate,card\nx,y\n", encoding="utf-8")
        r = runner.invoke(ledger_app, ["import-etc", str(bad)])
        assert r.exit_code == 1
    finally:
        get_settings.cache_clear()
    _ = Role
