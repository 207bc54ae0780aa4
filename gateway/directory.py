"""Which terminals may report, and for which vehicle: a cached view of ``terminals``.

The gateway drops (and counts) fixes from terminals that are unknown, retired or not bound
to a vehicle. JT/T 808 terminals are known by their SIM phone number; the directory maps it to
the terminal id used everywhere else. Registration and authentication (鉴权) codes live in the
database so that any gateway process can authenticate a terminal registered through another.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from fleet.models import Terminal, TerminalProtocol
from gateway.jt808.messages import Registration


@dataclass(frozen=True, slots=True)
class Entry:
    terminal_id: str
    vehicle_id: int | None
    protocol: TerminalProtocol
    auth_code: str | None


def normalise_phone(phone: str) -> str:
    """SIM numbers come zero-padded to 12 (2013) or 20 (2019) digits: compare without it."""
    return phone.lstrip("0") or "0"


class TerminalDirectory:
    """Terminal lookups with a short-lived cache (refreshed every ``ttl_s`` seconds)."""

    def __init__(self, engine: Engine, ttl_s: float = 10.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._by_id: dict[str, Entry] = {}
        self._by_phone: dict[str, Entry] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        stmt = select(Terminal.id, Terminal.vehicle_id, Terminal.protocol, Terminal.phone,
                      Terminal.auth_code).where(Terminal.active.is_(True))
        by_id, by_phone = {}, {}
        with self.engine.connect() as conn:
            for tid, vid, proto, phone, code in conn.execute(stmt):
                entry = Entry(tid, vid, TerminalProtocol(proto), code)
                by_id[tid] = entry
                if phone:
                    by_phone[normalise_phone(phone)] = entry
        with self._lock:
            self._by_id, self._by_phone = by_id, by_phone
            self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > self.ttl_s:
            self.refresh()

    def by_id(self, terminal_id: str) -> Entry | None:
        self._fresh()
        return self._by_id.get(terminal_id)

    def by_phone(self, phone: str) -> Entry | None:
        self._fresh()
        return self._by_phone.get(normalise_phone(phone))

    # --- JT/T 808 registry (gateway.jt808.server.TerminalRegistry) ---------------------
    def register(self, phone: str, info: Registration) -> str | None:
        """0x0100 → auth code for a terminal gongche knows by this phone; refuse others."""
        self.refresh()
        entry = self._by_phone.get(normalise_phone(phone))
        if entry is None or entry.protocol is not TerminalProtocol.jt808:
            return None
        code = entry.auth_code or secrets.token_hex(8)
        if entry.auth_code is None:
            with self.engine.begin() as conn:
                conn.execute(update(Terminal).where(Terminal.id == entry.terminal_id)
                             .values(auth_code=code))
            self.refresh()
        return code

    def authenticate(self, phone: str, code: str) -> bool:
        entry = self.by_phone(phone)
        if entry is not None and entry.auth_code is None:
            self.refresh()  # registered a moment ago through another process
            entry = self._by_phone.get(normalise_phone(phone))
        return (entry is not None and entry.auth_code is not None
                and secrets.compare_digest(entry.auth_code, code))
