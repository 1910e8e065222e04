"""The saga timeline page (`/ui`) in real headless Chromium, and `sagaline trace`, on a real
stack (embedded broker, SQLite) holding a COMPLETED, a COMPENSATED and a FAILED saga.

The FAILED saga: the stock service is held still (SIGSTOP), so its command and then its
compensation go unanswered until the orchestrator gives up (short timeouts in this test's Saga
file). Screenshots go to test-artifacts/ui/ at the repository root.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from typer.testing import CliRunner

from sagaline.cli import app
from sagaline.domain.definition import default_definition_path
from sagaline.lab.stack import Stack
from sagaline.services.orchestrator.models import Saga, SagaEvent
from sagaline.storage.db import Database
from tests.integration.support import (
    EMBEDDED_SQLITE,
    Api,
    http_client,
    running_stack,
    unavailable,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
TOKEN = "ui-test-token"
# Commands re-sent after 2, 4 s then given up; compensations after 2 s, given up after 6 s.
TIMING = {"stepTimeoutSeconds": 2, "maxAttempts": 3, "compensationMaxAttempts": 2}
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'


def browser_unavailable_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if shutil.which("chromium") is None:
        return "no chromium on PATH (apt-get install -y --no-install-recommends chromium)"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own, with the API token set and short timeouts."""
    state_dir = tmp_path_factory.mktemp("ui")
    definition = yaml.safe_load(default_definition_path().read_text())
    definition["spec"].update(TIMING)
    saga_file = state_dir / "saga.yaml"
    saga_file.write_text(yaml.safe_dump(definition))
    with running_stack(state_dir, EMBEDDED_SQLITE, saga_file=saga_file, api_token=TOKEN) as up:
        yield up


@pytest.fixture(scope="module")
async def api(stack: Stack) -> AsyncIterator[Api]:
    headers = {"Authorization": f"Bearer {TOKEN}"}  # for the POSTs; the page needs none
    async with http_client(headers=headers) as client:
        yield Api(stack, client)


@pytest.fixture(scope="module")
async def sagas(stack: Stack, api: Api) -> AsyncIterator[dict[str, str]]:
    """The saga id of each outcome: completed, compensated (stock refused after the charge),
    failed (stock held still until the orchestrator gave up its compensation)."""
    customer = await api.account("100.00")
    product = await api.product(1)
    completed = await api.order(customer, (product, 1, "5.00"))
    await api.saga_status(completed["id"], "COMPLETED")
    compensated = await api.order(customer, (product, 1, "7.00"))  # the last one is sold
    await api.saga_status(compensated["id"], "COMPENSATED")

    in_stock = await api.product(5)
    stock = stack.processes["stock"]
    stock.signal(signal.SIGSTOP)
    try:
        failed = await api.order(customer, (in_stock, 1, "3.00"))
        await api.saga_status(failed["id"], "FAILED", within=90)
        # Stock stays still while the page is looked at: its late answers would reopen the saga.
        yield {
            "completed": completed["id"],
            "compensated": compensated["id"],
            "failed": failed["id"],
        }
    finally:
        stock.signal(signal.SIGCONT)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    unavailable("Chromium through Playwright", browser_unavailable_reason())
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


def ui(stack: Stack, path: str = "") -> str:
    return f"{stack.service_url('orchestrator')}/ui{path}"


async def test_list_shows_each_saga_with_its_status_and_filters(
    stack: Stack, sagas: dict[str, str], page: Page
) -> None:
    await page.goto(ui(stack))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    for status, saga_id in sagas.items():
        badge = page.locator(f'tr[data-saga="{saga_id}"] [data-status]')
        assert await badge.inner_text() == status.upper()
    compensated = page.locator(f'tr[data-saga="{sagas["compensated"]}"]')
    assert "out of stock" in await compensated.inner_text()
    await page.screenshot(path=ARTIFACTS / "list.png", full_page=True)

    await page.select_option("select[name=status]", "FAILED")
    await page.fill("input[name=reason]", "GIVEN UP")
    await page.click("button[type=submit]")
    await page.wait_for_url("**/ui?status=FAILED*")
    shown = await page.locator("tr[data-saga]").evaluate_all(
        "rows => rows.map(row => row.dataset.saga)"
    )
    assert shown == [sagas["failed"]]


async def test_each_timeline_shows_its_steps_and_reasons(
    stack: Stack, sagas: dict[str, str], page: Page
) -> None:
    expectations = {
        # outcome: (kinds that must appear as (step, kind), words of the reason)
        "completed": ({("payment", "success"), ("stock", "success"), ("saga", "outcome")}, None),
        "compensated": (
            {("payment", "success"), ("stock", "failure"), ("payment", "compensated")},
            "out of stock",
        ),
        "failed": (
            {("stock", "re-send"), ("stock", "compensation"), ("payment", "compensated")},
            "compensation given up for stock",
        ),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for outcome, (kinds, reason) in expectations.items():
        saga_id = sagas[outcome]
        await page.goto(ui(stack))
        await page.click(f'a[href="ui/sagas/{saga_id}"]')
        await page.wait_for_url(f"**/ui/sagas/{saga_id}")

        assert await page.inner_text("#status") == outcome.upper()
        rows = await page.locator("#timeline tbody tr").evaluate_all(
            "rows => rows.map(row => [row.dataset.step, row.dataset.kind, row.innerText])"
        )
        assert kinds <= {(step, kind) for step, kind, _ in rows}, rows
        assert rows[0][1] == "start" and rows[-1][1] == "outcome"
        if reason is None:
            assert await page.locator("#reason").count() == 0
        else:
            assert reason in await page.inner_text("#reason")
        if outcome == "compensated":  # the step's own refusal is shown on its row
            refusal = next(text for step, kind, text in rows if kind == "failure")
            assert "out of stock" in refusal
        await page.screenshot(path=ARTIFACTS / f"{outcome}.png", full_page=True)


async def test_the_list_refreshes_itself(stack: Stack, sagas: dict[str, str], api: Api, page):
    await page.goto(ui(stack, "?status=COMPENSATED"))
    await page.wait_for_selector(f'tr[data-saga="{sagas["compensated"]}"]')
    customer = await api.account("1.00")

    # Refused by payment, the first step (stock is held still by now).
    order = await api.order(customer, ("p-never-stocked", 1, "9.00"))

    row = page.locator(f'tr[data-saga="{order["id"]}"]')
    await row.wait_for(timeout=20_000)  # no reload: the page polls every 2 s
    assert "insufficient funds" in await row.inner_text()


async def test_text_from_the_database_is_shown_not_run(stack: Stack, page: Page) -> None:
    """A reason and a history detail holding markup are displayed as text."""
    saga_id = uuid.uuid4()
    db = Database(stack.urls["orchestrator"])
    try:
        async with db.transaction() as session:
            session.add(
                Saga(
                    id=saga_id,
                    name="order",
                    status="COMPENSATED",
                    execution="sequential",
                    payload={"customer_id": HOSTILE},
                    state={"steps": {"payment": {"status": "FAILED", "reason": HOSTILE}}},
                    reason=HOSTILE,
                )
            )
            session.add(
                SagaEvent(saga_id=saga_id, direction="received", type="saga.start", detail=HOSTILE)
            )
    finally:
        await db.dispose()

    for path in ["?reason=onerror", f"/sagas/{saga_id}"]:
        await page.goto(ui(stack, path))
        assert HOSTILE in await page.inner_text("#live")
        assert await page.locator("#live img, #live script").count() == 0
        assert await page.evaluate("window.pwned") is None


def test_trace_prints_the_timeline_of_a_real_saga(stack: Stack, sagas: dict[str, str]) -> None:
    url = stack.service_url("orchestrator")

    wide = {"COLUMNS": "200"}  # rich wraps to the terminal's width

    result = CliRunner().invoke(app, ["trace", sagas["compensated"], "--url", url], env=wide)

    assert result.exit_code == 0, result.output
    output = result.output
    assert "COMPENSATED" in output and "reason: stock: out of stock" in output
    for event in ["payment.charge", "payment.charged", "stock.failed", "payment.compensated"]:
        assert event in output
    unknown = CliRunner().invoke(app, ["trace", str(uuid.uuid4()), "--url", url])
    assert unknown.exit_code == 1
    assert "has no saga" in unknown.output
