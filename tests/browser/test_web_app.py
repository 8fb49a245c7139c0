"""The reference web app in headless Chromium against the local stack, as a marketer uses it:
on a phone (390 px wide) and on a laptop (1366 px), where a flow's layout matters at both."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from playwright.sync_api import Page, expect

from common.analysis.phases import run_phase
from common.budget.operator import set_paused
from common.budget.status import get_budget_status
from common.models import PHASE_ORDER, BusinessInput
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents, lifecycle
from local import webapp
from local.businesses import register_business
from tests.browser.conftest import (
    PASSWORD,
    SAMPLE,
    People,
    assert_fits,
    assert_reachable,
    on_stack,
    shoot,
    sign_in,
)

pytestmark = pytest.mark.emulator
SAMPLE_INPUT = BusinessInput.model_validate_json(SAMPLE.read_text())
BOTH_WIDTHS = pytest.mark.parametrize("width", [390, 1366], indirect=True)
PHONE = pytest.mark.parametrize("width", [390], indirect=True)
RUN_TIMEOUT_MS = 180_000
SECTIONS = [
    "research",
    "evidence",
    "sostac",
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
# Words of pydantic's that must never reach a marketer.
RAW_WORDING = re.compile(r"should have|should match|Input should|after validation|Field required")


def wait_percent(page: Page, at_least: int) -> None:
    page.wait_for_function(
        "n => Number(document.getElementById('progress').getAttribute('aria-valuenow')) >= n",
        arg=at_least,
        timeout=RUN_TIMEOUT_MS,
    )


def rows(page: Page) -> list[tuple[str, str]]:
    """(run id, status) of each run the history lists, top to bottom."""
    found: list[list[str]] = page.locator("#history-list .run-row").evaluate_all(
        "rows => rows.map(r => [r.dataset.runId, r.dataset.status])"
    )
    return [(run, status) for run, status in found]


def test_a_wrong_password_is_explained(page: Page) -> None:
    page.fill("#email", "alice@example.com")
    page.fill("#password", "not-the-password")
    page.click("#sign-in-button")
    expect(page.locator("#notice")).to_have_text("Wrong email or password.")
    expect(page.locator("#app")).to_be_hidden()


@BOTH_WIDTHS
def test_start_watch_results_then_history_run_again_and_cancel(
    page: Page, people: People, web: webapp.WebStack, width: int
) -> None:
    sign_in(page)
    expect(page.locator("#who")).to_have_text("alice@example.com")
    page.select_option("#business", people.tidewater)
    expect(page.locator("#budget-text")).to_contain_text("left of $50.00 today (pro plan)")
    # The form starts from the business's last analysis (here the seeded one).
    expect(page.locator("[name=industry]")).to_have_value(SAMPLE_INPUT.industry)
    expect(page.locator("[name=goals]")).to_have_value("\n".join(SAMPLE_INPUT.goals))
    expect(page.locator("#history-list .run-row")).to_have_count(10)
    assert_fits(page, "01-signed-in")
    assert_reachable(page, "#start-button")

    page.evaluate(RECORD_PERCENT)
    page.click("#start-button")
    page.wait_for_function("window.__percents.some(p => p >= 30)", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#run-step")).not_to_have_text("—")
    run_id = page.text_content("#run-id") or ""
    # The history's row of the open run follows it live.
    expect(page.locator(f".run-row[data-run-id='{run_id}']")).to_have_attribute(
        "data-status", "running"
    )
    shoot(page, f"02-run-in-progress-{width}px")
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
    expect(page.locator("[data-section=sostac] .tile")).to_have_count(6)
    assert page.locator("[data-section=evidence] tbody tr").count() >= 1
    # Every sub-task is a step: in the activity list as it happens, and in how it was made.
    with on_stack(web):
        done = documents.get_run(run_id)
    steps = [s for p in done.phases.values() for s in p.get("sub_tasks", [])]
    assert len(steps) >= 17
    expect(page.locator("[data-section=making] tbody tr")).to_have_count(len(steps))
    expect(page.locator("#run-events li[data-type=subtask_completed]")).to_have_count(len(steps))
    # The cost panel: one bar per phase.
    expect(page.locator("#costs figure")).to_have_count(2)
    expect(page.locator("#costs figure").first.locator("rect")).to_have_count(6)
    cost = float((page.text_content("#run-cost") or "$0").lstrip("$"))
    assert cost > 0
    expect(page.locator("#run-eta")).to_have_text("—")
    expect(page.locator("#cancel-button")).to_be_disabled()
    assert_fits(page, "03-run-succeeded")

    # The history lists it first, with its cost and duration.
    row = page.locator(f".run-row[data-run-id='{run_id}']")
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(row.locator(".run-cost")).to_have_text(f"${cost:.4f}")
    expect(row.locator(".run-duration")).to_have_text(re.compile(r"^\d+ (s|min \d+ s)$"))
    assert rows(page)[0] == (run_id, "succeeded")

    # Run again: a new run of the same input opens at once; cancelled midway, it ends there.
    row.locator(".rerun").click()
    expect(page.locator("#run-id")).not_to_have_text(run_id)
    again = page.text_content("#run-id") or ""
    wait_percent(page, 5)
    page.click("#cancel-button")
    page.wait_for_selector("#run-status[data-status=cancelled]", timeout=RUN_TIMEOUT_MS)
    assert int(page.get_attribute("#progress", "aria-valuenow") or 0) < 100
    expect(page.locator("#cancel-button")).to_be_disabled()
    expect(page.locator("[data-section=route-back]")).to_have_count(0)
    with on_stack(web):
        assert documents.get_run(again).input == documents.get_run(run_id).input
        runs = db().collection(documents.RUNS)
        total = len(runs.where(filter=FieldFilter("business_id", "==", people.tidewater)).get())
    expect(page.locator(f".run-row[data-run-id='{again}']")).to_have_attribute(
        "data-status", "cancelled"
    )
    shoot(page, f"04-run-cancelled-{width}px")

    # Filter by status, then page through everything.
    page.select_option("#history-status", "cancelled")
    expect(page.locator("#history-list .run-row:not([data-status=cancelled])")).to_have_count(0)
    expect(page.locator("#history-list .run-row").first).to_have_attribute("data-run-id", again)
    assert len(rows(page)) >= 6  # the five seeded and this one
    page.select_option("#history-status", "")
    expect(page.locator("#history-list .run-row")).to_have_count(10)
    while page.locator("#history-more").is_visible():
        shown = len(rows(page))
        page.click("#history-more")
        expect(page.locator("#history-list .run-row")).not_to_have_count(shown)
    assert len(rows(page)) == total > 10
    assert len({run for run, _ in rows(page)}) == total  # no run twice across pages
    page.click("#close-run")
    expect(page.locator("#run")).to_be_hidden()
    assert_fits(page, "05-history")


@PHONE
def test_a_run_the_budget_stopped_before_any_part_says_so(page: Page, people: People) -> None:
    sign_in(page)
    page.select_option("#business", people.tidewater)
    page.select_option("#history-status", "budget_exceeded")
    row = page.locator(f".run-row[data-run-id='{people.stopped_run}']")
    row.locator(".open").click()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "budget_exceeded")
    notice = page.locator("#notice")
    expect(notice).to_contain_text(
        "Budget exceeded: the analysis stopped before its first step, which needed "
        "$0.2100, with $0.0400 of the $0.25 daily limit left today, and $0.1800 more is held "
        "by analyses still in progress."
    )
    expect(notice).to_contain_text("No part had finished, so there are no results to show.")
    expect(notice).not_to_contain_text("kept below")
    expect(page.locator("#results")).to_be_hidden()
    # The form was filled from the last analysis meanwhile, the filter's answer notwithstanding.
    expect(page.locator("[name=industry]")).to_have_value(SAMPLE_INPUT.industry)
    assert_fits(page, "06-stopped-without-parts")


@BOTH_WIDTHS
def test_a_refused_start_shows_its_cause_and_numbers(
    page: Page, people: People, web: webapp.WebStack
) -> None:
    sign_in(page)
    notice = page.locator("#notice")
    page.select_option("#business", people.corner_shop)
    expect(page.locator("#budget-warning")).to_contain_text("Budget warning: 90%")
    expect(page.locator("#budget-text")).to_contain_text("$0.0020 left of $0.05 today")
    page.click("#example-button")  # no analyses yet: the form starts empty
    page.click("#start-button")
    expect(notice).to_contain_text("Not started: the budget cannot pay for this analysis.")
    expect(notice).to_contain_text("only $0.0020 of the $0.05 daily limit is left today")
    found = re.search(r"It needs \$([0-9.]+)", notice.text_content() or "")
    assert found is not None and float(found[1]) > 0.002
    expect(page.locator("#run")).to_be_hidden()
    assert_fits(page, "07-refused-budget-exceeded")

    # Money held by a call in flight: the gauge and the refusal show the same amounts.
    with on_stack(web):
        status = get_budget_status(people.busy_bakery)
    held, free = f"${status.today_reserved:.4f}", f"${status.today_remaining:.4f}"
    assert status.today_reserved >= 0.499
    page.select_option("#business", people.busy_bakery)
    expect(page.locator("#budget-text")).to_contain_text(
        f"$0.0000 spent, {held} held by analyses in progress, {free} left of $0.50 today"
    )
    page.click("#example-button")
    page.click("#start-button")
    expect(notice).to_contain_text(
        f"Not started yet: {held} of the $0.50 daily limit is held by analyses still in "
        f"progress, so only {free} is free now and this analysis needs $"
    )
    expect(page.locator("#run")).to_be_hidden()
    assert_fits(page, "08-refused-money-held")


@PHONE
def test_the_forms_problems_come_back_as_plain_sentences(page: Page, people: People) -> None:
    sign_in(page)
    page.select_option("#business", people.harbor)
    page.click("#example-button")
    notice = page.locator("#notice")
    cases = [
        ("goals", "\n".join(f"Goal number {n}" for n in range(11)), "goals"),
        ("website", "ftp://files.example", "website"),
        ("description", "Too short", "description"),
        ("icp_count", "12", "icp_count"),
    ]
    expected = [
        "Please give at most 10 goals (there are 11).",
        "The website must be a full address starting with http:// or https://, without spaces.",
        "“What the business does” needs at least 20 characters.",
        "“Customer profiles (ICPs)” can be at most 9.",
    ]
    for (name, value, field), sentence in zip(cases, expected, strict=True):
        page.click("#example-button")
        page.fill(f"[name={name}]", value)
        page.click("#start-button")
        expect(notice).to_have_text(sentence)
        assert not RAW_WORDING.search(notice.text_content() or "")
        expect(page.locator(f"[name={field}]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#run")).to_be_hidden()
    assert_fits(page, "09-form-problem")


@PHONE
def test_a_new_account_sees_how_to_join_and_nothing_to_run(
    page: Page, web: webapp.WebStack
) -> None:
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#sign-up-button")
    expect(page.locator("#onboarding")).to_be_visible()
    token = web.auth.sign_in(email, PASSWORD)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    expect(page.locator("#onboarding-uid")).to_have_text(claims["user_id"])
    # No form, no example, nothing that could start a run on a business that is not theirs.
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#start-form")).to_be_hidden()
    expect(page.locator("#start-button")).to_be_hidden()
    assert_fits(page, "10-new-account")


@BOTH_WIDTHS
def test_an_owner_manages_members_sees_plan_and_spending_and_a_new_limit_live(
    page: Page, people: People, web: webapp.WebStack, width: int
) -> None:
    sign_in(page)
    page.select_option("#business", people.harbor)
    page.click("#tab-business")
    with on_stack(web):
        before = get_budget_status(people.harbor)
    expect(page.locator("#plan-tier")).to_have_text("pro")
    expect(page.locator("#plan-daily")).to_have_text(f"${before.daily_limit:.2f} a day")
    expect(page.locator("#plan-monthly")).to_have_text(f"${before.monthly_limit:.2f} a month")

    # Spending over the last 14 days, stacked by model: yesterday one model, today two.
    expect(page.locator("#spend-total")).to_contain_text("$0.0600 over the last 14 days")
    expect(page.locator("#spend-total")).to_contain_text("3 model calls")
    bars = page.locator("#spend-chart rect[data-series]")
    expect(bars).to_have_count(3)
    days = bars.evaluate_all("bars => bars.map(b => b.dataset.day + ' ' + b.dataset.series)")
    assert len({day.split()[0] for day in days}) == 2, days
    expect(page.locator("#spend-chart .legend li")).to_have_text(["gpt-5-mini", "gpt-5-nano"])

    # Members: add bob, make him an owner and a member again, remove him.
    members = page.locator("#members-list .member")
    expect(members).to_have_count(1)
    expect(page.locator(".member[data-uid=alice]")).to_contain_text("(you)")
    page.fill("#member-uid", "not a uid!")
    page.click("#member-add")
    expect(page.locator("#notice")).to_have_text(
        "A user id has only letters, digits and . _ : - in it."
    )
    page.fill("#member-uid", "bob")
    page.click("#member-add")
    bob = page.locator(".member[data-uid=bob]")
    expect(bob).to_have_attribute("data-owner", "false")
    bob.locator(".member-role").click()
    expect(bob).to_have_attribute("data-owner", "true")
    alice = page.locator(".member[data-uid=alice]")
    expect(alice.locator(".member-role")).to_be_enabled()  # two owners: either may step down
    bob.locator(".member-role").click()
    expect(bob).to_have_attribute("data-owner", "false")
    # alice is the only owner again: she can neither step down nor leave.
    expect(alice.locator(".member-remove")).to_be_disabled()
    expect(alice.locator(".member-role")).to_be_disabled()
    assert_fits(page, "11-members")
    bob.locator(".member-remove").click()
    expect(members).to_have_count(1)

    # An operator changes the limit: the plan and the gauge show it without a reload.
    limit = 7 if width < 600 else 9
    with on_stack(web):
        register_business(people.harbor, overrides={"daily_limit_usd": str(limit)})
    expect(page.locator("#plan-daily")).to_have_text(f"${limit}.00 a day")
    page.click("#tab-analyses")
    expect(page.locator("#budget-text")).to_contain_text(f"left of ${limit}.00 today")
    assert page.get_attribute("#gauge", "data-limit") == str(limit)
    shoot(page, f"12-new-limit-{width}px", element="#budget")


def test_another_business_run_cannot_be_read(
    page: Page, people: People, web: webapp.WebStack
) -> None:
    sign_in(page)
    page.goto(f"{web.web.url}#run={people.bobs_run}")
    # The same answer as for a run that does not exist: nobody can probe which ids do.
    expect(page.locator("#notice")).to_have_text("There is no analysis with this id.")
    expect(page.locator("#run")).to_be_hidden()
    shoot(page, "13-another-business-denied")


def test_a_budget_warning_appears_and_the_stop_keeps_finished_parts(
    page: Page, people: People, web: webapp.WebStack
) -> None:
    sign_in(page)
    page.select_option("#business", people.shoestring)
    expect(page.locator("#budget-text")).to_contain_text("of $0.25 today")
    expect(page.locator("#budget-warning")).to_be_hidden()  # 74% spent: no warning yet
    page.click("#example-button")
    page.click("#start-button")
    warning = page.locator("#run-warnings li").first
    expect(warning).to_contain_text("Budget warning", timeout=RUN_TIMEOUT_MS)
    expect(warning).to_contain_text("passed 75% of its daily budget")
    expect(page.locator("#budget-warning")).to_contain_text("Budget warning: 75%")
    assert page.get_attribute("#gauge", "data-level") == "75"
    shoot(page, "14-budget-warning")
    # The owner's plan is cut to $0.19 a day while the run is under way: the gate before the
    # next phase finds no room for it, and the run stops, keeping what finished.
    with on_stack(web):
        register_business(people.shoestring, overrides={"daily_limit_usd": "0.19"})
    page.wait_for_selector("#run-status[data-status=budget_exceeded]", timeout=RUN_TIMEOUT_MS)
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Budget exceeded: the analysis stopped at the")
    expect(notice).to_contain_text("which needed $")
    expect(notice).to_contain_text("of the $0.19 daily limit left today")
    expect(notice).to_contain_text("kept below")
    expect(page.locator("[data-section=research]")).to_be_visible()


@pytest.fixture
def paused(web: webapp.WebStack) -> Iterator[None]:
    with on_stack(web):
        set_paused(True, "scheduled maintenance")
        try:
            yield
        finally:
            set_paused(False)


def test_a_paused_platform_is_explained(page: Page, people: People, paused: None) -> None:
    sign_in(page)
    page.select_option("#business", people.tidewater)
    expect(page.locator("[name=industry]")).to_have_value(SAMPLE_INPUT.industry)
    page.click("#start-button")
    expect(page.locator("#notice")).to_contain_text("RaptorFlow is paused for maintenance")
    expect(page.locator("#notice")).to_contain_text("scheduled maintenance")
    shoot(page, "15-paused")


def test_escalations_show_in_the_activity_and_in_how_the_analysis_was_made(
    page: Page, people: People, web: webapp.WebStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An analysis whose nano answers all fail their checks (the offline provider's weak
    # answers), run by the phases as the functions run them, on the web stack's emulator.
    run_id = uuid.uuid4().hex
    with on_stack(web):
        monkeypatch.setenv("OFFLINE_WEAK_RATES", '{"nano": 1.0}')
        get_settings.cache_clear()
        harbor = SAMPLE_INPUT.model_copy(update={"business_id": people.harbor, "icp_count": 3})
        documents.run_ref(run_id).create(documents.new_run_document(run_id, harbor, "pro"))
        lifecycle.transition(run_id, "start")
        for phase in PHASE_ORDER:
            run_phase(run_id, phase)
        lifecycle.transition(run_id, "succeed")
        monkeypatch.delenv("OFFLINE_WEAK_RATES")
        escalated = [
            s for p in documents.get_run(run_id).phases.values() for s in p["sub_tasks"]
            if s["escalations"]
        ]  # fmt: skip
    assert escalated  # every sub-task starting on nano moved up to mini
    sign_in(page)
    page.select_option("#business", people.harbor)
    page.locator(f".run-row[data-run-id='{run_id}'] .open").click()
    page.wait_for_selector("#run-status[data-status=succeeded]")
    marks = page.locator("#run-events li[data-escalated] .badge.escalated")
    expect(marks.first).to_contain_text("escalated nano → mini: ")
    assert marks.count() >= min(len(escalated), 30)
    making = page.locator("[data-section=making]")
    expect(making).to_contain_text(f"{len(escalated)} answers failed a check of sense")
    expect(making.locator("tbody tr", has_text="gpt-5-nano → gpt-5-mini")).to_have_count(
        len(escalated)
    )
    assert_fits(page, "16-escalations")
