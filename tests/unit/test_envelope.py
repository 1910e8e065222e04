"""The message envelope: JSON round trip, validation, Kafka key and headers."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from sagaline.domain.envelope import Envelope, header_value, traceparent

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def envelope(**overrides) -> Envelope:
    fields = {
        "type": "payment.charge",
        "saga_id": uuid.UUID("12345678-1234-5678-9abc-def012345678"),
        "saga": "order",
        "step": "payment",
        "attempt": 2,
        "payload": {"customer_id": "c-1", "amount": "12.50", "items": [{"q": 1}]},
    }
    return Envelope(**(fields | overrides))


def test_encode_decode_round_trip():
    original = envelope()
    decoded = Envelope.decode(original.encode())
    assert decoded == original
    assert decoded.id == original.id
    assert decoded.occurred_at == original.occurred_at
    assert decoded.payload == {"customer_id": "c-1", "amount": "12.50", "items": [{"q": 1}]}


def test_encode_is_json_with_exactly_the_envelope_fields():
    original = envelope()
    document = json.loads(original.encode())
    assert set(document) == {
        "id",
        "type",
        "saga_id",
        "saga",
        "step",
        "attempt",
        "occurred_at",
        "payload",
    }
    assert document["saga_id"] == "12345678-1234-5678-9abc-def012345678"
    assert document["id"] == str(original.id)
    assert document["attempt"] == 2


def test_round_trip_keeps_a_non_utc_timestamp_and_no_step():
    when = datetime(2026, 11, 25, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    original = envelope(step=None, occurred_at=when, type="saga.start")
    decoded = Envelope.decode(original.encode())
    assert decoded.step is None
    assert decoded.occurred_at == when


def test_defaults():
    first, second = envelope(), envelope()
    assert first.id != second.id
    assert first.id.version == 4
    assert Envelope(type="saga.start", saga_id=uuid.uuid4(), saga="order").attempt == 1
    assert first.occurred_at.tzinfo is not None
    assert abs(datetime.now(UTC) - first.occurred_at) < timedelta(minutes=1)


def test_extra_fields_are_refused():
    with pytest.raises(ValidationError, match="extra"):
        envelope(priority=1)
    document = json.loads(envelope().encode())
    document["priority"] = 1
    with pytest.raises(ValueError, match="priority"):
        Envelope.decode(json.dumps(document).encode())


@pytest.mark.parametrize(
    "bad",
    [
        "payment",
        "Payment.charge",
        "payment.Charge",
        "payment.",
        ".charge",
        "1payment.charge",
        "payment.charge.again",
        "payment charge",
        "payment_x.charge",
        "",
    ],
)
def test_bad_type_is_refused(bad):
    with pytest.raises(ValidationError, match="type"):
        envelope(type=bad)


@pytest.mark.parametrize(
    "good", ["saga.start", "payment.compensated", "my-step.execute", "s3.done-now"]
)
def test_good_types_are_accepted(good):
    assert envelope(type=good).type == good


def test_decode_refuses_bad_type_in_json():
    document = json.loads(envelope().encode())
    document["type"] = "PAYMENT"
    with pytest.raises(ValueError, match="type"):
        Envelope.decode(json.dumps(document).encode())


@pytest.mark.parametrize("value", [b"", b"not json", b"{}", b"[]", b'{"type": "saga.start"}'])
def test_decode_refuses_what_is_not_an_envelope(value):
    with pytest.raises(ValueError):
        Envelope.decode(value)


def test_decode_refuses_an_empty_value():
    with pytest.raises(ValueError, match="empty"):
        Envelope.decode(None)


@pytest.mark.parametrize("attempt", [0, -1, 1001])
def test_attempt_out_of_range_is_refused(attempt):
    with pytest.raises(ValidationError, match="attempt"):
        envelope(attempt=attempt)


def test_envelope_is_frozen():
    message = envelope()
    with pytest.raises(ValidationError):
        message.attempt = 3  # type: ignore[misc]


def test_key_is_the_saga_id():
    message = envelope()
    assert message.key == b"12345678-1234-5678-9abc-def012345678"
    assert message.key == str(message.saga_id).encode()
    assert envelope(type="payment.charged").key == message.key


def test_traceparent_format():
    message = envelope()
    match = TRACEPARENT.match(traceparent(message))
    assert match, traceparent(message)
    trace_id, parent_id = match.groups()
    assert trace_id == message.saga_id.hex == "12345678123456789abcdef012345678"
    assert parent_id == message.id.hex[:16]


def test_one_saga_one_trace_distinct_spans():
    first, second = envelope(), envelope(type="payment.charged")
    a, b = TRACEPARENT.match(traceparent(first)), TRACEPARENT.match(traceparent(second))
    assert a and b
    assert a.group(1) == b.group(1)
    assert a.group(2) != b.group(2)
    other = envelope(saga_id=uuid.uuid4())
    assert TRACEPARENT.match(traceparent(other)).group(1) == other.saga_id.hex != a.group(1)


def test_headers_carry_type_and_traceparent():
    message = envelope()
    headers = message.headers()
    assert headers == [
        ("type", b"payment.charge"),
        ("traceparent", traceparent(message).encode()),
    ]
    assert header_value(headers, "type") == "payment.charge"
    assert header_value(headers, "traceparent") == traceparent(message)


def test_header_value_edge_cases():
    assert header_value(None, "type") is None
    assert header_value([], "type") is None
    assert header_value([("other", b"x")], "type") is None
    assert header_value([("type", None), ("type", b"saga.start")], "type") == "saga.start"
    assert header_value([("type", bytearray(b"a.b"))], "type") == "a.b"
    assert header_value([("type", b"\xff")], "type") == "\ufffd"
