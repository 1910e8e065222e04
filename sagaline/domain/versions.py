"""A Saga's definition version: what the orchestrator runs a saga by, and its digest.

A saga runs to its end on the version it started with (docs/design.md, "Changing a live Saga").
The version holds exactly what the orchestrator and its engine take from a definition: the
Saga's name, its steps in order, each with its effective time-out and attempts, the execution,
and the Saga's own time-out and attempts (`Policy.of`). Nothing else is in it: images, replicas,
resources, Kafka settings, declarations or the API token do not change how a saga runs, so
editing them makes no new version. The digest is the SHA-256 of its canonical JSON document
(keys sorted, no spaces, times as floats), so equal effective settings give one digest whether
a step sets them itself or inherits the Saga's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sagaline.domain.definition import Execution, SagaDefinition, StepTiming
from sagaline.domain.engine import Policy

DIGEST_LENGTH = 64  # hex characters of a SHA-256


@dataclass(frozen=True)
class DefinitionVersion:
    """One version of a Saga as the orchestrator runs it."""

    saga: str
    step_names: tuple[str, ...]
    policy: Policy

    @classmethod
    def of(cls, definition: SagaDefinition) -> DefinitionVersion:
        return cls(definition.name, tuple(definition.step_names), Policy.of(definition))

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> DefinitionVersion:
        """The version a stored document (`document()`) describes."""
        steps = document["steps"]
        return cls(
            saga=document["saga"],
            step_names=tuple(step["name"] for step in steps),
            policy=Policy(
                execution=Execution(document["execution"]),
                step_timeout_s=float(document["stepTimeoutSeconds"]),
                max_attempts=int(document["maxAttempts"]),
                compensation_max_attempts=int(document["compensationMaxAttempts"]),
                steps={
                    step["name"]: StepTiming(
                        float(step["timeoutSeconds"]),
                        int(step["maxAttempts"]),
                        int(step["compensationMaxAttempts"]),
                    )
                    for step in steps
                },
            ),
        )

    @property
    def execution(self) -> Execution:
        return self.policy.execution

    def document(self) -> dict[str, Any]:
        """What is hashed and stored: the canonical form of the version."""
        policy = self.policy
        return {
            "saga": self.saga,
            "execution": str(policy.execution),
            "stepTimeoutSeconds": float(policy.step_timeout_s),
            "maxAttempts": policy.max_attempts,
            "compensationMaxAttempts": policy.compensation_attempts,
            "steps": [
                {
                    "name": name,
                    "timeoutSeconds": float(timing.timeout_s),
                    "maxAttempts": timing.max_attempts,
                    "compensationMaxAttempts": timing.compensation_max_attempts,
                }
                for name in self.step_names
                for timing in [policy.timing(name)]
            ],
        }

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def with_execution(self, execution: Execution | str) -> DefinitionVersion:
        return replace(self, policy=replace(self.policy, execution=Execution(execution)))

    def earlier(self, step: str, order: tuple[str, ...] | list[str] | None = None) -> list[str]:
        """Whose results the command of `step` carries: the steps before it (in `order`, by
        default the version's) when the steps run in turn, none when they run in parallel."""
        names = list(self.step_names if order is None else order)
        if self.execution is not Execution.SEQUENTIAL or step not in names:
            return []
        return names[: names.index(step)]
