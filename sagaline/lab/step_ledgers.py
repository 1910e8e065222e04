"""The invariants any Saga keeps (docs/design.md, "Invariants"), checked from the orchestrator's
sagas and the effect ledger the SDK keeps in every step's database (`step_outcome`: the outcome
of each saga's command at that step, and whether a compensation undid it).

- every saga is terminal (ended), and none FAILED (a compensation given up);
- a COMPLETED saga has every step's effect standing (APPLIED, not undone);
- a compensated saga has none standing;
- no step holds an effect for a saga the orchestrator does not know.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sagaline.domain.definition import SagaDefinition
from sagaline.domain.messages import ORDER_SAGA
from sagaline.lab.verify import Report, rows, verify

# Applied and never undone (an unset JSON column may hold JSON null rather than SQL NULL).
STANDING = (
    "SELECT saga_id FROM step_outcome WHERE status = 'APPLIED'"
    " AND (compensation_reply IS NULL OR CAST(compensation_reply AS TEXT) = 'null')"
)
ENDED = ("COMPLETED", "COMPENSATED")


def verify_ledgers(
    orchestrator_url: str, step_urls: Mapping[str, str], saga: str, steps: Sequence[str]
) -> Report:
    """Check the sagas of the Saga named `saga` (its orchestrator's database) against the
    ledgers of its `steps` (each step's database, by name)."""
    [saga_rows] = rows(
        orchestrator_url, f"SELECT id, status FROM saga WHERE name = '{_name(saga)}'"
    )
    sagas = {_id(saga_id): status for saga_id, status in saga_rows}
    report = Report(checked={"sagas": len(sagas)})
    for saga_id, status in sagas.items():
        if status == "FAILED":
            report.violate("no saga FAILED", f"saga {saga_id}: compensation was given up")
        elif status not in ENDED:
            report.violate("every saga is terminal", f"saga {saga_id} is {status}")
    for step in steps:
        [standing_rows] = rows(step_urls[step], STANDING)
        standing = {_id(row[0]) for row in standing_rows}
        report.checked[f"{step} effects standing"] = len(standing)
        for saga_id, status in sorted(sagas.items()):
            if status == "COMPLETED" and saga_id not in standing:
                report.violate(
                    "a COMPLETED saga has every step's effect", f"saga {saga_id}: none at {step}"
                )
            if status == "COMPENSATED" and saga_id in standing:
                report.violate(
                    "a compensated saga has no effect standing", f"saga {saga_id}: at {step}"
                )
        for saga_id in sorted(standing - sagas.keys()):
            report.violate("no effect without its saga", f"saga {saga_id} unknown, at {step}")
    return report


def _id(value: object) -> str:
    """A saga id as text, whether the driver gives a UUID or SQLite's 32 hex digits."""
    return str(uuid.UUID(str(value)))


def _name(saga: str) -> str:
    if not saga.replace("-", "").isalnum():
        raise ValueError(f"not a Saga name: {saga!r}")
    return saga


def verify_saga(definition: SagaDefinition, urls: Mapping[str, str]) -> Report:
    """Every invariant of one Saga, `urls` giving each of its services' database: the generic
    ones for any Saga, and for the order saga (`order`, with its order-service) also the
    orders' and the books' (`sagaline.lab.verify`)."""
    steps = definition.step_names
    report = verify_ledgers(urls["orchestrator"], urls, definition.name, steps)
    if definition.name == ORDER_SAGA and definition.spec.initiator_name == "order":
        reference = verify(dict(urls))
        report.checked = {**reference.checked, **report.checked}
        for invariant, details in reference.violations.items():
            known = report.violations.setdefault(invariant, [])
            known.extend(detail for detail in details if detail not in known)
    return report
