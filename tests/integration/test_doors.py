"""Locked doors and bad HTTP input, over real HTTP against a running stack.

The stack runs with an API token and with smaller limits than the defaults (set through the same
environment variables an operator would use), so the limits are reachable by generated bodies.
Every mutating request is checked against the databases themselves: a refused one wrote nothing,
an accepted one wrote exactly what it said.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from sagaline.lab.stack import Stack
from sagaline.services.registry import SERVICES, build_app
from sagaline.storage.db import sync_url
from tests.integration.support import EMBEDDED_SQLITE, running_stack

TOKEN = f"doors-{uuid.uuid4().hex}"
MAX_ITEMS = 5
MAX_QUANTITY = 50
MAX_BODY = 4096
LIMITS = {
    "SAGALINE_MAX_ORDER_ITEMS": str(MAX_ITEMS),
    "SAGALINE_MAX_ITEM_QUANTITY": str(MAX_QUANTITY),
    "SAGALINE_MAX_BODY_BYTES": str(MAX_BODY),
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
TABLES = {"order": "orders", "payment": "account", "stock": "product"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("doors"), EMBEDDED_SQLITE, api_token=TOKEN, extra_env=LIMITS
    ) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


class Rows:
    """Row counts and rows read straight from the services' databases."""

    def __init__(self, stack: Stack) -> None:
        self.engines: dict[str, Engine] = {
            service: create_engine(sync_url(stack.urls[service])) for service in TABLES
        }

    def count(self, service: str) -> int:
        with self.engines[service].connect() as connection:
            count = connection.execute(text(f"SELECT count(*) FROM {TABLES[service]}"))
            return int(count.scalar_one())

    def counts(self) -> dict[str, int]:
        return {service: self.count(service) for service in TABLES}

    def dispose(self) -> None:
        for engine in self.engines.values():
            engine.dispose()


@pytest.fixture(scope="module")
def rows(stack: Stack) -> Iterator[Rows]:
    reader = Rows(stack)
    yield reader
    reader.dispose()


def url(stack: Stack, service: str, path: str) -> str:
    return f"{stack.service_url(service)}{path}"


def an_order() -> dict[str, Any]:
    return {
        "customer_id": f"c-{uuid.uuid4().hex[:8]}",
        "items": [{"product_id": "p-1", "quantity": 1, "unit_price": "1.00"}],
    }


# -- the token ----------------------------------------------------------------------------------


def mutating_routes() -> list[tuple[str, str, str]]:
    """(service, method, path) of every mutating operation the services' OpenAPI documents list
    (a path parameter is sent as its own name)."""
    found = []
    for service in SERVICES:
        for path, operations in build_app(service).openapi()["paths"].items():
            for method in sorted({m.upper() for m in operations} & MUTATING):
                found.append((service, method, path.replace("{", "").replace("}", "")))
    return found


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", f"bearer{TOKEN}", "Bearer tökén"],
)
def test_every_mutating_route_refuses_a_request_without_the_token(
    stack: Stack, anonymous: httpx.Client, rows: Rows, authorization: str | None
) -> None:
    routes = mutating_routes()
    assert {(s, m) for s, m, _ in routes} >= {
        ("order", "POST"),
        ("payment", "POST"),
        ("stock", "POST"),
    }
    before = rows.counts()
    headers = {b"Authorization": authorization.encode()} if authorization else {}
    for service, method, path in routes:
        response = anonymous.request(
            method, url(stack, service, path), json=an_order(), headers=headers
        )
        assert response.status_code == 401, (service, method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "bearer" in response.json()["detail"].lower()
    assert rows.counts() == before


def test_the_token_opens_the_door(stack: Stack, http: httpx.Client, rows: Rows) -> None:
    before = rows.count("order")
    response = http.post(url(stack, "order", "/orders"), json=an_order())
    assert response.status_code == 201, response.text
    assert rows.count("order") == before + 1


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("order", "/healthz"),
        ("order", "/readyz"),
        ("order", "/metrics/"),
        ("order", "/orders/summary"),
        ("orchestrator", "/sagas/summary"),
        ("payment", "/healthz"),
        ("stock", "/readyz"),
    ],
)
def test_reads_health_and_metrics_stay_open(
    stack: Stack, anonymous: httpx.Client, service: str, path: str
) -> None:
    assert anonymous.get(url(stack, service, path)).status_code == 200


# -- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_413_before_it_is_parsed(
    stack: Stack, http: httpx.Client, rows: Rows, chunked: bool
) -> None:
    body = json.dumps({**an_order(), "customer_id": "c" * MAX_BODY}).encode()
    content: Any = iter([body[:1000], body[1000:]]) if chunked else body
    before = rows.counts()

    response = http.post(
        url(stack, "order", "/orders"),
        content=content,
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 413
    assert "too large" in response.text.lower()
    assert rows.counts() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"items": [{"product_id": "p", "quantity": 1, "unit_price": "1"}] * (MAX_ITEMS + 1)},
            "items",
        ),
        (
            {"items": [{"product_id": "p", "quantity": MAX_QUANTITY + 1, "unit_price": "1"}]},
            "quantity",
        ),
        ({"items": [{"product_id": "p", "quantity": True, "unit_price": "1"}]}, "quantity"),
        ({"items": [{"product_id": "p", "quantity": "2", "unit_price": "1"}]}, "quantity"),
        ({"items": [{"product_id": "p", "quantity": 1, "unit_price": "NaN"}]}, "unit_price"),
        ({"items": [{"product_id": "p", "quantity": 1, "unit_price": "1e12"}]}, "unit_price"),
        ({"customer_id": "c" * 65}, "customer_id"),
    ],
)
def test_limits_set_in_the_environment_apply(
    stack: Stack, http: httpx.Client, rows: Rows, change: dict[str, Any], field: str
) -> None:
    before = rows.count("order")
    response = http.post(url(stack, "order", "/orders"), json={**an_order(), **change})
    assert response.status_code == 422
    locations = [".".join(map(str, error["loc"])) for error in response.json()["detail"]]
    assert any(location.endswith(field) for location in locations), locations
    assert rows.count("order") == before


def test_the_largest_order_the_limits_allow_is_accepted(stack: Stack, http: httpx.Client) -> None:
    item = {"product_id": "p-1", "quantity": MAX_QUANTITY, "unit_price": "1000000000.00"}
    body = {"customer_id": "c" * 64, "items": [item] * MAX_ITEMS}
    response = http.post(url(stack, "order", "/orders"), json=body)
    assert response.status_code == 201, response.text
    assert Decimal(str(response.json()["total"])) == MAX_ITEMS * MAX_QUANTITY * Decimal(10**9)


# -- generated bodies ---------------------------------------------------------------------------

IDENTIFIER = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,15}\Z")
PRICE = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)
VALID_ITEM = st.fixed_dictionaries(
    {
        "product_id": IDENTIFIER,
        "quantity": st.integers(1, MAX_QUANTITY),
        "unit_price": PRICE.map(str) | PRICE.map(float),
    }
)
VALID_ORDER = st.fixed_dictionaries(
    {"customer_id": IDENTIFIER, "items": st.lists(VALID_ITEM, min_size=1, max_size=MAX_ITEMS)}
)
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities included: json.dumps writes them, the server reads them
    | st.text(max_size=30)
    | st.sampled_from(["", "0", "-1", "1e400", "0.001", "NaN", "\x00", "p" * 65, "Infinity"])
)
JUNK = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
RAW = (
    st.binary(max_size=200)
    | st.just(b"[" * 20_000)  # nested deeper than the JSON parser recurses
    | st.just(b'{"customer_id": "c-1", "items": [')
    | st.integers(MAX_BODY - 50, MAX_BODY + 50).map(lambda n: b'{"x": "' + b"y" * n + b'"}')
)


def mutated(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """A valid body with one thing wrong (or junk instead of it)."""

    def change(draw: st.DrawFn) -> Any:
        body = json.loads(json.dumps(draw(valid)))
        holders = [body] + [item for item in body.get("items", []) if isinstance(item, dict)]
        holder = draw(st.sampled_from(holders))
        key = draw(st.sampled_from(sorted(holder)))
        how = draw(st.sampled_from(["junk", "drop", "extra", "whole"]))
        if how == "junk":
            holder[key] = draw(JUNK)
        elif how == "drop":
            del holder[key]
        elif how == "extra":
            holder[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in holder))] = 1
        else:
            return draw(JUNK)
        return body

    return st.composite(change)()


def post(http: httpx.Client, target: str, body: Any) -> httpx.Response:
    """POST `body` as JSON; encoded here, as httpx refuses NaN and infinities a client may send."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(target, content=content, headers={"content-type": "application/json"})


def same_order(order: dict[str, Any], body: dict[str, Any]) -> bool:
    items = [(i["product_id"], i["quantity"], Decimal(str(i["unit_price"]))) for i in body["items"]]
    written = [
        (i["product_id"], i["quantity"], Decimal(str(i["unit_price"]))) for i in order["items"]
    ]
    total = sum(quantity * price for _, quantity, price in items)
    return (
        order["customer_id"] == body["customer_id"]
        and written == items
        and Decimal(str(order["total"])) == total
    )


EXAMPLES = settings(
    max_examples=120,
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@EXAMPLES
@given(
    body=VALID_ORDER.map(lambda b: ("valid", b))
    | mutated(VALID_ORDER).map(lambda b: ("any", b))
    | JUNK.map(lambda b: ("any", b))
    | RAW.map(lambda b: ("any", b))
)
@example(body=("any", float("inf")))
@example(
    body=(
        "any",
        {
            "customer_id": "c",
            "items": [{"product_id": "p", "quantity": 1, "unit_price": float("nan")}],
        },
    )
)
def test_generated_orders_never_5xx_and_never_write_in_part(
    stack: Stack, http: httpx.Client, rows: Rows, body: tuple[str, Any]
) -> None:
    kind, payload = body
    before = rows.count("order")

    response = post(http, url(stack, "order", "/orders"), payload)

    event(f"{kind}: {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        order = http.get(url(stack, "order", f"/orders/{response.json()['id']}")).json()
        assert same_order(order, payload), (order, payload)
        assert rows.count("order") == before + 1
    else:
        assert kind != "valid", response.text
        assert 400 <= response.status_code < 500
        assert response.json()["detail"] if response.status_code != 413 else response.text
        assert rows.count("order") == before


ACCOUNT = st.fixed_dictionaries(
    {
        "id": IDENTIFIER,
        "balance": st.decimals(min_value=0, max_value=Decimal(10**9), places=2).map(str),
    }
)
PRODUCT = st.fixed_dictionaries({"id": IDENTIFIER, "quantity": st.integers(0, 10**9)})


@EXAMPLES
@given(
    target=st.sampled_from(
        [("payment", "/accounts", "balance", ACCOUNT), ("stock", "/products", "quantity", PRODUCT)]
    ),
    data=st.data(),
)
def test_generated_accounts_and_products_never_5xx_and_never_write_in_part(
    stack: Stack,
    http: httpx.Client,
    rows: Rows,
    target: tuple[str, str, str, st.SearchStrategy[dict[str, Any]]],
    data: st.DataObject,
) -> None:
    service, path, amount, valid = target
    drawn: tuple[str, Any] = data.draw(
        valid.map(lambda b: ("valid", b))
        | mutated(valid).map(lambda b: ("any", b))
        | JUNK.map(lambda b: ("any", b))
        | RAW.map(lambda b: ("any", b))
    )
    kind, payload = drawn
    existing = None
    if isinstance(payload, dict) and isinstance(payload.get("id"), str):
        found = http.get(url(stack, service, f"{path}/{payload['id']}"))
        existing = found.json() if found.status_code == 200 else None
    before = rows.count(service)

    response = post(http, url(stack, service, path), payload)

    event(f"{service} {kind}: {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        written = http.get(url(stack, service, f"{path}/{payload['id']}")).json()
        assert Decimal(str(written[amount])) == Decimal(str(payload[amount]))
        assert rows.count(service) == before + 1
    else:
        assert kind != "valid" or response.status_code == 409, response.text
        assert rows.count(service) == before
        if existing is not None:
            assert http.get(url(stack, service, f"{path}/{payload['id']}")).json() == existing
