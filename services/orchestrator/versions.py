"""The definition versions the orchestrator keeps: the table of versions, the cache of those the
sagas it handles run on, and which are still in use (docs/design.md, "Changing a live Saga").

A version never changes once written (its digest is its content), so a process caches every
version it has read for its lifetime. A saga with no version (written before versions were kept)
runs on the current definition with the execution stored on its row, and its steps are those its
state names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sagaline.domain.clock import utcnow
from sagaline.domain.engine import SagaStatus
from sagaline.domain.versions import DefinitionVersion
from sagaline.services.orchestrator.models import Saga, SagaVersion
from sagaline.storage.tables import table_of

VERSIONS: Table = table_of(SagaVersion)
SAGAS: Table = table_of(Saga)
# In flight: a saga that may still command or compensate a step.
IN_FLIGHT = [status for status in SagaStatus if not status.terminal]  # STUCK included
_REGISTER = {
    name: dialect.insert(VERSIONS).on_conflict_do_nothing()
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


class UnknownVersion(LookupError):
    """A saga names a version the table does not hold."""


@dataclass(frozen=True)
class InFlight:
    """The sagas in flight on one version (`digest` None: sagas from before versions were kept,
    whose steps are the union of their states')."""

    digest: str | None
    steps: tuple[str, ...]
    sagas: int


async def register(session: AsyncSession, version: DefinitionVersion) -> None:
    """Write the version if the table lacks it (two replicas starting at once: one row)."""
    row = {
        "digest": version.digest,
        "saga": version.saga,
        "spec": version.document(),
        "first_seen": utcnow(),
    }
    await session.execute(_REGISTER[session.get_bind().dialect.name], [row])


async def read(session: AsyncSession, digests: Iterable[str]) -> dict[str, SagaVersion]:
    """The stored versions of `digests` (those the table holds)."""
    wanted = set(digests)
    if not wanted:
        return {}
    result = await session.execute(select(VERSIONS).where(VERSIONS.c.digest.in_(wanted)))
    return {row["digest"]: SagaVersion(**row) for row in result.mappings()}


async def in_flight(session: AsyncSession, saga: str) -> list[InFlight]:
    """The versions the sagas in flight of Saga `saga` run on, each with its steps and count.

    One grouped count for the versioned sagas; the states of the sagas from before versions
    were kept (their number only falls) for theirs."""
    counts = await session.execute(
        select(SAGAS.c.version, func.count())
        .where(SAGAS.c.name == saga, SAGAS.c.status.in_(list(IN_FLIGHT)))
        .group_by(SAGAS.c.version)
    )
    by_digest: dict[str | None, int] = {digest: count for digest, count in counts.all()}
    stored = await read(session, [d for d in by_digest if d is not None])
    found = [
        InFlight(digest, tuple(_steps(stored[digest].spec)), count)
        for digest, count in by_digest.items()
        if digest is not None and digest in stored
    ]
    if by_digest.get(None):
        states = await session.execute(
            select(SAGAS.c.state).where(
                SAGAS.c.name == saga,
                SAGAS.c.status.in_(list(IN_FLIGHT)),
                SAGAS.c.version.is_(None),
            )
        )
        steps: dict[str, None] = {}
        for (state,) in states.all():
            steps.update(dict.fromkeys((state or {}).get("steps", {})))
        found.append(InFlight(None, tuple(steps), by_digest[None]))
    return found


def _steps(document: dict[str, Any]) -> list[str]:
    return [step["name"] for step in document["steps"]]


@dataclass
class Versions:
    """The current version and every version read so far, by digest."""

    current: DefinitionVersion
    known: dict[str, DefinitionVersion] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.known[self.current.digest] = self.current

    async def load(
        self, session: AsyncSession, digests: Iterable[str | None]
    ) -> list[DefinitionVersion]:
        """Read the versions of `digests` not cached yet, and return them (a digest the table
        lacks is left out: the saga that names it fails alone, in `of`)."""
        missing = {d for d in digests if d is not None and d not in self.known}
        if not missing:
            return []
        stored = await read(session, missing)
        loaded = [DefinitionVersion.from_document(row.spec) for row in stored.values()]
        self.known.update((version.digest, version) for version in loaded)
        return loaded

    def of(self, digest: str | None, execution: str) -> DefinitionVersion:
        """The version a saga runs on: its own (loaded), else the current one with the
        execution stored on its row."""
        if digest is None:
            return self.current.with_execution(execution)
        try:
            return self.known[digest]
        except KeyError:
            raise UnknownVersion(f"definition version {digest} is not in the table") from None
