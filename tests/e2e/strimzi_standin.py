"""A stand-in for Strimzi's Topic Operator and User Operator (no registry here serves Strimzi), so
that the KafkaTopics and KafkaUsers the Saga operator writes lead somewhere real.

KafkaTopics carrying the `strimzi.io/cluster: <cluster>` label are reconciled level-based, like
Strimzi's unidirectional Topic Operator does, against the real Apache Kafka the tests start:

- a topic is created with the spec's partitions and config, its name `spec.topicName` or the
  resource's name; on a spec change its partitions grow (a shrink is refused: `Ready=False`,
  reason `NotSupported`, as Strimzi says) and its config is set again;
- **one broker**: the replication factor is capped at 1 and so is `min.insync.replicas` (Strimzi
  on one broker would fail the same spec; the spec's values stay what the operator wrote);
- the finalizer `strimzi.io/topic-operator` is added first; when the KafkaTopic is deleted the
  Kafka topic is deleted, then the finalizer removed (Strimzi's behaviour with
  `STRIMZI_USE_FINALIZERS`, its default);
- the status says `Ready=True` with the `observedGeneration` (what the Saga operator waits for),
  `topicName` and `topicId`.

KafkaUsers, as Strimzi's User Operator: for scram-sha-512 a Secret named like the user with
`password` and `sasl.jaas.config`, and that password as the user's SCRAM-SHA-512 credential in
Kafka; with `simple` authorization, one Kafka ACL per resource and operation for `User:<name>`
(tests/integration/kafka_users.py turns the rules into bindings), so that the broker's
StandardAuthorizer, not a test, decides what each service may do; then `Ready=True` with
`username` and `secret`. A deleted KafkaUser's credential and ACLs go. (tls users: a placeholder
Secret, no certificate: no clients CA runs here.)

The stand-in runs in threads of the test process: one watch per kind (re-listed every
`resync_s`, so a missed event is repaired), Kafka calls on an event loop of their own.

One module past 400 lines on purpose: one stand-in, as strict as the operators it replaces.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.integration.kafka_users import acl_bindings

log = logging.getLogger("strimzi-standin")

GROUP = "kafka.strimzi.io"
VERSION = "v1beta2"
CLUSTER_LABEL = "strimzi.io/cluster"
TOPIC_FINALIZER = "strimzi.io/topic-operator"
MAX_REPLICAS = 1  # one broker
SCRAM_ITERATIONS = 4096  # Strimzi's, and Kafka's minimum for SCRAM-SHA-512

T = TypeVar("T")
Body = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(status: bool, reason: str = "", message: str = "") -> list[Body]:
    condition: Body = {
        "type": "Ready",
        "status": "True" if status else "False",
        "lastTransitionTime": _now(),
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return [condition]


class NotSupported(Exception):
    """A spec change Kafka cannot make (fewer partitions, another replication factor)."""


class StrimziStandIn:
    """The Topic and User Operators of one Strimzi cluster (`cluster`), in every namespace."""

    def __init__(
        self,
        kubeconfig: Path,
        bootstrap_servers: str,
        *,
        cluster: str = "sagaline",
        resync_s: float = 10,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.cluster = cluster
        self.resync_s = resync_s
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop = asyncio.new_event_loop()
        self._admin: AIOKafkaAdminClient | None = None
        self._confluent: Any = None
        self.errors: list[str] = []  # what failed, for a test's message

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        loop_thread = threading.Thread(
            target=self._loop.run_forever, name="standin-kafka", daemon=True
        )
        loop_thread.start()
        self._threads.append(loop_thread)
        self._kafka(self._start_admin)
        for plural, reconcile in (("kafkatopics", self._topic), ("kafkausers", self._user)):
            thread = threading.Thread(
                target=self._watch, args=(plural, reconcile), name=f"standin-{plural}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._kafka(self._admin.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(timeout=15)
        self.api.close()

    def __enter__(self) -> StrimziStandIn:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- Kafka -----------------------------------------------------------------------------------

    def _kafka(self, coroutine: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine(), self._loop)
        return future.result(timeout=timeout_s)

    async def _start_admin(self) -> None:
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=15_000
        )
        await self._admin.start()

    async def _describe(self, name: str) -> Body | None:
        """The topic's metadata, None when it does not exist. Existence is asked by listing:
        a metadata request naming a missing topic makes a broker with Kafka's default
        `auto.create.topics.enable=true` create it (one partition) — aiokafka's describe_topics
        asks that way."""
        assert self._admin is not None
        if name not in await self._admin.list_topics():
            return None
        (described,) = await self._admin.describe_topics([name])
        if described.get("error_code", 0):
            raise KafkaError(f"describe {name}: error {described['error_code']}")
        return dict(described)

    async def _ensure_topic(self, name: str, partitions: int, settings: dict[str, str]) -> str:
        """Create, or grow and reconfigure; returns the topic id."""
        assert self._admin is not None
        described = await self._describe(name)
        if described is None:
            topic = NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=MAX_REPLICAS,
                topic_configs=settings,
            )
            response = await self._admin.create_topics([topic])
            for entry in getattr(response, "topic_errors", []) or []:
                code, message = entry[1], entry[2] if len(entry) > 2 else ""
                if code and code != TopicAlreadyExistsError.errno:  # made meanwhile: fine
                    raise KafkaError(f"create {name}: error {code} {message}")
            log.info("created topic %s (%d partitions)", name, partitions)
            for _ in range(50):  # the new topic's metadata reaches the broker's cache soon
                described = await self._describe(name)
                if described is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                raise KafkaError(f"created {name}, but it is not listed")
        else:
            current = len(described.get("partitions") or [])
            if partitions < current:
                raise NotSupported(
                    f"Decreasing partitions not supported: the topic has {current}, "
                    f"the spec asks for {partitions}"
                )
            if partitions > current:
                await self._admin.create_partitions({name: NewPartitions(partitions)})
                log.info("grew topic %s from %d to %d partitions", name, current, partitions)
            if settings:
                resource = ConfigResource(ConfigResourceType.TOPIC, name, configs=settings)
                await self._admin.alter_configs([resource])
        return str(described.get("topic_id", ""))

    async def _delete_topic(self, name: str) -> None:
        assert self._admin is not None
        if await self._describe(name) is None:
            return
        await self._admin.delete_topics([name])
        log.info("deleted topic %s", name)

    def topics(self) -> list[str]:
        """The topics in Kafka (for tests)."""

        async def listed() -> list[str]:
            assert self._admin is not None
            return list(await self._admin.list_topics())

        return self._kafka(listed)

    def partitions(self, name: str) -> int | None:
        """The number of partitions of a topic in Kafka, None when it does not exist."""

        async def count() -> int | None:
            described = await self._describe(name)
            return None if described is None else len(described.get("partitions") or [])

        return self._kafka(count)

    # -- Kubernetes ------------------------------------------------------------------------------

    def _watch(self, plural: str, reconcile: Callable[[Body], None]) -> None:
        """List and reconcile all, then reconcile on each event; list again every resync_s."""
        while not self._stop.is_set():
            try:
                listed: Body = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)  # type: ignore[assignment]
                for item in listed.get("items", []):
                    self._safely(reconcile, item)
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    plural,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=max(1, int(self.resync_s)),
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._safely(reconcile, event["object"])
                    elif event["type"] == "DELETED" and plural == "kafkausers":
                        self._safely(self._user_deleted, event["object"])
            except ApiException as exc:
                if exc.status == 404:  # the CRD is not installed (yet)
                    self._stop.wait(1)
                    continue
                if exc.status != 410:  # 410: the watch expired; list again
                    self._record(f"{plural}: {exc.status} {exc.reason}")
                    self._stop.wait(1)
            except Exception as exc:  # keep watching; tests see self.errors
                if self._stop.is_set():
                    return
                self._record(f"{plural}: {exc!r}")
                self._stop.wait(1)

    def _safely(self, reconcile: Callable[[Body], None], item: Body) -> None:
        try:
            reconcile(item)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or changed meanwhile (the next event)
                self._record(f"{item['metadata']['name']}: {exc.status} {exc.body!r}")
        except Exception as exc:  # a stand-in that stops would hide what follows
            self._record(f"{item['metadata']['name']}: {exc!r}")

    def _record(self, error: str) -> None:
        log.warning("%s", error)
        self.errors.append(error)

    def _ours(self, item: Body) -> bool:
        labels = item.get("metadata", {}).get("labels") or {}
        return labels.get(CLUSTER_LABEL) == self.cluster

    def _patch(self, plural: str, item: Body, body: Body, *, status: bool = False) -> None:
        meta = item["metadata"]
        args = (GROUP, VERSION, meta["namespace"], plural, meta["name"], body)
        if status:
            self.custom.patch_namespaced_custom_object_status(*args)
        else:
            self.custom.patch_namespaced_custom_object(*args)

    def _topic(self, topic: Body) -> None:
        if not self._ours(topic):
            return
        meta, spec = topic["metadata"], topic.get("spec") or {}
        name = spec.get("topicName") or meta["name"]
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            if TOPIC_FINALIZER in finalizers:
                self._kafka(lambda: self._delete_topic(name))
                finalizers.remove(TOPIC_FINALIZER)
                self._patch(
                    "kafkatopics",
                    topic,
                    {
                        "metadata": {
                            "finalizers": finalizers,
                            "resourceVersion": meta["resourceVersion"],
                        }
                    },
                )
            return
        if TOPIC_FINALIZER not in finalizers:
            self._patch(
                "kafkatopics",
                topic,
                {
                    "metadata": {
                        "finalizers": [*finalizers, TOPIC_FINALIZER],
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
            return  # the update is the next event
        generation = meta.get("generation")
        status = topic.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if status.get("observedGeneration") == generation and ready:
            return  # this generation is done (a failure is tried again at the next resync)
        settings = {key: str(value) for key, value in (spec.get("config") or {}).items()}
        if "min.insync.replicas" in settings:  # one broker: at most one in-sync replica
            settings["min.insync.replicas"] = str(
                min(int(settings["min.insync.replicas"]), MAX_REPLICAS)
            )
        partitions = int(spec.get("partitions") or 1)
        try:
            topic_id = self._kafka(lambda: self._ensure_topic(name, partitions, settings))
        except NotSupported as refused:
            conditions = _ready(False, "NotSupported", str(refused))
            body: Body = {"conditions": conditions, "observedGeneration": generation}
        except KafkaError as exc:
            conditions = _ready(False, "KafkaError", str(exc))
            body = {"conditions": conditions, "observedGeneration": generation}
        else:
            body = {
                "conditions": _ready(True),
                "observedGeneration": generation,
                "topicName": name,
                **({"topicId": topic_id} if topic_id else {}),
            }
        self._patch("kafkatopics", topic, {"status": body}, status=True)

    def _user(self, user: Body) -> None:
        if not self._ours(user) or user["metadata"].get("deletionTimestamp"):
            return
        meta, spec = user["metadata"], user.get("spec") or {}
        generation = meta.get("generation")
        status = user.get("status") or {}
        if status.get("observedGeneration") == generation and status.get("conditions"):
            return
        authentication = (spec.get("authentication") or {}).get("type")
        username = (
            f"CN={meta['name']}" if authentication in ("tls", "tls-external") else meta["name"]
        )
        body: Body = {"conditions": _ready(True), "observedGeneration": generation}
        body["username"] = username
        if authentication in ("tls", "scram-sha-512"):
            password = self._user_secret(user, authentication)
            body["secret"] = meta["name"]
            if authentication == "scram-sha-512" and password is not None:
                self._scram_credential(meta["name"], password)
        bindings = acl_bindings(user)
        if bindings:
            self._acls(bindings)
        self._patch("kafkausers", user, {"status": body}, status=True)

    def _admin_client(self) -> Any:
        """confluent-kafka's admin (SCRAM and ACL calls, which aiokafka lacks); one for the
        stand-in's life: a client collected while its futures wait fails them."""
        if self._confluent is None:
            from confluent_kafka.admin import AdminClient

            self._confluent = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        return self._confluent

    def _scram_credential(self, name: str, password: str) -> None:
        from confluent_kafka.admin import (
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(name, info, password.encode())
        for future in self._admin_client().alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)

    def _acls(self, bindings: list[Any]) -> None:
        for future in self._admin_client().create_acls(bindings, request_timeout=30).values():
            future.result(timeout=30)

    def _user_deleted(self, user: Body) -> None:
        """What Strimzi's User Operator does when a KafkaUser goes: its ACLs and credential."""
        if not self._ours(user):
            return
        from confluent_kafka.admin import (
            AclBindingFilter,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
            ScramMechanism,
            UserScramCredentialDeletion,
        )

        name = user["metadata"]["name"]
        admin = self._admin_client()
        every = AclBindingFilter(  # None: any name, any host
            ResourceType.ANY,
            None,  # type: ignore[arg-type]
            ResourcePatternType.ANY,
            f"User:{name}",
            None,  # type: ignore[arg-type]
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        for future in admin.delete_acls([every], request_timeout=30).values():
            future.result(timeout=30)
        if (user.get("spec") or {}).get("authentication", {}).get("type") == "scram-sha-512":
            deletion = UserScramCredentialDeletion(name, ScramMechanism.SCRAM_SHA_512)
            for future in admin.alter_user_scram_credentials([deletion]).values():
                with contextlib.suppress(Exception):  # never made, or gone already
                    future.result(timeout=30)

    def _user_secret(self, user: Body, authentication: str) -> str | None:
        """The Secret Strimzi's User Operator writes, owned by the KafkaUser (so it goes with
        it): for scram-sha-512 the password and the JAAS line; for tls a placeholder key pair
        (no client CA exists here)."""
        meta = user["metadata"]
        try:
            existing = self.core.read_namespaced_secret(meta["name"], meta["namespace"])
            stored: dict[str, Any] = existing.data or {}
            return base64.b64decode(stored["password"]).decode() if "password" in stored else None
        except ApiException as exc:
            if exc.status != 404:
                raise
        if authentication == "scram-sha-512":
            password = secrets.token_urlsafe(24)
            jaas = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{meta["name"]}" password="{password}";'
            )
            data = {"password": password, "sasl.jaas.config": jaas}
        else:
            data = {"user.crt": "stand-in", "user.key": "stand-in", "ca.crt": "stand-in"}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": meta["name"],
                "labels": {CLUSTER_LABEL: self.cluster, "strimzi.io/kind": "KafkaUser"},
                "ownerReferences": [
                    {
                        "apiVersion": user["apiVersion"],
                        "kind": "KafkaUser",
                        "name": meta["name"],
                        "uid": meta["uid"],
                    }
                ],
            },
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        self.core.create_namespaced_secret(meta["namespace"], secret)  # type: ignore[arg-type]
        return data.get("password")
