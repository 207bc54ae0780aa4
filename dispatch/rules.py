"""Service-scope review (保障范围审核): rules are data (table ``scope_rules``), this module
interprets them.

Each active rule looks at a booking (or a draft) and, when it applies, says ``needs_approval``
(extra approval by a higher level, 上级审批) or ``refused`` (不予保障) with a message shown to
the requester.  The booking's outcome is the worst hit; no hit means ``in_scope``.

Rule kinds and their ``params``:

* ``max_distance`` — ``{km, centre_lat, centre_lon}``: a pickup or destination farther than
  ``km`` from the city centre (出市用车).
* ``night_hours`` — ``{start_hour, end_hour, tz}``: the window touches the night (夜间用车).
* ``weekend`` — ``{weekdays: [5, 6], tz}``: the window touches those weekdays (Mon = 0).
* ``reserved_category`` — ``{vehicle_categories, department_codes}``: these vehicle
  categories serve only these departments (and their sub-units).
* ``reserved_purpose`` — ``{purposes, department_codes}``: likewise for purposes.
* ``purpose`` — ``{purposes}``: the purpose itself needs approval or is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import RuleKind, ScopeOutcome, ScopeRule
from dispatch.schemas import Evaluation, RuleCreate, RuleHit, RuleUpdate
from fleet import audit
from fleet.errors import Invalid, NotFound
from fleet.models import Department, Role, User
from fleet.scope import require_role
from geo.geodesy import distance_m

SEVERITY = {ScopeOutcome.in_scope: 0, ScopeOutcome.needs_approval: 1, ScopeOutcome.refused: 2}

REQUIRED: dict[RuleKind, dict[str, type | tuple[type, ...]]] = {
    RuleKind.max_distance: {"km": (int, float), "centre_lat": (int, float),
                            "centre_lon": (int, float)},
    RuleKind.night_hours: {"start_hour": int, "end_hour": int},
    RuleKind.weekend: {"weekdays": list},
    RuleKind.reserved_category: {"vehicle_categories": list, "department_codes": list},
    RuleKind.reserved_purpose: {"purposes": list, "department_codes": list},
    RuleKind.purpose: {"purposes": list},
}


@dataclass(slots=True)
class Draft:
    """What the rules look at: a booking or a draft not yet saved."""

    department_id: int
    purpose: str
    vehicle_category: str | None
    points: Sequence[tuple[float, float]]  # pickup and destinations (lat, lon)
    start_at: datetime
    end_at: datetime


def validate_params(kind: RuleKind, params: dict[str, Any]) -> None:
    """Refuse (422, field ``params``) rule parameters the evaluator cannot use."""
    for key, typ in REQUIRED[kind].items():
        if key not in params:
            raise Invalid(f"rule of kind '{kind}' needs params.{key}", field="params")
        if not isinstance(params[key], typ) or isinstance(params[key], bool):
            raise Invalid(f"params.{key} has the wrong type", field="params")
    if kind == RuleKind.night_hours:
        for key in ("start_hour", "end_hour"):
            if not 0 <= params[key] <= 23:
                raise Invalid(f"params.{key} must be an hour 0-23", field="params")
    if "tz" in params:
        try:
            ZoneInfo(str(params["tz"]))
        except Exception as exc:
            raise Invalid(f"unknown time zone {params['tz']!r}", field="params") from exc


def _codes_up(db: Session, department_id: int) -> set[str]:
    """Codes of the department and of every unit above it."""
    rows = {d: (p, c) for d, p, c in db.execute(
        select(Department.id, Department.parent_id, Department.code))}
    codes: set[str] = set()
    current: int | None = department_id
    while current is not None and current in rows and rows[current][1] not in codes:
        parent, code = rows[current]
        codes.add(code)
        current = parent
    return codes


def _overlaps_night(start: datetime, end: datetime, h0: int, h1: int, tz: ZoneInfo) -> bool:
    ls, le = start.astimezone(tz), end.astimezone(tz)
    day = ls.date() - timedelta(days=1)
    while day <= le.date():
        base = datetime(day.year, day.month, day.day, tzinfo=tz)
        if h0 > h1:  # crosses midnight: [h0, 24) ∪ [0, h1) of the next day
            n0, n1 = base + timedelta(hours=h0), base + timedelta(days=1, hours=h1)
        else:
            n0, n1 = base + timedelta(hours=h0), base + timedelta(hours=h1)
        if ls < n1 and n0 < le:
            return True
        day += timedelta(days=1)
    return False


def _touches_weekdays(start: datetime, end: datetime, weekdays: set[int], tz: ZoneInfo) -> bool:
    day, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    while day <= last:
        if day.weekday() in weekdays:
            return True
        day += timedelta(days=1)
    return False


def rule_applies(db: Session, rule: ScopeRule, d: Draft) -> bool:
    p = rule.params
    tz = ZoneInfo(str(p.get("tz", "Asia/Shanghai")))
    if rule.kind == RuleKind.max_distance:
        limit = float(p["km"]) * 1000.0
        return any(distance_m(p["centre_lat"], p["centre_lon"], lat, lon) > limit
                   for lat, lon in d.points)
    if rule.kind == RuleKind.night_hours:
        return _overlaps_night(d.start_at, d.end_at, int(p["start_hour"]), int(p["end_hour"]), tz)
    if rule.kind == RuleKind.weekend:
        return _touches_weekdays(d.start_at, d.end_at, {int(x) for x in p["weekdays"]}, tz)
    if rule.kind == RuleKind.reserved_category:
        if d.vehicle_category is None or d.vehicle_category not in p["vehicle_categories"]:
            return False
        return not (_codes_up(db, d.department_id) & set(p["department_codes"]))
    if rule.kind == RuleKind.reserved_purpose:
        if d.purpose not in p["purposes"]:
            return False
        return not (_codes_up(db, d.department_id) & set(p["department_codes"]))
    if rule.kind == RuleKind.purpose:
        return d.purpose in p["purposes"]
    return False  # pragma: no cover - enum is closed


def evaluate(db: Session, d: Draft) -> Evaluation:
    """Run every active rule (in id order) and combine: the worst outcome wins."""
    hits: list[RuleHit] = []
    outcome = ScopeOutcome.in_scope
    rules = db.scalars(select(ScopeRule).where(ScopeRule.active.is_(True)).order_by(ScopeRule.id))
    for rule in rules:
        if rule_applies(db, rule, d):
            hits.append(RuleHit(rule_id=rule.id, name=rule.name, outcome=rule.outcome,
                                message=rule.message))
            if SEVERITY[rule.outcome] > SEVERITY[outcome]:
                outcome = rule.outcome
    return Evaluation(outcome=outcome, reasons=hits)


# --- rule administration (admins) --------------------------------------------------------
def list_rules(db: Session, actor: User) -> list[ScopeRule]:
    """Everyone may read the rules: requesters see why a booking is out of scope."""
    return list(db.scalars(select(ScopeRule).order_by(ScopeRule.id)))


def get_rule(db: Session, actor: User, rule_id: int) -> ScopeRule:
    rule = db.get(ScopeRule, rule_id)
    if rule is None:
        raise NotFound(f"scope rule {rule_id} not found")
    return rule


def create_rule(db: Session, actor: User, data: RuleCreate) -> ScopeRule:
    require_role(actor, [Role.admin], "create scope rules")
    validate_params(data.kind, data.params)
    rule = ScopeRule(**data.model_dump())
    db.add(rule)
    db.flush()
    audit.record(db, actor, "create", "scope_rule", rule.id, **data.model_dump(mode="json"))
    return rule


def update_rule(db: Session, actor: User, rule_id: int, data: RuleUpdate) -> ScopeRule:
    require_role(actor, [Role.admin], "change scope rules")
    rule = get_rule(db, actor, rule_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("params") is not None:
        validate_params(rule.kind, changes["params"])
    for key, value in changes.items():
        if value is not None:
            setattr(rule, key, value)
    audit.record(db, actor, "update", "scope_rule", rule.id, **data.model_dump(
        exclude_unset=True, mode="json"))
    db.flush()
    return rule


def delete_rule(db: Session, actor: User, rule_id: int) -> None:
    require_role(actor, [Role.admin], "delete scope rules")
    rule = get_rule(db, actor, rule_id)
    audit.record(db, actor, "delete", "scope_rule", rule.id, name=rule.name, kind=rule.kind,
                 params=rule.params, outcome=rule.outcome)
    db.delete(rule)
    db.flush()
