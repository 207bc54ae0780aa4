"""schemathesis against the application's own OpenAPI schema, as every role.

For each operation a few generated requests (path parameters sometimes replaced by ids that
exist, so requests reach past the 404s) are sent through ASGI as an authenticated user of
each role. Checks: no 5xx, and every documented response conforms to its schema.
Bounded: ``MAX_EXAMPLES`` per operation and role.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error, response_schema_conformance
from sqlalchemy.orm import Session

from fleet.models import Role, Terminal, TerminalProtocol
from tests import factories as f

MAX_EXAMPLES = int(os.environ.get("GONGCHE_SCHEMATHESIS_EXAMPLES", "4"))

# Failures of the bug classes reproduced (xfail, strict) at the end of this module; they are
# set aside here so that any *other* failure still fails this test. Remove an entry when its
# bug is fixed (its xfail test then passes and must lose its marker too).
KNOWN_BUGS: list[str] = []
ROLES = [Role.admin, Role.dispatcher, Role.supervisor, Role.approver, Role.staff]


@pytest.fixture
def world(client: TestClient, db: Session, settings: Any) -> dict[str, Any]:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostGIS is the production backend; SpatiaLite runs the rest of the suite")
    bureau = f.department(db, name="机关事务局")
    a = f.department(db, bureau, "部门A")
    admin = f.user(db, Role.admin, bureau)
    car = f.vehicle(db, admin, a, seats=7)
    db.add(Terminal(id="SCH-1", protocol=TerminalProtocol.nmea_mqtt, vehicle_id=car.id))
    db.commit()
    users = {role: f.user(db, role, a if role in (Role.staff, Role.approver) else bureau)
             for role in ROLES}
    db.commit()
    logins = {role: f.login(client, u) for role, u in users.items()}
    known = {"vehicle_id": car.id, "department_id": a.id, "user_id": users[Role.staff].id,
             "terminal_id": "SCH-1"}
    return {"logins": logins, "known": known}


def _cases(op: Any, n: int, seed: int) -> list[Any]:
    found: list[Any] = []

    @hypothesis.settings(max_examples=n, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.seed(seed)
    @hypothesis.given(op.as_strategy())
    def draw(case: Any) -> None:
        found.append(case)

    draw()
    return found


@pytest.mark.timeout(400)
def test_no_5xx_and_responses_match_the_schema(client: TestClient, world: dict[str, Any]
                                                ) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    ops = [r.ok() for r in schema.get_all_operations()]
    rng = random.Random(10)
    failures: list[str] = []
    calls = 0
    for role, login in world["logins"].items():
        for op in ops:
            if op.path in ("/api/auth/token", "/readyz"):
                continue  # the login limiter would lock users out; /readyz's 503 is its answer
            for case in _cases(op, MAX_EXAMPLES, seed=hash((op.method, op.path)) & 0xFFFF):
                if case.path_parameters and rng.random() < 0.5:
                    case.path_parameters = {k: world["known"].get(k, v)
                                            for k, v in case.path_parameters.items()}
                try:
                    response = case.call(headers=login.headers)
                except Exception as exc:  # the ASGI app raised instead of answering
                    failures.append(f"{role} {op.method.upper()} {op.path}: raised {exc!r:.300}"
                                    f"\n  {case.as_curl_command()}")
                    continue
                calls += 1
                try:
                    case.validate_response(response, checks=[not_a_server_error,
                                                             response_schema_conformance])
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{role} {op.method.upper()} {op.path}: "
                                    f"{response.status_code} {str(exc)[:400]}"
                                    f"\n  {case.as_curl_command()}")
    known = [f for f in failures if any(re.search(k, f, re.S) for k in KNOWN_BUGS)]
    failures = [f for f in failures if f not in known]
    assert calls > len(ops) * len(ROLES)
    assert not failures, "\n".join(failures[:25]) + f"\n({len(failures)} failures)"


# --------------------------------------------------------------------------- bugs found
BIG = 2**31  # one past PostgreSQL's integer; ids, offsets and amounts are unbounded in the API


# Fixed: fleet/app.py answers sqlalchemy DataError with 422 (regression tests below).
def test_integer_beyond_column_range_is_not_a_500(world: dict[str, Any], app: Any) -> None:
    h = world["logins"][Role.admin].headers
    with TestClient(app, raise_server_exceptions=False) as c:
        statuses = [
            c.get(f"/api/users/{BIG}", headers=h).status_code,
            c.get("/api/vehicles", params={"offset": BIG * BIG * 4}, headers=h).status_code,
            c.post(f"/api/dispatch/bookings/{BIG}/cancel", json={"reason": "x"},
                   headers=h).status_code,
            c.post(f"/api/ledger/entries/{BIG}/correct", json={"reason": "x"},
                   headers=h).status_code,
        ]
    assert all(code < 500 for code in statuses), statuses


def test_nul_byte_in_text_is_not_a_500(world: dict[str, Any], app: Any) -> None:
    h = world["logins"][Role.admin].headers
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/departments", json={"code": "nul1", "name": "a\x00b"}, headers=h)
    assert r.status_code < 500, r.status_code


# Fixed: every error answer has one body (fleet.schemas.ErrorResponse), documented for every
# API operation in place of FastAPI's HTTPValidationError, which the 422 handler never sent.
def test_422_body_matches_the_documented_schema(client: TestClient, world: dict[str, Any]
                                                ) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    op = schema["/api/vehicles"]["POST"]
    case = op.Case(body={})
    response = case.call(headers=world["logins"][Role.admin].headers)
    assert response.status_code == 422
    case.validate_response(response, checks=[response_schema_conformance])


def test_every_error_body_matches_the_documented_schema(client: TestClient,
                                                        world: dict[str, Any]) -> None:
    """401, 403, 404, 409 and a service's 422 (a rule broken, string detail and ``field``)
    answer the documented ErrorResponse, as the request validator's 422 does."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    logins = world["logins"]
    plate = {"plate": "川A12345", "vin": "LFV00000000000001", "category": "general",
             "seats": 5, "energy_type": "petrol", "department_id": world["known"]["department_id"]}
    past = {"purpose": "research", "passengers": 1, "start_at": "2020-01-01T01:00:00+00:00",
            "end_at": "2020-01-01T03:00:00+00:00",
            "pickup": {"address": "市政府", "lat": 30.66, "lon": 104.06},
            "destinations": [{"address": "会场", "lat": 30.62, "lon": 104.08}]}
    cases = [  # (method, path, path parameters, body, role or None, expected status)
        ("GET", "/api/vehicles/{vehicle_id}", {"vehicle_id": 1}, None, None, 401),
        ("POST", "/api/vehicles", {}, plate, Role.supervisor, 403),
        ("GET", "/api/vehicles/{vehicle_id}", {"vehicle_id": 987654}, None, Role.admin, 404),
        ("POST", "/api/vehicles", {}, plate, Role.admin, 201),
        ("POST", "/api/vehicles", {}, plate, Role.admin, 409),
        ("POST", "/api/dispatch/bookings", {}, past, Role.staff, 422),
    ]
    for method, path, params, body, role, expected in cases:
        op = schema[path][method]
        case = op.Case(path_parameters=params, body=body) if body is not None else \
            op.Case(path_parameters=params)
        headers = logins[role].headers if role else {}
        response = case.call(headers=headers)
        assert response.status_code == expected, (path, role, response.text)
        case.validate_response(response, checks=[response_schema_conformance])
        if expected >= 400:
            assert set(response.json()) >= {"error", "detail"}


def test_holiday_year_out_of_range_is_422_not_500(world: dict[str, Any], app: Any) -> None:
    """Regression (found by schemathesis): ``GET /api/holidays?year=330291`` raised
    ValueError in ``date(year, 1, 1)`` (and OverflowError beyond C int): a 500."""
    h = world["logins"][Role.staff].headers
    with TestClient(app, raise_server_exceptions=False) as c:
        for year in (0, 10_000, 330_291, 6_885_553_215):
            r = c.get("/api/holidays", params={"year": year}, headers=h)
            assert r.status_code == 422, (year, r.status_code)
        assert c.get("/api/holidays", params={"year": 2024}, headers=h).status_code == 200
