"""Definition versions: each saga runs on the version it started with. A table of the versions
(digest, Saga, the canonical document, first seen) and each saga's version (None for the sagas
written before: they run on the current definition). docs/design.md, "Changing a live Saga".

Revision ID: orchestrator_0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orchestrator_0005"
# orchestrator_0004 is written alongside this one: when both are in, this one follows it.
down_revision: str | None = "orchestrator_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saga_version",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("saga", sa.String(63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.add_column("saga", sa.Column("version", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("saga", "version")
    op.drop_table("saga_version")
