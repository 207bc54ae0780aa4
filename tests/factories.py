"""Small factories for tests: departments, users with tokens, vehicles, drivers, terminals."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from fleet import schemas, service
from fleet.models import Department, Role, User
from fleet.security import hash_password

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery"
_HASH = hash_password(PASSWORD)  # hashing once keeps factories fast


def n() -> int:
    return next(_counter)


def department(db: Session, parent: Department | None = None, name: str = "") -> Department:
    i = n()
    dep = Department(code=f"dep{i}", name=name or f"部门{i}",
                     parent_id=parent.id if parent else None)
    db.add(dep)
    db.flush()
    return dep


def user(db: Session, role: Role, dep: Department) -> User:
    i = n()
    u = User(username=f"{role}{i}", full_name=f"{role} {i}", role=role,
             department_id=dep.id, password_hash=_HASH)
    db.add(u)
    db.flush()
    return u


def vehicle_payload(dep: Department, **over: object) -> dict[str, object]:
    i = n()
    body: dict[str, object] = {
        "plate": f"川A{10000 + i:05d}", "vin": f"LFV{i:014d}", "category": "general",
        "seats": 5, "energy_type": "electric", "department_id": dep.id,
        "home_garage": {"lat": 30.66, "lon": 104.06},
    }
    body.update(over)
    return body


def vehicle(db: Session, actor: User, dep: Department, **over: object):  # type: ignore[no-untyped-def]
    return service.create_vehicle(db, actor, schemas.VehicleCreate(**vehicle_payload(dep, **over)))


@dataclass
class Login:
    user: User
    headers: dict[str, str]


def login(client: TestClient, u: User) -> Login:
    r = client.post("/api/auth/token", data={"username": u.username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return Login(u, {"Authorization": f"Bearer {r.json()['access_token']}"})
