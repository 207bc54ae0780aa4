"""Faults on the real pipeline: restarts and SIGKILLs while terminals send at a steady rate.

One scenario (``bench.faults.run``, short form: 3 NMEA + 3 JT/T 808 terminals, 4 fixes/s
each) on private PostgreSQL, Redis (AOF, appendfsync always) and Mosquitto, with the real
``gongche gateway`` and ``gongche worker`` processes; each fault is then judged on its own:
every fix due in its window must be in ``positions`` exactly once.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.faults import run

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("faults") / "faults.json"
    return run(str(path), terminals=3, rate=4.0, warmup_s=3.0, before_s=2.0, after_s=3.0,
               drain_timeout_s=60.0, quiet=True)


def _fault(scenario: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in scenario["faults"] if f["fault"] == name)


def _exactly_once(f: dict[str, Any]) -> None:
    assert f["sent"] > 0
    assert (f["lost"], f["duplicated"]) == (0, 0), f


def test_baseline_exactly_once(scenario: dict[str, Any]) -> None:
    _exactly_once(_fault(scenario, "baseline"))


def test_worker_kill9_exactly_once(scenario: dict[str, Any]) -> None:
    f = _fault(scenario, "worker_kill9")
    _exactly_once(f)
    assert f["recovery_s"] is not None  # entries the dead worker held: XAUTOCLAIM (30 s)


def test_gateway_kill9_exactly_once(scenario: dict[str, Any]) -> None:
    _exactly_once(_fault(scenario, "gateway_kill9"))


def test_mosquitto_restart_exactly_once(scenario: dict[str, Any]) -> None:
    _exactly_once(_fault(scenario, "mosquitto_restart"))


def test_redis_kill9_exactly_once(scenario: dict[str, Any]) -> None:
    _exactly_once(_fault(scenario, "redis_kill9"))


def test_postgres_crash_exactly_once(scenario: dict[str, Any]) -> None:
    _exactly_once(_fault(scenario, "postgres_crash"))


def test_no_duplicates_no_strangers_terminals_reconnected(scenario: dict[str, Any]) -> None:
    assert scenario["duplicated"] == 0 and scenario["unexpected_rows"] == 0
    assert scenario["unacknowledged_at_terminals"] == 0
    assert scenario["jt808_reauthentications"] >= 3  # every JT/T 808 terminal re-authenticated
    assert scenario["mqtt_reconnects"] >= 3  # every MQTT terminal reconnected by itself
    assert scenario["mqtt_sessions_resumed"] >= 3  # ... to its persistent session
    assert scenario["gateway_exit"] == 0 and scenario["worker_exit"] == 0
