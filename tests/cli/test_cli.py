"""The gongche command line: decode, migrate, seed, create-admin, simulate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet.cli import app

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
runner = CliRunner()


def test_decode_nmea_prints_one_json_object_per_fix_and_errors() -> None:
    text = ("$GNRMC,083559.00,A,3039.6000,N,10403.6000,E,10.0,90.0,201126,,,A*43\n"
            "$GNRMC,garbage*00\n")
    result = runner.invoke(app, ["decode", "nmea", text])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    fixes = [r for r in rows if "error" not in r]
    errors = [r for r in rows if "error" in r]
    assert len(errors) == 1 and errors[0]["line"] == 2 and "checksum" in errors[0]["error"]
    assert len(fixes) == 1
    fix = fixes[0]
    assert fix["time"].startswith("2026-11-20T08:35:59") and fix["valid"] is True
    assert abs(fix["lat"] - 30.66) < 1e-9 and abs(fix["lon"] - 104.06) < 1e-9
    assert abs(fix["speed_kmh"] - 18.52) < 1e-6


def test_decode_every_nmea_fixture_file() -> None:
    files = sorted((SHARED / "fixtures" / "nmea").glob("*"))
    files = [f for f in files if f.is_file() and f.suffix.lower() in {".nmea", ".txt", ".log"}]
    assert files, "no NMEA fixtures found"
    total = 0
    for path in files:
        result = runner.invoke(app, ["decode", "nmea", str(path)])
        assert result.exit_code == 0, (path, result.output[-500:])
        rows = [json.loads(line) for line in result.output.splitlines() if line.strip()]
        total += sum("error" not in r for r in rows)
    assert total > 100


def test_decode_jt808_hex() -> None:
    from datetime import UTC, datetime

    from fleet.fix import Fix
    from gateway.jt808 import codec, messages
    from simulators.terminals import fix_to_location

    fix = Fix("x", datetime(2026, 11, 20, 8, 0, tzinfo=UTC), 30.5, 104.1, speed_kmh=50)
    frame = codec.encode_frame(codec.Header(0x0200, "013800000001", 7),
                               messages.encode_body(fix_to_location(fix)))
    result = runner.invoke(app, ["decode", "jt808", frame.hex(" ")])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.splitlines()[0])
    assert row["terminal_id"] == "13800000001"
    assert row["time"].startswith("2026-11-20T08:00:00") and row["lat"] == 30.5
    bad = runner.invoke(app, ["decode", "jt808", "7e 00 02 7e zz"])
    assert bad.exit_code == 0 and "error" in bad.output


@pytest.mark.parametrize("backend_name", ["spatialite"])
def test_migrate_seed_create_admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   backend_name: str) -> None:
    from fleet.settings import get_settings

    monkeypatch.setenv("GONGCHE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("GONGCHE_MODE", "demo")
    get_settings.cache_clear()
    try:
        assert runner.invoke(app, ["migrate"]).exit_code == 0
        seeded = runner.invoke(app, ["seed"])
        assert seeded.exit_code == 0 and "vehicles=30" in seeded.output
        assert "already seeded" in runner.invoke(app, ["seed"]).output
        made = runner.invoke(app, ["create-admin", "--username", "chief",
                                   "--password", "a-long-password"])
        assert made.exit_code == 0, made.output
        dup = runner.invoke(app, ["create-admin", "--username", "chief",
                                  "--password", "a-long-password"])
        assert dup.exit_code == 1 and "already exists" in dup.output
    finally:
        get_settings.cache_clear()


def test_production_refuses_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.settings import Settings

    monkeypatch.delenv("GONGCHE_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="GONGCHE_SECRET_KEY"):
        Settings(mode="production")
    with pytest.raises(ValueError, match="32 characters"):
        Settings(mode="production", secret_key="short")
