"""Apache Kafka 4.1.1, started by the project: one KRaft node (broker and controller) on the
machine's Java, its jars resolved from Maven Central once and cached outside the repo.

Unlike the embedded broker, it keeps its log on disk: a SIGKILL and a restart on the same data
directory keep topics, records and committed offsets, and it has idempotent and transactional
producers. Its group settings are Kafka's defaults (`group.min.session.timeout.ms` is 6000), so
the clients that pass here pass on any stock Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from sagaline.lab.cache import cache_dir
from sagaline.lab.launchers.embedded_broker import BrokerError
from sagaline.lab.ports import free_port, wait_for_port

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("apache_kafka_pom.xml")
JAVA_MIN_MAJOR = 17  # Kafka 4 brokers run on Java 17 or newer
NODE_ID = 1

_MARKER = ".resolved"  # written last into the libs dir: holds the digest of the pom it came from
_JVM_HEAP = ["-Xms256m", "-Xmx1g"]
_TOOL_HEAP = ["-Xms64m", "-Xmx256m"]
_LOG_TAIL_LINES = 20
_ERROR_LINE = re.compile(r"\] (?:ERROR|FATAL) ")

Progress = Callable[[str], None]


def new_cluster_id() -> str:
    """A random Kafka Uuid as `StorageTool random-uuid` prints it (16 bytes, base64url, no
    padding, never starting with "-"), made here rather than in a JVM of its own (≈ 2 s)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def kafka_home() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}"


def libs_dir() -> Path:
    return kafka_home() / "libs"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def jars_cached() -> bool:
    """True when a completed resolution of this very pom is in the cache."""
    marker = libs_dir() / _MARKER
    try:
        return marker.read_text().strip() == _pom_digest()
    except OSError:
        return False


def java_binary() -> str | None:
    """`$JAVA_HOME/bin/java` when JAVA_HOME names a JDK, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


@functools.cache
def java_major_version(java: str) -> int | None:
    """The Java feature version (8, 11, 17, ...) of `java`, None when it cannot be told."""
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" is Java 8
        major = int(match.group(2))
    return major


def unavailable_reason() -> str | None:
    """Why Apache Kafka cannot run on this machine (what to install), None when it can."""
    java = java_binary()
    if java is None:
        return (
            f"Apache Kafka {KAFKA_VERSION} needs Java {JAVA_MIN_MAJOR} or newer and there is no "
            "`java` on PATH: install a JDK (e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    major = java_major_version(java)
    if major is not None and major < JAVA_MIN_MAJOR:
        return (
            f"Apache Kafka {KAFKA_VERSION} needs Java {JAVA_MIN_MAJOR} or newer but {java} is "
            f"Java {major}: install a newer JDK or point JAVA_HOME at one"
        )
    if not jars_cached() and shutil.which("mvn") is None:
        return (
            f"Apache Kafka {KAFKA_VERSION}'s jars are not cached in {libs_dir()} and there is no "
            "`mvn` on PATH to fetch them from Maven Central: install Maven "
            "(e.g. `apt-get install maven`)"
        )
    return None


@contextlib.contextmanager
def _exclusive(lock_path: Path, progress: Progress) -> Iterator[None]:
    """An fcntl lock, so that two processes resolving at once do not download over each other."""
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process resolving Apache Kafka's jars ({lock_path})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def resolve_jars(progress: Progress | None = None) -> Path:
    """The directory of Apache Kafka's jars, resolved with Maven the first time (≈1 min).

    Maven copies into a temporary directory that is renamed into place once complete, under a
    file lock: a crash or a concurrent resolution never leaves a half-filled class path behind.
    """
    say = progress or (lambda _message: None)
    libs = libs_dir()
    if jars_cached():
        return libs
    home = kafka_home()
    home.mkdir(parents=True, exist_ok=True)
    with _exclusive(home / ".lock", say):
        if jars_cached():  # another process finished while this one waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                f"Apache Kafka's jars are not in {libs} and there is no `mvn` on PATH: "
                "install Maven (e.g. `apt-get install maven`)"
            )
        say(f"resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs}")
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix="libs.", dir=home))
        try:
            _run_maven(mvn, staging, home / "mvn.log")
            jars = sorted(staging.glob("*.jar"))
            if not jars:
                raise BrokerError(
                    f"Maven resolved no jars for Apache Kafka: see the log at {home / 'mvn.log'}"
                )
            (staging / _MARKER).write_text(_pom_digest() + "\n")
            if libs.exists():  # a resolution of an older pom: move it aside, then drop it
                stale = Path(tempfile.mkdtemp(prefix="stale.", dir=home))
                libs.rename(stale / "libs")
                shutil.rmtree(stale, ignore_errors=True)
            staging.rename(libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        say(
            f"resolved {len(jars)} jars for Apache Kafka {KAFKA_VERSION} "
            f"in {time.monotonic() - started:.0f} s"
        )
    return libs


def _run_maven(mvn: str, output_dir: Path, log_path: Path) -> None:
    """`mvn dependency:copy-dependencies` on a copy of the pom in a scratch directory of the
    cache, so Maven's `target/` never lands in the installed package."""
    with tempfile.TemporaryDirectory(prefix="build.", dir=output_dir.parent) as workdir:
        pom = Path(workdir) / "pom.xml"
        shutil.copyfile(POM, pom)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={output_dir}",
        ]
        with open(log_path, "wb") as log:
            try:
                result = subprocess.run(
                    command,
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=1800,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(
                    f"Maven did not resolve Apache Kafka's jars within 30 min: "
                    f"see the log at {log_path}"
                ) from exc
        if result.returncode != 0:
            raise BrokerError(
                f"Maven could not resolve Apache Kafka's jars (exit {result.returncode}); "
                f"check Maven's access to Maven Central and see the log at {log_path}:\n"
                f"{_tail(log_path)}"
            )


def _tail(path: Path, lines: int = _LOG_TAIL_LINES, since: int = 0) -> str:
    """The log's ERROR/FATAL lines written since offset `since` (the cause is usually there,
    followed by a long shutdown), then its last `lines` lines."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(since, size - 1024 * 1024, 0))
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    all_lines = text.splitlines()
    errors: list[str] = []
    for number, line in enumerate(all_lines):
        if _ERROR_LINE.search(line) and len(errors) < 12:
            errors.append(line)
            cause = all_lines[number + 1] if number + 1 < len(all_lines) else ""
            if cause and not cause.startswith(("[", "\t")):  # the exception's message
                errors.append(cause)
    tail = all_lines[-lines:]
    if errors and errors[-1] not in tail:
        return "\n".join([*errors, "...", *tail])
    return "\n".join(tail)


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
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
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
        if self.alive():
            assert self.process is not None
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM (Kafka shuts down cleanly), SIGKILL if it hangs; a temporary data dir goes."""
        self._terminate()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _terminate(self, grace_s: float = 30) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
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
        with open(self.log_path, "ab") as output:
            formatted = subprocess.run(
                [*tool, "format", "-t", new_cluster_id(), "-c", str(properties)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            )
        if formatted.returncode != 0:
            raise BrokerError(
                f"Apache Kafka's StorageTool could not format {self.log_dir} "
                f"(exit {formatted.returncode}): {self._see_log()}"
            )

    def _see_log(self) -> str:
        """Where to look, and what this start wrote there (its errors first)."""
        return f"see the log at {self.log_path}\n{_tail(self.log_path, since=self._log_offset)}"

    def _wait_until_ready(self, timeout_s: float) -> None:
        """The port opens before the node serves: ready means a metadata answer that lists this
        broker (registered and unfenced)."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise BrokerError(
                    f"Apache Kafka exited with code {code} while starting: {self._see_log()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"Apache Kafka did not answer on {self.bootstrap_servers} within "
                    f"{timeout_s:.0f} s: {self._see_log()}"
                )
            if wait_for_port("127.0.0.1", self.port, min(1.0, remaining)) and _lists_broker(
                "127.0.0.1", self.port, NODE_ID, timeout_s=min(2.0, remaining)
            ):
                return
            time.sleep(0.2)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


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
