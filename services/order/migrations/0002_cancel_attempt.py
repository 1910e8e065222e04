"""The cancels an order sent once its start was given up.

Revision ID: order_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "order_0002"
down_revision: str | None = "order_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("cancel_attempt", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("orders", "cancel_attempt")
