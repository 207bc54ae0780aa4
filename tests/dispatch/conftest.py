"""Dispatch fixtures: an organisation, people of every role, cars, drivers, booking bodies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from fleet.models import Department, Driver, LicenceClass, Role, User, Vehicle
from tests import factories as f

CENTRE = (30.66, 104.06)


def tomorrow(hour: int, days: int = 1, minute: int = 0) -> datetime:
    """A future time at ``hour`` Beijing time (UTC+8), ``days`` from today."""
    local = datetime.now(UTC) + timedelta(hours=8)
    day = local.date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def booking_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purpose": "research", "passengers": 2,
        "pickup": {"address": "市政府", "lat": 30.66, "lon": 104.06},
        "destinations": [{"address": "高新区管委会", "lat": 30.62, "lon": 104.08}],
        "start_at": tomorrow(10).isoformat(), "end_at": tomorrow(12).isoformat(),
        "return_trip": True, "notes": "调研",
    }
    body.update(over)
    return body


@dataclass
class Org:
    bureau: Department
    a: Department
    a_sub: Department
    b: Department
    enforce: Department
    admin: User
    dispatcher: User
    supervisor: User
    staff_a: User
    staff_b: User
    approver_a: User
    approver_b: User
    approver_bureau: User
    car: Vehicle
    van: Vehicle
    driver: Driver
    driver2: Driver


def make_driver(db: Session, dep: Department, licence: LicenceClass = LicenceClass.C1,
                **over: Any) -> Driver:
    i = f.n()
    d = Driver(name=f"司机{i}", employee_no=f"E{i:05d}", licence_class=licence,
               phone="13800000000", department_id=dep.id, **over)
    db.add(d)
    db.flush()
    return d


@pytest.fixture
def org(db: Session) -> Org:
    bureau = f.department(db, name="机关事务局")
    bureau.code = f"bureau{bureau.id}"
    a = f.department(db, bureau, "部门A")
    a_sub = f.department(db, a, "A下属单位")
    b = f.department(db, bureau, "部门B")
    enforce = f.department(db, bureau, "执法支队")
    enforce.code = "market.enforce"  # the seeded reserved-category rule names this code
    admin = f.user(db, Role.admin, bureau)
    car = f.vehicle(db, admin, bureau, seats=5)
    van = f.vehicle(db, admin, bureau, seats=7)
    f.vehicle(db, admin, enforce, seats=5, category="law_enforcement")
    o = Org(bureau, a, a_sub, b, enforce, admin, f.user(db, Role.dispatcher, bureau),
            f.user(db, Role.supervisor, bureau), f.user(db, Role.staff, a),
            f.user(db, Role.staff, b), f.user(db, Role.approver, a),
            f.user(db, Role.approver, b), f.user(db, Role.approver, bureau), car, van,
            make_driver(db, bureau), make_driver(db, bureau))
    db.commit()
    return o


class Api:
    """Logged-in clients per user, and shortcuts through the HTTP API."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self._headers: dict[int, dict[str, str]] = {}

    def h(self, u: User) -> dict[str, str]:
        if u.id not in self._headers:  # mint tokens directly: argon2 logins are slow
            from fleet.security import create_token

            token = create_token(str(u.id), self.client.app.state.settings.secret_key, 60)
            self._headers[u.id] = {"Authorization": f"Bearer {token}"}
        return self._headers[u.id]

    def get(self, u: User, path: str, **kw: Any) -> Any:
        return self.client.get(f"/api/dispatch{path}", headers=self.h(u), **kw)

    def post(self, u: User, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.post(f"/api/dispatch{path}", json=body if body is not None else {},
                                headers=self.h(u), **kw)

    def patch(self, u: User, path: str, body: Any) -> Any:
        return self.client.patch(f"/api/dispatch{path}", json=body, headers=self.h(u))

    def delete(self, u: User, path: str) -> Any:
        return self.client.delete(f"/api/dispatch{path}", headers=self.h(u))

    def book(self, u: User, **over: Any) -> dict[str, Any]:
        r = self.post(u, "/bookings", booking_body(**over))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def approved(self, o: Org, u: User | None = None, **over: Any) -> dict[str, Any]:
        """A booking taken through submit, department and dispatch approval."""
        b = self.book(u or o.staff_a, submit=True, **over)
        assert b["status"] == "submitted", b
        approver = o.approver_a if b["department_id"] in (o.a.id, o.a_sub.id) else o.approver_b
        r = self.post(approver, f"/bookings/{b['id']}/approve", {"reason": "同意"})
        assert r.status_code == 200, r.text
        r = self.post(o.dispatcher, f"/bookings/{b['id']}/approve", {"reason": "可派"})
        assert r.json()["status"] == "approved", r.text
        return r.json()  # type: ignore[no-any-return]

    def assigned(self, o: Org, vehicle: Vehicle | None = None, driver: Driver | None = None,
                 **over: Any) -> dict[str, Any]:
        b = self.approved(o, **over)
        r = self.post(o.dispatcher, f"/bookings/{b['id']}/assign",
                      {"vehicle_id": (vehicle or o.car).id, "driver_id": (driver or o.driver).id})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)
