"""A live Saga changed: every saga runs to its end on the definition version it started with.

The real orchestrator handler on one SQLite database, restarted with an edited Saga as the
operator's rollout restarts it (a new `Orchestrator` on the same database, its `start` run
before it consumes): a step removed while sagas still have to command or compensate it, the
execution switched from sequential to parallel, and the time-outs and attempts changed. The
sagas in flight keep their own version's steps, execution and re-sends; new sagas take the new
one. `GET /versions` answers, per step, how many sagas in flight may still use it.
docs/design.md, "Changing a live Saga".
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlmodel import col

from sagaline import registration
from sagaline.delivery.errors import Unprocessable
from sagaline.domain.definition import SagaDefinition
from sagaline.domain.versions import DefinitionVersion
from sagaline.services.orchestrator.handler import SAGAS, Orchestrator
from sagaline.services.orchestrator.models import Saga, SagaVersion
from sagaline.settings import Settings
from tests.unit.orchestrator_harness import Harness, definition, harness, payloads

V1 = definition("flight", "car", "hotel")


@pytest.fixture
async def trip(tmp_path: Path) -> AsyncIterator[Harness]:
    """An orchestrator on V1, started as `sagaline serve` starts it."""
    async with harness(f"sqlite:///{tmp_path / 'orchestrator.db'}", V1) as h:
        await h.orchestrator.start(h.db)
        yield h


async def restarted(h: Harness, saga: SagaDefinition) -> Harness:
    """The orchestrator restarted on an edited Saga, on the same database."""
    orchestrator = Orchestrator(saga)
    await orchestrator.start(h.db)
    return Harness(h.db, orchestrator)


async def saga_row(h: Harness, saga_id: uuid.UUID) -> Saga:
    async with h.db.reads() as session:
        saga = (await session.scalars(select(Saga).where(col(Saga.id) == saga_id))).one()
    return saga


async def status(h: Harness, saga_id: uuid.UUID) -> str:
    return (await saga_row(h, saga_id)).status


async def commanded(h: Harness, saga_id: uuid.UUID) -> list[str]:
    """The steps commanded for the saga, in order (every attempt)."""
    return [e.step or "" for t, e in await h.sent(saga_id) if e.type.endswith(".execute")]


# -- the version ----------------------------------------------------------------------------------


def test_the_digest_covers_what_the_orchestrator_runs_by_and_nothing_else() -> None:
    digest = DefinitionVersion.of(V1).digest
    # What does not change how a saga runs makes no new version.
    for unrelated in (
        {"image": "registry.example/other:2"},
        {"orchestrator": {"replicas": 3}},
        {"topicDeletionPolicy": "delete"},
        {"kafka": {"partitions": 12}},
    ):
        assert DefinitionVersion.of(V1.with_spec(**unrelated)).digest == digest, unrelated
    explicit = V1.model_dump(by_alias=True)
    explicit["spec"]["steps"][0]["maxAttempts"] = V1.spec.max_attempts  # as it inherited
    assert DefinitionVersion.of(SagaDefinition.model_validate(explicit)).digest == digest
    # The steps, their order, the execution, time-outs and attempts do.
    changed = [
        definition("flight", "hotel"),
        definition("car", "flight", "hotel"),
        V1.with_execution("parallel"),
        V1.with_spec(stepTimeoutSeconds=11),
        V1.with_spec(maxAttempts=4),
        V1.with_spec(compensationMaxAttempts=9),
        definition("flight", "car", "hotel", name="other"),
    ]
    digests = {DefinitionVersion.of(d).digest for d in changed}
    assert len(digests) == len(changed) and digest not in digests
    # The stored document gives the version back.
    version = DefinitionVersion.of(V1.with_spec(maxAttempts=4))
    assert DefinitionVersion.from_document(version.document()) == version


async def test_a_start_writes_its_version_once_and_new_sagas_carry_it(trip: Harness) -> None:
    await trip.orchestrator.start(trip.db)  # a second replica, or a restart on the same Saga
    saga_id = await trip.start({"traveller": "ada"})

    async with trip.db.reads() as session:
        rows = (await session.scalars(select(SagaVersion))).all()
    digest = DefinitionVersion.of(V1).digest
    assert [(row.digest, row.saga) for row in rows] == [(digest, "trip")]
    assert rows[0].spec["steps"][1]["name"] == "car"
    assert (await saga_row(trip, saga_id)).version == digest


# -- a step removed -------------------------------------------------------------------------------


async def test_sagas_in_flight_complete_through_a_removed_step_and_new_ones_skip_it(
    trip: Harness,
) -> None:
    """Removing `car` while a saga waits on it: the restarted orchestrator still consumes car's
    replies and commands hotel after it (with car's result); a new saga never commands car."""
    old = await trip.start({"traveller": "ada"})
    await trip.done(old, "flight", {"seat": "12A"})  # car is commanded, and running

    v2 = await restarted(trip, definition("flight", "hotel"))
    assert v2.orchestrator.steps["car"].success in v2.orchestrator.topics
    await v2.done(old, "car", {"car": "C-1"})
    await v2.done(old, "hotel", {"room": 7})

    assert await status(v2, old) == "COMPLETED"
    assert payloads(await v2.commands(old, "hotel")) == [
        {"traveller": "ada", "seat": "12A", "car": "C-1"}
    ]
    new = await v2.start({"traveller": "bob"})
    await v2.done(new, "flight", {"seat": "3C"})
    await v2.done(new, "hotel", {"room": 8})
    assert await status(v2, new) == "COMPLETED"
    assert await commanded(v2, new) == ["flight", "hotel"]


async def test_sagas_in_flight_compensate_a_removed_step(trip: Harness) -> None:
    """A saga past the removed step fails afterwards: the removed step is compensated too."""
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"seat": "12A"})
    await trip.done(saga_id, "car", {"car": "C-1"})  # hotel is running

    v2 = await restarted(trip, definition("flight", "hotel"))
    await v2.failed(saga_id, "hotel", "no room")
    assert payloads(await v2.compensations(saga_id, "car")) == [{"result": {"car": "C-1"}}]
    await v2.compensated(saga_id, "car")
    await v2.compensated(saga_id, "flight")

    saga = await saga_row(v2, saga_id)
    assert (saga.status, saga.reason) == ("COMPENSATED", "hotel: no room")


async def test_a_reply_of_a_step_the_sagas_version_lacks_is_not_the_sagas(trip: Harness) -> None:
    old = await trip.start({"traveller": "ada"})  # keeps car's topics consumed
    v2 = await restarted(trip, definition("flight", "hotel"))
    new = await v2.start({"traveller": "bob"})

    with pytest.raises(Unprocessable, match="has no step 'car'"):
        await v2.done(new, "car", {"car": "C-1"})
    assert await status(v2, old) == await status(v2, new) == "RUNNING"


async def test_a_removed_steps_replies_are_consumed_only_while_a_saga_may_use_it(
    trip: Harness,
) -> None:
    saga_id = await trip.start({"traveller": "ada"})
    v2 = await restarted(trip, definition("flight", "hotel"))
    car = v2.orchestrator.steps["car"]
    assert {car.success, car.dlt} <= set(v2.orchestrator.topics)

    await v2.failed(saga_id, "flight")  # nothing ran: the saga ends at once
    assert await status(v2, saga_id) == "COMPENSATED"
    again = await restarted(v2, definition("flight", "hotel"))
    assert "car" not in again.orchestrator.steps
    assert not {car.success, car.dlt} & set(again.orchestrator.topics)


async def test_a_version_a_replica_still_on_the_old_saga_uses_is_consumed_once_seen(
    trip: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During the rollout a replica still on V1 starts a saga after the new one read the
    versions in flight: the new one consumes car's replies from the moment it handles that
    saga (here, its timer re-sending car's command)."""
    v2 = await restarted(trip, definition("flight", "hotel"))
    assert "car" not in v2.orchestrator.steps
    saga_id = await trip.start({"traveller": "ada"})  # the replica still on V1
    await trip.done(saga_id, "flight", {"seat": "12A"})

    await v2.tick_later(monkeypatch, 3600)
    assert [c.attempt for c in await v2.commands(saga_id, "car")] == [1, 2]
    assert v2.orchestrator.steps["car"].success in v2.orchestrator.topics
    await v2.done(saga_id, "car", {"car": "C-1"}, attempt=2)
    await v2.done(saga_id, "hotel", {"room": 7})
    assert await status(v2, saga_id) == "COMPLETED"


# -- the execution switched -----------------------------------------------------------------------


async def test_a_saga_started_sequential_stays_sequential_after_a_switch_to_parallel(
    trip: Harness,
) -> None:
    old = await trip.start({"traveller": "ada"})
    await trip.done(old, "flight", {"seat": "12A"})  # car is commanded

    v2 = await restarted(trip, V1.with_execution("parallel"))
    await v2.done(old, "car", {"car": "C-1"})
    assert await commanded(v2, old) == ["flight", "car", "hotel"]
    assert payloads(await v2.commands(old, "hotel")) == [
        {"traveller": "ada", "seat": "12A", "car": "C-1"}
    ]
    await v2.done(old, "hotel", {"room": 7})
    assert await status(v2, old) == "COMPLETED"

    new = await v2.start({"traveller": "bob"})
    assert sorted(await commanded(v2, new)) == ["car", "flight", "hotel"]  # all at once
    assert (await saga_row(v2, new)).execution == "parallel"


async def test_a_saga_started_parallel_stays_parallel_after_a_switch_to_sequential(
    tmp_path: Path,
) -> None:
    async with harness(f"sqlite:///{tmp_path / 'o.db'}", V1.with_execution("parallel")) as h:
        await h.orchestrator.start(h.db)
        old = await h.start({"traveller": "ada"})
        v2 = await restarted(h, V1)
        for step in ("flight", "car", "hotel"):
            await v2.done(old, step, {step: 1})
        assert await status(v2, old) == "COMPLETED"
        assert await commanded(v2, old) == ["flight", "car", "hotel"]  # sent at the start


async def test_a_saga_from_before_versions_keeps_the_execution_stored_on_its_row(
    trip: Harness,
) -> None:
    """A saga written before the revision (no version) runs on the current definition, with
    the execution it started with."""
    old = await trip.start({"traveller": "ada"})
    async with trip.db.transaction() as session:
        await session.execute(update(SAGAS).where(SAGAS.c.id == old).values(version=None))
    await trip.done(old, "flight", {"seat": "12A"})

    v2 = await restarted(trip, V1.with_execution("parallel"))
    await v2.done(old, "car", {"car": "C-1"})
    assert payloads(await v2.commands(old, "hotel")) == [
        {"traveller": "ada", "seat": "12A", "car": "C-1"}
    ]


# -- time-outs and attempts -----------------------------------------------------------------------


async def test_old_sagas_keep_their_time_outs_and_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """V1 waits 10 s and gives up after 2 attempts; V2 waits 100 s and tries 5 times. A saga
    started on V1 is re-sent at 10 s, then given up (compensated) at 10 + 20 s; a new saga on
    V2 waits its 100 s."""
    v1 = definition("flight", "hotel", max_attempts=2).with_spec(stepTimeoutSeconds=10)
    async with harness(f"sqlite:///{tmp_path / 'o.db'}", v1) as h:
        await h.orchestrator.start(h.db)
        old = await h.start({"traveller": "ada"})
        v2 = await restarted(h, v1.with_spec(stepTimeoutSeconds=100, maxAttempts=5))
        new = await v2.start({"traveller": "bob"})

        assert await v2.tick_later(monkeypatch, 15) == 1  # the old saga's 10 s
        assert [c.attempt for c in await v2.commands(old, "flight")] == [1, 2]
        await v2.tick_later(monkeypatch, 40)  # its second attempt waited 20 s: the last
        assert [c.attempt for c in await v2.commands(old, "flight")] == [1, 2]
        assert len(await v2.compensations(old, "flight")) == 1
        saga = await saga_row(v2, old)
        assert saga.status == "COMPENSATING"
        assert saga.reason == "flight: timed out (no reply after 2 attempts)"

        assert [c.attempt for c in await v2.commands(new, "flight")] == [1]
        await v2.tick_later(monkeypatch, 150)
        assert [c.attempt for c in await v2.commands(new, "flight")] == [1, 2]


# -- GET /versions --------------------------------------------------------------------------------


async def test_versions_answer_per_step_the_sagas_that_may_still_use_it(trip: Harness) -> None:
    old = await trip.start({"traveller": "ada"})
    ended = await trip.start({"traveller": "cy"})
    await trip.failed(ended, "flight")
    v2 = await restarted(trip, definition("flight", "hotel"))
    new = await v2.start({"traveller": "bob"})

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=v2.app(None)), base_url="http://orchestrator"
    ) as client:
        answer = (await client.get("/versions")).json()
        assert answer["current"] == DefinitionVersion.of(definition("flight", "hotel")).digest
        versions = {v["digest"]: v for v in answer["versions"]}
        assert versions[answer["current"]] | {"first_seen": None} == {
            "digest": answer["current"],
            "current": True,
            "first_seen": None,
            "execution": "sequential",
            "steps": ["flight", "hotel"],
            "in_flight": 1,
        }
        older = versions[DefinitionVersion.of(V1).digest]
        assert (older["current"], older["steps"], older["in_flight"]) == (
            False,
            ["flight", "car", "hotel"],
            1,
        )
        assert answer["steps"] == [
            {"name": "flight", "current": True, "in_flight": 2},
            {"name": "hotel", "current": True, "in_flight": 2},
            {"name": "car", "current": False, "in_flight": 1},
        ]

        saga = (await client.get(f"/sagas/{old}")).json()
        assert saga["version"] == DefinitionVersion.of(V1).digest

        await v2.failed(old, "flight")  # the last saga on V1 ends: car is drained
        answer = (await client.get("/versions")).json()
        assert [v["digest"] for v in answer["versions"]] == [answer["current"]]
        assert answer["steps"] == [
            {"name": "flight", "current": True, "in_flight": 1},
            {"name": "hotel", "current": True, "in_flight": 1},
        ]
    assert await status(v2, new) == "RUNNING"


async def test_versions_count_the_sagas_from_before_versions_by_their_states_steps(
    trip: Harness,
) -> None:
    old = await trip.start({"traveller": "ada"})
    async with trip.db.transaction() as session:
        await session.execute(update(SAGAS).where(SAGAS.c.id == old).values(version=None))
        count = select(func.count()).select_from(SAGAS).where(SAGAS.c.version.is_(None))
        assert (await session.execute(count)).scalar() == 1
    v2 = await restarted(trip, definition("flight", "hotel"))
    assert "car" in v2.orchestrator.steps  # its state names car: car's replies are consumed

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=v2.app(None)), base_url="http://orchestrator"
    ) as client:
        answer = (await client.get("/versions")).json()
    legacy = next(v for v in answer["versions"] if v["digest"] is None)
    assert (legacy["steps"], legacy["in_flight"], legacy["execution"]) == (
        ["flight", "car", "hotel"],
        1,
        None,
    )
    assert {"name": "car", "current": False, "in_flight": 1} in answer["steps"]


# -- the process ----------------------------------------------------------------------------------


async def test_the_served_orchestrator_learns_the_versions_in_flight_before_it_consumes(
    trip: Harness, tmp_path: Path
) -> None:
    """`sagaline serve orchestrator` on the edited Saga: its start (run by the app's lifespan,
    before the consumer subscribes) writes the new version and adds the removed step's replies
    to what the consumer reads, since a saga in flight may still use it."""
    await trip.start({"traveller": "ada"})
    edited = tmp_path / "saga.yaml"
    document = definition("flight", "hotel").model_dump(mode="json", by_alias=True)
    edited.write_text(yaml.safe_dump(document))
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'orchestrator.db'}",  # the fixture's database
        saga_file=edited,
        kafka_bootstrap_servers="127.0.0.1:9",
    )
    app = registration.build_app(registration.find("orchestrator"), settings)
    orchestrator = app.state.runtime.handler
    assert "car" not in orchestrator.steps

    with TestClient(app):  # the lifespan runs; the consumer keeps trying the absent broker
        assert "car" in orchestrator.steps
        assert orchestrator.steps["car"].success in orchestrator.topics
    async with trip.db.reads() as session:
        digests = set((await session.scalars(select(col(SagaVersion.digest)))).all())
    assert digests == {DefinitionVersion.of(V1).digest, orchestrator.version.digest}
