"""Products and reservations.

Revision ID: stock_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "stock_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("stock",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "product",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("initial_quantity", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "reservation",
        sa.Column("saga_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("saga_id", "product_id"),
    )
    op.create_index(op.f("ix_reservation_product_id"), "reservation", ["product_id"], unique=False)


def downgrade() -> None:

    op.drop_index(op.f("ix_reservation_product_id"), table_name="reservation")
    op.drop_table("reservation")
    op.drop_table("product")
