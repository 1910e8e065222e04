"""Message type and topic names of the steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sagaline.domain import messages
from sagaline.domain.definition import ORCHESTRATOR_TOPICS, load_definition
from sagaline.domain.envelope import TYPE_PATTERN
from sagaline.domain.messages import StepTopics, StepTypes

ORDER_YAML = Path(__file__).resolve().parents[2] / "k8s" / "sagas" / "order.yaml"


def all_types(types: StepTypes) -> list[str]:
    return [types.command, types.done, types.failed, types.compensate, types.compensated]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "payment",
            [
                "payment.charge",
                "payment.charged",
                "payment.failed",
                "payment.compensate",
                "payment.compensated",
            ],
        ),
        (
            "stock",
            [
                "stock.reserve",
                "stock.reserved",
                "stock.failed",
                "stock.compensate",
                "stock.compensated",
            ],
        ),
        (
            "shipping",
            [
                "shipping.execute",
                "shipping.executed",
                "shipping.failed",
                "shipping.compensate",
                "shipping.compensated",
            ],
        ),
    ],
)
def test_step_types(step, expected):
    assert all_types(StepTypes(step)) == expected


@pytest.mark.parametrize("step", ["payment", "stock", "shipping", "my-step2"])
def test_step_types_are_valid_envelope_types_and_distinct(step):
    types = all_types(StepTypes(step))
    assert len(set(types)) == 5
    for name in types:
        assert re.match(TYPE_PATTERN, name), name
        assert name.startswith(f"{step}.")


def test_saga_types():
    assert messages.SAGA_START == "saga.start"
    assert messages.SAGA_OUTCOMES == ("saga.completed", "saga.compensated", "saga.failed")
    for name in (messages.SAGA_START, *messages.SAGA_OUTCOMES):
        assert re.match(TYPE_PATTERN, name)


@pytest.mark.parametrize("step", ["payment", "stock", "shipping"])
def test_step_topics(step):
    topics = StepTopics(step)
    assert [topics.command, topics.success, topics.dlt, topics.compensation] == [
        step,
        f"{step}.success",
        f"{step}.dlt",
        f"{step}.compensation",
    ]


def test_topic_names_agree_with_the_definition():
    definition = load_definition(ORDER_YAML)
    orchestrator = (
        messages.ORCHESTRATOR,
        messages.ORCHESTRATOR_RESPONSE,
        messages.ORCHESTRATOR_DLT,
    )
    assert (
        orchestrator
        == ORCHESTRATOR_TOPICS
        == ("orchestrator", "orchestrator.response", "orchestrator.dlt")
    )
    from_messages = list(orchestrator)
    for step in definition.step_names:
        topics = StepTopics(step)
        from_messages += [topics.command, topics.success, topics.dlt, topics.compensation]
    assert from_messages == definition.topics()
