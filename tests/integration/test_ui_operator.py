"""The operator's buttons on a saga's timeline page, in real headless Chromium, against the
orchestrator's real app served by uvicorn (its real handler, an SQLite database; the test plays
the steps' services): cancel compensates a RUNNING saga and the timeline shows who asked; a
refused retry shows the orchestrator's reason; a wrong token is refused."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sagaline.domain.engine import SagaStatus
from tests.integration.support import unavailable
from tests.integration.test_ui import ARTIFACTS, browser_unavailable_reason
from tests.unit.orchestrator_harness import definition, harness
from tests.unit.test_saga_client import TOKEN, Served, serve
from tests.unit.test_stuck_saga import row

if TYPE_CHECKING:
    from playwright.async_api import Page


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    async with harness(url, definition("flight", "hotel")) as trip:
        async for address in serve(trip, TOKEN):
            yield Served(trip, address)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    unavailable("Chromium through Playwright", browser_unavailable_reason())
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            context = await chromium.new_context(viewport={"width": 1400, "height": 900})
            yield await context.new_page()
        finally:
            await chromium.close()


async def test_the_buttons_cancel_a_saga_and_show_a_refusal(served: Served, page: Page) -> None:
    trip = served.trip
    saga_id = await trip.start({"traveller": "ada"})
    await trip.done(saga_id, "flight", {"ticket": "T1"})
    await page.goto(f"{served.url}/ui/sagas/{saga_id}")
    assert await page.inner_text("#status") == "RUNNING"

    answer = page.locator("#operator-answer")
    await page.fill("#operator input[name=token]", "wrong")
    await page.click("#operator button[data-action=cancel]")
    await page.wait_for_selector("#operator-answer[data-code='401']")
    assert (await row(trip, saga_id))["status"] == SagaStatus.RUNNING

    await page.fill("#operator input[name=token]", TOKEN)
    await page.fill("#operator input[name=actor]", "carol")
    await page.click("#operator button[data-action=cancel]")
    await page.wait_for_selector("#operator-answer[data-code='202']")
    assert await answer.inner_text() == "cancel accepted: COMPENSATING"
    await page.wait_for_selector("#status:text-is('COMPENSATING')")  # refreshed
    operator_rows = page.locator('#timeline tr[data-kind="operator"]')
    assert "asked by carol" in await operator_rows.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "operator.png", full_page=True)

    await page.click("#operator button[data-action=retry]")
    await page.wait_for_selector("#operator-answer[data-code='409']")
    assert "only a FAILED or STUCK saga can be retried" in await answer.inner_text()
