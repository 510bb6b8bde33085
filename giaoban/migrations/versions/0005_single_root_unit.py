"""one root unit: at most one unit without a parent

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 23:00:00.000000

The organization's root is explicit: the one unit without a parent. A database that already has
several (made by older versions, which allowed a unit "at the top") is not changed: the upgrade
stops and names them, so that an administrator decides where each belongs (move it under the root
with the older version, then upgrade again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    roots = (
        op.get_bind()
        .execute(sa.text("SELECT code FROM units WHERE parent_id IS NULL ORDER BY id"))
        .scalars()
        .all()
    )
    if len(roots) > 1:
        raise RuntimeError(
            "Cơ sở dữ liệu có nhiều đơn vị không có cấp trên ("
            + ", ".join(roots)
            + "); tổ chức chỉ có một đơn vị gốc. Hãy chuyển các đơn vị còn lại vào dưới đơn vị gốc "
            "rồi nâng cấp lại. / Several units have no parent; the organization has one root."
        )
    op.create_index(
        "uq_units_single_root",
        "units",
        [sa.text("(parent_id IS NULL)")],
        unique=True,
        sqlite_where=sa.text("parent_id IS NULL"),
        postgresql_where=sa.text("parent_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_units_single_root", table_name="units")
