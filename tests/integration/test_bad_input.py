"""Bad input gets a clear error and loses nothing; poison messages go to a dead-letter topic."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sagaline.domain.envelope import Envelope, header_value
from tests.integration.support import Api, Kafka, of_saga

GOOD_ITEM = {"product_id": "p-1", "quantity": 1, "unit_price": "1.00"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [GOOD_ITEM]}, "customer_id"),
        ({"customer_id": "c-1"}, "items"),
        ({"customer_id": "c-1", "items": []}, "items"),
        ({"customer_id": "", "items": [GOOD_ITEM]}, "customer_id"),
        ({"customer_id": "c-1", "items": [{**GOOD_ITEM, "quantity": 0}]}, "quantity"),
        ({"customer_id": "c-1", "items": [{**GOOD_ITEM, "quantity": "many"}]}, "quantity"),
        ({"customer_id": "c-1", "items": [{**GOOD_ITEM, "unit_price": "-1"}]}, "unit_price"),
        ({"customer_id": "c-1", "items": [{**GOOD_ITEM, "unit_price": "0.001"}]}, "unit_price"),
        ({"customer_id": "c-1", "items": [{"quantity": 1, "unit_price": "1"}]}, "product_id"),
        ({"customer_id": "c-1", "items": [GOOD_ITEM], "discount": 5}, "discount"),
        ({"customer_id": "c-1", "items": [GOOD_ITEM] * 101}, "items"),
    ],
)
async def test_invalid_order_is_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    before = (await api.get("order", "/orders/summary")).json()["total"]

    response = await api.client.post(api.url("order", "/orders"), json=body)

    assert response.status_code == 422
    locations = [".".join(map(str, error["loc"])) for error in response.json()["detail"]]
    assert any(field in location for location in locations), locations
    assert (await api.get("order", "/orders/summary")).json()["total"] == before


async def test_malformed_json_is_422(api: Api) -> None:
    response = await api.client.post(
        api.url("order", "/orders"),
        content=b'{"customer_id": "c-1", "items": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("service", "path", "body", "field"),
    [
        ("payment", "/accounts", {"id": "a-1", "balance": "-5"}, "balance"),
        ("payment", "/accounts", {"id": "a b", "balance": "5"}, "id"),
        ("stock", "/products", {"id": "p-1", "quantity": -1}, "quantity"),
        ("stock", "/products", {"id": "p-1", "quantity": 1, "colour": "red"}, "colour"),
    ],
)
async def test_invalid_account_or_product_is_422(
    api: Api, service: str, path: str, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post(api.url(service, path), json=body)
    assert response.status_code == 422
    assert field in str(response.json()["detail"])


async def test_duplicate_account_is_409(api: Api) -> None:
    customer = await api.account("1.00")
    response = await api.client.post(
        api.url("payment", "/accounts"), json={"id": customer, "balance": "2.00"}
    )
    assert response.status_code == 409
    assert await api.balance(customer) == "1.00"


MESSAGE_LIMIT = 256 * 1024  # SAGALINE_MAX_MESSAGE_BYTES's default


def poison(topic: str, key: bytes) -> list[tuple[bytes, tuple[str, ...]]]:
    """Every kind of garbage for `topic`, keyed `key`, with what its dead letter must say."""
    saga_id = uuid.UUID(key.decode())
    step = topic.split(".")[0] if topic not in ("orchestrator", "orchestrator.response") else None

    def envelope(**fields: Any) -> bytes:
        return Envelope(**{"saga_id": saga_id, "saga": "order", "step": step} | fields).encode()

    return [
        (b"not json at all", ("invalid envelope",)),
        (b'{"id": "x"}', ("invalid envelope",)),  # JSON, not an envelope
        (b"\xff\xfe\x00garbage", ("invalid envelope",)),
        (envelope(type="nobody.knows"), ("unexpected type",)),
        (envelope(type="saga.start", saga="someone-elses"), ("unknown saga", "unexpected type")),
        (  # a saga id other than the record's key
            Envelope(type="saga.start", saga_id=uuid.uuid4(), saga="order").encode(),
            ("does not match saga_id",),
        ),
        (envelope(type="saga.start", payload={"blob": "x" * MESSAGE_LIMIT}), ("over the limit",)),
    ]


# (topic the garbage is sent to, dead-letter topic of the service that reads it)
OWNERS = [
    ("payment", "payment.dlt"),
    ("payment.compensation", "payment.dlt"),
    ("stock", "stock.dlt"),
    ("stock.compensation", "stock.dlt"),
    ("orchestrator", "orchestrator.dlt"),
    ("payment.success", "orchestrator.dlt"),
    ("stock.success", "orchestrator.dlt"),
    ("payment.dlt", "orchestrator.dlt"),
    ("stock.dlt", "orchestrator.dlt"),
    ("orchestrator.response", "orchestrator.dlt"),
]


def dead_letters_of(key: bytes, source: str) -> Any:
    def match(record: Any) -> bool:
        return record.key == key and header_value(record.headers, "dlt.origin.topic") == source

    return match


def consumer_of(topic: str) -> str:
    """Commands and compensations go to their step's service, replies to the orchestrator."""
    if topic == "orchestrator.response":
        return "order"
    step, _, kind = topic.partition(".")
    return step if kind in ("", "compensation") and step != "orchestrator" else "orchestrator"


async def dead_lettered(api: Api, service: str, topic: str) -> float:
    """The service's counter of messages from `topic` it dead-lettered."""
    response = await api.client.get(api.url(service, "/metrics/"))
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "sagaline_messages_total"
                and labels.get("topic") == topic
                and labels.get("outcome") == "dead_lettered"
            ):
                return sample.value
    return 0.0


@pytest.mark.parametrize(("topic", "dead_letter_topic"), OWNERS)
async def test_poison_goes_to_the_owners_dead_letter_topic_and_the_partition_moves_on(
    api: Api, kafka: Kafka, topic: str, dead_letter_topic: str
) -> None:
    key = str(uuid.uuid4()).encode()
    garbage = poison(topic, key)
    counted = await dead_lettered(api, consumer_of(topic), topic)
    for value, _ in garbage:
        await kafka.send(topic, value, key)

    dead = await kafka.read(dead_letter_topic, dead_letters_of(key, topic), count=len(garbage))

    assert len(dead) == len(garbage)
    for record, (value, reasons) in zip(dead, garbage, strict=True):  # in order
        reason = header_value(record.headers, "dlt.reason")
        assert any(expected in reason for expected in reasons), reason
        assert header_value(record.headers, "dlt.origin.partition") is not None
        assert header_value(record.headers, "dlt.origin.offset") is not None
        if len(value) > MESSAGE_LIMIT:  # cut to the limit, so that it can always be published
            assert record.value == value[:MESSAGE_LIMIT]
            assert header_value(record.headers, "dlt.truncated") == str(len(value))
        else:
            assert record.value == value  # the original bytes
    assert await dead_lettered(api, consumer_of(topic), topic) == counted + len(garbage)


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ({"type": "payment.refund-everything"}, "unexpected type"),
        ({"saga": "someone-elses-saga"}, "unknown saga"),
        ({"payload": {"customer_id": "c-1", "total_cents": "x"}}, "invalid payment.charge payload"),
    ],
)
async def test_wrong_but_well_formed_command_is_dead_lettered_with_the_reason(
    api: Api, kafka: Kafka, mutation: dict[str, Any], reason: str
) -> None:
    saga_id = uuid.uuid4()
    customer = await api.account("10.00")
    good = Envelope(
        type="payment.charge",
        saga_id=saga_id,
        saga="order",
        step="payment",
        payload={"customer_id": customer, "total_cents": 100},
    )
    bad = good.model_copy(update={"id": uuid.uuid4(), **mutation})
    await kafka.send_envelope("payment", bad)
    await kafka.send_envelope("payment", good)  # same key, same partition, right behind it

    dead = await kafka.read("payment.dlt", dead_letters_of(good.key, "payment"))
    assert reason in header_value(dead[0].headers, "dlt.reason")
    charged = await kafka.read("payment.success", of_saga(saga_id, "payment.charged"))
    assert len(charged) == 1, "the message behind the poison is handled"
    assert await api.balance(customer) == "9.00"


async def test_key_that_is_not_the_saga_id_is_dead_lettered(kafka: Kafka) -> None:
    envelope = Envelope(type="saga.start", saga_id=uuid.uuid4(), saga="order", payload={})
    wrong_key = str(uuid.uuid4()).encode()
    await kafka.send("orchestrator", envelope.encode(), wrong_key, envelope.headers())

    dead = await kafka.read("orchestrator.dlt", dead_letters_of(wrong_key, "orchestrator"))
    assert "does not match saga_id" in header_value(dead[0].headers, "dlt.reason")


async def test_unreadable_command_fails_the_step_of_a_known_saga(api: Api, kafka: Kafka) -> None:
    """The payment service dead-letters a command it cannot read; the orchestrator reads that
    dead letter as the step's failure and ends the saga at once, without waiting for timeouts."""
    saga_id = uuid.uuid4()
    start = Envelope(  # a start whose payload no payment command can be made of
        type="saga.start", saga_id=saga_id, saga="order", payload={"items": "none"}
    )
    await kafka.send_envelope("orchestrator", start)

    dead = await kafka.read("payment.dlt", dead_letters_of(start.key, "payment"))
    assert "invalid payment.charge payload" in header_value(dead[0].headers, "dlt.reason")
    saga = await api.saga_status(str(saga_id), "COMPENSATED", within=5)
    # A dead-lettered command may still have a copy in flight: the step is compensated (hole 1).
    assert saga["steps"]["payment"]["status"] == "COMPENSATED"
    assert "unprocessable by payment" in saga["reason"]
    assert saga["steps"]["payment"]["attempt"] == 1, "failed by the dead letter, not a timeout"


async def test_valid_envelope_with_a_null_key_is_dead_lettered(api: Api, kafka: Kafka) -> None:
    """A foreign client's record with no key: the key must be the saga id, so it is poison."""
    envelope = Envelope(type="saga.start", saga_id=uuid.uuid4(), saga="order", payload={})
    await kafka.send("orchestrator", envelope.encode(), None, envelope.headers())

    def null_keyed(record: Any) -> bool:
        return (
            record.key is None
            and header_value(record.headers, "dlt.origin.topic") == "orchestrator"
            and str(envelope.saga_id) in (header_value(record.headers, "dlt.reason") or "")
        )

    dead = await kafka.read("orchestrator.dlt", null_keyed)
    assert dead, "no dead letter"
    assert "key null does not match saga_id" in header_value(dead[0].headers, "dlt.reason")
    assert dead[0].value == envelope.encode()
    response = await api.get("orchestrator", f"/sagas/{envelope.saga_id}")
    assert response.status_code == 404, "the start was not handled"


async def test_forged_dead_letter_header_is_logged_counted_and_dead_lettered(
    api: Api, kafka: Kafka
) -> None:
    """Only the dead-letter path sets `dlt.reason`: a command carrying it was forged."""
    customer = await api.account("10.00")
    command = Envelope(
        type="payment.charge",
        saga_id=uuid.uuid4(),
        saga="order",
        step="payment",
        payload={"customer_id": customer, "total_cents": 100},
    )
    counted = await forged(api, "payment", "payment")
    headers = [*command.headers(), ("dlt.reason", b"trust me")]
    await kafka.send("payment", command.encode(), command.key, headers)

    dead = await kafka.read("payment.dlt", dead_letters_of(command.key, "payment"))
    assert dead, "no dead letter"
    assert "forged dlt.reason header" in header_value(dead[0].headers, "dlt.reason")
    assert header_value(dead[0].headers, "original.dlt.reason") == "trust me"
    assert dead[0].value == command.encode()
    assert await forged(api, "payment", "payment") == counted + 1
    assert await api.balance(customer) == "10.00", "not charged"


async def forged(api: Api, service: str, topic: str) -> float:
    """The service's counter of records from `topic` carrying a forged dead-letter header."""
    response = await api.client.get(api.url(service, "/metrics/"))
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if (
                sample.name == "sagaline_forged_dead_letters_total"
                and sample.labels.get("topic") == topic
            ):
                return sample.value
    return 0.0
