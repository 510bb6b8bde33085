"""unit delegate roster ("danh sách đại biểu thường trực")

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "roster_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("full_name_key", sa.String(length=200), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=50), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_roster_entries_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_entries")),
    )
    with op.batch_alter_table("roster_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_roster_entries_full_name_key"), ["full_name_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_roster_entries_unit_id"), ["unit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("roster_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_roster_entries_unit_id"))
        batch_op.drop_index(batch_op.f("ix_roster_entries_full_name_key"))

    op.drop_table("roster_entries")
