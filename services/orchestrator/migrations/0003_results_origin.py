"""Data between steps and a start without an initiator: each step's result, kept on the saga,
and where the saga came from (`initiator`: a saga.start; `api`: POST /sagas, whose outcome goes
to no topic).

Revision ID: orchestrator_0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orchestrator_0003"
down_revision: str | None = "orchestrator_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults, so that the sagas already there get their value (SQLite and PostgreSQL
    # both take a NOT NULL column added with a default).
    op.add_column(
        "saga", sa.Column("results", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
    )
    op.add_column(
        "saga",
        sa.Column("origin", sa.String(16), nullable=False, server_default="initiator"),
    )


def downgrade() -> None:
    op.drop_column("saga", "origin")
    op.drop_column("saga", "results")
