"""Telematics routes: the live map (snapshot and WebSocket push), stored positions, geofences,
trips, stops, mileage, events, track replay and reports.  Thin: the services decide."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Query, Response, WebSocket, WebSocketDisconnect

from fleet.deps import AppSettings, CurrentUser, DbSession, RedisClient
from fleet.errors import DomainError
from fleet.models import User
from fleet.routing import ApiRouter
from fleet.security import decode_token
from fleet.store import async_redis_client
from gateway.sink import LIVE_CHANNEL
from telematics import fences_store, replay, reports, service
from telematics.processing import EVENTS_CHANNEL, processor_config
from telematics.schemas import (
    EventPage,
    EventRead,
    HolidayIn,
    HolidayRead,
    LiveVehicle,
    MileageRead,
    PositionRead,
    RecomputeRead,
    ReportRow,
    StopRead,
    TripRead,
)

router = ApiRouter(tags=["telematics"])


@router.get("/api/live", response_model=list[LiveVehicle])
def live(db: DbSession, user: CurrentUser, client: RedisClient) -> object:
    """Newest position and status of every car you may see."""
    return service.live_vehicles(db, user, client)


@router.get("/api/vehicles/{vehicle_id}/positions", response_model=list[PositionRead])
def positions(vehicle_id: int, db: DbSession, user: CurrentUser,
              start: Annotated[datetime, Query(alias="from")],
              end: Annotated[datetime, Query(alias="to")]) -> object:
    return service.vehicle_positions(db, user, vehicle_id, _utc(start), _utc(end))


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


From = Annotated[datetime, Query(alias="from")]
To = Annotated[datetime, Query(alias="to")]


# --- geofences (电子围栏) ------------------------------------------------------------------
@router.get("/api/geofences")
def list_geofences(db: DbSession, user: CurrentUser, circle_as_polygon: bool = False,
                   include_inactive: bool = False) -> dict[str, Any]:
    """All geofences as a GeoJSON FeatureCollection (circles: Point + ``radius_m``)."""
    rows = fences_store.list_fences(db, user, include_inactive)
    return {"type": "FeatureCollection",
            "features": [fences_store.to_feature(r, circle_as_polygon) for r in rows]}


@router.post("/api/geofences", status_code=201)
def create_geofence(db: DbSession, user: CurrentUser,
                    feature: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Create a geofence from a GeoJSON Feature (Polygon/MultiPolygon, or Point with
    ``properties.radius_m``); ``properties``: name, speed_limit_kmh, tags."""
    return fences_store.to_feature(fences_store.create_fence(db, user, feature))


@router.get("/api/geofences/{fence_id}")
def get_geofence(fence_id: int, db: DbSession, user: CurrentUser) -> dict[str, Any]:
    return fences_store.to_feature(fences_store.get_fence(db, user, fence_id))


@router.put("/api/geofences/{fence_id}")
def update_geofence(fence_id: int, db: DbSession, user: CurrentUser,
                    feature: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    return fences_store.to_feature(fences_store.update_fence(db, user, fence_id, feature))


@router.delete("/api/geofences/{fence_id}", status_code=204)
def delete_geofence(fence_id: int, db: DbSession, user: CurrentUser) -> Response:
    fences_store.delete_fence(db, user, fence_id)
    return Response(status_code=204)


# --- trips, stops, mileage --------------------------------------------------------------
@router.get("/api/vehicles/{vehicle_id}/trips", response_model=list[TripRead])
def trips(vehicle_id: int, db: DbSession, user: CurrentUser, start: From, end: To) -> object:
    """Trips (行程) overlapping the period, oldest first (``provisional``: still open)."""
    return service.list_trips(db, user, vehicle_id, _utc(start), _utc(end))


@router.get("/api/vehicles/{vehicle_id}/stops", response_model=list[StopRead])
def stops(vehicle_id: int, db: DbSession, user: CurrentUser, start: From, end: To) -> object:
    return service.list_stops(db, user, vehicle_id, _utc(start), _utc(end))


@router.get("/api/vehicles/{vehicle_id}/mileage", response_model=MileageRead)
def mileage(vehicle_id: int, db: DbSession, user: CurrentUser, start: From, end: To) -> object:
    """Mileage (里程) per day and in total, compared with the terminal odometer."""
    return service.vehicle_mileage(db, user, vehicle_id, _utc(start), _utc(end))


@router.post("/api/vehicles/{vehicle_id}/recompute", response_model=RecomputeRead)
def recompute(vehicle_id: int, db: DbSession, user: CurrentUser, settings: AppSettings,
              start: From, end: To) -> object:
    """Recompute stored trips and stops for a period from the positions (with the worker's
    ``GONGCHE_TRIP_*`` parameters)."""
    return service.recompute_vehicle(db, user, vehicle_id, _utc(start), _utc(end),
                                     processor_config(settings).segment)


@router.get("/api/vehicles/{vehicle_id}/track")
def track(vehicle_id: int, db: DbSession, user: CurrentUser, start: From, end: To,
          simplify: Annotated[float | None, Query(ge=0, le=10_000)] = None,
          format: Literal["geojson", "gpx", "csv"] = "geojson") -> Response:  # noqa: A002
    """Track replay (轨迹回放): GeoJSON Feature with times, GPX or CSV; ``simplify`` is the
    Douglas–Peucker tolerance in metres."""
    data = replay.load_track(db, user, vehicle_id, _utc(start), _utc(end), simplify)
    body, media = replay.render(data, format)
    headers = {}
    if format != "geojson":
        headers["Content-Disposition"] = (
            f'attachment; filename="track-{vehicle_id}-{_utc(start):%Y%m%d%H%M}.{format}"')
    return Response(body, media_type=media, headers=headers)


# --- events and reports -----------------------------------------------------------------
@router.get("/api/events", response_model=EventPage)
def events(db: DbSession, user: CurrentUser, vehicle_id: int | None = None,
           type: str | None = None,  # noqa: A002
           start: Annotated[datetime | None, Query(alias="from")] = None,
           end: Annotated[datetime | None, Query(alias="to")] = None,
           offset: Annotated[int, Query(ge=0)] = 0,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> object:
    """Events (告警) of the cars you may see, newest first."""
    page = service.list_events(db, user, vehicle_id, type, start and _utc(start),
                               end and _utc(end), offset, limit)
    return EventPage(items=[EventRead.model_validate(e, from_attributes=True)
                            for e in page.items],
                     total=page.total, offset=page.offset, limit=page.limit)


@router.get("/api/reports/mileage", response_model=list[ReportRow])
def mileage_report(db: DbSession, user: CurrentUser, start: From, end: To,
                   group: Literal["vehicle", "department"] = "vehicle",
                   period: Literal["day", "month"] = "day") -> object:
    """Km, trips, driving and parked time, events by type per vehicle/department and
    day/month (Asia/Shanghai)."""
    return reports.mileage_report(db, user, group, period, _utc(start), _utc(end))


# --- holiday calendar (节假日) -------------------------------------------------------------
@router.get("/api/holidays", response_model=list[HolidayRead])
def holidays(db: DbSession, user: CurrentUser,
             year: Annotated[int | None, Query(ge=1, le=9999)] = None) -> object:
    return service.list_holidays(db, user, year)


@router.put("/api/holidays/{day}", response_model=HolidayRead)
def put_holiday(day: date, body: HolidayIn, db: DbSession, user: CurrentUser) -> object:
    """A day off, or with ``workday: true`` a weekend working day (调休)."""
    return service.put_holiday(db, user, day, body.name, body.workday)


@router.delete("/api/holidays/{day}", status_code=204)
def delete_holiday(day: date, db: DbSession, user: CurrentUser) -> Response:
    service.delete_holiday(db, user, day)
    return Response(status_code=204)


@router.websocket("/api/live/ws")
async def live_ws(websocket: WebSocket, token: str = "") -> None:
    """Push live updates for the cars the user may see: one JSON object per fix (a live-map
    row), and telematics events as ``{"kind": "event", "event": {...}}``.

    Authenticate with ``?token=<bearer token>`` (browsers cannot set headers on WebSockets).
    """
    app = websocket.app
    try:
        claims = decode_token(token, app.state.settings.secret_key)
    except DomainError:
        await websocket.close(code=4401, reason="not authenticated")
        return
    allowed = await asyncio.to_thread(_allowed_vehicles, app, int(claims["sub"]))
    if allowed is None:
        await websocket.close(code=4401, reason="account unknown or retired")
        return
    await websocket.accept()
    client = async_redis_client(app.state.settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(LIVE_CHANNEL, EVENTS_CHANNEL)
    try:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None:
                continue
            data = json.loads(msg["data"])
            vehicle = allowed.get(data.get("vehicle_id") or -1)
            if vehicle is None:
                continue
            channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) \
                else msg["channel"]
            if channel == EVENTS_CHANNEL:
                await websocket.send_text(json.dumps({"kind": "event", "event": data},
                                                     ensure_ascii=False))
                continue
            row = service.live_row(data["terminal_id"], data, vehicle, datetime.now(UTC))
            await websocket.send_text(row.model_dump_json())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await pubsub.unsubscribe(LIVE_CHANNEL, EVENTS_CHANNEL)
        await pubsub.aclose()
        await client.aclose()


def _allowed_vehicles(app, user_id: int):  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as db:
        user = db.get(User, user_id)
        if user is None or not user.active:
            return None
        vehicles = service.visible_vehicles(db, user)
        for v in vehicles.values():
            db.expunge(v)
        return vehicles
