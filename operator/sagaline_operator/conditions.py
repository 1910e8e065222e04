"""Status of a Saga: readiness of its children, conditions, and what changed since last time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Body = dict[str, Any]

TOPICS_READY = "TopicsReady"
WORKLOADS_READY = "WorkloadsReady"
USERS_READY = "KafkaUsersReady"  # only when the spec asks for Kafka authentication
READY = "Ready"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


def _ready_condition(obj: Body) -> Body | None:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def strimzi_problem(topic: Body | None, name: str) -> str | None:
    """Why a KafkaTopic or KafkaUser is not ready (None if it is): Strimzi says Ready for its
    generation."""
    if topic is None:
        return f"{name} (missing)"
    generation = topic.get("metadata", {}).get("generation")
    observed = topic.get("status", {}).get("observedGeneration")
    ready = _ready_condition(topic)
    if ready is None or (generation is not None and observed != generation):
        return f"{name} (not yet reconciled by Strimzi)"
    if ready.get("status") != "True":
        detail = ready.get("message") or ready.get("reason") or "not ready"
        return f"{name} ({detail})"
    return None


def deployment_problem(deployment: Body | None, name: str) -> str | None:
    """Why a Deployment is not ready (None if it is): rolled out, every replica ready."""
    if deployment is None:
        return f"{name} (missing)"
    generation = deployment.get("metadata", {}).get("generation")
    status = deployment.get("status") or {}
    wanted = deployment.get("spec", {}).get("replicas", 1)
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return f"{name} (rollout not yet observed)"
    updated = status.get("updatedReplicas", 0)
    ready = status.get("readyReplicas", 0)
    if updated < wanted or ready < wanted:
        return f"{name} ({min(ready, updated)}/{wanted} ready)"
    return None


def readiness(kind: str, problems: list[str], total: int) -> Condition:
    """`TopicsReady` or `WorkloadsReady`: reasons `TopicsReady` / `TopicsNotReady` and alike."""
    if not problems:
        return Condition(kind, True, kind, f"{total} of {total} ready")
    shown = ", ".join(problems[:5]) + (
        f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    )
    not_ready = kind.replace("Ready", "NotReady")
    return Condition(kind, False, not_ready, f"{len(problems)} of {total} not ready: {shown}")


def ready(*parts: Condition) -> Condition:
    """Ready when every part is (the topics, the services, and the Kafka users if any)."""
    waiting = [c for c in parts if not c.status]
    if not waiting:
        return Condition(READY, True, "Ready", "every topic and every service is ready")
    return Condition(READY, False, waiting[0].reason, "; ".join(c.message for c in waiting))


def refused(reason: str, message: str) -> Condition:
    return Condition(READY, False, reason, message)


def merge(previous: list[Body], updates: list[Condition], generation: int | None) -> list[Body]:
    """The conditions with `updates` applied; a transition time changes only with the status."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    by_type = {c.get("type"): dict(c) for c in previous}
    for update in updates:
        old = by_type.get(update.type) or {}
        changed = old.get("status") != update.status_text
        by_type[update.type] = {
            "type": update.type,
            "status": update.status_text,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),
            **({"observedGeneration": generation} if generation is not None else {}),
        }
    order = [TOPICS_READY, USERS_READY, WORKLOADS_READY, READY]
    return sorted(
        by_type.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else 9
    )


def find(conditions: list[Body], kind: str) -> Body | None:
    return next((c for c in conditions if c.get("type") == kind), None)
