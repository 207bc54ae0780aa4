"""The API's route class and router: the user lookup, the endpoint and the commit on one
thread; an account retired after its token was issued refused; prefixes declined early."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from fleet.app import create_app
from fleet.deps import CurrentUser, DbSession
from fleet.models import Department, Role, User
from fleet.routing import ApiRouter
from fleet.settings import Settings
from tests import factories as f


def _probe_routers(seen: dict[str, Any]) -> list[APIRouter]:
    unit = ApiRouter(prefix="/api/probe")
    plain = APIRouter(prefix="/api/plain")  # not the API's route class: still a User

    @unit.post("/touch")
    def touch(db: DbSession, user: CurrentUser) -> dict[str, object]:
        seen["endpoint"] = threading.get_ident()
        seen["user_type"] = type(user).__name__
        db.add(Department(code=f"probe{f.n()}", name="探针", parent_id=user.department_id))
        return {"user": user.username}

    @unit.post("/fail")
    def fail(db: DbSession, user: CurrentUser) -> dict[str, object]:
        db.add(Department(code="probe-failed", name="失败", parent_id=user.department_id))
        db.flush()
        raise ValueError("the endpoint failed after writing")

    @plain.get("/me")
    def me(user: CurrentUser) -> dict[str, object]:
        return {"user": user.username, "type": type(user).__name__}

    return [unit, plain]


def _member(db: Session, role: Role) -> User:
    """A user of a new department, committed (the app's sessions must see it)."""
    user = f.user(db, role, f.department(db))
    db.commit()
    return user


def _client(settings: Settings, engine: Any, factory: sessionmaker[Session],
            seen: dict[str, Any]) -> TestClient:
    app = create_app(settings, engine=engine, session_factory=factory,
                     extra_routers=_probe_routers(seen))
    return TestClient(app, raise_server_exceptions=False)


def test_the_user_lookup_the_endpoint_and_the_commit_share_one_thread(
        settings: Settings, engine: Any, session_factory: sessionmaker[Session],
        db: Session) -> None:
    seen: dict[str, Any] = {}
    threads: dict[str, set[int]] = {"query": set(), "commit": set()}

    @event.listens_for(session_factory, "do_orm_execute")
    def _query(_state: Any) -> None:
        threads["query"].add(threading.get_ident())

    @event.listens_for(session_factory, "after_commit")
    def _commit(_session: Session) -> None:
        threads["commit"].add(threading.get_ident())

    admin = _member(db, Role.admin)
    with _client(settings, engine, session_factory, seen) as client:
        h = f.login(client, admin).headers
        threads["query"].clear()
        threads["commit"].clear()
        r = client.post("/api/probe/touch", headers=h)
        assert r.status_code == 200, r.text
        assert seen["user_type"] == "User"
        assert threads["query"] == {seen["endpoint"]} == threads["commit"]
        assert db.query(Department).filter(Department.name == "探针").count() == 1


def test_an_endpoint_that_fails_leaves_nothing_written(
        settings: Settings, engine: Any, session_factory: sessionmaker[Session],
        db: Session) -> None:
    admin = _member(db, Role.admin)
    with _client(settings, engine, session_factory, {}) as client:
        r = client.post("/api/probe/fail", headers=f.login(client, admin).headers)
        assert r.status_code == 500
    db.expire_all()
    assert db.query(Department).filter(Department.code == "probe-failed").count() == 0


def test_a_route_of_another_class_still_gets_the_user(
        settings: Settings, engine: Any, session_factory: sessionmaker[Session],
        db: Session) -> None:
    staff = _member(db, Role.staff)
    with _client(settings, engine, session_factory, {}) as client:
        r = client.get("/api/plain/me", headers=f.login(client, staff).headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"user": staff.username, "type": "User"}


def test_an_account_retired_after_its_token_was_issued_is_refused(
        client: TestClient, db: Session) -> None:
    staff = _member(db, Role.staff)
    h = f.login(client, staff).headers
    assert client.get("/api/dispatch/bookings", headers=h).status_code == 200
    db.get(User, staff.id).active = False  # type: ignore[union-attr]
    db.commit()
    for path in ("/api/dispatch/bookings", "/api/departments", "/api/ledger/entries",
                 "/api/live"):
        r = client.get(path, headers=h)
        assert r.status_code == 401, (path, r.text)
        assert "retired" in r.json()["detail"]
    # with no token at all, the answer is 401 before anything else is looked at
    r = client.post("/api/dispatch/bookings", json={"nonsense": True})
    assert r.status_code == 401 and "not authenticated" in r.json()["detail"]


def _counting(router: APIRouter) -> set[tuple[str, str]]:
    """(route, request path) each time one of the router's routes is asked to match, from
    now on."""
    asked: set[tuple[str, str]] = set()
    for route in router.routes:
        def matches(scope: Any, _original: Any = route.matches,
                    _path: str = getattr(route, "path", "")) -> Any:
            asked.add((_path, scope["path"]))
            return _original(scope)
        route.matches = matches  # type: ignore[method-assign]
    return asked


def test_a_router_declines_paths_none_of_its_routes_starts_like() -> None:
    router = ApiRouter(prefix="/api/things")
    mixed = ApiRouter()  # no prefix: its routes' own first segments decide

    @router.get("/{thing_id}")
    def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @mixed.get("/api/probe-live")
    def live() -> dict[str, str]:
        return {"at": "live"}

    @mixed.post("/api/probe-cars/{car_id}/positions")
    def positions(car_id: int) -> dict[str, int]:
        return {"car": car_id}

    app = create_app(Settings(mode="test", secret_key="k" * 40,
                              database_url="sqlite:///:memory:"),
                     extra_routers=[router, mixed])
    things, mixed_asked = _counting(router), _counting(mixed)
    with TestClient(app) as client:
        assert client.get("/api/things/7").json() == {"id": 7}
        assert client.get("/api/things/x").status_code == 422
        assert client.get("/api/thingsx/7").status_code == 404
        assert client.get("/api/probe-live").json() == {"at": "live"}
        assert client.post("/api/probe-cars/3/positions").json() == {"car": 3}
        assert client.get("/api/probe-cars/3/positions").status_code == 405  # path known
        assert {path for _, path in things} == {"/api/things/7", "/api/things/x"}
        assert {path for _, path in mixed_asked} == {"/api/probe-live",
                                                     "/api/probe-cars/3/positions"}
    with TestClient(app, root_path="/gongche") as client:
        assert client.get("/gongche/api/things/8").json() == {"id": 8}


def test_a_router_with_a_route_open_at_the_top_tries_every_route() -> None:
    router = ApiRouter()

    @router.get("/{anything}/x")
    def anything(anything: str) -> dict[str, str]:
        return {"got": anything}

    app = create_app(Settings(mode="test", secret_key="k" * 40,
                              database_url="sqlite:///:memory:"), extra_routers=[router])
    with TestClient(app) as client:
        assert client.get("/zz/x").json() == {"got": "zz"}
        router.add_api_route("/api/late", lambda: {"late": True}, methods=["GET"])
        asked = _counting(router)
        assert client.get("/api/late").json() == {"late": True}
        assert asked == {("/{anything}/x", "/api/late"), ("/api/late", "/api/late")}
