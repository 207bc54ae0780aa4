"""Ledger: hash-chained entries (append-only, enforced by triggers), ETC charges, odometer
readings, quotas (编制核定), purchase-control rules and requests (控购).

Revision ID: 0004_ledger
Revises: 0002_positions
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from fleet.db import UTCDateTime

revision = "0004_ledger"
down_revision = "0002_positions"
branch_labels = ("ledger",)
depends_on = None

CATEGORIES = ("confidential", "emergency", "law_enforcement", "special_technical", "general",
              "dedicated")
ENERGY = ("petrol", "diesel", "hybrid", "plug_in_hybrid", "electric", "fuel_cell")
GENESIS = "0" * 64

PG_TRIGGER = """
CREATE OR REPLACE FUNCTION ledger_entries_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only: % refused (book a correction instead)',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""

# Default caps (控购标准): each deployment changes them through the admin API; never code.
DEFAULT_RULES = [
    # category, price cap (fen, excl. tax), displacement cap (L), min age (y), min km
    ("general", 18_000_000, 1.8, 8, 250_000),
    ("confidential", 18_000_000, 1.8, 8, 250_000),
    ("emergency", 25_000_000, 2.0, 8, 250_000),
    ("law_enforcement", 25_000_000, 2.0, 8, 250_000),
    ("special_technical", 45_000_000, 3.0, 8, 250_000),
    ("dedicated", 18_000_000, 1.8, 8, 250_000),
]


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    op.create_table(
        "ledger_chain_heads",
        sa.Column("chain", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", _enum("ledger_entry_kind", "cost", "purchase", "correction", "closing",
                                "transfer", "marking", "retirement", "disposal", "quota",
                                "genesis"), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False, index=True),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), index=True),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True),
        sa.Column("category", sa.String(32)),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("distance_m", sa.BigInteger(), nullable=False),
        sa.Column("reverses_id", sa.Integer(), sa.ForeignKey("ledger_entries.id")),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("chain", "seq", name="uq_ledger_entries_chain_seq"),
    )
    op.create_index("ix_ledger_entries_vehicle_period", "ledger_entries",
                    ["vehicle_id", "period"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER)
        op.execute("CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE "
                   "ON ledger_entries FOR EACH ROW "
                   "EXECUTE FUNCTION ledger_entries_refuse_change()")
        op.execute("CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE "
                   "ON ledger_entries FOR EACH STATEMENT "
                   "EXECUTE FUNCTION ledger_entries_refuse_change()")
    else:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{op_name.lower()} BEFORE {op_name} "
                "ON ledger_entries BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only: "
                f"{op_name} refused (book a correction instead)'); END")

    op.create_table(
        "ledger_odometer_readings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), index=True,
                  nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=False),
        sa.Column("odometer_m", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_table(
        "ledger_etc_stations",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("lat", sa.Float()),
        sa.Column("lon", sa.Float()),
    )
    op.create_table(
        "ledger_etc_imports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ledger_etc_charges",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("import_id", sa.Integer(), sa.ForeignKey("ledger_etc_imports.id"), index=True,
                  nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("plate", sa.String(16), nullable=False),
        sa.Column("card_no", sa.String(32), nullable=False),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), index=True,
                  nullable=False),
        sa.Column("entry_station", sa.String(80), nullable=False),
        sa.Column("entry_time", UTCDateTime(), nullable=False),
        sa.Column("exit_station", sa.String(80), nullable=False),
        sa.Column("exit_time", UTCDateTime(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("ledger_entry_id", sa.Integer(), sa.ForeignKey("ledger_entries.id")),
        sa.Column("match_status", _enum("etc_match_status", "matched", "unbooked", "unmatched",
                                        "pending"), nullable=False),
        sa.Column("trip_start", UTCDateTime()),
        sa.Column("trip_end", UTCDateTime()),
        sa.Column("match_note", sa.Text(), nullable=False),
        sa.UniqueConstraint("card_no", "exit_time", name="uq_ledger_etc_charges_card_exit"),
    )
    op.create_table(
        "ledger_quotas",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True,
                  nullable=False),
        sa.Column("category", _enum("vehicle_category", *CATEGORIES), nullable=False),
        sa.Column("approved", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("document", sa.String(120), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("department_id", "category", "effective_from",
                            name="uq_ledger_quotas_dep_cat_from"),
    )
    rules = op.create_table(
        "ledger_purchase_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("category", _enum("vehicle_category", *CATEGORIES), nullable=False,
                  unique=True),
        sa.Column("price_cap_fen", sa.BigInteger()),
        sa.Column("displacement_cap_l", sa.Float()),
        sa.Column("prefer_new_energy", sa.Boolean(), nullable=False),
        sa.Column("renewal_min_age_years", sa.Integer()),
        sa.Column("renewal_min_km", sa.Integer()),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    op.bulk_insert(rules, [
        {"category": c, "price_cap_fen": p, "displacement_cap_l": d, "prefer_new_energy": True,
         "renewal_min_age_years": a, "renewal_min_km": k, "active": True, "updated_at": now}
        for c, p, d, a, k in DEFAULT_RULES])
    op.create_table(
        "ledger_purchase_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True,
                  nullable=False),
        sa.Column("kind", _enum("purchase_kind", "purchase", "renewal"), nullable=False),
        sa.Column("category", _enum("vehicle_category", *CATEGORIES), nullable=False),
        sa.Column("brand_model", sa.String(80), nullable=False),
        sa.Column("price_fen", sa.BigInteger(), nullable=False),
        sa.Column("displacement_l", sa.Float(), nullable=False),
        sa.Column("energy_type", _enum("energy_type", *ENERGY), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("replaces_vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id")),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("status", _enum("purchase_status", "submitted", "approved", "refused",
                                  "delivered", "withdrawn"), nullable=False),
        sa.Column("decision_ok", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id")),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ledger_purchase_steps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("ledger_purchase_requests.id"),
                  index=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(32)),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    for table in ("ledger_purchase_steps", "ledger_purchase_requests", "ledger_purchase_rules",
                  "ledger_quotas", "ledger_etc_charges", "ledger_etc_imports",
                  "ledger_etc_stations", "ledger_odometer_readings"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_truncate ON ledger_entries")
        op.drop_table("ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_refuse_change()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
        op.drop_table("ledger_entries")
    op.drop_table("ledger_chain_heads")
