"""Fixtures for the browser tests: the web app on its own local stack, and Debian's Chromium
driven by Playwright (the PyPI package; no browser download: `executable_path`).

The stack here is the one `raptorflow web` runs: the Firestore emulator with `firestore.rules`
(so the page's listeners go through the rules), the Firebase Auth emulator, every function
(the API among them), the workflow engine, and the app built from web/ and served on loopback.
Screenshots go to .local/browser/ for a person to look at.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger
from common.models import BusinessInput
from common.platform.settings import get_settings
from common.runs import documents, lifecycle
from common.tenants.businesses import Business, save_business
from local import webapp
from tests.chromium import CHROMIUM
from tests.spending import spend

# What a page shows arrives through Firestore listeners (a business's budget line when another
# business is chosen, a run's progress): on a loaded machine, the emulator and the browser's
# listener deliver well after Playwright's default 5 s. Assertions still wait only as long as they
# must; a page that never shows the value still fails.
expect.set_options(timeout=20_000)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "local" / "samples" / "tidewater.json"
SHOTS = ROOT / ".local" / "browser"
PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class People:
    """alice owns tidewater (ten past runs and one the budget stopped before any part
    finished: `stopped_run`), shoestring (74% of today's budget spent), corner-shop (96% spent),
    harbor (spending on two models over two days; the members and limits tests change it) and
    busy-bakery (most of its day held by a call in flight); bob owns globex and its run
    `bobs_run`."""

    tidewater: str
    shoestring: str
    corner_shop: str
    harbor: str
    busy_bakery: str
    globex: str
    bobs_run: str
    stopped_run: str


# A budget stop as the budget words it (common/budget/blocks.py no_room), for `stopped_run`.
STOP_MESSAGE = (
    "daily budget exceeded: $0.210000 needed, $0.040000 of $0.25 left; "
    "$0.180000 is held by work in flight (business:tidewater-coffee:2026-12-03)"
)


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webapp.WebStack]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make web-deps` installs Debian's chromium")
    running = webapp.start(
        f"demo-web-{uuid.uuid4().hex[:8]}",
        log_dir=tmp_path_factory.mktemp("web-logs"),
        function_env={
            # Slow enough offline answers that Cancel lands mid-run, even on a busy machine.
            "OFFLINE_LATENCY_MS": "300",
            "DOTENV_PATH": "/nonexistent/.env",
            "API_RUN_BURST": "20",
        },
    )
    yield running
    running.stop()


@contextmanager
def on_stack(web: webapp.WebStack) -> Iterator[None]:
    """This process talks to the web stack's emulator (as an operator's CLI would) inside the
    block, and to the session's again after it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in web.local.client_env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        try:
            yield
        finally:
            get_settings.cache_clear()
    get_settings.cache_clear()


def earlier_spending(business: Business, nanos: int, **kwargs: Any) -> None:
    """Spending settled into the business's periods, as if by work that ended."""
    spend(business, nanos, **kwargs)
    escrow.release(business.business_id)  # this process's block goes back: spent, not held


@pytest.fixture(scope="session")
def people(web: webapp.WebStack) -> Iterator[People]:
    """Users in the Auth emulator and businesses in Firestore, written as an operator would."""
    with on_stack(web):
        web.auth.create_user("alice", "alice@example.com", PASSWORD)
        web.auth.create_user("bob", "bob@example.com", PASSWORD)
        seeded = People(
            tidewater="tidewater-coffee",
            shoestring="shoestring-tea",
            corner_shop="corner-shop",
            harbor="harbor-books",
            busy_bakery="busy-bakery",
            globex="globex",
            bobs_run=uuid.uuid4().hex,
            stopped_run=uuid.uuid4().hex,
        )
        # A run on the pro tier costs about $0.01 offline and needs about $0.045 to start (its
        # expected cost, cold, and its first phase's dearest call): a day passes 75% in a run
        # only when it starts close to it, so these businesses have spent most of a small day.
        saved: dict[str, Business] = {}
        for business_id, name, owner, limit in (
            (seeded.tidewater, "Tidewater Coffee Co.", "alice", None),
            (seeded.shoestring, "Shoestring Tea", "alice", Decimal("0.25")),
            (seeded.corner_shop, "Corner Shop", "alice", Decimal("0.05")),
            (seeded.harbor, "Harbor Books", "alice", None),
            (seeded.busy_bakery, "Busy Bakery", "alice", Decimal("0.50")),
            (seeded.globex, "Globex", "bob", None),
        ):
            saved[business_id] = save_business(
                Business.model_validate(
                    {
                        "business_id": business_id,
                        "name": name,
                        "tier": "pro",
                        "members": [owner],
                        "owners": [owner],
                        "overrides": {"daily_limit_usd": limit} if limit else {},
                    }
                )
            )
        earlier_spending(saved[seeded.shoestring], 186_000_000)
        earlier_spending(saved[seeded.corner_shop], 48_000_000)
        yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        earlier_spending(saved[seeded.harbor], 30_000_000, model="gpt-5-mini", when=yesterday)
        earlier_spending(saved[seeded.harbor], 20_000_000, model="gpt-5-nano", tier="nano")
        earlier_spending(saved[seeded.harbor], 10_000_000, model="gpt-5-mini")
        # A call in flight holds most of the bakery's day (this process's ledger, never settled).
        BudgetLedger(saved[seeded.busy_bakery]).reserve(
            key=f"in-flight-{uuid.uuid4().hex}",
            model="gpt-5-mini",
            tier="mini",
            upper_bound_nanos=499_000_000,
        )

        sample = BusinessInput.model_validate_json(SAMPLE.read_text())
        for number in range(10):  # ended early: five cancelled, five failed
            past = uuid.uuid4().hex
            documents.run_ref(past).create(documents.new_run_document(past, sample, "pro"))
            lifecycle.transition(past, "start")
            if number % 2:
                lifecycle.transition(past, "fail", message="research failed: provider outage")
            else:
                lifecycle.transition(past, "cancel")
        documents.run_ref(seeded.stopped_run).create(
            documents.new_run_document(seeded.stopped_run, sample, "pro")
        )
        lifecycle.transition(seeded.stopped_run, "start")
        lifecycle.transition(
            seeded.stopped_run,
            "budget_exceeded",
            reason="daily_budget_exceeded",
            message=STOP_MESSAGE,
        )
        globex = sample.model_copy(update={"business_id": seeded.globex, "name": "Globex"})
        documents.run_ref(seeded.bobs_run).create(
            documents.new_run_document(seeded.bobs_run, globex, "pro")
        )
    yield seeded


# A phone (iPhone 12-15 class) and a common laptop screen.
VIEWPORTS = {390: {"width": 390, "height": 844}, 1366: {"width": 1366, "height": 768}}


@pytest.fixture
def width(request: pytest.FixtureRequest) -> int:
    """The viewport's width: 1366 unless a test is parametrised with `indirect=["width"]`."""
    return int(getattr(request, "param", 1366))


@pytest.fixture
def page(browser: Browser, web: webapp.WebStack, people: People, width: int) -> Iterator[Page]:
    """A fresh browser context (nobody signed in) on the web app, `width` pixels wide."""
    context = browser.new_context(
        viewport=VIEWPORTS[width],  # type: ignore[arg-type]
        is_mobile=width < 600,
        has_touch=width < 600,
        device_scale_factor=1,
    )
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(web.web.url)
    yield opened
    context.close()
    assert errors == [], f"the page threw: {errors}"


def shoot(page: Page, name: str, *, full_page: bool = False, element: str | None = None) -> Path:
    """A screenshot for a person to look at: .local/browser/NAME.png (the viewport, the whole
    page, or one element)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if element is not None:
        page.locator(element).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Page, email: str = "alice@example.com") -> None:
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#sign-in-button")
    page.wait_for_selector("#workspace:not([hidden])")


def assert_fits(page: Page, name: str) -> None:
    """Nothing wider than the viewport (the page, its header, its charts), and a screenshot of
    the whole page as it is: .local/browser/NAME-WIDTHpx.png."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    scroll, client = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"{name}: the page is {scroll} px wide in a {client} px viewport"
    wide = page.evaluate(
        """() => [...document.querySelectorAll('figure.chart svg')]
            .filter(svg => svg.getClientRects().length
                    && svg.getBoundingClientRect().width > svg.parentElement.clientWidth + 0.5)
            .map(svg => svg.getAttribute('aria-label'))"""
    )
    assert wide == [], f"{name}: charts wider than their container: {wide}"
    # The header keeps its line: the brand and the account's button side by side.
    brand, button = page.locator(".top h1").bounding_box(), page.locator("#sign-out").bounding_box()
    if brand and button:
        assert (
            abs((brand["y"] + brand["height"] / 2) - (button["y"] + button["height"] / 2)) < 12
        ), f"{name}: the header broke onto two lines"
    shoot(page, f"{name}-{width}px", full_page=True)


def assert_reachable(page: Page, selector: str) -> None:
    """`selector` can be scrolled to and is then wholly on screen, without zooming out."""
    target = page.locator(selector)
    target.scroll_into_view_if_needed()
    expect(target).to_be_in_viewport(ratio=1)
    box = target.bounding_box()
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
        f"{selector} sticks out of the {width} px viewport: {box}"
    )
