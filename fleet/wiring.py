"""The composition root: where domains that never import each other are connected.

Dispatch's private-use evidence wants the ledger's ETC charges; the ledger's booked/unbooked
km split wants dispatch's trip matches. Each side defines a hook; this module plugs them in,
once per process (called by ``create_app`` and the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker


class LedgerEtc:
    """dispatch.matching.EtcLookup backed by ledger.etc.etc_charges_for."""

    def charges(self, db: Session, vehicle_id: int, start: datetime, end: datetime
                ) -> Sequence[Any]:
        from ledger.etc import etc_charges_for

        return [_EtcView(c) for c in etc_charges_for(db, vehicle_id, start, end)]


class _EtcView:
    """The fields dispatch's evidence bundle reads (time, entry, exit, amount_fen)."""

    def __init__(self, c: Any) -> None:
        self.time = c.exit_time
        self.entry = c.entry_station
        self.exit = c.exit_station
        self.amount_fen = c.amount_fen
        self.charge_id = c.charge_id


def wire_domains(session_factory: sessionmaker[Session]) -> None:
    from dispatch import matching
    from ledger import mileage

    matching.set_default_etc(LedgerEtc())

    def booked(trip: Any) -> bool:
        with session_factory() as db:
            return matching.trip_was_booked(db, trip.vehicle_id, trip.start, trip.end)

    mileage.register_booking_oracle(booked)
