"""`GET /versions`: the definition versions sagas in flight run on, and per step how many sagas
in flight may still command or compensate it — what a step removed from the Saga waits for
before its topics and service go (docs/design.md, "Changing a live Saga")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from sagaline.service import Runtime, runtime_of
from sagaline.services.orchestrator.handler import Orchestrator
from sagaline.services.orchestrator.versions import in_flight, read

router = APIRouter(tags=["versions"])
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


class VersionOut(BaseModel):
    digest: str | None = Field(
        description="SHA-256 of the version's document; null: sagas from before versions were "
        "kept, which run on the current definition"
    )
    current: bool = Field(description="whether new sagas start on it")
    first_seen: datetime | None
    execution: str | None
    steps: list[str] = Field(description="its steps, in order")
    in_flight: int = Field(description="its sagas running or compensating")


class StepUse(BaseModel):
    name: str
    current: bool = Field(description="whether the current definition has the step")
    in_flight: int = Field(
        description="sagas in flight whose version has the step: they may still command or "
        "compensate it (0: a step the current definition lacks can be removed)"
    )


class VersionsOut(BaseModel):
    saga: str
    current: str = Field(description="the digest new sagas start on")
    versions: list[VersionOut] = Field(description="the current one, then those in flight")
    steps: list[StepUse] = Field(description="the current steps, then the older ones in use")


@router.get("/versions", response_model=VersionsOut)
async def versions(runtime: RuntimeDep) -> VersionsOut:
    """The current version and every version sagas in flight run on, with their counts, and per
    step the sagas in flight that may still command or compensate it."""
    orchestrator = runtime.handler
    assert isinstance(orchestrator, Orchestrator)
    current = orchestrator.version
    async with runtime.db.reads() as session:
        used = await in_flight(session, current.saga)
        stored = await read(session, [current.digest, *(u.digest for u in used if u.digest)])
    counts = {u.digest: u for u in used}
    listed = [current.digest, *(u.digest for u in used if u.digest != current.digest)]
    out = []
    for digest in listed:
        row = stored.get(digest) if digest is not None else None
        use = counts.get(digest)
        execution: str | None = None
        if digest == current.digest:
            names, execution = list(current.step_names), str(current.execution)
        else:
            names = list(use.steps) if use else []
            execution = row.spec["execution"] if row is not None else None
        out.append(
            VersionOut(
                digest=digest,
                current=digest == current.digest,
                first_seen=row.first_seen if row is not None else None,
                execution=execution,
                steps=names,
                in_flight=use.sagas if use else 0,
            )
        )
    steps = [
        StepUse(
            name=name,
            current=name in current.step_names,
            in_flight=sum(v.in_flight for v in out if name in v.steps),
        )
        for name in dict.fromkeys([*current.step_names, *(s for v in out for s in v.steps)])
    ]
    return VersionsOut(saga=current.saga, current=current.digest, versions=out, steps=steps)
