"""`sagaline saga retry|cancel ID`: an operator's hands on one saga, over the orchestrator's
HTTP API (docs/operations.md, "Retry or cancel a saga"). Exit 1 if the orchestrator refuses (no
such saga, a state that does not allow it, a wrong token), 2 if it cannot be asked."""

from __future__ import annotations

import getpass
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from sagaline.services.registry import PORTS

ORCHESTRATOR_URL = f"http://127.0.0.1:{PORTS['orchestrator']}"
console = Console(stderr=True)
saga_app = typer.Typer(help="Act on one saga: retry a STUCK or FAILED one, cancel a RUNNING one.")

SagaId = Annotated[str, typer.Argument(help="The saga's id.")]
Url = Annotated[str, typer.Option(help="The orchestrator's address.")]
Token = Annotated[
    str,
    typer.Option(
        "--api-token",
        envvar="SAGALINE_API_TOKEN",
        show_default=False,
        help="The orchestrator's API token (always needed).",
    ),
]
Actor = Annotated[
    str | None,
    typer.Option(help="Who asks, written into the saga's history (default: your user name)."),
]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment: the orchestrator's default
        return None


def _act(action: str, saga_id: str, url: str, api_token: str, actor: str | None) -> None:
    from sagaline.sdk.client import SagaClient, SagaClientError

    try:
        with SagaClient(url, api_token) as client:
            act = client.retry if action == "retry" else client.cancel
            saga = act(saga_id, actor or _user())
    except SagaClientError as exc:
        console.print(f"[red]{action} refused: {escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        console.print(
            f"[red]cannot ask the orchestrator at {escape(url)}: {escape(str(exc))}[/red]"
        )
        raise typer.Exit(2) from exc
    reason = f" ({saga.reason})" if saga.reason else ""
    print(f"{saga.id} {saga.status}{reason}")


@saga_app.command()
def retry(
    saga_id: SagaId, api_token: Token, url: Url = ORCHESTRATOR_URL, actor: Actor = None
) -> None:
    """Re-drive a STUCK saga (its parked inputs, its due work) or a FAILED one (its compensations
    given up, sent again with fresh attempts); prints its id and status after."""
    _act("retry", saga_id, url, api_token, actor)


@saga_app.command()
def cancel(
    saga_id: SagaId, api_token: Token, url: Url = ORCHESTRATOR_URL, actor: Actor = None
) -> None:
    """Compensate a RUNNING saga; prints its id and status after."""
    _act("cancel", saga_id, url, api_token, actor)
