"""Organisation and assets: plain service functions taking a session and the acting user.

The caller owns the unit of work: nothing here commits. Scope and role checks happen here,
so every caller (API, CLI, other domains) gets the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import Point as ShapelyPoint
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from fleet import audit, schemas
from fleet.db import utcnow
from fleet.errors import Conflict, Invalid, NotFound
from fleet.models import (
    Department,
    Driver,
    DriverStatus,
    Role,
    Terminal,
    TerminalBinding,
    User,
    Vehicle,
    VehicleCategory,
    VehicleStatus,
)
from fleet.scope import check_visible, department_subtree, require_role, visible_departments
from fleet.security import hash_mqtt_secret, hash_password

ASSET_WRITERS = (Role.admin, Role.dispatcher)


@dataclass
class Paged:
    items: Sequence[Any]
    total: int
    offset: int
    limit: int


def paginate(db: Session, stmt: Select[Any], offset: int, limit: int) -> Paged:
    total = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(db.scalars(stmt.offset(offset).limit(limit)))
    return Paged(items, int(total), offset, limit)


def _scoped(db: Session, actor: User, stmt: Select[Any], column: Any) -> Select[Any]:
    scope = visible_departments(db, actor)
    return stmt if scope is None else stmt.where(column.in_(scope))


def _department(db: Session, department_id: int, field: str = "department_id") -> Department:
    dep = db.get(Department, department_id)
    if dep is None or not dep.active:
        raise Invalid(f"unknown department {department_id}", field=field)
    return dep


# --- departments -------------------------------------------------------------------------
def list_departments(db: Session, actor: User, offset: int = 0, limit: int = 50) -> Paged:
    stmt = _scoped(db, actor, select(Department).order_by(Department.id), Department.id)
    return paginate(db, stmt, offset, limit)


def get_department(db: Session, actor: User, department_id: int) -> Department:
    dep = db.get(Department, department_id)
    if dep is None:
        raise NotFound(f"department {department_id} not found")
    check_visible(db, actor, dep.id, "department", department_id)
    return dep


def create_department(db: Session, actor: User, data: schemas.DepartmentCreate) -> Department:
    require_role(actor, [Role.admin], "create departments")
    if db.scalar(select(Department.id).where(Department.code == data.code)):
        raise Conflict(f"department code '{data.code}' already exists", field="code")
    if data.parent_id is not None:
        _department(db, data.parent_id, "parent_id")
    dep = Department(code=data.code, name=data.name, parent_id=data.parent_id)
    db.add(dep)
    db.flush()
    audit.record(db, actor, "create", "department", dep.id, code=dep.code, name=dep.name)
    return dep


def update_department(
    db: Session, actor: User, department_id: int, data: schemas.DepartmentUpdate
) -> Department:
    require_role(actor, [Role.admin], "change departments")
    dep = get_department(db, actor, department_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("parent_id") is not None:
        if changes["parent_id"] in department_subtree(db, dep.id):
            raise Invalid("a department cannot be moved under itself", field="parent_id")
        _department(db, changes["parent_id"], "parent_id")
    for key, value in changes.items():
        setattr(dep, key, value)
    audit.record(db, actor, "update", "department", dep.id, **changes)
    return dep


def retire_department(db: Session, actor: User, department_id: int, reason: str) -> Department:
    require_role(actor, [Role.admin], "retire departments")
    dep = get_department(db, actor, department_id)
    in_use = db.scalar(select(func.count()).select_from(Vehicle).where(
        Vehicle.department_id == dep.id, Vehicle.status != VehicleStatus.disposed))
    if in_use:
        raise Conflict(f"department {dep.id} still holds {in_use} vehicles: transfer them first")
    dep.active = False
    audit.record(db, actor, "retire", "department", dep.id, reason=reason)
    return dep


# --- users -------------------------------------------------------------------------------
def list_users(db: Session, actor: User, offset: int = 0, limit: int = 50,
               role: Role | None = None, department_id: int | None = None) -> Paged:
    require_role(actor, [Role.admin, Role.supervisor], "list users")
    stmt = select(User).order_by(User.id)
    if role:
        stmt = stmt.where(User.role == role)
    if department_id:
        stmt = stmt.where(User.department_id == department_id)
    return paginate(db, stmt, offset, limit)


def get_user(db: Session, actor: User, user_id: int) -> User:
    if actor.id != user_id:
        require_role(actor, [Role.admin, Role.supervisor], "read other users")
    user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def user_by_name(db: Session, username: str) -> User | None:
    return db.scalar(select(User).where(User.username == username))


def create_user(db: Session, actor: User | None, data: schemas.UserCreate) -> User:
    """Create a user (``actor`` None only for the bootstrap admin from the CLI)."""
    if actor is not None:
        require_role(actor, [Role.admin], "create users")
    if user_by_name(db, data.username):
        raise Conflict(f"username '{data.username}' already exists", field="username")
    _department(db, data.department_id)
    user = User(username=data.username, full_name=data.full_name, role=data.role,
                department_id=data.department_id, locale=data.locale,
                password_hash=hash_password(data.password))
    db.add(user)
    db.flush()
    audit.record(db, actor, "create", "user", user.id, username=user.username, role=user.role)
    return user


def update_user(db: Session, actor: User, user_id: int, data: schemas.UserUpdate) -> User:
    require_role(actor, [Role.admin], "change users")
    user = get_user(db, actor, user_id)
    changes = data.model_dump(exclude_unset=True)
    if "department_id" in changes and changes["department_id"] is not None:
        _department(db, changes["department_id"])
    password = changes.pop("password", None)
    if password:
        user.password_hash = hash_password(password)
    for key, value in changes.items():
        if value is not None:
            setattr(user, key, value)
    audit.record(db, actor, "update", "user", user.id, password_changed=bool(password), **changes)
    return user


def retire_user(db: Session, actor: User, user_id: int, reason: str) -> User:
    require_role(actor, [Role.admin], "retire users")
    user = get_user(db, actor, user_id)
    if user.id == actor.id:
        raise Conflict("you cannot retire your own account")
    user.active = False
    audit.record(db, actor, "retire", "user", user.id, reason=reason)
    return user


# --- vehicles ----------------------------------------------------------------------------
def vehicle_read(db: Session, v: Vehicle) -> schemas.VehicleRead:
    garage = None
    if v.home_garage is not None:
        pt = to_shape(v.home_garage)
        garage = schemas.Point(lat=pt.y, lon=pt.x)
    terminal_id = db.scalar(select(Terminal.id).where(Terminal.vehicle_id == v.id))
    return schemas.VehicleRead(
        id=v.id, plate=v.plate, vin=v.vin, category=v.category, brand_model=v.brand_model,
        seats=v.seats, energy_type=v.energy_type, displacement_l=v.displacement_l,
        purchase_price_fen=v.purchase_price_fen, purchase_date=v.purchase_date,
        odometer_km=v.odometer_km, home_garage=garage, department_id=v.department_id,
        status=v.status, marked=v.marked, version=v.version, terminal_id=terminal_id,
    )


def _point(p: schemas.Point | None) -> Any:
    return None if p is None else from_shape(ShapelyPoint(p.lon, p.lat), srid=4326)


def list_vehicles(
    db: Session, actor: User, offset: int = 0, limit: int = 50, *,
    department_id: int | None = None, category: VehicleCategory | None = None,
    status: VehicleStatus | None = None, q: str | None = None,
) -> Paged:
    stmt = _scoped(db, actor, select(Vehicle).order_by(Vehicle.id), Vehicle.department_id)
    if department_id:
        stmt = stmt.where(Vehicle.department_id == department_id)
    if category:
        stmt = stmt.where(Vehicle.category == category)
    if status:
        stmt = stmt.where(Vehicle.status == status)
    if q:
        like = f"%{q.strip().upper()}%"
        stmt = stmt.where(or_(Vehicle.plate.like(like), Vehicle.vin.like(like)))
    return paginate(db, stmt, offset, limit)


def get_vehicle(db: Session, actor: User, vehicle_id: int) -> Vehicle:
    v = db.get(Vehicle, vehicle_id)
    if v is None:
        raise NotFound(f"vehicle {vehicle_id} not found")
    check_visible(db, actor, v.department_id, "vehicle", vehicle_id)
    return v


def create_vehicle(db: Session, actor: User, data: schemas.VehicleCreate) -> Vehicle:
    require_role(actor, ASSET_WRITERS, "register vehicles")
    _department(db, data.department_id)
    if db.scalar(select(Vehicle.id).where(Vehicle.plate == data.plate)):
        raise Conflict(f"plate {data.plate} is already registered", field="plate")
    if db.scalar(select(Vehicle.id).where(Vehicle.vin == data.vin)):
        raise Conflict(f"VIN {data.vin} is already registered", field="vin")
    fields = data.model_dump(exclude={"home_garage"})
    v = Vehicle(**fields, home_garage=_point(data.home_garage))
    db.add(v)
    db.flush()
    audit.record(db, actor, "create", "vehicle", v.id, plate=v.plate, category=v.category)
    return v


def update_vehicle(
    db: Session, actor: User, vehicle_id: int, data: schemas.VehicleUpdate
) -> Vehicle:
    require_role(actor, ASSET_WRITERS, "change vehicles")
    v = get_vehicle(db, actor, vehicle_id)
    changes = data.model_dump(exclude_unset=True)
    expected = changes.pop("version", None)
    if expected is not None and expected != v.version:
        raise Conflict(f"vehicle {v.id} was changed by someone else (version {v.version}, "
                       f"you read {expected}): reload and retry")
    if v.status == VehicleStatus.disposed:
        raise Conflict(f"vehicle {v.id} is disposed and can no longer change")
    if changes.get("department_id") is not None:
        _department(db, changes["department_id"])
    if "home_garage" in changes:
        v.home_garage = _point(data.home_garage)
        changes["home_garage"] = data.home_garage.model_dump() if data.home_garage else None
    for key, value in changes.items():
        if key != "home_garage" and value is not None:
            setattr(v, key, value)
    audit.record(db, actor, "update", "vehicle", v.id, **changes)
    try:
        db.flush()
    except StaleDataError as exc:
        raise Conflict(f"vehicle {v.id} was changed concurrently: reload and retry") from exc
    return v


def retire_vehicle(db: Session, actor: User, vehicle_id: int, reason: str) -> Vehicle:
    """Take a vehicle out of service for good (报废/处置); its terminal is unbound."""
    require_role(actor, [Role.admin], "retire vehicles")
    v = get_vehicle(db, actor, vehicle_id)
    if v.status == VehicleStatus.disposed:
        raise Conflict(f"vehicle {v.id} is already disposed")
    v.status = VehicleStatus.disposed
    terminal = db.scalar(select(Terminal).where(Terminal.vehicle_id == v.id))
    if terminal is not None:
        _unbind(db, actor, terminal)
    audit.record(db, actor, "retire", "vehicle", v.id, reason=reason)
    return v


# --- drivers -----------------------------------------------------------------------------
def list_drivers(db: Session, actor: User, offset: int = 0, limit: int = 50,
                 department_id: int | None = None, status: DriverStatus | None = None) -> Paged:
    stmt = _scoped(db, actor, select(Driver).order_by(Driver.id), Driver.department_id)
    if department_id:
        stmt = stmt.where(Driver.department_id == department_id)
    if status:
        stmt = stmt.where(Driver.status == status)
    return paginate(db, stmt, offset, limit)


def get_driver(db: Session, actor: User, driver_id: int) -> Driver:
    d = db.get(Driver, driver_id)
    if d is None:
        raise NotFound(f"driver {driver_id} not found")
    check_visible(db, actor, d.department_id, "driver", driver_id)
    return d


def create_driver(db: Session, actor: User, data: schemas.DriverCreate) -> Driver:
    require_role(actor, ASSET_WRITERS, "register drivers")
    _department(db, data.department_id)
    if db.scalar(select(Driver.id).where(Driver.employee_no == data.employee_no)):
        raise Conflict(f"employee number {data.employee_no} already exists", field="employee_no")
    d = Driver(**data.model_dump())
    db.add(d)
    db.flush()
    audit.record(db, actor, "create", "driver", d.id, name=d.name)
    return d


def update_driver(db: Session, actor: User, driver_id: int, data: schemas.DriverUpdate) -> Driver:
    require_role(actor, ASSET_WRITERS, "change drivers")
    d = get_driver(db, actor, driver_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("department_id") is not None:
        _department(db, changes["department_id"])
    for key, value in changes.items():
        if value is not None:
            setattr(d, key, value)
    audit.record(db, actor, "update", "driver", d.id, **changes)
    return d


def retire_driver(db: Session, actor: User, driver_id: int, reason: str) -> Driver:
    require_role(actor, ASSET_WRITERS, "retire drivers")
    d = get_driver(db, actor, driver_id)
    d.status = DriverStatus.retired
    audit.record(db, actor, "retire", "driver", d.id, reason=reason)
    return d


# --- terminals ---------------------------------------------------------------------------
def list_terminals(db: Session, actor: User, offset: int = 0, limit: int = 50,
                   bound: bool | None = None) -> Paged:
    stmt = select(Terminal).order_by(Terminal.id)
    scope = visible_departments(db, actor)
    if scope is not None:
        stmt = stmt.join(Vehicle, Terminal.vehicle_id == Vehicle.id).where(
            Vehicle.department_id.in_(scope))
    if bound is True:
        stmt = stmt.where(Terminal.vehicle_id.is_not(None))
    elif bound is False:
        stmt = stmt.where(Terminal.vehicle_id.is_(None))
    return paginate(db, stmt, offset, limit)


def get_terminal(db: Session, actor: User, terminal_id: str) -> Terminal:
    t = db.get(Terminal, terminal_id)
    if t is None:
        raise NotFound(f"terminal {terminal_id} not found")
    if visible_departments(db, actor) is not None:
        if t.vehicle is None:
            raise NotFound(f"terminal {terminal_id} not found")
        check_visible(db, actor, t.vehicle.department_id, "terminal", terminal_id)
    return t


def create_terminal(db: Session, actor: User, data: schemas.TerminalCreate) -> Terminal:
    require_role(actor, [Role.admin], "register terminals")
    if db.get(Terminal, data.id) is not None:
        raise Conflict(f"terminal {data.id} is already registered", field="id")
    if data.phone and db.scalar(select(Terminal.id).where(Terminal.phone == data.phone)):
        raise Conflict(f"terminal phone {data.phone} is already registered", field="phone")
    t = Terminal(id=data.id, protocol=data.protocol, phone=data.phone, imei=data.imei,
                 secret_hash=hash_mqtt_secret(data.secret) if data.secret else None)
    db.add(t)
    db.flush()
    audit.record(db, actor, "create", "terminal", t.id, protocol=t.protocol)
    if data.vehicle_id is not None:
        bind_terminal(db, actor, t.id, data.vehicle_id)
    return t


def update_terminal(
    db: Session, actor: User, terminal_id: str, data: schemas.TerminalUpdate
) -> Terminal:
    require_role(actor, [Role.admin], "change terminals")
    t = get_terminal(db, actor, terminal_id)
    changes = data.model_dump(exclude_unset=True)
    secret = changes.pop("secret", None)
    if secret:
        t.secret_hash = hash_mqtt_secret(secret)
    if changes.get("phone") and changes["phone"] != t.phone and db.scalar(
            select(Terminal.id).where(Terminal.phone == changes["phone"])):
        raise Conflict(f"terminal phone {changes['phone']} is already registered", field="phone")
    for key, value in changes.items():
        setattr(t, key, value)
    audit.record(db, actor, "update", "terminal", t.id, secret_changed=bool(secret), **changes)
    return t


def _unbind(db: Session, actor: User | None, terminal: Terminal) -> None:
    if terminal.vehicle_id is None:
        return
    open_binding = db.scalar(select(TerminalBinding).where(
        TerminalBinding.terminal_id == terminal.id, TerminalBinding.unbound_at.is_(None)))
    if open_binding is not None:
        open_binding.unbound_at = utcnow()
    audit.record(db, actor, "unbind", "terminal", terminal.id, vehicle_id=terminal.vehicle_id)
    terminal.vehicle_id = None
    db.flush()


def bind_terminal(db: Session, actor: User, terminal_id: str, vehicle_id: int | None) -> Terminal:
    """Bind a terminal to a vehicle (or unbind with ``None``), keeping the binding history."""
    require_role(actor, [Role.admin], "bind terminals")
    t = get_terminal(db, actor, terminal_id)
    if vehicle_id is None:
        _unbind(db, actor, t)
        return t
    v = get_vehicle(db, actor, vehicle_id)
    if v.status == VehicleStatus.disposed:
        raise Conflict(f"vehicle {v.id} is disposed: cannot bind a terminal")
    other = db.scalar(select(Terminal).where(Terminal.vehicle_id == v.id))
    if other is not None and other.id != t.id:
        raise Conflict(f"vehicle {v.id} already carries terminal {other.id}: unbind it first")
    if t.vehicle_id == v.id:
        return t
    _unbind(db, actor, t)
    t.vehicle_id = v.id
    db.add(TerminalBinding(terminal_id=t.id, vehicle_id=v.id, bound_by=actor.id))
    audit.record(db, actor, "bind", "terminal", t.id, vehicle_id=v.id)
    db.flush()
    return t


def terminal_bindings(db: Session, actor: User, terminal_id: str) -> list[TerminalBinding]:
    get_terminal(db, actor, terminal_id)
    stmt = (select(TerminalBinding).where(TerminalBinding.terminal_id == terminal_id)
            .order_by(TerminalBinding.id))
    return list(db.scalars(stmt))


def retire_terminal(db: Session, actor: User, terminal_id: str, reason: str) -> Terminal:
    require_role(actor, [Role.admin], "retire terminals")
    t = get_terminal(db, actor, terminal_id)
    _unbind(db, actor, t)
    t.active = False
    audit.record(db, actor, "retire", "terminal", t.id, reason=reason)
    return t


def mosquitto_password_lines(db: Session, gateway_user: str | None = None,
                             gateway_hash: str | None = None) -> list[str]:
    """Lines of a Mosquitto password file: every active NMEA terminal with a secret, and the
    gateway's own account (the ACL in deploy/mosquitto/ limits each terminal to its topic)."""
    rows = db.execute(select(Terminal.id, Terminal.secret_hash).where(
        Terminal.active.is_(True), Terminal.secret_hash.is_not(None)).order_by(Terminal.id))
    lines = [f"{tid}:{h}" for tid, h in rows if str(h).startswith("$7$")]
    if gateway_user and gateway_hash:
        lines.append(f"{gateway_user}:{gateway_hash}")
    return lines
