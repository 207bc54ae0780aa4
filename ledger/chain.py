"""The hash chain (哈希链): append entries, verify the chain.

Every entry's ``hash`` is the SHA-256 of its canonical content (sorted-key JSON of every
field that means something, including ``seq`` and ``prev_hash``), so changing any field of
any stored entry — or deleting or inserting one — breaks the chain at that entry.

Appends serialise on the chain's head row: the first statement of :func:`append` is an
``UPDATE`` of ``ledger_chain_heads`` that takes a row lock on PostgreSQL (a second appender
waits until the first commits, then reads the new head) and the write lock on SQLite. Two
concurrent transactions therefore can never both extend the same head (no fork).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from fleet.db import utcnow
from ledger.models import ChainHead, EntryKind, LedgerEntry

GENESIS_HASH = "0" * 64
DEFAULT_CHAIN = "main"


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: LedgerEntry) -> bytes:
    """The canonical byte form of an entry's content (what the hash covers)."""
    body: dict[str, Any] = {
        "chain": entry.chain,
        "seq": int(entry.seq),
        "kind": str(entry.kind.value if isinstance(entry.kind, EntryKind) else entry.kind),
        "recorded_at": _ts(entry.recorded_at),
        "occurred_on": entry.occurred_on.isoformat(),
        "period": entry.period,
        "vehicle_id": entry.vehicle_id,
        "department_id": entry.department_id,
        "category": entry.category,
        "amount_fen": int(entry.amount_fen),
        "distance_m": int(entry.distance_m),
        "reverses_id": entry.reverses_id,
        "actor_id": entry.actor_id,
        "reason": entry.reason,
        "payload": entry.payload,
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def entry_hash(entry: LedgerEntry) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def _lock_head(db: Session, chain: str) -> ChainHead:
    """Lock (creating if needed) the chain's head row for the rest of the transaction."""
    lock = (update(ChainHead).where(ChainHead.chain == chain).values(seq=ChainHead.seq)
            .execution_options(synchronize_session=False))
    if db.execute(lock).rowcount == 0:  # type: ignore[attr-defined]
        # First entry on this chain: create the head; a concurrent creator waits, then
        # does nothing, and both take the row lock below in turn.
        dialect = db.get_bind().dialect.name
        ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(ChainHead)
        db.execute(ins.values(chain=chain, seq=0, hash=GENESIS_HASH, updated_at=utcnow())
                   .on_conflict_do_nothing(index_elements=["chain"]))
        db.execute(lock)
    head = db.scalar(select(ChainHead).where(ChainHead.chain == chain)
                     .execution_options(populate_existing=True))
    assert head is not None
    return head


def append(
    db: Session, *, kind: EntryKind, occurred_on: date, actor_id: int | None = None,
    vehicle_id: int | None = None, department_id: int | None = None,
    category: str | None = None, amount_fen: int = 0, distance_m: int = 0,
    reverses_id: int | None = None, reason: str = "", payload: dict[str, Any] | None = None,
    chain: str = DEFAULT_CHAIN,
) -> LedgerEntry:
    """Append one entry at the chain's head (in the caller's transaction; never commits)."""
    payload = json.loads(json.dumps(payload or {}, ensure_ascii=False, default=str))
    db.flush()
    head = _lock_head(db, chain)
    entry = LedgerEntry(
        chain=chain, seq=head.seq + 1, kind=kind, recorded_at=utcnow(),
        occurred_on=occurred_on, period=period_of(occurred_on), vehicle_id=vehicle_id,
        department_id=department_id, category=category, amount_fen=int(amount_fen),
        distance_m=int(distance_m), reverses_id=reverses_id, actor_id=actor_id,
        reason=reason, payload=payload, prev_hash=head.hash,
    )
    entry.hash = entry_hash(entry)
    db.add(entry)
    head.seq = entry.seq
    head.hash = entry.hash
    head.updated_at = entry.recorded_at
    db.flush()
    return entry


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of walking a chain: ``ok`` or the first broken entry and why."""

    chain: str
    ok: bool
    checked: int
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"chain '{self.chain}': {self.checked} entries verified, intact"
        return (f"chain '{self.chain}': BROKEN at entry seq {self.broken_seq} "
                f"(id {self.broken_id}): {self.reason}")


def verify(db: Session, chain: str = DEFAULT_CHAIN, batch: int = 2000) -> VerifyResult:
    """Walk the chain from its genesis and name the first entry that does not check out."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_id = None
    while True:
        stmt = (select(LedgerEntry).where(LedgerEntry.chain == chain,
                                          LedgerEntry.seq >= expected_seq)
                .order_by(LedgerEntry.seq).limit(batch)
                .execution_options(populate_existing=True))
        rows = list(db.scalars(stmt))
        if not rows:
            break
        for e in rows:
            last_id = e.id
            if e.seq != expected_seq:
                return VerifyResult(chain, False, checked, expected_seq, e.id,
                                    f"entry seq {expected_seq} is missing (next is {e.seq})")
            if e.prev_hash != prev_hash:
                return VerifyResult(chain, False, checked, e.seq, e.id,
                                    "prev_hash does not match the previous entry's hash")
            actual = entry_hash(e)
            if actual != e.hash:
                return VerifyResult(chain, False, checked, e.seq, e.id,
                                    "content does not match its hash (edited after the fact)")
            prev_hash = e.hash
            expected_seq += 1
            checked += 1
    head = db.scalar(select(ChainHead).where(ChainHead.chain == chain)
                     .execution_options(populate_existing=True))
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return VerifyResult(chain, False, checked, checked + 1 if head.seq > checked else checked,
                            last_id, f"chain head says seq {head.seq} but the entries end at "
                                     f"{checked} (entries removed at the end?)")
    return VerifyResult(chain, True, checked)


def chains(db: Session) -> list[str]:
    return list(db.scalars(select(ChainHead.chain).order_by(ChainHead.chain)))


def verify_all(db: Session) -> list[VerifyResult]:
    return [verify(db, c) for c in chains(db)] or [verify(db)]
