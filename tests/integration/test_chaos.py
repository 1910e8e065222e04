"""A short `sagaline chaos` run in the test suite: every kind of fault, then every order decided
and every invariant true."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.kafka.brokers import BrokerKind
from sagaline.measure.chaos import KIND_OF_TARGET, TARGETS, ChaosOptions, run_chaos
from tests.integration.conftest import server_for
from tests.integration.support import BROKERS, STACK_PARTS, Parts, running_stack


def chaos(
    tmp_path: Path, parts: Parts, options: ChaosOptions, server_url: str | None = None
) -> dict[str, Any]:
    # A two-second step timeout: a message the broker lost is re-sent within seconds.
    with running_stack(
        tmp_path, parts, server_url=server_url, step_timeout_s=2.0, api_token="chaos-token"
    ) as stack:
        return run_chaos(stack, options, Console(quiet=True), show=False)


def assert_nothing_lost(summary: dict[str, Any], kinds: set[str]) -> None:
    assert summary["pending"] == 0, f"pending after quiescence: {summary['pending_orders']}"
    assert summary["invariants_ok"], summary["invariants"]
    assert set(summary["faults"]) == kinds
    assert summary["unexpected_exits"] == []
    assert summary["faults_without_recovery"] == 0
    assert summary["approved"] and summary["rejected"]


@pytest.mark.parametrize("parts", STACK_PARTS, ids=str)
def test_every_kind_of_fault_ends_with_every_order_decided(
    tmp_path: Path, parts: Parts, request: pytest.FixtureRequest
) -> None:
    on_postgres = parts.database == "postgresql"
    targets = TARGETS if on_postgres else tuple(t for t in TARGETS if t != "database")
    options = ChaosOptions(
        duration_s=24, rate=8, targets=targets, seed=11, mean_interval_s=2, max_downtime_s=1.5
    )

    summary = chaos(tmp_path, parts, options, server_for(request, parts))

    assert_nothing_lost(summary, {KIND_OF_TARGET[t] for t in targets})
    assert summary["orders"] >= 24 * 8


@pytest.mark.parametrize("kind", BROKERS)
def test_broker_kills_alone(tmp_path: Path, kind: BrokerKind) -> None:
    """The embedded broker's memory goes each time (topics and offsets are re-created, re-sends
    finish); Apache Kafka comes back on its log directory."""
    options = ChaosOptions(
        duration_s=15, rate=8, targets=("broker",), seed=3, mean_interval_s=3, max_downtime_s=1
    )

    summary = chaos(tmp_path, Parts(kind, "sqlite"), options)

    assert_nothing_lost(summary, {"broker"})
    # Apache Kafka takes 10-25 s to come back from a SIGKILL (its controller refuses the new
    # registration until the dead broker's 9 s session expires): fewer kills fit in the run.
    assert summary["faults"]["broker"] >= (2 if kind == "embedded" else 1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--targets", "services,moon"], "unknown target moon"),
        (["--targets", "database"], "the database target needs PostgreSQL"),
    ],
)
def test_chaos_refuses_what_it_cannot_do(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["chaos", *arguments])

    assert result.exit_code == 2
    assert message in result.output
