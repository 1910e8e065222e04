"""The outcome of each saga's step at a participant.

Revision ID: participant_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "participant_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("participant",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "step_outcome",
        sa.Column("saga_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.Column("compensation_reply", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("saga_id"),
    )


def downgrade() -> None:

    op.drop_table("step_outcome")
