"""Telematics routes: the live map (snapshot and WebSocket push) and stored positions."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from fleet.deps import CurrentUser, DbSession, RedisClient
from fleet.errors import DomainError
from fleet.models import User
from fleet.security import decode_token
from fleet.store import async_redis_client
from gateway.sink import LIVE_CHANNEL
from telematics import service
from telematics.schemas import LiveVehicle, PositionRead

router = APIRouter(tags=["telematics"])


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


@router.websocket("/api/live/ws")
async def live_ws(websocket: WebSocket, token: str = "") -> None:
    """Push live updates (one JSON object per fix) for the cars the user may see.

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
    await pubsub.subscribe(LIVE_CHANNEL)
    try:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None:
                continue
            fix = json.loads(msg["data"])
            vehicle = allowed.get(fix.get("vehicle_id") or -1)
            if vehicle is not None:
                row = service.live_row(fix["terminal_id"], fix, vehicle, datetime.now(UTC))
                await websocket.send_text(row.model_dump_json())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await pubsub.unsubscribe(LIVE_CHANNEL)
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
