"""The reference web app in headless Chromium against the local stack, as a marketer uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from common.budget.operator import set_paused
from common.platform.settings import get_settings
from local import webapp
from tests.browser.conftest import People, shoot, sign_in

pytestmark = pytest.mark.emulator
RUN_TIMEOUT_MS = 180_000
SECTIONS = [
    "research",
    "positioning",
    "icps",
    "7ps",
    "north-star",
    "calendar",
    "briefs",
    "amec",
    "clv",
    "route-back",
]
# Test-side instrumentation: every value the progress bar shows, as the listener moves it.
RECORD_PERCENT = """() => {
  window.__percents = [];
  const bar = document.getElementById('progress');
  new MutationObserver(() => window.__percents.push(Number(bar.getAttribute('aria-valuenow'))))
    .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
}"""


def status(page: Page) -> str:
    return page.get_attribute("#run-status", "data-status") or ""


def start(page: Page, business_id: str) -> None:
    page.select_option("#business", business_id)
    page.click("#start-button")


def test_a_wrong_password_is_explained(page: Page) -> None:
    page.fill("#email", "alice@example.com")
    page.fill("#password", "not-the-password")
    page.click("#sign-in-button")
    expect(page.locator("#notice")).to_have_text("Wrong email or password.")
    expect(page.locator("#app")).to_be_hidden()


def test_sign_in_start_a_run_and_watch_it_to_the_results(page: Page, people: People) -> None:
    sign_in(page)
    expect(page.locator("#who")).to_have_text("alice@example.com")
    page.select_option("#business", people.tidewater)
    expect(page.locator("#budget-text")).to_contain_text("of $50.00 today (pro plan)")
    page.evaluate(RECORD_PERCENT)
    start(page, people.tidewater)

    page.wait_for_function("window.__percents.some(p => p >= 30)", timeout=RUN_TIMEOUT_MS)
    shoot(page, "01-run-in-progress")
    expect(page.locator("#run-step")).not_to_have_text("—")
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=RUN_TIMEOUT_MS)

    percents: list[int] = page.evaluate("window.__percents")
    assert percents == sorted(percents), percents
    assert percents[-1] == 100
    assert len(set(percents)) >= 6, f"the bar should move step by step: {percents}"

    for name in SECTIONS:
        section = page.locator(f"[data-section='{name}']")
        expect(section).to_be_visible(timeout=30_000)
        assert len(section.inner_text()) > 40, name
    expect(page.locator("[data-section=positioning] .tile")).to_have_count(3)
    expect(page.locator("[data-section=positioning] .tile.chosen")).to_have_count(1)
    expect(page.locator("[data-section=icps] .tile")).to_have_count(3)
    expect(page.locator("[data-section=calendar] tbody tr")).to_have_count(12)
    expect(page.locator("[data-section=amec] tbody tr")).to_have_count(6)
    expect(page.locator("[data-section='7ps'] tbody tr")).to_have_count(7)

    # The cost panel: one bar per phase, and the models' bars add up to the run's cost.
    expect(page.locator("#costs figure")).to_have_count(2)
    expect(page.locator("#costs figure").first.locator("rect")).to_have_count(6)
    cost = float((page.text_content("#run-cost") or "$0").lstrip("$"))
    assert cost > 0
    expect(page.locator("#run-models")).not_to_have_text("—")
    expect(page.locator("#run-eta")).to_have_text("—")
    expect(page.locator("#cancel-button")).to_be_disabled()
    shoot(page, "02-run-succeeded")
    shoot(page, "03-cost-panel", element="#costs")
    shoot(page, "04-results-full-page", full_page=True)


def test_cancel_stops_a_second_run(page: Page, people: People) -> None:
    sign_in(page)
    start(page, people.tidewater)
    page.wait_for_function(
        "Number(document.getElementById('progress').getAttribute('aria-valuenow')) >= 5",
        timeout=RUN_TIMEOUT_MS,
    )
    page.click("#cancel-button")
    page.wait_for_selector("#run-status[data-status=cancelled]", timeout=RUN_TIMEOUT_MS)
    percent = int(page.get_attribute("#progress", "aria-valuenow") or 0)
    assert percent < 100
    expect(page.locator("#cancel-button")).to_be_disabled()
    expect(page.locator("[data-section=route-back]")).to_have_count(0)
    shoot(page, "05-run-cancelled")


def test_another_business_run_cannot_be_read(
    page: Page, people: People, web: webapp.WebStack
) -> None:
    sign_in(page)
    page.goto(f"{web.web.url}#run={people.bobs_run}")
    expect(page.locator("#notice")).to_have_text(
        "Access denied: you are not a member of the business this belongs to."
    )
    expect(page.locator("#run")).to_be_hidden()
    shoot(page, "06-another-business-denied")


def test_a_budget_warning_appears_when_a_small_limit_is_crossed(page: Page, people: People) -> None:
    sign_in(page)
    page.select_option("#business", people.shoestring)
    expect(page.locator("#budget-text")).to_contain_text("of $0.25 today")
    expect(page.locator("#budget-warning")).to_be_hidden()  # 72% spent: no warning yet
    start(page, people.shoestring)
    warning = page.locator("#run-warnings li").first
    expect(warning).to_contain_text("Budget warning", timeout=RUN_TIMEOUT_MS)
    expect(warning).to_contain_text("passed 75% of its daily budget")
    expect(page.locator("#budget-warning")).to_contain_text("Budget warning: 75%")
    assert page.get_attribute("#gauge", "data-level") == "75"
    shoot(page, "07-budget-warning")


def test_a_start_beyond_the_budget_is_refused_with_a_reason(page: Page, people: People) -> None:
    sign_in(page)
    page.select_option("#business", people.corner_shop)
    expect(page.locator("#budget-warning")).to_contain_text("Budget warning: 90%")
    page.click("#start-button")
    expect(page.locator("#notice")).to_contain_text("Budget exceeded: today's budget")
    expect(page.locator("#run")).to_be_hidden()
    shoot(page, "08-budget-exceeded")


@pytest.fixture
def paused(web: webapp.WebStack) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in web.local.client_env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        set_paused(True, "scheduled maintenance")
        try:
            yield
        finally:
            set_paused(False)
    get_settings.cache_clear()


def test_a_paused_platform_is_explained(page: Page, people: People, paused: None) -> None:
    sign_in(page)
    start(page, people.tidewater)
    expect(page.locator("#notice")).to_contain_text("RaptorFlow is paused for maintenance")
    expect(page.locator("#notice")).to_contain_text("scheduled maintenance")
    shoot(page, "09-paused")
