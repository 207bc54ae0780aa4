"""Private PostgreSQL+PostGIS, Redis and Mosquitto, started from the installed binaries.

Each runs on a free port in a private temporary directory, so tests neither depend on nor
disturb the services a machine may already run on their default ports.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository (deploy/mosquitto lives there)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None, root: Path) -> None:
    """Terminate a service (kill it if it will not go) and remove its private directory."""
    if proc:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    shutil.rmtree(root, ignore_errors=True)


def _find_pg_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL binaries not found: run `make test` (it installs them)")


@dataclass
class Postgres:
    """A private PostgreSQL cluster (runs as user postgres when we are root)."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gongche-pg-")))
    proc: subprocess.Popen[bytes] | None = None

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def start(self) -> Postgres:
        pg = _find_pg_bin()
        data = self.root / "data"
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            self._as_owner([str(pg / "initdb"), "-D", str(data), "-U", "postgres",
                            "-A", "trust", "-E", "UTF8", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.proc = subprocess.Popen(
            self._as_owner([str(pg / "postgres"), "-D", str(data), "-p", str(self.port),
                            "-h", "127.0.0.1", "-k", str(self.root), "-c", "fsync=off",
                            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                            "-c", "max_connections=200"]),
            stdout=subprocess.DEVNULL, stderr=open(self.root / "postgres.log", "wb"),  # noqa: SIM115 (lives with the server)
        )
        wait_port(self.port)
        self._wait_ready(pg)
        return self

    def _wait_ready(self, pg: Path) -> None:
        for _ in range(200):
            r = subprocess.run([str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               stdout=subprocess.DEVNULL)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not become ready")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        _stop(self.proc, self.root)


@dataclass
class Redis:
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gongche-redis-")))
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Redis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _stop(self.proc, self.root)


@dataclass
class Mosquitto:
    """A private Mosquitto with the project's own configuration (deploy/mosquitto/)."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gongche-mqtt-")))
    proc: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=lambda: {"gateway": "gateway-secret"})

    def write_passwords(self) -> None:
        passwd = self.root / "gongche.passwd"
        passwd.unlink(missing_ok=True)
        for i, (user, password) in enumerate(self.users.items()):
            args = ["mosquitto_passwd", "-b", str(passwd), user, password]
            if i == 0:
                args.insert(1, "-c")
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> Mosquitto:
        src = REPO / "deploy" / "mosquitto"
        shutil.copy(src / "gongche.acl", self.root / "gongche.acl")
        self.write_passwords()
        conf = (src / "mosquitto.conf").read_text()
        conf = conf.replace("/etc/mosquitto/", f"{self.root}/")
        conf += f"\nlistener {self.port} 127.0.0.1\npersistence_location {self.root}/\n"
        if os.geteuid() == 0:
            conf += "user root\n"  # stay root: the private temp dir belongs to us
        (self.root / "mosquitto.conf").write_text(conf)
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.root / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "mosquitto.log", "wb"),  # noqa: SIM115 (lives with the broker)
        )
        wait_port(self.port)
        return self

    def reload(self) -> None:
        """Re-read the password file and ACL (SIGHUP), after adding users."""
        self.write_passwords()
        if self.proc:
            self.proc.send_signal(1)
            time.sleep(0.3)

    def url(self, user: str = "gateway") -> str:
        return f"mqtt://{user}:{self.users[user]}@127.0.0.1:{self.port}"

    def forget_session(self, client_id: str, user: str = "gateway") -> None:
        """End ``client_id``'s persistent session (a clean-session connect), so it stops
        queueing messages for a gateway that will not come back (tests)."""
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        c.username_pw_set(user, self.users[user])
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        deadline = time.monotonic() + 5
        while not c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()

    def stop(self) -> None:
        _stop(self.proc, self.root)
