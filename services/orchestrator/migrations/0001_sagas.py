"""Sagas and their history.

Revision ID: orchestrator_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orchestrator_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("orchestrator",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saga",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("execution", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_saga_next_deadline"), "saga", ["next_deadline"], unique=False)
    op.create_index(op.f("ix_saga_status"), "saga", ["status"], unique=False)
    op.create_table(
        "saga_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("saga_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("step", sa.String(63), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("detail", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_saga_event_saga_id"), "saga_event", ["saga_id"], unique=False)


def downgrade() -> None:

    op.drop_index(op.f("ix_saga_event_saga_id"), table_name="saga_event")
    op.drop_table("saga_event")
    op.drop_index(op.f("ix_saga_status"), table_name="saga")
    op.drop_index(op.f("ix_saga_next_deadline"), table_name="saga")
    op.drop_table("saga")
