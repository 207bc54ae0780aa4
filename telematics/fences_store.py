"""Geofences in the database (PostGIS / SpatiaLite geometry), GeoJSON in and out.

Validation is :mod:`geo.fences`' (a :class:`~geo.fences.FenceError` becomes ``Invalid``).
Admins and dispatchers write; every logged-in user reads.  :func:`load_index` builds the
:class:`~geo.fences.FenceIndex` the processor uses; :func:`fences_version` is a cheap
fingerprint the processor polls to know when to rebuild it.
"""

from __future__ import annotations

from typing import Any

from geoalchemy2.shape import from_shape, to_shape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet import audit
from fleet.db import utcnow
from fleet.errors import Invalid, NotFound
from fleet.models import Role, User
from fleet.scope import require_role
from geo.fences import Fence, FenceError, FenceIndex, fence_from_geojson, fence_to_geojson
from telematics.models import Geofence

FENCE_WRITERS = (Role.admin, Role.dispatcher)


def to_fence(row: Geofence) -> Fence:
    """The :class:`geo.fences.Fence` of a stored row (id = database id)."""
    geom = to_shape(row.geom)
    return Fence(row.id, row.name, "circle" if row.kind == "circle" else "polygon", geom,
                 row.radius_m, row.speed_limit_kmh, frozenset(row.tags or ()))


def to_feature(row: Geofence, circle_as_polygon: bool = False) -> dict[str, Any]:
    """GeoJSON Feature of a stored fence (circles as Point + ``radius_m``)."""
    feat = fence_to_geojson(to_fence(row), circle_as_polygon=circle_as_polygon)
    feat["properties"]["active"] = row.active
    return feat


def _parse(feature: dict[str, Any], fence_id: int | str = "new") -> Fence:
    if not isinstance(feature, dict):
        raise Invalid("expected a GeoJSON Feature", field="body")
    feat = dict(feature)
    feat["id"] = fence_id  # the database assigns ids; a client's id is ignored
    props = dict(feat.get("properties") or {})
    props.pop("id", None)
    feat["properties"] = props
    try:
        fence = fence_from_geojson(feat)
    except FenceError as exc:
        raise Invalid(str(exc), field="geometry") from exc
    if not fence.name.strip():
        raise Invalid("a geofence needs properties.name", field="properties.name")
    return fence


def _apply(row: Geofence, fence: Fence, active: bool) -> None:
    row.name = fence.name
    row.kind = fence.kind
    row.geom = from_shape(fence.geometry, srid=4326)
    row.radius_m = fence.radius_m
    row.speed_limit_kmh = fence.speed_limit_kmh
    row.tags = sorted(fence.tags)
    row.active = active
    row.updated_at = utcnow()


def list_fences(db: Session, actor: User, include_inactive: bool = False) -> list[Geofence]:
    stmt = select(Geofence).order_by(Geofence.id)
    if not include_inactive:
        stmt = stmt.where(Geofence.active.is_(True))
    return list(db.scalars(stmt))


def get_fence(db: Session, actor: User, fence_id: int) -> Geofence:
    row = db.get(Geofence, fence_id)
    if row is None:
        raise NotFound(f"geofence {fence_id} not found")
    return row


def create_fence(db: Session, actor: User, feature: dict[str, Any]) -> Geofence:
    require_role(actor, FENCE_WRITERS, "create geofences")
    fence = _parse(feature)
    row = Geofence()
    _apply(row, fence, bool((feature.get("properties") or {}).get("active", True)))
    db.add(row)
    db.flush()
    audit.record(db, actor, "create", "geofence", row.id, name=row.name, kind=row.kind)
    return row


def update_fence(db: Session, actor: User, fence_id: int, feature: dict[str, Any]) -> Geofence:
    require_role(actor, FENCE_WRITERS, "change geofences")
    row = get_fence(db, actor, fence_id)
    fence = _parse(feature, fence_id)
    _apply(row, fence, bool((feature.get("properties") or {}).get("active", row.active)))
    db.flush()
    audit.record(db, actor, "update", "geofence", row.id, name=row.name, kind=row.kind)
    return row


def delete_fence(db: Session, actor: User, fence_id: int) -> None:
    require_role(actor, FENCE_WRITERS, "delete geofences")
    row = get_fence(db, actor, fence_id)
    audit.record(db, actor, "delete", "geofence", row.id, name=row.name)
    db.delete(row)
    db.flush()


def load_index(db: Session) -> FenceIndex:
    """A fresh :class:`FenceIndex` over the active fences."""
    rows = db.scalars(select(Geofence).where(Geofence.active.is_(True)).order_by(Geofence.id))
    return FenceIndex(to_fence(r) for r in rows)


def fences_version(db: Session) -> tuple[int, int, str]:
    """(count, id sum, newest update): changes whenever a fence is added, changed or removed."""
    n, ids, newest = db.execute(select(func.count(Geofence.id), func.sum(Geofence.id),
                                       func.max(Geofence.updated_at))).one()
    return int(n or 0), int(ids or 0), str(newest)
