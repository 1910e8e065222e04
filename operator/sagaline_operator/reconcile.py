"""Level-based reconciliation of one Saga: read it, compare with its children, repair, report.

Every pass starts from what the API server holds now (never from the event that triggered it), so
a create, an update, a resume after a restart and the periodic re-check all run the same code, and
running it twice changes nothing the second time. Passes over one Saga never overlap.

One module at about 400 lines on purpose: a pass reads top to bottom, read → compare → repair →
report; what it applies is built in `manifests/`, what it reports in `conditions.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from sagaline.domain.definition import SagaDefinition
from sagaline_operator import conditions as cond
from sagaline_operator import manifests
from sagaline_operator.config import GROUP, VERSION, OperatorConfig
from sagaline_operator.kube import (
    CONFIG_MAP,
    DEPLOYMENT,
    DISRUPTION_BUDGET,
    SERVICE,
    Kind,
    Kube,
    kafka_topic_kind,
    kafka_user_kind,
)

log = logging.getLogger(__name__)

Body = dict[str, Any]
Emit = Callable[[str, str, str], None]  # (Normal | Warning, reason, message): a Kubernetes Event

SAGA = Kind(f"{GROUP}/{VERSION}", "Saga")
WORKLOAD_KINDS = (CONFIG_MAP, DEPLOYMENT, SERVICE, DISRUPTION_BUDGET)
APPLIED = f"{GROUP}/applied"  # a digest of what the operator last applied to a child


class Refused(Exception):
    """A spec the operator will not apply: the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse(saga: Body) -> SagaDefinition:
    """The Saga as the services read it, plus what a cluster needs; else Refused."""
    document = {key: saga[key] for key in ("apiVersion", "kind", "metadata", "spec") if key in saga}
    try:
        definition = SagaDefinition.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        raise Refused("InvalidSpec", "fix the spec: " + "; ".join(problems)) from exc
    too_long = manifests.names_too_long(definition)
    if too_long:
        raise Refused(
            "InvalidSpec",
            "fix the spec: the Saga's name and a service's make names longer than the 63 "
            f"characters of a Kubernetes Service: {', '.join(too_long)}; shorten the Saga's "
            "name or the step's",
        )
    missing = manifests.missing_databases(definition)
    if missing:
        raise Refused(
            "InvalidSpec",
            "fix the spec: every service needs database.secretName (the Secret with its "
            f"database URL); missing for: {', '.join(missing)}",
        )
    return definition


@dataclass
class Plan:
    """Desired children, the ones that exist (by kind and name), and what was done."""

    desired: list[tuple[Kind, Body]]
    existing: dict[tuple[str, str], Body]
    actions: list[str] = field(default_factory=list)

    def current(self, kind: Kind, name: str) -> Body | None:
        return self.existing.get((kind.kind, name))


def contains(actual: Any, desired: Any) -> bool:
    """Whether `actual` holds everything `desired` says (the server may add defaults)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            contains(actual.get(key), value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return bool(actual == desired)


class Reconciler:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self.topic_kind = kafka_topic_kind(config.strimzi_api_version)
        self.user_kind = kafka_user_kind(config.strimzi_api_version)
        # Owned by the Saga, deleted with it (topics follow the deletion policy instead).
        self.owned_kinds = (self.user_kind, *WORKLOAD_KINDS)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault((namespace, name), threading.Lock())

    # -- the pass ------------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str, emit: Emit) -> None:
        with self._lock(namespace, name):
            saga = self.kube.get(SAGA, namespace, name)
            if saga is None or saga["metadata"].get("deletionTimestamp"):
                return  # gone, or being deleted: the deletion handler owns it now
            generation = saga["metadata"].get("generation")
            try:
                definition = parse(saga)
                plan = self._plan(saga, definition)
                self._check(saga, definition, plan)
            except Refused as refusal:
                self._refuse(saga, refusal, emit)
                return
            self._apply(saga, plan)
            self._prune(saga, definition, plan)
            if plan.actions:
                emit("Normal", "Reconciled", _summary(plan.actions))
            topic_problems, user_problems, workload_problems = self._observe(definition, plan)
            total_topics, total_units = len(definition.topics()), len(manifests.units(definition))
            topics = cond.readiness(cond.TOPICS_READY, topic_problems, total_topics)
            workloads = cond.readiness(cond.WORKLOADS_READY, workload_problems, total_units)
            parts = [topics, workloads]
            if definition.spec.kafka.authentication is not None:
                parts.insert(1, cond.readiness(cond.USERS_READY, user_problems, total_units))
            self._write_status(
                saga,
                [*parts, cond.ready(*parts)],
                {
                    "observedGeneration": generation,
                    "steps": ",".join(definition.step_names),
                    "topics": f"{total_topics - len(topic_problems)}/{total_topics}",
                    "workloads": f"{total_units - len(workload_problems)}/{total_units}",
                },
            )

    def _plan(self, saga: Body, definition: SagaDefinition) -> Plan:
        namespace = saga["metadata"]["namespace"]
        owner = manifests.owner_reference(saga)
        policy = definition.spec.topic_deletion_policy
        desired: list[tuple[Kind, Body]] = []
        for topic in manifests.kafka_topics(
            definition, api_version=self.config.strimzi_api_version, namespace=namespace
        ):
            # Topics outlive the Saga unless its policy says otherwise: no owner, no GC (and an
            # owner reference applied under `delete` goes when the policy turns to `retain`).
            if policy == "delete":
                topic["metadata"]["ownerReferences"] = [owner]
            desired.append((self.topic_kind, topic))
        users = manifests.kafka_users(
            definition, api_version=self.config.strimzi_api_version, namespace=namespace
        )
        for obj in [*users, *manifests.workloads(definition, namespace)]:
            obj["metadata"]["ownerReferences"] = [owner]
            desired.append((self._kind_of(obj), obj))
        existing: dict[tuple[str, str], Body] = {}
        for kind in (self.topic_kind, *self.owned_kinds):
            for obj in self.kube.list(kind, namespace, manifests.saga_labels(definition.name)):
                existing[(kind.kind, obj["metadata"]["name"])] = obj
        for kind, obj in desired:  # not labelled as ours: absent, or someone else's
            key = (kind.kind, obj["metadata"]["name"])
            if key not in existing:
                found = self.kube.get(kind, namespace, obj["metadata"]["name"])
                if found is not None:
                    existing[key] = found
        return Plan(desired, existing)

    def _check(self, saga: Body, definition: SagaDefinition, plan: Plan) -> None:
        """Refuse what cannot be done, before anything is changed."""
        name = definition.name
        for kind, obj in plan.desired:
            current = plan.current(kind, obj["metadata"]["name"])
            if current is None:
                continue
            owner = (current["metadata"].get("labels") or {}).get(manifests.SAGA_LABEL)
            if owner not in (None, name):
                raise Refused(
                    "Conflict",
                    f"{kind.kind} {obj['metadata']['name']} belongs to the Saga {owner!r}: "
                    "every Saga's children are named after it (`<saga>-<step>-service`, topics "
                    "`<saga>.<step>`), but these two names meet; rename this Saga or the step, "
                    "or use another namespace",
                )
        wanted = definition.spec.kafka.partitions
        shrinking = sorted(
            (obj["metadata"]["name"], current["spec"].get("partitions", 0))
            for kind, obj in plan.desired
            if kind is self.topic_kind
            for current in [plan.current(kind, obj["metadata"]["name"])]
            if current is not None and current.get("spec", {}).get("partitions", 0) > wanted
        )
        if shrinking:
            most = max(partitions for _, partitions in shrinking)
            names = ", ".join(f"{topic} ({partitions})" for topic, partitions in shrinking)
            raise Refused(
                "PartitionDecrease",
                f"spec.kafka.partitions is {wanted} but these topics have more partitions: "
                f"{names}; Kafka cannot remove partitions. Set spec.kafka.partitions to at "
                f"least {most} (nothing was changed)",
            )

    def _apply(self, saga: Body, plan: Plan) -> None:
        """Server-side apply of every child whose applied digest or content differs."""
        namespace = saga["metadata"]["namespace"]
        for kind, obj in plan.desired:
            name = obj["metadata"]["name"]
            current = plan.current(kind, name)
            stamped = _stamped(obj)
            if current is not None and contains(current, stamped):
                continue  # as last applied, and nobody changed what the operator owns
            applied = self.kube.apply(kind, namespace, stamped)
            plan.existing[(kind.kind, name)] = applied
            if current is None:
                plan.actions.append(f"created {kind.kind} {name}")
            elif _version(applied) != _version(current):  # the server saw a change
                plan.actions.append(f"updated {kind.kind} {name}")

    def _prune(self, saga: Body, definition: SagaDefinition, plan: Plan) -> None:
        """Children of a step that left the spec: workloads go; topics follow the policy."""
        namespace = saga["metadata"]["namespace"]
        wanted = {(kind.kind, obj["metadata"]["name"]) for kind, obj in plan.desired}
        labels = manifests.saga_labels(definition.name)
        for kind in self.owned_kinds:
            for obj in self.kube.list(kind, namespace, labels):
                if (kind.kind, obj["metadata"]["name"]) not in wanted:
                    self.kube.delete(kind, namespace, obj["metadata"]["name"])
                    plan.actions.append(f"deleted {kind.kind} {obj['metadata']['name']}")
        for topic in self.kube.list(self.topic_kind, namespace, labels):
            if (self.topic_kind.kind, topic["metadata"]["name"]) not in wanted:
                plan.actions.append(
                    self._let_go(saga, topic, definition.spec.topic_deletion_policy)
                )

    def _let_go(self, saga: Body, topic: Body, policy: str) -> str:
        """Delete a KafkaTopic (policy `delete`) or leave it, and its data, to the user."""
        namespace, name = saga["metadata"]["namespace"], topic["metadata"]["name"]
        if policy == "delete":
            self.kube.delete(self.topic_kind, namespace, name)
            return f"deleted KafkaTopic {name} (topicDeletionPolicy: delete)"
        uid = saga["metadata"].get("uid")
        owners = topic["metadata"].get("ownerReferences") or []
        patch: Body = {"metadata": {"labels": {manifests.SAGA_LABEL: None}}}
        patch["metadata"]["ownerReferences"] = [o for o in owners if o.get("uid") != uid]
        self.kube.patch(self.topic_kind, namespace, name, patch)
        return f"retained KafkaTopic {name} and its data (topicDeletionPolicy: retain)"

    def _observe(
        self, definition: SagaDefinition, plan: Plan
    ) -> tuple[list[str], list[str], list[str]]:
        """What keeps the topics, the Kafka users and the services from being ready."""
        topics = [
            problem
            for topic in definition.topics()
            if (problem := cond.strimzi_problem(plan.current(self.topic_kind, topic), topic))
        ]
        units = manifests.units(definition)
        users = [
            problem
            for unit in units
            if (problem := cond.strimzi_problem(plan.current(self.user_kind, unit.name), unit.name))
        ]
        workloads = [
            problem
            for unit in units
            if (problem := cond.deployment_problem(plan.current(DEPLOYMENT, unit.name), unit.name))
        ]
        return topics, users, workloads

    def _refuse(self, saga: Body, refusal: Refused, emit: Emit) -> None:
        previous = cond.find(saga.get("status", {}).get("conditions") or [], cond.READY)
        if previous is None or (previous.get("reason"), previous.get("message")) != (
            refusal.reason,
            refusal.message,
        ):
            emit("Warning", refusal.reason, refusal.message)
        updates = [cond.refused(refusal.reason, refusal.message)]
        known = {c.get("type") for c in saga.get("status", {}).get("conditions") or []}
        for kind in (cond.TOPICS_READY, cond.WORKLOADS_READY):
            if kind not in known:
                updates.append(cond.Condition(kind, None, "SpecRefused", "the spec was refused"))
        self._write_status(
            saga, updates, {"observedGeneration": saga["metadata"].get("generation")}
        )

    def _write_status(self, saga: Body, updates: list[cond.Condition], fields: Body) -> None:
        status = saga.get("status") or {}
        generation = saga["metadata"].get("generation")
        new = {
            **fields,
            "conditions": cond.merge(status.get("conditions") or [], updates, generation),
        }
        if contains(status, _without_times(new)):
            return
        meta = saga["metadata"]
        self.kube.patch(SAGA, meta["namespace"], meta["name"], {"status": new}, "status")

    def _kind_of(self, obj: Body) -> Kind:
        return {k.kind: k for k in self.owned_kinds}[obj["kind"]]

    # -- deletion ------------------------------------------------------------------------------

    def finalize(self, saga: Body, emit: Emit) -> None:
        """The Saga is being deleted: its services go, its topics as the policy says."""
        meta = saga["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        policy = (saga.get("spec") or {}).get("topicDeletionPolicy", "retain")
        with self._lock(namespace, name):
            labels = manifests.saga_labels(name)
            gone = []
            for kind in self.owned_kinds:
                for obj in self.kube.list(kind, namespace, labels):
                    if self.kube.delete(kind, namespace, obj["metadata"]["name"]):
                        gone.append(f"{kind.kind} {obj['metadata']['name']}")
            if gone:
                emit("Normal", "Deleted", f"deleted {len(gone)} objects: {', '.join(gone)}")
            topics = self.kube.list(self.topic_kind, namespace, labels)
            if policy == "delete":
                for topic in topics:
                    self.kube.delete(self.topic_kind, namespace, topic["metadata"]["name"])
                emit(
                    "Normal",
                    "TopicsDeleted",
                    f"deleted {len(topics)} KafkaTopics and so their data "
                    "(topicDeletionPolicy: delete)",
                )
            else:
                for topic in topics:
                    owners = topic["metadata"].get("ownerReferences") or []
                    kept = [o for o in owners if o.get("uid") != meta.get("uid")]
                    if kept != owners:
                        patch = {"metadata": {"ownerReferences": kept}}
                        self.kube.patch(
                            self.topic_kind, namespace, topic["metadata"]["name"], patch
                        )
                emit(
                    "Normal",
                    "TopicsRetained",
                    f"kept {len(topics)} KafkaTopics and their data (topicDeletionPolicy: "
                    "retain); a Saga of the same name adopts them again",
                )

    # -- saga counts ---------------------------------------------------------------------------

    def refresh_counts(self, namespace: str, name: str) -> None:
        """Counts of sagas by outcome, from the orchestrator's API; no answer changes nothing."""
        url = self.config.summary_url.format(
            service=manifests.orchestrator_name(name), namespace=namespace, port=manifests.HTTP_PORT
        )
        try:
            response = httpx.get(url, timeout=self.config.summary_timeout_s)
            response.raise_for_status()
            summary = response.json()
            counts = {
                "running": int(summary.get("RUNNING", 0)) + int(summary.get("COMPENSATING", 0)),
                "completed": int(summary.get("COMPLETED", 0)),
                "compensated": int(summary.get("COMPENSATED", 0)),
                "failed": int(summary.get("FAILED", 0)),
                "stuck": int(summary.get("STUCK", 0)),
                "total": int(summary.get("total", 0)),
            }
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            log.debug("saga counts of %s/%s unavailable from %s: %s", namespace, name, url, exc)
            return
        with self._lock(namespace, name):
            saga = self.kube.get(SAGA, namespace, name)
            if saga is None or saga["metadata"].get("deletionTimestamp"):
                return
            if (saga.get("status") or {}).get("sagas") != counts:
                self.kube.patch(SAGA, namespace, name, {"status": {"sagas": counts}}, "status")


def _version(obj: Body) -> str | None:
    version: str | None = obj.get("metadata", {}).get("resourceVersion")
    return version


def _stamped(obj: Body) -> Body:
    """The child with a digest of itself: a child applied by an older operator, or by hand,
    lacks it or differs, and is applied again (so a field the operator dropped is removed)."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    meta = obj["metadata"]
    annotations = {**(meta.get("annotations") or {}), APPLIED: digest}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def _without_times(status: Body) -> Body:
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
    ]
    return {**status, "conditions": conditions}


def _summary(actions: list[str], limit: int = 1000) -> str:
    """One Event per pass: what it did, shortened to what an Event message holds."""
    text = "; ".join(actions)
    return text if len(text) <= limit else text[: limit - 20].rsplit("; ", 1)[0] + "; and more"
