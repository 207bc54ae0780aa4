"""Fault benchmark: the ingest pipeline under restarts and crashes, exactly once or not.

    gongche bench faults --json bench/results/faults.json

Private PostgreSQL+PostGIS, Redis (AOF, ``appendfsync always``) and Mosquitto (the project's
configuration, persistence on) are started from their binaries; ``gongche gateway`` and
``gongche worker`` run as real processes. Simulated terminals — NMEA over MQTT (paho, QoS 1,
persistent session) and JT/T 808 over TCP — send at a steady rate while, one after the other:

* the worker is killed with SIGKILL and started again,
* Mosquitto is restarted (SIGTERM: it saves its persistence file, then starts again),
* Redis is killed with SIGKILL and started again (it replays its AOF),
* PostgreSQL is stopped in "immediate" mode (SIGQUIT: a crash, recovery at start) and started,
* the gateway is killed with SIGKILL and started again.

The terminals are robust on their own: the MQTT ones are paho clients with a persistent
session (QoS 1 messages not acknowledged are resent after reconnecting, messages published
while offline are queued by paho); the JT/T 808 ones resend a location until it gets a 0x8001
with result 0, reconnecting and re-authenticating whenever the connection breaks.

Afterwards every fix sent must be in ``positions`` exactly once (terminal + time). Per fault:
fixes due in its window (``sent``), ``stored``, ``lost``, ``duplicated`` (rows beyond one per
terminal + time), ``recovery_s`` (from the fault until every fix due while the service was
down is stored) and ``max_delay_s`` (the worst due → stored delay of a fix of the window).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleet.localservices import Mosquitto, Postgres, Redis, _find_pg_bin, free_port, wait_port

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
SECRET = "faults-secret-key-0123456789-abcdefghijkl"
FAULTS = ("worker_kill9", "mosquitto_restart", "redis_kill9", "postgres_crash", "gateway_kill9")


# ------------------------------------------------------------------------------ services
@dataclass
class DurableRedis(Redis):
    """Redis that loses nothing on a crash: AOF with ``appendfsync always``."""

    def start(self) -> DurableRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(20)


@dataclass
class RestartablePostgres(Postgres):
    """A private PostgreSQL that can crash (immediate shutdown) and start again.

    Unlike the test cluster it keeps ``synchronous_commit`` on: with it off a COMMIT returns
    before its WAL is written, so a crash loses transactions whose clients were told they
    committed (the writer then acknowledges stream entries that are not stored). ``fsync``
    stays off: a process crash keeps what was written to the OS.
    """

    def start(self) -> RestartablePostgres:
        pg = _find_pg_bin()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            self._as_owner([str(pg / "initdb"), "-D", str(self.root / "data"), "-U", "postgres",
                            "-A", "trust", "-E", "UTF8", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._launch()
        return self

    def _launch(self) -> None:
        pg = _find_pg_bin()
        self.proc = subprocess.Popen(
            self._as_owner([str(pg / "postgres"), "-D", str(self.root / "data"), "-p",
                            str(self.port), "-h", "127.0.0.1", "-k", str(self.root),
                            "-c", "fsync=off", "-c", "synchronous_commit=on",
                            "-c", "full_page_writes=off", "-c", "max_connections=200"]),
            stdout=subprocess.DEVNULL, stderr=open(self.root / "postgres.log", "ab"),  # noqa: SIM115
        )
        wait_port(self.port, 60)
        self._wait_ready(pg)

    def crash(self) -> None:
        pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown: no checkpoint, recovery at start
        assert self.proc is not None
        self.proc.wait(30)


def stop_mosquitto(mq: Mosquitto) -> None:
    """SIGTERM: Mosquitto writes its persistence file (sessions, queued messages) and exits."""
    assert mq.proc is not None
    mq.proc.terminate()
    mq.proc.wait(20)


def start_mosquitto(mq: Mosquitto) -> None:
    """Start again on the same port with the same configuration and persistence."""
    mq.proc = subprocess.Popen(
        ["mosquitto", "-c", str(mq.root / "mosquitto.conf")], stdout=subprocess.DEVNULL,
        stderr=open(mq.root / "mosquitto.log", "ab"))  # noqa: SIM115
    wait_port(mq.port)


@dataclass
class Proc:
    """``gongche gateway`` or ``gongche worker`` as a real process (restartable)."""

    args: list[str]
    env: dict[str, str]
    log: Path
    wait_for: int | None = None  # a TCP port that tells the process is serving
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", *self.args],
                                     env=self.env, cwd=REPO, stdout=open(self.log, "ab"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT)
        if self.wait_for:
            wait_port(self.wait_for, 90)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(20)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


# ------------------------------------------------------------------------------ terminals
def make_fix(tid: str, base: datetime, i: int) -> Any:
    from fleet.fix import Fix

    # 36 km/h northwards, whole seconds (JT/T 808 times are whole seconds)
    return Fix(tid, base + timedelta(seconds=i), 30.6 + i * 9e-5, 104.05, speed_kmh=36.0,
               course=0.0, altitude_m=500.0, hdop=0.9, satellites=10)


@dataclass
class Sent:
    """What one simulated terminal sent: fix index → (due wall time, attempts)."""

    db_id: str  # the terminal id the gateway stores (JT/T 808: "J" + phone)
    due: dict[int, float] = field(default_factory=dict)
    attempts: int = 0
    reconnects: int = 0
    auths: int = 0
    errors: list[str] = field(default_factory=list)


class MqttSim(threading.Thread):
    """An NMEA-over-MQTT terminal: paho, QoS 1, persistent session, auto-reconnect."""

    def __init__(self, tid: str, password: str, port: int, base: datetime, rate: float,
                 stop: threading.Event) -> None:
        super().__init__(name=f"mqtt-{tid}", daemon=True)
        import paho.mqtt.client as mqtt

        from simulators.noise import fix_to_nmea

        self._nmea = fix_to_nmea
        self.tid, self.base, self.rate, self.stop_ev = tid, base, rate, stop
        self.sent = Sent(tid)
        self.infos: list[Any] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rel-{tid}",
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.username_pw_set(tid, password)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.resumed = 0  # reconnections where the broker still had the session
        self.client.on_connect = self._on_connect
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, flags: Any, _rc: Any, _p: Any = None) -> None:
        self.sent.reconnects += 1
        if self.sent.reconnects > 1 and getattr(flags, "session_present", False):
            self.resumed += 1

    def run(self) -> None:
        t0 = time.time()
        i = 0
        while not self.stop_ev.is_set():
            due = t0 + i / self.rate
            if self.stop_ev.wait(max(0.0, due - time.time())):
                break
            fix = make_fix(self.tid, self.base, i)
            body = "\r\n".join(self._nmea(fix)) + "\r\n"
            # Offline: paho queues the message and sends it after reconnecting.
            self.infos.append(self.client.publish(f"gongche/t/{self.tid}/nmea", body, qos=1))
            self.sent.due[i] = due
            self.sent.attempts += 1
            i += 1

    def finish(self, timeout: float) -> int:
        """Wait until the broker acknowledged everything; returns unacknowledged count."""
        # Messages published while offline keep rc NO_CONN in their info (paho queues them
        # and sends them after reconnecting); the client's outgoing queue is the truth.
        deadline = time.monotonic() + timeout
        while self.client._out_messages and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.1)
        pending = len(self.client._out_messages)  # noqa: SLF001
        self.client.loop_stop()
        self.client.disconnect()
        return pending


class Jt808Sim(threading.Thread):
    """A JT/T 808 terminal that resends every location until it gets 0x8001 result 0."""

    def __init__(self, phone: str, port: int, base: datetime, rate: float,
                 stop: threading.Event, deadline_s: float = 120.0) -> None:
        super().__init__(name=f"jt808-{phone}", daemon=True)
        self.phone, self.port, self.base, self.rate, self.stop_ev = phone, port, base, rate, stop
        self.sent = Sent("J" + phone)
        self.term: Any = None
        self.code: str | None = None
        self.deadline_s = deadline_s
        self.unacked = 0
        self.finishing = threading.Event()

    def _connect(self, give_up: float) -> bool:
        from simulators.terminals import Jt808Terminal

        while time.monotonic() < give_up:
            with contextlib.suppress(OSError, ConnectionError, PermissionError, ValueError):
                term = Jt808Terminal(self.phone, "127.0.0.1", self.port, timeout=5.0)
                try:
                    if self.code is None:
                        self.code = term.register()
                    if term.authenticate(self.code) == 0:
                        self.sent.auths += 1
                        self.term = term
                        return True
                except Exception:
                    term.close()
                    raise
                term.close()
            time.sleep(0.2)
        return False

    def _send(self, i: int) -> None:
        give_up = time.monotonic() + self.deadline_s
        while time.monotonic() < give_up:
            if self.term is None:
                if not self._connect(give_up):
                    break
                self.sent.reconnects += 1
            self.sent.attempts += 1
            try:
                if self.term.send(make_fix(self.phone, self.base, i)) == 0:
                    return
                self.sent.errors.append(f"{i}: result != 0")
            except (OSError, ConnectionError, ValueError) as exc:
                self.sent.errors.append(f"{i}: {type(exc).__name__}")
            self.term.close()  # a refused or unanswered location: reconnect and resend
            self.term = None
            time.sleep(0.1)
        self.unacked += 1

    def run(self) -> None:
        t0 = time.time()
        i = 0
        while not self.stop_ev.is_set():
            due = t0 + i / self.rate
            if self.stop_ev.wait(max(0.0, due - time.time())):
                break
            self.sent.due[i] = due
            self._send(i)
            i += 1
        if self.term is not None:
            self.term.close()


# ------------------------------------------------------------------------------ the run
def _count_rows(database_url: str) -> list[tuple[str, datetime, datetime]]:
    from sqlalchemy import create_engine, text

    e = create_engine(database_url)
    try:
        with e.connect() as conn:
            return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
                "SELECT terminal_id, time, received_at FROM positions"))]
    finally:
        e.dispose()


# PostgreSQL stays down longer than the gateway's terminal-directory cache (10 s), as a real
# restart or fail-over does: the gateway then has to look terminals up while it is down.
OUTAGES = {"postgres_crash": 11.0}


def run(json_path: str | None = None, *, terminals: int = 4, rate: float = 4.0,
        warmup_s: float = 3.0, before_s: float = 2.0, after_s: float = 4.0, outage_s: float = 2.0,
        outages: dict[str, float] | None = OUTAGES,
        faults: tuple[str, ...] = FAULTS, drain_timeout_s: float = 120.0, settle_s: float = 8.0,
        quiet: bool = False) -> dict[str, Any]:
    """Run every fault once while ``terminals`` NMEA and ``terminals`` JT/T 808 terminals
    send ``rate`` fixes/s each; returns (and writes) the per-fault report."""
    from sqlalchemy import create_engine, text

    from fleet import migrate
    from fleet.db import make_engine
    from fleet.settings import Settings
    from simulators.run import SimulationSpec, register_terminals

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"gongche-faults-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    nmea_spec = SimulationSpec(terminals=terminals, protocol="nmea", prefix="FLT")
    jt_spec = SimulationSpec(terminals=terminals, protocol="jt808", prefix="1391100")
    pg, rd, mq = RestartablePostgres().start(), DurableRedis().start(), Mosquitto()
    for tid in nmea_spec.terminal_ids():
        mq.users[tid] = f"pw-{tid}"
    mq.start()
    procs: list[Proc] = []
    sims: list[Any] = []
    stop = threading.Event()
    try:
        admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE faults"))
        admin.dispose()
        db_url = pg.url("faults")
        settings = Settings(mode="test", secret_key=SECRET, database_url=db_url)
        engine = make_engine(settings)
        migrate.upgrade(engine)
        register_terminals(engine, nmea_spec)
        register_terminals(engine, jt_spec)
        engine.dispose()

        jt_port = free_port()
        env = {**os.environ, "GONGCHE_MODE": "test", "GONGCHE_SECRET_KEY": SECRET,
               "GONGCHE_DATABASE_URL": db_url, "GONGCHE_REDIS_URL": rd.url,
               "GONGCHE_MQTT_URL": mq.url("gateway"), "GONGCHE_HOST": "127.0.0.1",
               "GONGCHE_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
        gateway = Proc(["gateway", "--jt808-port", str(jt_port), "--client-id", "faults-gw"],
                       env, workdir / "gateway.log", wait_for=jt_port).start()
        worker = Proc(["worker"], env, workdir / "worker.log").start()
        procs = [gateway, worker]
        time.sleep(1.5)  # the gateway's SUBACK (its session persists from then on)

        # (stop, start) per fault; the service stays down ``outage_s`` in between
        actions: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "worker_kill9": (worker.kill9, worker.start),
            "gateway_kill9": (gateway.kill9, gateway.start),
            "mosquitto_restart": (lambda: stop_mosquitto(mq), lambda: start_mosquitto(mq)),
            "redis_kill9": (rd.kill9, rd.start),
            "postgres_crash": (pg.crash, pg._launch),
        }
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        sims = [MqttSim(tid, mq.users[tid], mq.port, base, rate, stop)
                for tid in nmea_spec.terminal_ids()]
        sims += [Jt808Sim(phone, jt_port, base, rate, stop) for phone in jt_spec.terminal_ids()]
        for s in sims:
            s.start()

        t_last_fault = 0.0
        windows: list[dict[str, Any]] = [{"fault": "baseline", "start": time.time()}]
        time.sleep(warmup_s)
        for name in faults:
            windows.append({"fault": name, "start": time.time()})
            time.sleep(before_s)
            t_fault = time.time()
            down, up = actions[name]
            t_last_fault = time.time()
            down()
            time.sleep((outages or {}).get(name, outage_s))
            up()
            windows[-1].update(t_fault=t_fault, t_back=time.time())
            if not quiet:
                print(f"{name}: down {time.time() - t_fault:.1f}s", flush=True)
            time.sleep(after_s)
        t_stop = time.time()
        stop.set()
        for s in sims:
            s.join(drain_timeout_s)
        unacked = sum(s.finish(30) if isinstance(s, MqttSim) else s.unacked for s in sims)

        # wait until every fix sent is stored (or nothing moves any more)
        expected = {(s.sent.db_id, base + timedelta(seconds=i)): due
                    for s in sims for i, due in s.sent.due.items()}
        # Entries a writer read but could not store or acknowledge (it died, or Redis or the
        # database failed under it) are claimed again after 30 s idle: hence the floor.
        deadline = time.monotonic() + drain_timeout_s
        floor = t_last_fault + 35.0
        rows: list[tuple[str, datetime, datetime]] = []
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            rows = _count_rows(db_url)
            have = len({(t, at) for t, at, _ in rows} & expected.keys())
            if have >= len(expected):
                break
            if have != last:
                last, since = have, time.monotonic()
            elif time.monotonic() - since > settle_s and time.time() > floor:
                break  # nothing moves any more: what is missing is lost
            time.sleep(1.0)
        t_drained = time.time()
        codes = {"gateway_exit": gateway.stop(), "worker_exit": worker.stop()}
    finally:
        stop.set()
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop()
        mq.stop()
        rd.stop()
        pg.stop()

    result = _report(windows, expected, rows, t_stop, sims, unacked)
    result.update(codes, drain_s=round(t_drained - t_stop, 1), terminals=2 * terminals,
                  rate_per_terminal=rate, logs=str(workdir))
    if not quiet:
        _print(result)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2, default=str))
    return result


def _report(windows: list[dict[str, Any]], expected: dict[tuple[str, datetime], float],
            rows: list[tuple[str, datetime, datetime]], t_stop: float, sims: list[Any],
            unacked: int) -> dict[str, Any]:
    stored_at: dict[tuple[str, datetime], float] = {}
    copies: dict[tuple[str, datetime], int] = {}
    for tid, at, received in rows:
        key = (tid, at.astimezone(UTC))
        copies[key] = copies.get(key, 0) + 1
        stored_at[key] = min(stored_at.get(key, 1e18), received.timestamp())
    per: list[dict[str, Any]] = []
    for k, w in enumerate(windows):
        end = windows[k + 1]["start"] if k + 1 < len(windows) else t_stop + 1e9
        keys = [key for key, due in expected.items() if w["start"] <= due < end]
        stored = [key for key in keys if key in stored_at]
        delays = sorted(stored_at[key] - expected[key] for key in stored)
        entry: dict[str, Any] = {
            "fault": w["fault"], "sent": len(keys), "stored": len(stored),
            "lost": len(keys) - len(stored),
            "duplicated": sum(copies[key] - 1 for key in stored),
            "max_delay_s": round(delays[-1], 2) if delays else None,
            "p50_delay_s": round(delays[len(delays) // 2], 3) if delays else None,
        }
        if "t_fault" in w:
            entry["down_s"] = round(w["t_back"] - w["t_fault"], 2)
            outage = [key for key in keys if w["t_fault"] - 1.0 <= expected[key] <= w["t_back"]]
            done = [stored_at[key] for key in outage if key in stored_at]
            entry["recovery_s"] = (round(max(done) - w["t_fault"], 2)
                                   if done and len(done) == len(outage) else None)
            entry["lost_keys"] = [f"{t}@{at.isoformat()}" for t, at in keys
                                  if (t, at) not in stored_at][:10]
        per.append(entry)
    extra = [key for key in stored_at if key not in expected]
    return {
        "faults": per,
        "sent": len(expected), "stored": sum(1 for key in expected if key in stored_at),
        "lost": sum(1 for key in expected if key not in stored_at),
        "duplicated": sum(n - 1 for n in copies.values()), "unexpected_rows": len(extra),
        "unacknowledged_at_terminals": unacked,
        "jt808_reauthentications": sum(s.sent.auths - 1 for s in sims if isinstance(s, Jt808Sim)),
        "jt808_resends": sum(s.sent.attempts - len(s.sent.due) for s in sims
                             if isinstance(s, Jt808Sim)),
        "mqtt_reconnects": sum(s.sent.reconnects - 1 for s in sims if isinstance(s, MqttSim)),
        "mqtt_sessions_resumed": sum(s.resumed for s in sims if isinstance(s, MqttSim)),
    }


def _print(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="gongche faults: every fix exactly once?")
    for col in ("fault", "sent", "stored", "lost", "duplicated", "down_s", "recovery_s",
                "max_delay_s"):
        t.add_column(col, justify="left" if col == "fault" else "right")
    for f in r["faults"]:
        t.add_row(*(str(f.get(c, "")) for c in ("fault", "sent", "stored", "lost", "duplicated",
                                                 "down_s", "recovery_s", "max_delay_s")))
    Console().print(t)
    Console().print({k: v for k, v in r.items() if k != "faults"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--terminals", type=int, default=4)
    ap.add_argument("--rate", type=float, default=4.0)
    ap.add_argument("--json", default=str(RESULTS / "faults.json"))
    a = ap.parse_args()
    run(a.json, terminals=a.terminals, rate=a.rate)


if __name__ == "__main__":
    main()


__all__ = ["DurableRedis", "RestartablePostgres", "run", "start_mosquitto", "stop_mosquitto"]
