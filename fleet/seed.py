"""Seed data: a city affairs bureau with departments, ~30 cars, drivers, terminals and users.

Deterministic (seeded), idempotent (does nothing when the bureau exists), and used by the
demo and by tests that need a realistic fleet.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from geoalchemy2.shape import from_shape
from shapely.geometry import Point
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet import audit
from fleet.models import (
    Department,
    Driver,
    EnergyType,
    LicenceClass,
    Role,
    Terminal,
    TerminalBinding,
    TerminalProtocol,
    User,
    Vehicle,
    VehicleCategory,
)
from fleet.security import hash_mqtt_secret, hash_password

CITY_CENTRE = (30.6600, 104.0600)  # lat, lon — a Chengdu-like city centre
DEMO_PASSWORD = "demo"

DEPARTMENTS = [
    # code, name, parent code
    ("bureau", "市机关事务管理局", None),
    ("bureau.pool", "车辆综合保障中心", "bureau"),
    ("gov.office", "市政府办公室", "bureau"),
    ("dev.reform", "市发展和改革委员会", "bureau"),
    ("ecology", "市生态环境局", "bureau"),
    ("water", "市水务局", "bureau"),
    ("market", "市市场监督管理局", "bureau"),
    ("market.enforce", "市场监管综合执法支队", "market"),
]

# code, category, count, seats, energy
FLEET = [
    ("bureau.pool", VehicleCategory.general, 12, 5, EnergyType.electric),
    ("bureau.pool", VehicleCategory.general, 4, 7, EnergyType.plug_in_hybrid),
    ("bureau.pool", VehicleCategory.emergency, 3, 7, EnergyType.petrol),
    ("gov.office", VehicleCategory.confidential, 2, 5, EnergyType.petrol),
    ("ecology", VehicleCategory.special_technical, 2, 5, EnergyType.diesel),
    ("water", VehicleCategory.emergency, 2, 7, EnergyType.diesel),
    ("market.enforce", VehicleCategory.law_enforcement, 4, 5, EnergyType.hybrid),
    ("dev.reform", VehicleCategory.dedicated, 1, 5, EnergyType.electric),
]

DEMO_USERS = [
    # username, full name, role, department code
    ("admin", "系统管理员", Role.admin, "bureau"),
    ("dispatcher", "调度员 王芳", Role.dispatcher, "bureau.pool"),
    ("supervisor", "监管员 李强", Role.supervisor, "bureau"),
    ("approver1", "审批人 张伟", Role.approver, "ecology"),
    ("staff1", "申请人 刘洋", Role.staff, "ecology"),
    ("approver2", "审批人 陈静", Role.approver, "water"),
    ("staff2", "申请人 赵磊", Role.staff, "water"),
]

VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "军", "敏", "勇", "磊", "强", "洋", "杰", "涛", "明", "超", "平", "刚", "辉"]


@dataclass
class SeedResult:
    departments: int
    vehicles: int
    drivers: int
    terminals: int
    users: int


def _plate(rng: random.Random, n: int, energy: EnergyType) -> str:
    if energy in (EnergyType.electric, EnergyType.plug_in_hybrid):
        return f"川A{'D' if energy is EnergyType.electric else 'F'}{10000 + n * 37:05d}"
    return f"川A{rng.choice('BCGHJK')}{1000 + n * 13:04d}"


def _vin(rng: random.Random) -> str:
    return "".join(rng.choice(VIN_CHARS) for _ in range(17))


def seed(db: Session, *, demo_users: bool = True, seed_value: int = 808) -> SeedResult | None:
    """Create the demo bureau; returns None when it already exists (idempotent)."""
    if db.scalar(select(Department.id).where(Department.code == "bureau")):
        return None
    rng = random.Random(seed_value)
    deps: dict[str, Department] = {}
    for code, name, parent in DEPARTMENTS:
        dep = Department(code=code, name=name, parent_id=deps[parent].id if parent else None)
        db.add(dep)
        db.flush()
        deps[code] = dep

    users = _seed_users(db, deps) if demo_users else []
    vehicles = _seed_vehicles(db, rng, deps)
    drivers = _seed_drivers(db, rng, deps, len(vehicles) + 6)
    terminals = _seed_terminals(db, vehicles)
    audit.record(db, None, "seed", "bureau", deps["bureau"].id,
                 reason="initial data", vehicles=len(vehicles), drivers=len(drivers))
    db.flush()
    return SeedResult(len(deps), len(vehicles), len(drivers), len(terminals), len(users))


def _seed_users(db: Session, deps: dict[str, Department]) -> list[User]:
    hashed = hash_password(DEMO_PASSWORD)
    users = [User(username=u, full_name=n, role=r, department_id=deps[d].id,
                  password_hash=hashed) for u, n, r, d in DEMO_USERS]
    db.add_all(users)
    db.flush()
    return users


def _seed_vehicles(db: Session, rng: random.Random, deps: dict[str, Department]) -> list[Vehicle]:
    vehicles: list[Vehicle] = []
    models = {EnergyType.electric: ("比亚迪 汉EV", 0.0), EnergyType.plug_in_hybrid:
              ("比亚迪 宋PLUS DM-i", 1.5), EnergyType.petrol: ("大众 帕萨特", 1.4),
              EnergyType.diesel: ("江铃 全顺", 2.0), EnergyType.hybrid: ("丰田 凯美瑞双擎", 2.0)}
    for code, category, count, seats, energy in FLEET:
        for _ in range(count):
            n = len(vehicles)
            garage_lat = CITY_CENTRE[0] + rng.uniform(-0.02, 0.02)
            garage_lon = CITY_CENTRE[1] + rng.uniform(-0.02, 0.02)
            model, displacement = models[energy]
            v = Vehicle(
                plate=_plate(rng, n, energy), vin=_vin(rng), category=category,
                brand_model=model, seats=seats, energy_type=energy,
                displacement_l=displacement,
                purchase_price_fen=rng.randrange(150_000, 260_000) * 100,
                purchase_date=date(2018 + rng.randrange(7), rng.randrange(1, 13), 1),
                odometer_km=round(rng.uniform(5_000, 160_000), 1),
                home_garage=from_shape(Point(garage_lon, garage_lat), srid=4326),
                department_id=deps[code].id, marked=category != VehicleCategory.confidential,
            )
            vehicles.append(v)
    db.add_all(vehicles)
    db.flush()
    return vehicles


def _seed_drivers(db: Session, rng: random.Random, deps: dict[str, Department],
                  count: int) -> list[Driver]:
    drivers = []
    for i in range(count):
        dep = deps["bureau.pool"] if i < count - 6 else deps[rng.choice(
            ["water", "market.enforce", "ecology"])]
        drivers.append(Driver(
            name=rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
            employee_no=f"D{i + 1:04d}",
            licence_class=rng.choice([LicenceClass.A1, LicenceClass.B1, LicenceClass.C1,
                                      LicenceClass.C1, LicenceClass.C1]),
            phone=f"139{rng.randrange(10**8):08d}", department_id=dep.id))
    db.add_all(drivers)
    db.flush()
    return drivers


def _seed_terminals(db: Session, vehicles: list[Vehicle]) -> list[Terminal]:
    terminals = []
    for i, v in enumerate(vehicles):
        jt808 = i % 3 == 2
        tid = f"T{i + 1:04d}"
        t = Terminal(
            id=tid,
            protocol=TerminalProtocol.jt808 if jt808 else TerminalProtocol.nmea_mqtt,
            phone=f"{13900000000 + i + 1:012d}" if jt808 else None,
            secret_hash=None if jt808 else hash_mqtt_secret(f"secret-{tid}"),
            auth_code=None, vehicle_id=v.id,
        )
        terminals.append(t)
        db.add(t)
        db.flush()
        db.add(TerminalBinding(terminal_id=t.id, vehicle_id=v.id))
    db.flush()
    return terminals
