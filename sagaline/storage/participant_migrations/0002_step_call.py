"""The calls a step owes the outside world (`sagaline.delivery.step_calls`).

Revision ID: participant_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "participant_0002"
down_revision: str | None = "participant_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "step_call",
        sa.Column("saga_id", sa.Uuid(), nullable=False),
        sa.Column("saga", sa.String(63), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("compensation_attempt", sa.Integer(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("saga_id"),
    )
    op.create_index("ix_step_call_due_at", "step_call", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_step_call_due_at", table_name="step_call")
    op.drop_table("step_call")
