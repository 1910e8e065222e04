"""The orchestrator's revision 0005 (definition versions) on SQLite and on PostgreSQL: a saga
written before it has no version and goes on, after a restart on an edited Saga, with the
execution stored on its row; a start writes its version once (two replicas starting at once);
`GET /versions` counts on either database; the downgrade takes the table and the column away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from sagaline import registration
from sagaline.domain.clock import utcnow
from sagaline.domain.engine import SagaState, StepStatus
from sagaline.domain.versions import DefinitionVersion
from sagaline.services.orchestrator.handler import Orchestrator
from sagaline.storage.db import Database, sync_url
from sagaline.storage.migrate import alembic_config
from tests.integration.support import fresh_database
from tests.unit.orchestrator_harness import Harness, definition, payloads

SAGA = definition("flight", "car", "hotel")
EDITED = definition("flight", "hotel", execution="parallel")  # car removed, switched to parallel
# The saga table as revision 0003 left it (the columns this test writes).
SAGA_0003 = sa.Table(
    "saga",
    sa.MetaData(),
    sa.Column("id", sa.Uuid()),
    sa.Column("name", sa.String(63)),
    sa.Column("status", sa.String(16)),
    sa.Column("execution", sa.String(16)),
    sa.Column("payload", sa.JSON()),
    sa.Column("state", sa.JSON()),
    sa.Column("results", sa.JSON()),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    with fresh_database(server, tmp_path, "orchestrator_0005") as url:
        yield url


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def columns(engine: sa.Engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("saga")}


def a_saga_from_before(engine: sa.Engine) -> uuid.UUID:
    """A sequential saga written at revision 0003 whose car step is running."""
    state = SagaState.new(SAGA.step_names)
    state.steps["flight"].status = StepStatus.SUCCEEDED
    state.steps["car"].status, state.steps["car"].attempt = StepStatus.RUNNING, 1
    saga_id, now = uuid.uuid4(), utcnow()
    with engine.begin() as connection:
        connection.execute(
            SAGA_0003.insert(),
            [
                {
                    "id": saga_id,
                    "name": SAGA.name,
                    "status": "RUNNING",
                    "execution": "sequential",
                    "payload": {"traveller": "ada"},
                    "state": state.model_dump(mode="json"),
                    "results": {"flight": {"seat": "12A"}},
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
    return saga_id


async def test_revision_0005_keeps_old_sagas_on_their_execution_and_goes_down_again(
    database_url: str,
) -> None:
    config = alembic_config(
        database_url, registration.find("orchestrator").migrations, participant=False
    )
    await asyncio.to_thread(command.upgrade, config, "heads")
    await asyncio.to_thread(command.downgrade, config, "orchestrator_0003")
    engine = sa.create_engine(sync_url(database_url))
    try:
        assert "version" not in columns(engine) and "saga_version" not in tables(engine)
        old = a_saga_from_before(engine)
        await asyncio.to_thread(command.upgrade, config, "heads")
        assert "version" in columns(engine) and "saga_version" in tables(engine)

        db = Database(database_url)
        try:
            edited = Orchestrator(EDITED)
            await asyncio.gather(edited.start(db), Orchestrator(EDITED).start(db))
            assert "car" in edited.steps  # the old saga's state names car
            trip = Harness(db, edited)
            await trip.done(old, "car", {"car": "C-1"})  # sequential: hotel after car
            assert payloads(await trip.commands(old, "hotel")) == [
                {"traveller": "ada", "seat": "12A", "car": "C-1"}
            ]
            new = await trip.start({"traveller": "bob"})
            assert {e.step for _, e in await trip.sent(new)} == {"flight", "hotel"}
            transport = httpx.ASGITransport(app=trip.app(token=None))
            async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
                answer = (await client.get("/versions")).json()
        finally:
            await db.dispose()
        digest = DefinitionVersion.of(EDITED).digest
        assert [(v["digest"], v["in_flight"]) for v in answer["versions"]] == [
            (digest, 1),
            (None, 1),
        ]
        assert {"name": "car", "current": False, "in_flight": 1} in answer["steps"]
        with engine.connect() as connection:
            versions = connection.execute(sa.text("SELECT digest FROM saga_version")).all()
        assert [row[0] for row in versions] == [digest]

        await asyncio.to_thread(command.downgrade, config, "orchestrator_0003")
        assert "version" not in columns(engine) and "saga_version" not in tables(engine)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM saga")).scalar() == 2
    finally:
        engine.dispose()
