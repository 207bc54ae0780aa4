"""Per-terminal MQTT credentials come from the database: `gongche mqtt-passwd`."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from fleet.cli import app
from fleet.localservices import Mosquitto
from fleet.models import Role
from fleet.security import hash_mqtt_secret, verify_mqtt_secret
from fleet.settings import Settings, get_settings
from tests import factories as f
from tests.pipeline.conftest import wipe


def test_mqtt_secret_format_matches_mosquitto(tmp_path: Path) -> None:
    h = hash_mqtt_secret("s3cret-terminal")
    assert h.startswith("$7$101$") and verify_mqtt_secret("s3cret-terminal", h)
    assert not verify_mqtt_secret("wrong", h) and not verify_mqtt_secret("x", "garbage")


def _connects(port: int, user: str, password: str) -> bool:
    results: list[object] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.time_ns()}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.on_connect = lambda *a: results.append(a[3])
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return bool(results) and not results[0].is_failure  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_password_file_from_terminals_table(settings: Settings, engine: Engine,
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet import schemas, service

    wipe(engine)
    db = Session(engine)
    dep = f.department(db)
    admin = f.user(db, Role.admin, dep)
    v = f.vehicle(db, admin, dep)
    service.create_terminal(db, admin, schemas.TerminalCreate(
        id="BD77", protocol="nmea-mqtt", secret="terminal-77-secret", vehicle_id=v.id))
    db.commit()
    # the CLI reads the same (committed) database through the settings
    monkeypatch.setenv("GONGCHE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("GONGCHE_MQTT_URL", "mqtt://gateway:gw-pass-123@127.0.0.1:1")
    get_settings.cache_clear()
    passwd = tmp_path / "gongche.passwd"
    try:
        result = CliRunner().invoke(app, ["mqtt-passwd", str(passwd)])
    finally:
        get_settings.cache_clear()
        db.close()
        wipe(engine)
    assert result.exit_code == 0, result.output
    text = passwd.read_text()
    assert "BD77:$7$" in text and "gateway:$7$" in text and "terminal-77-secret" not in text
    broker = Mosquitto()
    broker.write_passwords = lambda: None  # type: ignore[method-assign]
    (broker.root / "gongche.passwd").write_text(text)
    broker.start()
    try:
        assert _connects(broker.port, "BD77", "terminal-77-secret")
        assert not _connects(broker.port, "BD77", "wrong-secret")
        assert _connects(broker.port, "gateway", "gw-pass-123")
    finally:
        broker.stop()
