"""The orchestrator's revision 0003 (each step's result, a saga's origin) on SQLite and on
PostgreSQL: a saga written before it gets an empty `results` and the origin `initiator`, the real
handler then carries it on (its next step's command merges the result it keeps), a saga started
by `POST /sagas` is written with its origin, and the downgrade takes both columns away."""

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
from sagaline.services.orchestrator.handler import Orchestrator
from sagaline.storage.db import Database, sync_url
from sagaline.storage.migrate import alembic_config
from tests.integration.support import fresh_database
from tests.unit.orchestrator_harness import Harness, definition, migrated, payloads

SAGA = definition("flight", "hotel")
# The saga table as revision 0002 left it.
SAGA_0002 = sa.Table(
    "saga",
    sa.MetaData(),
    sa.Column("id", sa.Uuid()),
    sa.Column("name", sa.String(63)),
    sa.Column("status", sa.String(16)),
    sa.Column("execution", sa.String(16)),
    sa.Column("payload", sa.JSON()),
    sa.Column("state", sa.JSON()),
    sa.Column("reason", sa.String(1000)),
    sa.Column("response", sa.JSON()),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("next_deadline", sa.DateTime(timezone=True)),
    sa.Column("traceparent", sa.String(55)),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    with fresh_database(server, tmp_path, "orchestrator_0003") as url:
        yield url


def columns(engine: sa.Engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("saga")}


def a_saga_from_before(engine: sa.Engine) -> uuid.UUID:
    """A saga written at revision 0002 whose first step, flight, is running."""
    state = SagaState.new(SAGA.step_names)
    state.steps["flight"].status, state.steps["flight"].attempt = StepStatus.RUNNING, 1
    saga_id, now = uuid.uuid4(), utcnow()
    row = {
        "id": saga_id,
        "name": SAGA.name,
        "status": "RUNNING",
        "execution": "sequential",
        "payload": {"traveller": "ada"},
        "state": state.model_dump(mode="json"),
        "created_at": now,
        "updated_at": now,
    }
    with engine.begin() as connection:
        connection.execute(SAGA_0002.insert(), [row])
    return saga_id


async def test_revision_0003_keeps_old_sagas_running_and_goes_down_again(
    database_url: str,
) -> None:
    config = alembic_config(
        database_url, registration.find("orchestrator").migrations, participant=False
    )
    await asyncio.to_thread(command.upgrade, config, "heads")
    await asyncio.to_thread(command.downgrade, config, "orchestrator_0002")
    engine = sa.create_engine(sync_url(database_url))
    try:
        assert not {"results", "origin"} & columns(engine)
        old = a_saga_from_before(engine)
        await asyncio.to_thread(command.upgrade, config, "heads")
        assert {"results", "origin"} <= columns(engine)

        db = Database(database_url)
        try:
            trip = Harness(db, Orchestrator(SAGA))
            await trip.done(old, "flight", {"seat": "12A"})
            assert payloads(await trip.commands(old, "hotel")) == [
                {"traveller": "ada", "seat": "12A"}
            ]
            transport = httpx.ASGITransport(app=trip.app(token="t"))
            async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
                headers = {"Authorization": "Bearer t", "Idempotency-Key": "k-1"}
                started = await client.post("/sagas", json={"traveller": "bob"}, headers=headers)
                assert started.status_code == 202, started.text
                sagas = {s["id"]: s for s in (await client.get("/sagas")).json()}
        finally:
            await db.dispose()
        assert (sagas[str(old)]["origin"], sagas[str(old)]["results"]) == (
            "initiator",
            {"flight": {"seat": "12A"}},
        )
        assert (sagas[started.json()["id"]]["origin"], sagas[started.json()["id"]]["results"]) == (
            "api",
            {},
        )

        await asyncio.to_thread(command.downgrade, config, "orchestrator_0002")
        assert not {"results", "origin"} & columns(engine)
        with engine.connect() as connection:
            assert (
                connection.execute(sa.select(sa.func.count()).select_from(SAGA_0002)).scalar() == 2
            )
    finally:
        engine.dispose()


async def test_concurrent_starts_with_one_key_make_one_saga(database_url: str) -> None:
    """On PostgreSQL both requests may find no saga; the second one's INSERT then fails on the
    primary key, and it answers with the first one's saga (on SQLite they take turns)."""
    db = await migrated(database_url)
    try:
        trip = Harness(db, Orchestrator(SAGA))
        transport = httpx.ASGITransport(app=trip.app(token="t"))
        headers = {"Authorization": "Bearer t", "Idempotency-Key": "same"}
        async with httpx.AsyncClient(transport=transport, base_url="http://o") as client:
            answers = await asyncio.gather(
                *(client.post("/sagas", json={"n": 1}, headers=headers) for _ in range(8))
            )
        assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
        (saga_id,) = {a.json()["id"] for a in answers}
        assert len(await trip.commands(uuid.UUID(saga_id), "flight")) == 1
    finally:
        await db.dispose()
