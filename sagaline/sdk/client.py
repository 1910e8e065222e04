"""Starting a saga and waiting for its outcome, over the orchestrator's HTTP API.

```python
from sagaline.sdk.client import SagaClient

with SagaClient("http://orchestrator:8080", token) as sagas:
    started = sagas.start({"traveller": "ada"}, idempotency_key="booking-42")
    saga = sagas.wait(started.id, timeout=60)
    if saga.status == "COMPLETED":
        print(saga.results["flight"])
```

`start` is `POST /sagas` (the same key returns the same saga, so a start can be repeated after
a lost answer); `wait` is `GET /sagas/{id}` with `Prefer: wait=N`, asked again until the saga
has ended or `timeout` has passed. `AsyncSagaClient` is the same on asyncio.
"""

from __future__ import annotations

import time
import uuid
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import BaseModel, ConfigDict

from sagaline.domain.engine import SagaStatus

MAX_WAIT_S = 30.0  # what one request may ask the orchestrator to wait (`Prefer: wait`)
ACTOR_HEADER = "X-Sagaline-Actor"  # who asks a retry or cancel (docs/operations.md)


class SagaClientError(Exception):
    """The orchestrator refused a request: its HTTP status and what it said."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class StartedSaga(BaseModel):
    """The answer to a start: the saga's id, its status then, and its URL on the
    orchestrator."""

    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID
    status: str
    url: str


class SagaView(BaseModel):
    """A saga as the orchestrator tells it: its status, failure reason, initial payload and
    each step's result (by step)."""

    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID
    name: str
    status: str
    reason: str | None = None
    payload: dict[str, Any] = {}
    results: dict[str, Any] = {}

    @property
    def ended(self) -> bool:
        return SagaStatus(self.status).terminal


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _start_request(payload: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise TypeError(f"a saga's payload is a JSON object (a dict), not {type(payload).__name__}")
    return {"json": payload, "headers": {"Idempotency-Key": idempotency_key}}


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise SagaClientError(response.status_code, detail)
    body: dict[str, Any] = response.json()
    return body


def _operator_request(actor: str | None) -> dict[str, Any]:
    """Who asks a retry or cancel, for the saga's history (the orchestrator's default without)."""
    return {"headers": {ACTOR_HEADER: actor}} if actor else {}


def _wait_request(remaining: float, timeout_s: float) -> dict[str, Any]:
    """One long poll: wait at most `remaining` (and MAX_WAIT_S), and give the request that long
    plus its own time-out to answer."""
    wait = max(0.0, min(remaining, MAX_WAIT_S))
    return {"headers": {"Prefer": f"wait={wait:.3f}"}, "timeout": wait + timeout_s}


class SagaClient:
    """A synchronous client of one orchestrator; `token` is its `SAGALINE_API_TOKEN`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(token), timeout=timeout_s, transport=transport
        )

    def start(self, payload: dict[str, Any], idempotency_key: str) -> StartedSaga:
        """Start a saga with this initial payload; the same key returns the same saga."""
        response = self._http.post("/sagas", **_start_request(payload, idempotency_key))
        return StartedSaga.model_validate(_answer(response))

    def get(self, saga_id: uuid.UUID | str) -> SagaView:
        return SagaView.model_validate(_answer(self._http.get(f"/sagas/{saga_id}")))

    def retry(self, saga_id: uuid.UUID | str, actor: str | None = None) -> SagaView:
        """Re-drive a STUCK or FAILED saga (`POST /sagas/{id}/retry`); 409 if it is neither."""
        response = self._http.post(f"/sagas/{saga_id}/retry", **_operator_request(actor))
        return SagaView.model_validate(_answer(response))

    def cancel(self, saga_id: uuid.UUID | str, actor: str | None = None) -> SagaView:
        """Compensate a RUNNING saga (`POST /sagas/{id}/cancel`); 409 if it is not running."""
        response = self._http.post(f"/sagas/{saga_id}/cancel", **_operator_request(actor))
        return SagaView.model_validate(_answer(response))

    def wait(self, saga_id: uuid.UUID | str, timeout: float) -> SagaView:
        """The saga once it has ended, or as it is when `timeout` seconds have passed (then
        `ended` is False)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            request = _wait_request(remaining, self.timeout_s)
            saga = SagaView.model_validate(_answer(self._http.get(f"/sagas/{saga_id}", **request)))
            if saga.ended or deadline - time.monotonic() <= 0:
                return saga

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncSagaClient:
    """`SagaClient` on asyncio."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(token), timeout=timeout_s, transport=transport
        )

    async def start(self, payload: dict[str, Any], idempotency_key: str) -> StartedSaga:
        """Start a saga with this initial payload; the same key returns the same saga."""
        response = await self._http.post("/sagas", **_start_request(payload, idempotency_key))
        return StartedSaga.model_validate(_answer(response))

    async def get(self, saga_id: uuid.UUID | str) -> SagaView:
        return SagaView.model_validate(_answer(await self._http.get(f"/sagas/{saga_id}")))

    # `timeout` as in SagaClient.wait: how long to wait for the end, answered with the saga
    # either way (not a cancellation, which asyncio.timeout is).
    async def wait(self, saga_id: uuid.UUID | str, timeout: float) -> SagaView:  # noqa: ASYNC109
        """The saga once it has ended, or as it is when `timeout` seconds have passed (then
        `ended` is False)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            request = _wait_request(remaining, self.timeout_s)
            response = await self._http.get(f"/sagas/{saga_id}", **request)
            saga = SagaView.model_validate(_answer(response))
            if saga.ended or deadline - time.monotonic() <= 0:
                return saga

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
