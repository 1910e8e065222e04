"""The chaos harness's plan and arithmetic, without a stack."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

from sagaline.measure.chaos import (
    KIND_OF_TARGET,
    TARGETS,
    ChaosOptions,
    Fault,
    Injected,
    Injector,
    fault_plan,
    recovery_times,
    timeline,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def first(options: ChaosOptions, count: int) -> list[Fault]:
    return list(itertools.islice(fault_plan(options), count))


def test_the_same_seed_gives_the_same_faults() -> None:
    assert first(ChaosOptions(seed=7), 30) == first(ChaosOptions(seed=7), 30)
    assert first(ChaosOptions(seed=7), 30) != first(ChaosOptions(seed=8), 30)


def test_every_round_hits_every_target_once() -> None:
    faults = first(ChaosOptions(seed=1), 4 * len(TARGETS))
    for start in range(0, len(faults), len(TARGETS)):
        kinds = {fault.kind for fault in faults[start : start + len(TARGETS)]}
        assert kinds == {"service", "relay", "broker", "database"}


def test_only_the_chosen_targets_are_hit() -> None:
    faults = first(ChaosOptions(seed=2, targets=("relays",)), 20)
    assert {fault.kind for fault in faults} == {"relay"}
    assert all(fault.victim.endswith("-relay") for fault in faults)
    assert all(0.2 <= fault.downtime_s <= ChaosOptions().max_downtime_s for fault in faults)


def injected(kind: str, seconds: float) -> Injected:
    return Injected(Fault(kind, "x", 0.0, 0.0), T0 + timedelta(seconds=seconds))


def test_recovery_is_the_time_to_the_next_decided_order() -> None:
    decided = [T0 + timedelta(seconds=s) for s in (1.0, 7.5, 3.0)]
    faults = [injected("broker", 2.0), injected("service", 5.0), injected("relay", 9.0)]

    assert recovery_times(faults, decided) == [1.0, 2.5, None]


def test_timeline_marks_each_fault_in_its_column() -> None:
    decided = [T0 + timedelta(seconds=s) for s in range(10)]
    line = timeline([injected("broker", 0.0), injected("database", 9.0)], decided, columns=10)

    assert sum(line["decided"]) == 10
    assert line["faults"][0] == "B" and line["faults"][-1] == "D"


class Recording(Injector):
    """An injector that only records what it would inject (no stack)."""

    def __init__(self) -> None:
        super().__init__(stack=None)  # type: ignore[arg-type]
        self.kinds: list[str] = []

    async def inject(self, fault: Fault) -> None:
        self.kinds.append(fault.kind)


async def test_a_run_past_its_end_still_injects_each_kind_once() -> None:
    """As when a slow broker repair used up a short run: each kind still comes, once, at once."""
    injector = Recording()
    kinds = {KIND_OF_TARGET[target] for target in TARGETS}
    ended = time.monotonic()
    await asyncio.wait_for(injector.run(fault_plan(ChaosOptions(seed=11)), ended, kinds), 5)
    assert sorted(injector.kinds) == sorted(kinds)
    await injector.run(fault_plan(ChaosOptions(seed=11)), ended)  # no kinds asked: none
    assert len(injector.kinds) == len(kinds)
