"""Apache Kafka 4.1.1, started by the project: one KRaft node (broker and controller) on the
machine's Java, its jars resolved from Maven Central once and cached outside the repo.

Unlike the embedded broker, it keeps its log on disk: a SIGKILL and a restart on the same data
directory keep topics, records and committed offsets, and it has idempotent and transactional
producers. Its group settings are Kafka's defaults (`group.min.session.timeout.ms` is 6000), so
the clients that pass here pass on any stock Kafka. What it runs on (Java, the jars): see
apache_kafka_jars.py.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from sagaline.lab.launchers.apache_kafka_jars import (
    ERROR_LINE,
    LOG_TAIL_LINES,
    java_binary,
    resolve_jars,
    unavailable_reason,
)
from sagaline.lab.launchers.embedded_broker import BrokerError
from sagaline.lab.launchers.process import (
    kill,
    log_tail,
    run_logged,
    spawn,
    terminate,
    wait_ready,
)
from sagaline.lab.ports import free_port, wait_for_port

NODE_ID = 1

_JVM_HEAP = ["-Xms256m", "-Xmx1g"]
_TOOL_HEAP = ["-Xms64m", "-Xmx256m"]


def new_cluster_id() -> str:
    """A random Kafka Uuid as `StorageTool random-uuid` prints it (16 bytes, base64url, no
    padding, never starting with "-"), made here rather than in a JVM of its own (≈ 2 s)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class ApacheKafka:
    """One Apache Kafka node in KRaft combined mode, the same face as `EmbeddedBroker`."""

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        data_dir: Path | None = None,
        authorizing: bool = False,
    ) -> None:
        """`data_dir`: holds the log, the configuration and (without `log_path`) the JVM's
        output; a temporary one by default, which `stop()` removes.

        `authorizing`: a second listener, SASL_PLAINTEXT with SCRAM-SHA-512 at
        `sasl_bootstrap_servers`, where Kafka's StandardAuthorizer allows only what ACLs grant
        (as on a Strimzi cluster with `authorization: simple`); the PLAINTEXT listener stays the
        platform's own, its anonymous principal a super user (creating topics, users, ACLs)."""
        self.port = port or free_port()
        self.controller_port = free_port()
        self.sasl_port = free_port() if authorizing else None
        self._owns_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="sagaline-kafka-"))
        self.log_path = log_path or self.data_dir / "kafka.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this start's output begins in the log file

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The authorizing SCRAM listener (only with `authorizing=True`)."""
        if self.sasl_port is None:
            raise BrokerError("this Kafka was started without its authorizing SASL listener")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log_dir(self) -> Path:
        """Kafka's `log.dirs` (records and the KRaft metadata log)."""
        return self.data_dir / "log"

    def start(self, timeout_s: float = 90) -> None:
        """Resolve the jars if needed (not counted in `timeout_s`), format the log dir on the
        first start, then run the node until it answers a metadata request listing itself."""
        if self.alive():
            return
        reason = unavailable_reason()
        if reason is not None:
            raise BrokerError(reason)
        java = java_binary()
        assert java is not None  # unavailable_reason() said so
        libs = resolve_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        properties = self._write_server_properties()
        log4j = self._write_log4j_config()
        class_path = ["-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={log4j}"]
        if not (self.log_dir / "meta.properties").exists():
            self._format(java, class_path, properties)
        command = [
            java,
            *_JVM_HEAP,
            "-Djava.awt.headless=true",
            *class_path,
            "kafka.Kafka",
            str(properties),
        ]
        self.process = spawn(command, self.log_path)
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:
            self._terminate()
            raise

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the JVM: what is on disk stays, and `start()` again recovers from the same log
        on the same ports. That restart takes ≈9 s longer than a clean one: the controller
        refuses the new incarnation until the dead one's session (the default
        `broker.session.timeout.ms`) has expired."""
        if self.process is not None:
            kill(self.process)

    def stop(self) -> None:
        """SIGTERM (Kafka shuts down cleanly), SIGKILL if it hangs; a temporary data dir goes."""
        self._terminate()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _terminate(self, grace_s: float = 30) -> None:
        if self.process is not None:
            terminate(self.process, grace_s)
        self.process = None

    def _write_server_properties(self) -> Path:
        """Single node settings only; everything else (group timeouts, rebalance delay,
        retention) stays at Kafka's defaults."""
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.log_dir),
            # One broker: the internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        if self.sasl_port is not None:
            settings.update(self._authorizing_settings(self.sasl_port))
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return path

    def _authorizing_settings(self, sasl_port: int) -> dict[str, str]:
        plain, sasl = f"127.0.0.1:{self.port}", f"127.0.0.1:{sasl_port}"
        return {
            "listeners": (
                f"PLAINTEXT://{plain},SASL://{sasl},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{plain},SASL://{sasl}",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:ANONYMOUS",
        }

    def _write_log4j_config(self) -> Path:
        """Kafka 4 logs through log4j2: INFO to stdout, which goes to the log file."""
        path = self.data_dir / "log4j2.properties"
        path.write_text(
            "status = warn\n"
            "appender.out.type = Console\n"
            "appender.out.name = STDOUT\n"
            "appender.out.target = SYSTEM_OUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.out.ref = STDOUT\n"
            # Kafka's own defaults quiet these two: one line per request otherwise.
            "logger.requests.name = kafka.request.logger\n"
            "logger.requests.level = WARN\n"
            "logger.channel.name = kafka.network.RequestChannel$\n"
            "logger.channel.level = WARN\n"
        )
        return path

    def _format(self, java: str, class_path: list[str], properties: Path) -> None:
        """`StorageTool format` with a new cluster id: a KRaft log dir needs one first."""
        tool = [java, *_TOOL_HEAP, *class_path, "kafka.tools.StorageTool"]
        command = [*tool, "format", "-t", new_cluster_id(), "-c", str(properties)]
        code = run_logged(command, self.log_path, timeout_s=120)
        if code != 0:
            raise BrokerError(
                f"Apache Kafka's StorageTool could not format {self.log_dir} "
                f"(exit {code}): {self._see_log()}"
            )

    def _see_log(self) -> str:
        """Where to look, and what this start wrote there (its errors first)."""
        tail = log_tail(self.log_path, LOG_TAIL_LINES, since=self._log_offset, errors=ERROR_LINE)
        return f"see the log at {self.log_path}\n{tail}"

    def _wait_until_ready(self, timeout_s: float) -> None:
        """The port opens before the node serves: ready means a metadata answer that lists this
        broker (registered and unfenced)."""
        assert self.process is not None
        wait_ready(
            self.process,
            lambda remaining: (
                wait_for_port("127.0.0.1", self.port, min(1.0, remaining))
                and _lists_broker("127.0.0.1", self.port, NODE_ID, timeout_s=min(2.0, remaining))
            ),
            timeout_s,
            exited=lambda code: BrokerError(
                f"Apache Kafka exited with code {code} while starting: {self._see_log()}"
            ),
            timed_out=lambda: BrokerError(
                f"Apache Kafka did not answer on {self.bootstrap_servers} within "
                f"{timeout_s:.0f} s: {self._see_log()}"
            ),
        )


def _lists_broker(host: str, port: int, node_id: int, timeout_s: float) -> bool:
    """Does the node's metadata list `node_id` (registered and unfenced)? Asked with aiokafka's
    admin client on a thread of its own: `start()` is synchronous and may be called from inside
    a running event loop."""

    async def ask() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=f"{host}:{port}", request_timeout_ms=int(timeout_s * 1000)
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=timeout_s)
            cluster = await asyncio.wait_for(admin.describe_cluster(), timeout=timeout_s)
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()
        return any(broker["node_id"] == node_id for broker in cluster.get("brokers", []))

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, ask()).result()
