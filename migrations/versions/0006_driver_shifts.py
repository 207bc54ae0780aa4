"""Drivers' shifts (班次) and daily driving limit, for the scheduler.

Revision ID: 0006_driver_shifts
Revises: 0001_kernel
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_driver_shifts"
down_revision = "0001_kernel"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("drivers") as batch:
        batch.add_column(sa.Column("shift_start", sa.Time()))
        batch.add_column(sa.Column("shift_end", sa.Time()))
        batch.add_column(sa.Column("max_driving_minutes", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("drivers") as batch:
        batch.drop_column("max_driving_minutes")
        batch.drop_column("shift_end")
        batch.drop_column("shift_start")
