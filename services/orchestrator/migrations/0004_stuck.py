"""One saga cannot stall the others: how many times in a row its processing raised (`failures`;
above zero its inputs wait in `saga_parked`, in order, for its retry), and the parked inputs.

Revision ID: orchestrator_0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orchestrator_0004"
down_revision: str | None = "orchestrator_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("saga", sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "saga_parked",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("saga_id", sa.Uuid(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=True),
        sa.Column("origin", sa.String(249), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
    )
    op.create_index(op.f("ix_saga_parked_saga_id"), "saga_parked", ["saga_id"], unique=False)


def downgrade() -> None:
    op.drop_table("saga_parked")
    op.drop_column("saga", "failures")
