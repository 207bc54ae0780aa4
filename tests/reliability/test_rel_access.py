"""Access control across every route: anonymous, department scope, read-only supervisors,
tokens, password storage, login limits, and hostile strings stored inertly.

What tests/pipeline and tests/fleet already prove is not repeated here (terminal ACLs,
unregistered terminals, JT/T 808 auth; a handful of anonymous GETs, a few supervisor writes).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session
from starlette.websockets import WebSocketDisconnect

from fleet.models import Department, Role, Terminal, TerminalProtocol
from tests import factories as f
from tests.reliability.harness import (
    CONSOLE_PUBLIC,
    PUBLIC,
    WRITE_METHODS,
    endpoints,
    fill,
)

HOSTILE = [
    "'; DROP TABLE vehicles; --",
    "\" OR 1=1 --",
    "<script>alert('x')</script>",
    "Robert'); DELETE FROM users WHERE ('1'='1",
    "\\x00\\' UNION SELECT password_hash FROM users --",
    "公车'); TRUNCATE bookings; -- <img src=x onerror=alert(1)>",
]


def _tomorrow(hour_utc: int) -> str:
    d = (datetime.now(UTC) + timedelta(days=2)).date()
    return datetime(d.year, d.month, d.day, hour_utc, tzinfo=UTC).isoformat()


def _booking_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purpose": "research", "passengers": 2,
        "pickup": {"address": "市政府", "lat": 30.66, "lon": 104.06},
        "destinations": [{"address": "高新区管委会", "lat": 30.62, "lon": 104.08}],
        "start_at": _tomorrow(2), "end_at": _tomorrow(4), "return_trip": True, "notes": "调研"}
    body.update(over)
    return body


def _login(client: TestClient, db: Session, role: Role, dep: Department) -> f.Login:
    u = f.user(db, role, dep)
    db.commit()
    return f.login(client, u)


# --------------------------------------------------------------------------- anonymous
def test_every_route_refuses_anonymous_except_public(client: TestClient) -> None:
    eps = endpoints(client.app)
    assert len(eps) > 80  # the walk found the domain routers, not only the app's own routes
    wrong = []
    for e in eps:
        if e.path in PUBLIC or e.path in CONSOLE_PUBLIC:
            continue
        if e.method == "WS":
            with pytest.raises(WebSocketDisconnect), \
                    client.websocket_connect(fill(e.path)) as ws:
                ws.receive_text()
            continue
        r = client.request(e.method, fill(e.path))
        if r.status_code != 401:
            wrong.append((e.method, e.path, r.status_code))
    assert not wrong, wrong


def test_public_routes_answer_without_login(client: TestClient) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


# --------------------------------------------------------------------------- department scope
@pytest.fixture
def two_departments(client: TestClient, db: Session) -> dict[str, Any]:
    from ledger import costs
    from ledger.models import CostCategory
    from telematics.models import Position

    bureau = f.department(db, name="机关事务局")
    a, b = f.department(db, bureau, "部门A"), f.department(db, bureau, "部门B")
    admin = f.user(db, Role.admin, bureau)
    car_b = f.vehicle(db, admin, b)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    db.add(Terminal(id="ACC-B", protocol=TerminalProtocol.nmea_mqtt, vehicle_id=car_b.id))
    db.flush()
    for i in range(5):
        db.add(Position(terminal_id="ACC-B", time=t0 + timedelta(seconds=i), vehicle_id=car_b.id,
                        lat=30.6 + i * 1e-4, lon=104.0, speed_kmh=30.0, valid=True,
                        protocol="nmea-mqtt", received_at=t0))
    entry = costs.record_cost(db, admin, car_b.id, CostCategory.fuel, 12_345, date.today(),
                              "B的油费", "")
    db.commit()
    staff_b = _login(client, db, Role.staff, b)
    booking = client.post("/api/dispatch/bookings", json=_booking_body(), headers=staff_b.headers)
    assert booking.status_code == 201, booking.text
    return {"a": a, "b": b, "car_b": car_b.id, "booking_b": booking.json()["id"],
            "entry_b": entry.id, "t0": t0, "staff_a": _login(client, db, Role.staff, a),
            "approver_a": _login(client, db, Role.approver, a)}


def test_other_departments_bookings_tracks_costs_are_404(client: TestClient,
                                                          two_departments: dict[str, Any]
                                                          ) -> None:
    d = two_departments
    bid, vid = d["booking_b"], d["car_b"]
    span = {"from": (d["t0"] - timedelta(minutes=5)).isoformat(),
            "to": (d["t0"] + timedelta(minutes=5)).isoformat()}
    month = date.today().strftime("%Y-%m")
    for who in ("staff_a", "approver_a"):
        h = d[who].headers
        reads = [f"/api/dispatch/bookings/{bid}", f"/api/dispatch/bookings/{bid}/approvals",
                 f"/api/dispatch/bookings/{bid}/history", f"/api/vehicles/{vid}",
                 f"/api/vehicles/{vid}/positions", f"/api/vehicles/{vid}/track",
                 f"/api/vehicles/{vid}/trips", f"/api/vehicles/{vid}/stops",
                 f"/api/vehicles/{vid}/mileage", f"/api/ledger/vehicles/{vid}/history"]
        for path in reads:
            r = client.get(path, params=span, headers=h)
            assert r.status_code == 404, (who, path, r.status_code, r.text[:200])
        r = client.get(f"/api/ledger/mileage/{vid}", params={"month": month}, headers=h)
        assert r.status_code == 404, (who, r.status_code)
        writes = [client.patch(f"/api/dispatch/bookings/{bid}", json={"notes": "x"}, headers=h),
                  client.post(f"/api/dispatch/bookings/{bid}/cancel", json={"reason": "x"},
                              headers=h)]
        assert [w.status_code for w in writes] == [404, 404], [w.text[:200] for w in writes]
        # lists leave them out
        bookings = client.get("/api/dispatch/bookings", headers=h).json()
        assert bid not in [b["id"] for b in bookings["items"]]
        entries = client.get("/api/ledger/entries", headers=h)
        assert entries.status_code in (200, 403)
        if entries.status_code == 200:
            assert d["entry_b"] not in [e["id"] for e in entries.json()["items"]]
        rollup = client.get("/api/ledger/costs/rollup", params={"month": month}, headers=h)
        if rollup.status_code == 200:
            assert d["b"].id not in [r["department_id"] for r in rollup.json()]


# --------------------------------------------------------------------------- supervisors
# POSTs that store nothing: logging in, and the dry-run scope check of a booking draft
READ_ONLY_POSTS = {"/api/auth/token", "/api/dispatch/bookings/evaluate"}


def _valid_cases(op: Any, n: int) -> list[Any]:
    """Up to ``n`` schema-valid requests for an operation (hypothesis draws)."""
    found: list[Any] = []

    @hypothesis.settings(max_examples=n, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck),
                         phases=[hypothesis.Phase.generate])
    @hypothesis.given(op.as_strategy())
    def draw(case: Any) -> None:
        found.append(case)

    draw()
    return found


def test_supervisors_cannot_write_anything(client: TestClient, db: Session,
                                           settings: Any) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("one backend is enough: the role check does not touch SQL")
    bureau = f.department(db, name="监管局")
    admin = f.user(db, Role.admin, bureau)
    car = f.vehicle(db, admin, bureau)
    db.commit()
    sup = _login(client, db, Role.supervisor, bureau)
    staff = _login(client, db, Role.staff, bureau)
    booking = client.post("/api/dispatch/bookings", json=_booking_body(), headers=staff.headers)
    known = {"vehicle_id": car.id, "booking_id": booking.json()["id"],
             "department_id": bureau.id, "user_id": admin.id}
    # bodies the generator rarely gets past custom validators (plates, VINs, times)
    fallback = {"/api/vehicles": f.vehicle_payload(bureau),
                "/api/dispatch/bookings": _booking_body()}
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    wrong = []
    checked = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() not in WRITE_METHODS or op.path in READ_ONLY_POSTS:
            continue
        statuses = []
        for case in _valid_cases(op, 8):
            case.path_parameters = {k: known.get(k, v) for k, v in
                                    (case.path_parameters or {}).items()}
            r = client.request(op.method.upper(), fill(op.path, **case.path_parameters),
                               headers=sup.headers, **_body_kwargs(case))
            statuses.append(r.status_code)
            if r.status_code != 422:
                break
        if statuses and statuses[-1] == 422 and op.path in fallback:  # strict validators
            r = client.request(op.method.upper(), fill(op.path, **known), headers=sup.headers,
                               json=fallback[op.path])
            statuses.append(r.status_code)
        checked += 1
        final = statuses[-1] if statuses else None
        if final != 403:
            wrong.append((op.method.upper(), op.path, statuses))
    assert checked > 40
    assert not wrong, wrong


def _body_kwargs(case: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"params": case.query or None}
    body = case.body
    if case.media_type and "multipart" in case.media_type:
        kw["files"] = {k: ("x.csv", v if isinstance(v, bytes) else str(v).encode())
                       for k, v in (body or {}).items()}
    elif body is not None and not isinstance(body, schemathesis.core.NotSet):
        kw["json"] = body
    return kw


# --------------------------------------------------------------------------- tokens, passwords
def test_issued_tokens_expire(client: TestClient, db: Session, settings: Any) -> None:
    from fleet.security import create_token

    who = _login(client, db, Role.staff, f.department(db))
    token = who.headers["Authorization"].split()[1]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["exp"] - time.time() <= settings.token_minutes * 60 + 5
    assert claims["exp"] > time.time()
    short = create_token(str(who.user.id), settings.secret_key, 1 / 60)  # one second
    h = {"Authorization": f"Bearer {short}"}
    assert client.get("/api/auth/me", headers=h).status_code == 200
    time.sleep(2.1)
    r = client.get("/api/auth/me", headers=h)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_passwords_are_argon2_hashes_in_the_database(client: TestClient, db: Session) -> None:
    dep = f.department(db)
    admin = _login(client, db, Role.admin, dep)
    secret = "Sup3r-secret-口令"
    r = client.post("/api/users", json={"username": f"pwcheck{f.n()}", "password": secret,
                                        "role": "staff", "department_id": dep.id},
                    headers=admin.headers)
    assert r.status_code == 201, r.text
    assert secret not in r.text and "password" not in r.json()
    stored = db.execute(text("SELECT password_hash FROM users WHERE id = :i"),
                        {"i": r.json()["id"]}).scalar_one()
    assert stored.startswith("$argon2id$") and secret not in stored
    ok = client.post("/api/auth/token", data={"username": r.json()["username"],
                                              "password": secret})
    assert ok.status_code == 200


def test_login_rate_limited_per_address_across_usernames(client: TestClient) -> None:
    codes = [client.post("/api/auth/token", data={"username": f"nobody{i}", "password": "x"})
             .status_code for i in range(15)]
    assert codes[0] == 401 and codes[-1] == 429, codes


# --------------------------------------------------------------------------- hostile strings
def _contains(obj: Any, s: str) -> bool:
    """Some string value of a JSON document equals ``s`` (or ends with it, e.g. a reason)."""
    if isinstance(obj, str):
        return obj == s or obj.endswith(s)
    if isinstance(obj, dict):
        return any(_contains(v, s) for v in obj.values())
    if isinstance(obj, list):
        return any(_contains(v, s) for v in obj)
    return False


def test_injection_and_script_strings_are_stored_inertly(client: TestClient, db: Session,
                                                         engine: Any) -> None:
    tables_before = set(inspect(engine).get_table_names())
    dep = f.department(db)
    admin = _login(client, db, Role.admin, dep)
    h = admin.headers
    car = client.post("/api/vehicles", json=f.vehicle_payload(dep, seats=7), headers=h).json()
    created = 0
    for i, s in enumerate(HOSTILE):
        dep_r = client.post("/api/departments", json={"code": f"inj{f.n()}", "name": s},
                            headers=h)
        assert dep_r.status_code == 201, dep_r.text
        assert client.get(f"/api/departments/{dep_r.json()['id']}",
                          headers=h).json()["name"] == s
        user_r = client.post("/api/users", json={"username": f"inj{f.n()}", "full_name": s,
                                                 "password": "long-enough-1", "role": "staff",
                                                 "department_id": dep.id}, headers=h)
        assert user_r.status_code == 201, user_r.text
        assert client.get(f"/api/users/{user_r.json()['id']}",
                          headers=h).json()["full_name"] == s
        drv = client.post("/api/drivers", json={"name": s[:60], "employee_no": f"INJ{f.n()}",
                                                "licence_class": "C1", "phone": "13900000000",
                                                "department_id": dep.id}, headers=h)
        assert drv.status_code == 201, drv.text
        assert client.get(f"/api/drivers/{drv.json()['id']}", headers=h).json()["name"] == s[:60]
        body = _booking_body(notes=s, pickup={"address": s, "lat": 30.66, "lon": 104.06},
                             destinations=[{"address": s, "lat": 30.62, "lon": 104.08}],
                             department_id=dep.id)
        b = client.post("/api/dispatch/bookings", json=body, headers=h)
        assert b.status_code == 201, b.text
        back = client.get(f"/api/dispatch/bookings/{b.json()['id']}", headers=h).json()
        assert back["notes"] == s and back["pickup"]["address"] == s
        assert back["destinations"][0]["address"] == s
        cost = client.post("/api/ledger/costs", json={
            "vehicle_id": car["id"], "category": "fuel", "amount_fen": 100 + i,
            "occurred_on": date.today().isoformat(), "note": s, "reference": s[:120]},
            headers=h)
        assert cost.status_code == 201, cost.text
        assert _contains(cost.json(), s), cost.json()
        created += 1
    # search/filter parameters carrying the same strings are plain values too
    for s in HOSTILE:
        r = client.get("/api/vehicles", params={"q": s}, headers=h)
        assert r.status_code in (200, 422)
    assert created == len(HOSTILE)
    assert set(inspect(engine).get_table_names()) == tables_before
    assert db.execute(text("SELECT count(*) FROM users")).scalar_one() >= len(HOSTILE)
