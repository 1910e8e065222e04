"""What Apache Kafka runs on: the machine's Java (17 or newer) and Kafka's jars, resolved from
Maven Central once with the project's pom and cached outside the repo; and whether that is all
there (`unavailable_reason()`, which says what to install when not)."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sagaline.lab.cache import cache_dir
from sagaline.lab.launchers.embedded_broker import BrokerError
from sagaline.lab.launchers.process import exclusive, log_tail, run_logged
from sagaline.lab.status import StatusLine

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("apache_kafka_pom.xml")
JAVA_MIN_MAJOR = 17  # Kafka 4 brokers run on Java 17 or newer
LOG_TAIL_LINES = 20
# A line of Kafka's log at level ERROR or FATAL: the cause of a failure is usually there.
ERROR_LINE = re.compile(r"\] (?:ERROR|FATAL) ")

_MARKER = ".resolved"  # written last into the libs dir: holds the digest of the pom it came from


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


def resolve_jars(progress: StatusLine | None = None) -> Path:
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
    with exclusive(home / ".lock", say, "resolving Apache Kafka's jars"):
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
        log_path.write_bytes(b"")  # this resolution's output only
        try:
            code = run_logged(command, log_path, timeout_s=1800, cwd=workdir)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(
                f"Maven did not resolve Apache Kafka's jars within 30 min: "
                f"see the log at {log_path}"
            ) from exc
        if code != 0:
            raise BrokerError(
                f"Maven could not resolve Apache Kafka's jars (exit {code}); "
                f"check Maven's access to Maven Central and see the log at {log_path}:\n"
                f"{log_tail(log_path, LOG_TAIL_LINES, errors=ERROR_LINE)}"
            )
