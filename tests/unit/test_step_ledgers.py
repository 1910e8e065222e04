"""The generic invariants (`sagaline.lab.step_ledgers`): each one caught on real databases
built by the services' own migrations, and all of them holding on books that agree."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from sagaline.delivery.participant import OUTCOMES
from sagaline.domain.clock import utcnow
from sagaline.lab.step_ledgers import verify_ledgers
from sagaline.registration import find
from sagaline.services.orchestrator.models import Saga
from sagaline.storage import migrate

STEPS = ["flight", "hotel"]


def databases(tmp_path: Path) -> tuple[str, dict[str, str]]:
    orchestrator = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    migrate.upgrade(_async(orchestrator), find("orchestrator").migrations, participant=False)
    steps = {}
    for step in STEPS:
        url = f"sqlite:///{tmp_path / f'{step}.db'}"
        migrate.upgrade(_async(url), None, participant=True)
        steps[step] = url
    return orchestrator, steps


def _async(url: str) -> str:
    return url.replace("sqlite:", "sqlite+aiosqlite:", 1)


def saga(url: str, status: str, name: str = "travel") -> str:
    saga_id = uuid.uuid4()
    with Session(create_engine(url)) as session:
        session.add(Saga(id=saga_id, name=name, status=status, execution="sequential",
                         payload={}, state={}))  # fmt: skip
        session.commit()
    return str(saga_id)


def outcome(url: str, saga_id: str, status: str = "APPLIED", undone: bool = False) -> None:
    row = {
        "saga_id": uuid.UUID(saga_id),
        "status": status,
        "reply": {"payload": {}},
        "compensation_reply": {"payload": {"effect": "undone"}} if undone else None,
        "updated_at": utcnow(),
    }
    with create_engine(url).begin() as connection:
        connection.execute(insert(OUTCOMES), [row])


def test_books_that_agree_hold_every_invariant(tmp_path: Path) -> None:
    orchestrator, steps = databases(tmp_path)
    completed = saga(orchestrator, "COMPLETED")
    compensated = saga(orchestrator, "COMPENSATED")
    saga(orchestrator, "RUNNING", name="order")  # another Saga's: not checked here
    for step in STEPS:
        outcome(steps[step], completed)
    outcome(steps["flight"], compensated, undone=True)
    outcome(steps["hotel"], compensated, status="REJECTED")
    report = verify_ledgers(orchestrator, steps, "travel", STEPS)
    assert report.ok, report.violations
    assert report.checked == {"sagas": 2, "flight effects standing": 1, "hotel effects standing": 1}


def test_each_broken_invariant_is_named(tmp_path: Path) -> None:
    orchestrator, steps = databases(tmp_path)
    running = saga(orchestrator, "RUNNING")
    failed = saga(orchestrator, "FAILED")
    completed = saga(orchestrator, "COMPLETED")  # its hotel never applied
    compensated = saga(orchestrator, "COMPENSATED")  # its flight never undone
    outcome(steps["flight"], completed)
    outcome(steps["flight"], compensated)
    stray = str(uuid.uuid4())
    outcome(steps["hotel"], stray)
    report = verify_ledgers(orchestrator, steps, "travel", STEPS)
    assert report.violations == {
        "every saga is terminal": [f"saga {running} is RUNNING"],
        "no saga FAILED": [f"saga {failed}: compensation was given up"],
        "a COMPLETED saga has every step's effect": [f"saga {completed}: none at hotel"],
        "a compensated saga has no effect standing": [f"saga {compensated}: at flight"],
        "no effect without its saga": [f"saga {stray} unknown, at hotel"],
    }
