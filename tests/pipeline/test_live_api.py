"""The live map: snapshot and WebSocket push, scoped by department."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from fleet.fix import Fix
from fleet.models import Role, Terminal, TerminalProtocol
from fleet.store import redis_client
from gateway.sink import RedisSink, Routed
from tests import factories as f


def setup_two_departments(db: Session) -> tuple[object, object, int, int]:
    bureau = f.department(db)
    a, b = f.department(db, bureau), f.department(db, bureau)
    admin = f.user(db, Role.admin, bureau)
    va, vb = f.vehicle(db, admin, a), f.vehicle(db, admin, b)
    db.add_all([Terminal(id="LA", protocol=TerminalProtocol.nmea_mqtt, vehicle_id=va.id),
                Terminal(id="LB", protocol=TerminalProtocol.nmea_mqtt, vehicle_id=vb.id)])
    db.commit()
    return a, b, va.id, vb.id


def test_live_snapshot_is_scoped(client: TestClient, db: Session) -> None:
    a, _b, va, vb = setup_two_departments(db)
    store = redis_client(client.app.state.settings.redis_url)
    store.flushall()
    now = datetime.now(UTC)
    RedisSink(store).put([Routed(Fix("LA", now, 30.6, 104.0, speed_kmh=40), va),
                          Routed(Fix("LB", now - timedelta(hours=1), 30.7, 104.1), vb)])
    staff = f.login(client, f.user(db, Role.staff, a))  # type: ignore[arg-type]
    db.commit()
    rows = client.get("/api/live", headers=staff.headers).json()
    assert [r["vehicle_id"] for r in rows] == [va]
    assert rows[0]["status"] == "moving"
    sup = f.login(client, f.user(db, Role.supervisor, a))  # type: ignore[arg-type]
    db.commit()
    everything = {r["vehicle_id"]: r for r in client.get("/api/live", headers=sup.headers).json()}
    assert set(everything) == {va, vb} and everything[vb]["status"] == "offline"


def test_websocket_pushes_only_visible_cars(client: TestClient, db: Session) -> None:
    a, _b, va, vb = setup_two_departments(db)
    staff = f.login(client, f.user(db, Role.staff, a))  # type: ignore[arg-type]
    db.commit()
    store = redis_client(client.app.state.settings.redis_url)
    store.flushall()
    token = staff.headers["Authorization"].split()[1]

    def publish() -> None:
        time.sleep(0.5)
        t = datetime.now(UTC)
        sink = RedisSink(store)
        for i in range(3):
            sink.put([Routed(Fix("LB", t + timedelta(seconds=i), 30.7, 104.1), vb),
                      Routed(Fix("LA", t + timedelta(seconds=i), 30.6, 104.0, speed_kmh=20), va)])

    with client.websocket_connect(f"/api/live/ws?token={token}") as ws:
        threading.Thread(target=publish, daemon=True).start()
        got = [json.loads(ws.receive_text()) for _ in range(3)]
    assert {g["vehicle_id"] for g in got} == {va}
    assert all(g["terminal_id"] == "LA" for g in got)


def test_websocket_refuses_bad_token(client: TestClient) -> None:
    import pytest
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as exc, \
            client.websocket_connect("/api/live/ws?token=forged") as ws:
        ws.receive_text()
    assert exc.value.code == 4401


def test_websocket_pushes_events_of_visible_cars(client: TestClient, db: Session) -> None:
    from telematics.processing import EVENTS_CHANNEL

    a, _b, va, vb = setup_two_departments(db)
    staff = f.login(client, f.user(db, Role.staff, a))  # type: ignore[arg-type]
    db.commit()
    store = redis_client(client.app.state.settings.redis_url)
    token = staff.headers["Authorization"].split()[1]

    def publish() -> None:
        time.sleep(0.5)
        for vid, kind in ((vb, "overspeed"), (va, "geofence_enter")):
            store.publish(EVENTS_CHANNEL, json.dumps({"type": kind, "vehicle_id": vid,
                                                      "terminal_id": "x", "time": "t"}))

    with client.websocket_connect(f"/api/live/ws?token={token}") as ws:
        threading.Thread(target=publish, daemon=True).start()
        got = json.loads(ws.receive_text())
    assert got == {"kind": "event", "event": {"type": "geofence_enter", "vehicle_id": va,
                                              "terminal_id": "x", "time": "t"}}
