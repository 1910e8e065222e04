"""Alembic environment shared by every service's migrations (sync drivers; run per service)."""

from alembic import context
from sqlalchemy import create_engine, pool, text

config = context.config
url = config.attributes["url"]


def run() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas starting together migrate one at a time.
                connection.execute(text("SELECT pg_advisory_xact_lock(7011)"))
            context.run_migrations()
    engine.dispose()


run()
