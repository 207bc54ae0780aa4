"""Organisation and assets through the HTTP API, on both database backends."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from fleet.models import Department, Role
from tests import factories as f


@pytest.fixture
def org(db: Session) -> dict[str, Department]:
    bureau = f.department(db, name="机关事务局")
    a = f.department(db, bureau, "部门A")
    a_sub = f.department(db, a, "A下属单位")
    b = f.department(db, bureau, "部门B")
    db.commit()
    return {"bureau": bureau, "a": a, "a_sub": a_sub, "b": b}


@pytest.fixture
def admin(client: TestClient, db: Session, org: dict[str, Department]) -> f.Login:
    u = f.user(db, Role.admin, org["bureau"])
    db.commit()
    return f.login(client, u)


def as_role(client: TestClient, db: Session, role: Role, dep: Department) -> f.Login:
    u = f.user(db, role, dep)
    db.commit()
    return f.login(client, u)


def test_health_and_metrics_need_no_login(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.get("/api/vehicles")
    metrics = client.get("/metrics").text
    assert "gongche_http_requests_total" in metrics


def test_readyz_reports_each_dependency(client: TestClient) -> None:
    r = client.get("/readyz")
    body = r.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"  # embedded store in tests
    # no broker runs at the embedded default address in tests: reported, not raised
    assert r.status_code == 503 and body["checks"]["mqtt"].startswith("error")


def test_every_api_endpoint_refuses_anonymous(client: TestClient) -> None:
    for path in ["/api/vehicles", "/api/drivers", "/api/terminals", "/api/departments",
                 "/api/users", "/api/auth/me", "/api/vehicles/1"]:
        r = client.get(path)
        assert r.status_code == 401, path
        assert "not authenticated" in r.json()["detail"]


def test_login_wrong_password_and_rate_limit(client: TestClient, db: Session,
                                             org: dict[str, Department]) -> None:
    u = f.user(db, Role.staff, org["a"])
    db.commit()
    r = client.post("/api/auth/token", data={"username": u.username, "password": "nope"})
    assert r.status_code == 401
    codes = [client.post("/api/auth/token", data={"username": u.username, "password": "x"})
             .status_code for _ in range(12)]
    assert codes[-1] == 429


def test_expired_and_forged_tokens_are_refused(client: TestClient, admin: f.Login) -> None:
    from fleet.security import create_token

    expired = create_token(str(admin.user.id), client.app.state.settings.secret_key, -1)
    r = client.get("/api/vehicles", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    forged = create_token(str(admin.user.id), "another-secret-0123456789-abcdefghijklmn", 10)
    r = client.get("/api/vehicles", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_vehicle_crud_with_validation_and_duplicates(
    client: TestClient, admin: f.Login, org: dict[str, Department]
) -> None:
    h = admin.headers
    body = f.vehicle_payload(org["a"])
    r = client.post("/api/vehicles", json=body, headers=h)
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["home_garage"] == {"lat": 30.66, "lon": 104.06}
    assert v["status"] == "in_service" and v["version"] == 1

    dup = client.post("/api/vehicles", json={**f.vehicle_payload(org["a"]),
                                             "plate": body["plate"]}, headers=h)
    assert dup.status_code == 409 and "plate" in dup.json()["detail"]
    dup_vin = client.post("/api/vehicles", json={**f.vehicle_payload(org["a"]),
                                                 "vin": body["vin"]}, headers=h)
    assert dup_vin.status_code == 409 and "VIN" in dup_vin.json()["detail"]

    bad = client.post("/api/vehicles", json={**f.vehicle_payload(org["a"]), "plate": "XX123",
                                             "seats": 0}, headers=h)
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert fields == {"plate", "seats"}

    unknown_dep = client.post("/api/vehicles", json=f.vehicle_payload(org["a"],
                                                                      department_id=99999),
                              headers=h)
    assert unknown_dep.status_code == 422 and unknown_dep.json()["field"] == "department_id"

    r = client.patch(f"/api/vehicles/{v['id']}", json={"status": "maintenance", "version": 1},
                     headers=h)
    assert r.status_code == 200 and r.json()["status"] == "maintenance"
    assert r.json()["version"] == 2
    stale = client.patch(f"/api/vehicles/{v['id']}", json={"seats": 7, "version": 1}, headers=h)
    assert stale.status_code == 409 and "changed by someone else" in stale.json()["detail"]

    r = client.post(f"/api/vehicles/{v['id']}/retire", json={"reason": "拍卖处置"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "disposed"
    again = client.post(f"/api/vehicles/{v['id']}/retire", json={}, headers=h)
    assert again.status_code == 409
    assert client.get("/api/vehicles/424242", headers=h).status_code == 404


def test_list_pagination_and_filters(client: TestClient, admin: f.Login,
                                     org: dict[str, Department]) -> None:
    h = admin.headers
    for i in range(7):
        cat = "emergency" if i % 2 else "general"
        dep = org["a"] if i < 4 else org["b"]
        assert client.post("/api/vehicles", json=f.vehicle_payload(dep, category=cat),
                           headers=h).status_code == 201
    page = client.get("/api/vehicles?limit=3&offset=0", headers=h).json()
    assert page["total"] == 7 and len(page["items"]) == 3 and page["limit"] == 3
    last = client.get("/api/vehicles?limit=3&offset=6", headers=h).json()
    assert len(last["items"]) == 1
    emergency = client.get("/api/vehicles?category=emergency", headers=h).json()
    assert emergency["total"] == 3
    in_b = client.get(f"/api/vehicles?department_id={org['b'].id}", headers=h).json()
    assert in_b["total"] == 3
    assert client.get("/api/vehicles?limit=0", headers=h).status_code == 422
    assert client.get("/api/vehicles?category=tank", headers=h).status_code == 422


def test_department_scoping_for_staff_and_approvers(
    client: TestClient, db: Session, admin: f.Login, org: dict[str, Department]
) -> None:
    h = admin.headers
    in_a = client.post("/api/vehicles", json=f.vehicle_payload(org["a"]), headers=h).json()
    in_sub = client.post("/api/vehicles", json=f.vehicle_payload(org["a_sub"]), headers=h).json()
    in_b = client.post("/api/vehicles", json=f.vehicle_payload(org["b"]), headers=h).json()

    for role in (Role.staff, Role.approver):
        staff_a = as_role(client, db, role, org["a"])
        # a staff user of department A gets 404 for department B's vehicle
        assert client.get(f"/api/vehicles/{in_b['id']}", headers=staff_a.headers).status_code \
            == 404
        assert client.get(f"/api/vehicles/{in_a['id']}", headers=staff_a.headers).status_code \
            == 200
        listed = {v["id"] for v in client.get("/api/vehicles",
                                              headers=staff_a.headers).json()["items"]}
        assert listed == {in_a["id"], in_sub["id"]}
        deps = {d["id"] for d in client.get("/api/departments",
                                            headers=staff_a.headers).json()["items"]}
        assert deps == {org["a"].id, org["a_sub"].id}
        # staff cannot write assets
        r = client.post("/api/vehicles", json=f.vehicle_payload(org["a"]),
                        headers=staff_a.headers)
        assert r.status_code == 403

    dispatcher = as_role(client, db, Role.dispatcher, org["bureau"])
    everything = client.get("/api/vehicles", headers=dispatcher.headers).json()
    assert everything["total"] == 3


def test_supervisor_reads_everything_and_writes_nothing(
    client: TestClient, db: Session, admin: f.Login, org: dict[str, Department]
) -> None:
    v = client.post("/api/vehicles", json=f.vehicle_payload(org["b"]),
                    headers=admin.headers).json()
    sup = as_role(client, db, Role.supervisor, org["bureau"])
    assert client.get(f"/api/vehicles/{v['id']}", headers=sup.headers).status_code == 200
    assert client.get("/api/users", headers=sup.headers).status_code == 200
    writes = [
        client.post("/api/vehicles", json=f.vehicle_payload(org["b"]), headers=sup.headers),
        client.patch(f"/api/vehicles/{v['id']}", json={"seats": 7}, headers=sup.headers),
        client.post(f"/api/vehicles/{v['id']}/retire", json={}, headers=sup.headers),
        client.post("/api/departments", json={"code": "x1", "name": "X"}, headers=sup.headers),
        client.post("/api/drivers", json={"name": "张三", "employee_no": "S1",
                                          "licence_class": "C1", "phone": "13900000000",
                                          "department_id": org["b"].id}, headers=sup.headers),
    ]
    for r in writes:
        assert r.status_code == 403, r.text
        assert "read-only" in r.json()["detail"]


def test_service_layer_enforces_scope_without_http(db: Session, org: dict[str, Department]
                                                   ) -> None:
    """The rules hold for any caller, not only the routes."""
    from fleet import service
    from fleet.errors import Forbidden, NotFound

    admin = f.user(db, Role.admin, org["bureau"])
    v_b = f.vehicle(db, admin, org["b"])
    staff_a = f.user(db, Role.staff, org["a"])
    with pytest.raises(NotFound):
        service.get_vehicle(db, staff_a, v_b.id)
    sup = f.user(db, Role.supervisor, org["bureau"])
    with pytest.raises(Forbidden):
        service.retire_vehicle(db, sup, v_b.id, "no")


def test_departments_tree_and_users(client: TestClient, admin: f.Login,
                                    org: dict[str, Department]) -> None:
    h = admin.headers
    r = client.post("/api/departments", json={"code": "county1", "name": "某县",
                                              "parent_id": org["bureau"].id}, headers=h)
    assert r.status_code == 201
    dep = r.json()
    assert client.post("/api/departments", json={"code": "county1", "name": "dup"},
                       headers=h).status_code == 409
    cyc = client.patch(f"/api/departments/{org['bureau'].id}", json={"parent_id": dep["id"]},
                       headers=h)
    assert cyc.status_code == 422 and "under itself" in cyc.json()["detail"]

    r = client.post("/api/users", json={"username": "li.si", "password": "long-enough-pw",
                                        "role": "approver", "department_id": dep["id"]},
                    headers=h)
    assert r.status_code == 201 and "password" not in r.text
    assert client.post("/api/users", json={"username": "li.si", "password": "long-enough-pw",
                                           "role": "staff", "department_id": dep["id"]},
                       headers=h).status_code == 409
    short = client.post("/api/users", json={"username": "w", "password": "x", "role": "boss",
                                            "department_id": dep["id"]}, headers=h)
    assert short.status_code == 422
    assert {e["field"] for e in short.json()["errors"]} == {"username", "password", "role"}
    tok = client.post("/api/auth/token", data={"username": "li.si", "password": "long-enough-pw"})
    assert tok.status_code == 200
    me = client.get("/api/auth/me", headers={"Authorization":
                                             f"Bearer {tok.json()['access_token']}"}).json()
    assert me["role"] == "approver" and me["department_id"] == dep["id"]


def test_drivers_crud(client: TestClient, admin: f.Login, org: dict[str, Department]) -> None:
    h = admin.headers
    body = {"name": "王师傅", "employee_no": "D9001", "licence_class": "A1",
            "phone": "13912345678", "department_id": org["a"].id}
    r = client.post("/api/drivers", json=body, headers=h)
    assert r.status_code == 201
    d = r.json()
    assert client.post("/api/drivers", json=body, headers=h).status_code == 409
    bad = client.post("/api/drivers", json={**body, "employee_no": "D9002",
                                            "licence_class": "Z9", "phone": "call me"},
                      headers=h)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"licence_class", "phone"}
    r = client.patch(f"/api/drivers/{d['id']}", json={"status": "on_leave"}, headers=h)
    assert r.json()["status"] == "on_leave"
    r = client.post(f"/api/drivers/{d['id']}/retire", json={"reason": "退休"}, headers=h)
    assert r.json()["status"] == "retired"
    listed = client.get("/api/drivers?status=retired", headers=h).json()
    assert [x["id"] for x in listed["items"]] == [d["id"]]


def test_driver_shift_and_driving_limit(client: TestClient, admin: f.Login,
                                       org: dict[str, Department]) -> None:
    """A driver's shift (班次) is stored as local times, replaced whole, and cleared by nulls."""
    h = admin.headers
    body = {"name": "赵师傅", "employee_no": "D9101", "licence_class": "C1",
            "phone": "13912345679", "department_id": org["a"].id,
            "shift_start": "07:00", "shift_end": "15:00", "max_driving_minutes": 420}
    r = client.post("/api/drivers", json=body, headers=h)
    assert r.status_code == 201, r.text
    d = r.json()
    assert (d["shift_start"], d["shift_end"], d["max_driving_minutes"]) == (
        "07:00:00", "15:00:00", 420)
    for bad, why in [({"shift_start": "12:00"}, "both"),
                     ({"shift_start": "15:00", "shift_end": "07:00"}, "after"),
                     ({"max_driving_minutes": 5}, "max_driving_minutes")]:
        r = client.patch(f"/api/drivers/{d['id']}", json=bad, headers=h)
        assert r.status_code == 422 and why in r.text, (bad, r.text)
    r = client.patch(f"/api/drivers/{d['id']}", json={"shift_start": "14:00",
                                                      "shift_end": "22:00"}, headers=h)
    assert (r.json()["shift_start"], r.json()["max_driving_minutes"]) == ("14:00:00", 420)
    r = client.patch(f"/api/drivers/{d['id']}", json={"shift_start": None, "shift_end": None},
                     headers=h)
    assert (r.json()["shift_start"], r.json()["shift_end"]) == (None, None)
    assert client.get(f"/api/drivers/{d['id']}", headers=h).json()["max_driving_minutes"] == 420


def test_terminals_bind_history_and_conflicts(client: TestClient, admin: f.Login,
                                              org: dict[str, Department]) -> None:
    h = admin.headers
    v1 = client.post("/api/vehicles", json=f.vehicle_payload(org["a"]), headers=h).json()
    v2 = client.post("/api/vehicles", json=f.vehicle_payload(org["a"]), headers=h).json()
    r = client.post("/api/terminals", json={"id": "BD0001", "protocol": "nmea-mqtt",
                                            "secret": "terminal-secret", "vehicle_id": v1["id"]},
                    headers=h)
    assert r.status_code == 201 and r.json()["vehicle_id"] == v1["id"]
    assert "secret" not in r.text
    assert client.post("/api/terminals", json={"id": "BD0001", "protocol": "jt808"},
                       headers=h).status_code == 409
    r = client.post("/api/terminals", json={"id": "JT0001", "protocol": "jt808",
                                            "phone": "13900000001"}, headers=h)
    assert r.status_code == 201
    busy = client.put("/api/terminals/JT0001/vehicle", json={"vehicle_id": v1["id"]}, headers=h)
    assert busy.status_code == 409 and "BD0001" in busy.json()["detail"]
    moved = client.put("/api/terminals/BD0001/vehicle", json={"vehicle_id": v2["id"]}, headers=h)
    assert moved.json()["vehicle_id"] == v2["id"]
    history = client.get("/api/terminals/BD0001/bindings", headers=h).json()
    assert [b["vehicle_id"] for b in history] == [v1["id"], v2["id"]]
    assert history[0]["unbound_at"] is not None and history[1]["unbound_at"] is None
    assert client.get(f"/api/vehicles/{v2['id']}", headers=h).json()["terminal_id"] == "BD0001"
    # retiring the vehicle unbinds its terminal
    client.post(f"/api/vehicles/{v2['id']}/retire", json={"reason": "报废"}, headers=h)
    assert client.get("/api/terminals/BD0001", headers=h).json()["vehicle_id"] is None
    assert client.get("/api/terminals?bound=false", headers=h).json()["total"] == 2


def test_audit_trail_records_who_and_why(client: TestClient, db: Session, admin: f.Login,
                                         org: dict[str, Department]) -> None:
    from fleet.audit import history

    v = client.post("/api/vehicles", json=f.vehicle_payload(org["a"]),
                    headers=admin.headers).json()
    client.post(f"/api/vehicles/{v['id']}/retire", json={"reason": "拍卖处置"},
                headers=admin.headers)
    entries = history(db, "vehicle", v["id"])
    assert [e.action for e in entries] == ["create", "retire"]
    assert entries[1].reason == "拍卖处置" and entries[1].actor_id == admin.user.id


def test_no_500_for_malformed_bodies(client: TestClient, admin: f.Login) -> None:
    h = admin.headers
    for payload in ["not json", "[]", "{\"plate\": 5}", "null"]:
        r = client.post("/api/vehicles", content=payload,
                        headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 422, (payload, r.status_code)
    assert client.get("/api/vehicles/abc", headers=h).status_code == 422
    assert client.post("/api/vehicles", json={"unknown": 1, **f.vehicle_payload(
        Department(id=1))}, headers=h).status_code == 422
