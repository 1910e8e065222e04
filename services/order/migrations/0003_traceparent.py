"""The trace an order began in, so that its start's re-sends and cancels join it.

Revision ID: order_0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "order_0003"
down_revision: str | None = "order_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "traceparent")
