"""Wake the relay from the database: a statement trigger NOTIFYs on every outbox insert.

PostgreSQL delivers the notification when the inserting transaction commits (and folds repeats
within one transaction), so a writer pays no extra round trip and no writer can forget it.
SQLite has no NOTIFY: its relay polls.

Revision ID: common_0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "common_0002"
down_revision: str | None = "common_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "sagaline_outbox"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION sagaline_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION sagaline_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS sagaline_outbox_notify()")
