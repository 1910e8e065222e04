"""Shipments of the test step.

Revision ID: shipping_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "shipping_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("shipping",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "test_shipment",
        sa.Column("saga_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("saga_id"),
    )


def downgrade() -> None:
    op.drop_table("test_shipment")
