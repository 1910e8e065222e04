"""sagaline's participant SDK: declare a step and write its `apply` and `undo` as ordinary
async functions (docs/your-own-saga.md).

    from sagaline.sdk import Step, Rejected

    shipping = Step("shipping", command=ShipCommand)

    @shipping.apply
    async def reserve(ctx: StepContext, command: ShipCommand) -> dict | Rejected: ...

    @shipping.undo
    async def cancel(ctx: StepContext, result: dict | None) -> None: ...

and start sagas over the orchestrator's API with `SagaClient` (or `AsyncSagaClient`).
"""

from sagaline.delivery.participant import Batch, Rejected
from sagaline.delivery.step_calls import CallPolicy
from sagaline.sdk.client import AsyncSagaClient, SagaClient, SagaClientError, SagaView, StartedSaga
from sagaline.sdk.context import IDEMPOTENCY_HEADER, CallContext, StepContext
from sagaline.sdk.step import Step

__all__ = [
    "IDEMPOTENCY_HEADER",
    "AsyncSagaClient",
    "Batch",
    "CallContext",
    "CallPolicy",
    "Rejected",
    "SagaClient",
    "SagaClientError",
    "SagaView",
    "StartedSaga",
    "Step",
    "StepContext",
]
