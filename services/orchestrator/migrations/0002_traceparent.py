"""The trace a saga began in, so that what its timer does (re-sends, timeouts) joins it.

Revision ID: orchestrator_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orchestrator_0002"
down_revision: str | None = "orchestrator_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("saga", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("saga", "traceparent")
