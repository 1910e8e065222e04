"""Walking the simulated world: every schedule up to a bound of faults, or random ones.

Exhaustive: a depth-first search over the scheduler's choices from the start of the saga, for
each business answer of the steps (accept or reject; in sequential execution the answers after a
rejection are never asked, so three for two steps, four in parallel). A schedule ends when the
system is quiescent (nothing in flight, no timer set); what can still come then, a stale copy of
something already read, is explored too while faults are left. Reductions, all exact (every end
state of the full search is reached; the unit tests compare both):

- State hashing: a state met again is not explored again; its counts (schedules below it, and
  violating ones) are remembered, so `schedules` counts every path of the explored graph.
  Deliveries to different services commute (each changes its reader's state and appends to
  channels that have one writer each), so interleavings that differ only by their order meet
  in one state.
- Canonical states: message ids are named by what the message is, times are relative to the
  clock, reasons (text) are left out, and a copy its reader's inbox would drop is dropped at
  once (a crash or a duplicate that only makes such copies changes nothing but the budget).
- Partial-order reduction once no fault is left: only a persistent set of the deliveries is
  explored (those to one service that nothing else can feed meanwhile; `World.persistent`).

The depth is bounded (`max_steps`): a schedule not quiescent by then breaks liveness ("not
terminal"), which is how an order left PENDING for ever shows.

Random: from a seed, the business answers, a fault intensity and every choice. A violation is
shrunk (the shortest failing prefix, then every choice that can go without adding a fault) and
replayed with a trace; the seed replays it (`--replay SEED`).

One module at about 400 lines on purpose: the search and its reductions are one algorithm, whose
exactness the unit tests check as a whole; the world it walks is in the modules beside it.
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagaline.domain.definition import Execution, SagaDefinition
from sagaline.simulation.calls import calling_steps
from sagaline.simulation.faults import FAULT_KINDS, Act
from sagaline.simulation.model import Model
from sagaline.simulation.world import World

# How likely each fault is, once the scheduler has decided to inject one.
FAULT_WEIGHTS = {
    "drop": 3,
    "duplicate": 2,
    "stale": 2,
    "reorder": 2,
    "dead_letter": 3,
    "poison": 1,
    "delay": 3,
    "crash": 1,
    "call_timeout": 2,
    "worker_crash": 1,
}
ACCEPT_PROBABILITY = 0.75
INTENSITIES = (0.1, 0.25, 0.5)  # chance that a choice is a fault, one per seed
NO_QUIESCENCE = "not terminal: no quiescence"
# Told the count so far, now and then: states explored (exhaustive), schedules run (random).
OnCount = Callable[[int], None]


@dataclass
class Violation:
    problems: list[str]
    scenario: str
    script: list[Act]
    trace: list[str] = field(default_factory=list)
    seed: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "problems": self.problems,
            "scenario": self.scenario,
            "seed": self.seed,
            "script": [str(act) for act in self.script],
            "trace": self.trace,
        }


@dataclass
class Report:
    mode: str
    execution: str
    saga: str
    max_faults: int
    max_steps: int
    schedules: int = 0
    violating_schedules: int = 0
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0
    states: int = 0
    transitions: int = 0
    revisits: int = 0
    scenarios: list[str] = field(default_factory=list)
    seeds: tuple[int, int] | None = None
    faults: Counter[str] = field(default_factory=Counter)
    steps: Counter[str] = field(default_factory=Counter)  # longest and total, random mode
    calling: list[str] = field(default_factory=list)  # the calling steps (simulation/calls.py)

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "mode": self.mode,
            "execution": str(self.execution),
            "saga": self.saga,
            "max_faults": self.max_faults,
            "max_steps": self.max_steps,
            "schedules": self.schedules,
            "violations": self.violating_schedules,
            "details": [v.as_json() for v in self.violations],
            "seconds": round(self.seconds, 3),
            "scenarios": self.scenarios,
            "calling_steps": self.calling,
        }
        if self.mode == "exhaustive":
            result |= {
                "states": self.states,
                "transitions": self.transitions,
                "revisits": self.revisits,
            }
        else:
            result |= {
                "seeds": list(self.seeds) if self.seeds else None,
                "faults": dict(sorted(self.faults.items())),
                "steps_longest": self.steps["longest"],
                "steps_mean": round(self.steps["total"] / max(self.schedules, 1), 1),
            }
        return result


def scenarios(definition: SagaDefinition) -> list[tuple[bool, ...]]:
    """Every business answer of the steps (accept or reject); in sequential execution the
    answers after a rejection never matter, so they are taken once."""
    seen: dict[tuple[bool, ...], tuple[bool, ...]] = {}
    for answers in itertools.product((True, False), repeat=len(definition.step_names)):
        canonical = answers
        if definition.spec.execution is Execution.SEQUENTIAL and False in answers:
            first = answers.index(False)
            canonical = answers[: first + 1] + (True,) * (len(answers) - first - 1)
        seen.setdefault(canonical, canonical)
    return list(seen)


def judge(world: World) -> list[str]:
    quiescent = world.quiescent()
    problems = world.violations(quiescent=quiescent)
    if not quiescent:
        problems.insert(0, f"{NO_QUIESCENCE} after {world.steps_taken} events ({world.summary()})")
    return problems


def category(problems: list[str]) -> str:
    """The invariant a violation breaks (what shrinking must keep breaking)."""
    return problems[0].split(":", 1)[0] if problems else ""


def kind(problems: list[str]) -> str:
    """A violation without the state it was found in (violations of one kind are shown once)."""
    return problems[0].split(" (", 1)[0].split(" after ", 1)[0] if problems else ""


# -- exhaustive -----------------------------------------------------------------------------


class Explorer:
    def __init__(
        self,
        report: Report,
        progress: OnCount | None,
        keep: int,
        *,
        reduce: bool = True,
        ends: set[tuple[object, ...]] | None = None,
    ) -> None:
        self.report = report
        self.reduce = reduce
        self.ends = ends  # the keys of the end states, if asked (the reduction's tests)
        self.progress = progress
        self.keep = keep
        self.memo: dict[tuple[object, ...], tuple[int, int]] = {}

    def visit(self, world: World, path: list[Act]) -> tuple[int, int]:
        key = world.key()
        known = self.memo.get(key)
        if known is not None:
            self.report.revisits += 1
            return known
        report = self.report
        paths = bad = 0
        quiescent = world.quiescent()
        if quiescent or world.steps_taken >= report.max_steps:  # a schedule ends here
            problems = judge(world)
            if problems:
                self._record(world, problems, path)
            if self.ends is not None:
                self.ends.add(key)
            paths, bad = 1, 1 if problems else 0
            # and goes on only with what can come after the end: stale copies
            choices = world.actions() if quiescent and world.faults_left > 0 else []
        elif world.faults_left > 0 or not self.reduce:
            choices = world.actions()
        else:
            choices = world.persistent()
        for act in choices:
            after = world.clone()
            after.apply(act)
            report.transitions += 1
            path.append(act)
            below = self.visit(after, path)
            path.pop()
            paths += below[0]
            bad += below[1]
        result = (paths, bad)
        self.memo[key] = result
        report.states += 1
        if self.progress is not None and report.states % 5000 == 0:
            self.progress(report.states)
        return result

    def _record(self, world: World, problems: list[str], path: list[Act]) -> None:
        kinds = {kind(v.problems) for v in self.report.violations}
        if len(self.report.violations) < self.keep and kind(problems) not in kinds:
            scenario = world.m.describe()
            self.report.violations.append(Violation(problems, scenario, list(path)))


def exhaustive(
    definition: SagaDefinition,
    *,
    max_faults: int,
    max_steps: int,
    progress: OnCount | None = None,
    keep: int = 5,
    shrinking: bool = True,
    reduce: bool = True,
    ends: set[tuple[object, ...]] | None = None,
    calling: Mapping[str, int] | None = None,
) -> Report:
    started = time.perf_counter()
    report = Report("exhaustive", definition.spec.execution, definition.name, max_faults, max_steps)
    calling = calling_steps(definition) if calling is None else calling
    report.calling = list(calling)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * max_steps + 1000))
    try:
        for answers in scenarios(definition):
            model = Model(definition, answers, calling)
            report.scenarios.append(model.describe())
            explorer = Explorer(report, progress, keep, reduce=reduce, ends=ends)
            before = len(report.violations)
            paths, bad = explorer.visit(World(model, max_faults), [])
            report.schedules += paths
            report.violating_schedules += bad
            for violation in report.violations[before:]:
                explain(model, violation, max_steps, shrinking=shrinking)
    finally:
        sys.setrecursionlimit(limit)
    report.seconds = time.perf_counter() - started
    return report


# -- random ---------------------------------------------------------------------------------


class Models:
    """One Model per business answer, made once (the calling steps: from the declarations,
    unless given)."""

    def __init__(
        self, definition: SagaDefinition, calling: Mapping[str, int] | None = None
    ) -> None:
        self.definition = definition
        self.calling = calling_steps(definition) if calling is None else dict(calling)
        self._models: dict[tuple[bool, ...], Model] = {}

    def __call__(self, answers: tuple[bool, ...]) -> Model:
        model = self._models.get(answers)
        if model is None:
            model = self._models[answers] = Model(self.definition, answers, self.calling)
        return model


def run_seed(
    models: Models, seed: int, *, max_faults: int, max_steps: int, trace: bool = False
) -> tuple[World, list[Act], list[str]]:
    rng = random.Random(seed)
    steps = len(models.definition.step_names)
    answers = tuple(rng.random() < ACCEPT_PROBABILITY for _ in range(steps))
    world = World(models(answers), max_faults, trace=trace)
    intensity = rng.choice(INTENSITIES)
    script: list[Act] = []
    while not world.quiescent() and world.steps_taken < max_steps:
        act = None
        if world.faults_left > 0 and rng.random() < intensity:
            faults = [a for a in world.actions() if a.fault]
            if faults:
                present = sorted({a.kind for a in faults}, key=FAULT_KINDS.index)
                weights = [FAULT_WEIGHTS[kind] for kind in present]
                kind = rng.choices(present, weights)[0]
                act = rng.choice([a for a in faults if a.kind == kind])
        if act is None:
            act = rng.choice(world.actions(faults=False))
        done = world.apply(act)
        assert done is not None, act
        script.append(done)
    return world, script, judge(world)


def random_runs(
    definition: SagaDefinition,
    seeds: Iterable[int],
    *,
    max_faults: int,
    max_steps: int,
    progress: OnCount | None = None,
    keep: int = 5,
    shrinking: bool = True,
    calling: Mapping[str, int] | None = None,
) -> Report:
    started = time.perf_counter()
    seeds = list(seeds)
    report = Report("random", definition.spec.execution, definition.name, max_faults, max_steps)
    report.seeds = (seeds[0], seeds[-1]) if seeds else None
    models = Models(definition, calling)
    report.calling = list(models.calling)
    for done, seed in enumerate(seeds, 1):
        world, script, problems = run_seed(models, seed, max_faults=max_faults, max_steps=max_steps)
        report.schedules += 1
        report.faults.update(act.kind for act in script if act.fault)
        report.steps["total"] += world.steps_taken
        report.steps["longest"] = max(report.steps["longest"], world.steps_taken)
        if problems:
            report.violating_schedules += 1
            kinds = {kind(v.problems) for v in report.violations}
            if len(report.violations) < keep and kind(problems) not in kinds:
                violation = Violation(problems, world.m.describe(), script, seed=seed)
                explain(world.m, violation, max_steps, shrinking=shrinking)
                report.violations.append(violation)
        if progress is not None and done % 1000 == 0:
            progress(done)
    report.scenarios = [models(a).describe() for a in scenarios(definition)]
    report.seconds = time.perf_counter() - started
    return report


# -- replay and shrinking -------------------------------------------------------------------


def replay(
    model: Model, script: list[Act], max_steps: int, *, trace: bool = False
) -> tuple[World, list[Act]]:
    """Apply the script's choices (those possible), then settle with no faults; returns the
    world and the choices as they were made (settling included)."""
    world = World(model, len(script) + 1, trace=trace)
    made: list[Act] = []
    for act in script:
        if world.steps_taken >= max_steps:
            break
        done = world.apply(act)
        if done is not None:
            made.append(done)
    world.faults_left = 0
    while not world.quiescent() and world.steps_taken < max_steps:
        done = world.apply(world.actions(faults=False)[0])
        assert done is not None
        made.append(done)
    return world, made


def shrink(model: Model, script: list[Act], target: str, max_steps: int) -> list[Act]:
    """A shorter script that still breaks the same invariant with no more faults: the shortest
    failing prefix (binary search), then every choice whose removal keeps it failing (a choice
    removed may turn a later timer into a delay: a fault more, which is refused)."""
    most = sum(act.fault for act in replay(model, script, max_steps)[1])

    def fails(candidate: list[Act]) -> bool:
        world, made = replay(model, candidate, max_steps)
        if sum(act.fault for act in made) > most:
            return False
        return category(judge(world)) == target

    low, high = 0, len(script)
    while low < high:
        middle = (low + high) // 2
        if fails(script[:middle]):
            high = middle
        else:
            low = middle + 1
    if fails(script[:high]):
        script = script[:high]
    index = len(script) - 1
    while index >= 0:
        candidate = script[:index] + script[index + 1 :]
        if fails(candidate):
            script = candidate
        index -= 1
    return script


def explain(model: Model, violation: Violation, max_steps: int, *, shrinking: bool) -> None:
    """Shrink the violation's script (if asked) and record the trace of its replay."""
    target = category(violation.problems)
    if shrinking:
        violation.script = shrink(model, violation.script, target, max_steps)
    world, made = replay(model, violation.script, max_steps, trace=True)
    if shrinking:  # the choices as made, up to the last fault (settling does the rest)
        faults = [index for index, act in enumerate(made) if act.fault]
        violation.script = made[: faults[-1] + 1] if faults else []
    violation.problems = judge(world) or violation.problems
    violation.trace = [f"scenario: {model.describe()}", *(world.trace or [])]
    violation.trace += [f"violated: {problem}" for problem in violation.problems]


def replay_seed(
    definition: SagaDefinition,
    seed: int,
    *,
    max_faults: int,
    max_steps: int,
    shrinking: bool,
    calling: Mapping[str, int] | None = None,
) -> tuple[World, Violation | None]:
    """One seed again, with its full trace; its violation (shrunk) if it has one."""
    models = Models(definition, calling)
    world, script, problems = run_seed(
        models, seed, max_faults=max_faults, max_steps=max_steps, trace=True
    )
    if not problems:
        return world, None
    violation = Violation(problems, world.m.describe(), script, seed=seed)
    explain(world.m, violation, max_steps, shrinking=shrinking)
    return world, violation
