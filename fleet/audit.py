"""The append-only audit trail (操作日志): every state change says who, when and why."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.models import AuditEntry, User


def record(
    db: Session, actor: User | None, action: str, entity: str, entity_id: object,
    reason: str = "", **detail: Any,
) -> AuditEntry:
    """Append one audit entry in the caller's transaction (it commits with the change)."""
    entry = AuditEntry(
        actor_id=actor.id if actor else None, action=action, entity=entity,
        entity_id=str(entity_id), reason=reason, detail=_jsonable(detail),
    )
    db.add(entry)
    return entry


def history(db: Session, entity: str, entity_id: object) -> list[AuditEntry]:
    stmt = (select(AuditEntry)
            .where(AuditEntry.entity == entity, AuditEntry.entity_id == str(entity_id))
            .order_by(AuditEntry.id))
    return list(db.scalars(stmt))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
