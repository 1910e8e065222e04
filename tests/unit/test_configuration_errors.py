"""A setting a process cannot run with is named, with what to do, before anything starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.domain.backoff import resend_horizon_s
from sagaline.service import effective_definition
from sagaline.settings import Settings


def test_the_resend_horizon_adds_every_attempts_capped_wait() -> None:
    assert resend_horizon_s(10, 5) == 10 * (1 + 2 + 4 + 8 + 8)
    assert resend_horizon_s(2, 1) == 2


def test_an_inbox_retention_shorter_than_the_resend_horizon_is_refused() -> None:
    settings = Settings(inbox_retention_s=60)

    # 10 s x (1 + 2 + 4 + 8 x 17): the compensations' 20 attempts outlast the commands' 5.
    with pytest.raises(ValueError, match="re-send horizon of 1430 s"):
        effective_definition(settings)


def test_a_retention_covering_the_horizon_is_accepted() -> None:
    definition = effective_definition(Settings(inbox_retention_s=1430))
    assert definition.resend_horizon_s() == 1430


@pytest.mark.parametrize("command", ["serve", "relay", "migrate"])
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SAGALINE_CONSUMER_BATCH_SIZE", "0", "SAGALINE_CONSUMER_BATCH_SIZE: Input should be"),
        ("KAFKA_SECURITY_PROTOCOL", "FOO", "KAFKA_SECURITY_PROTOCOL: Input should be"),
    ],
)
def test_a_bad_setting_is_named_and_nothing_starts(
    command: str, variable: str, value: str, message: str
) -> None:
    result = CliRunner().invoke(app, [command, "payment"], env={variable: value})

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_service_refuses_a_retention_shorter_than_the_horizon() -> None:
    result = CliRunner().invoke(app, ["relay", "payment"], env={"SAGALINE_INBOX_RETENTION_S": "5"})

    assert result.exit_code == 2
    assert "raise it to at least 1430" in " ".join(result.output.split())
