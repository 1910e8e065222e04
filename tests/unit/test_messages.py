"""Message type and topic names of the steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sagaline.domain import messages
from sagaline.domain.definition import SagaDefinition, load_definition
from sagaline.domain.envelope import TYPE_PATTERN
from sagaline.domain.messages import SagaTopics, StepTopics, StepTypes

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
def test_the_order_sagas_step_topics_keep_the_seeds_names(step):
    topics = SagaTopics("order").step(step)
    assert topics == StepTopics("order", step)
    assert topics.all() == [step, f"{step}.success", f"{step}.dlt", f"{step}.compensation"]


@pytest.mark.parametrize("saga", ["travel", "order2", "my-saga"])
def test_any_other_sagas_topics_start_with_its_name(saga):
    topics = SagaTopics(saga)
    assert [topics.orchestrator, topics.response, topics.dlt] == [
        f"{saga}.orchestrator",
        f"{saga}.orchestrator.response",
        f"{saga}.orchestrator.dlt",
    ]
    assert topics.step("flight").all() == [
        f"{saga}.flight",
        f"{saga}.flight.success",
        f"{saga}.flight.dlt",
        f"{saga}.flight.compensation",
    ]


def test_two_sagas_with_the_same_steps_share_no_topic():
    order, order2 = (SagaTopics(name).all(["payment", "stock"]) for name in ("order", "order2"))
    assert len(set(order)) == len(set(order2)) == 11
    assert not set(order) & set(order2)


def test_dead_letters_go_to_the_step_or_to_the_orchestrator():
    topics = SagaTopics("travel")
    assert topics.dead_letters_of("flight", ["flight", "hotel"]) == "travel.flight.dlt"
    for service in ("orchestrator", "booking"):
        assert topics.dead_letters_of(service, ["flight", "hotel"]) == "travel.orchestrator.dlt"


def test_topic_names_agree_with_the_definition():
    definition = load_definition(ORDER_YAML)
    order = SagaTopics("order")
    orchestrator = (order.orchestrator, order.response, order.dlt)
    assert orchestrator == ("orchestrator", "orchestrator.response", "orchestrator.dlt")
    from_messages = list(orchestrator)
    for step in definition.step_names:
        from_messages += StepTopics("order", step).all()
    assert from_messages == definition.topics()


def test_a_renamed_definition_derives_its_topics_from_its_name():
    document = load_definition(ORDER_YAML).model_dump(by_alias=True)
    document["metadata"]["name"] = "order2"
    renamed = SagaDefinition.model_validate(document)
    assert renamed.topics() == [f"order2.{topic}" for topic in load_definition(ORDER_YAML).topics()]
