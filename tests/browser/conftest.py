"""Fixtures for the browser tests: the web app on its own local stack, and Debian's Chromium
driven by Playwright (the PyPI package; no browser download: `executable_path`).

The stack here is the one `raptorflow web` runs: the Firestore emulator with `firestore.rules`
(so the page's listeners go through the rules), the Firebase Auth emulator, every function
(the API among them), the workflow engine, and the app built from web/ and served on loopback.
Screenshots go to .local/browser/ for a person to look at.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from common.models import BusinessInput
from common.platform.settings import get_settings
from common.runs import documents
from common.tenants.businesses import Business, save_business
from local import webapp
from tests.spending import spend

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "local" / "samples" / "tidewater.json"
SHOTS = ROOT / ".local" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
# Flags that work headless as root on this image (no sandbox for root; nothing dials out).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class People:
    """alice owns tidewater, shoestring (72% of today's budget spent) and corner-shop (96%
    spent); bob owns globex and its run `bobs_run`."""

    tidewater: str
    shoestring: str
    corner_shop: str
    globex: str
    bobs_run: str


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


@pytest.fixture(scope="session")
def people(web: webapp.WebStack) -> Iterator[People]:
    """Users in the Auth emulator and businesses in Firestore, written as an operator would."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in web.local.client_env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        web.auth.create_user("alice", "alice@example.com", PASSWORD)
        web.auth.create_user("bob", "bob@example.com", PASSWORD)
        seeded = People(
            tidewater="tidewater-coffee",
            shoestring="shoestring-tea",
            corner_shop="corner-shop",
            globex="globex",
            bobs_run=uuid.uuid4().hex,
        )
        # A run on the pro tier costs about $0.026 offline, but each phase first reserves its
        # upper bound (about ten times that), so a day can only pass 75% in a run that starts
        # close to it: these businesses have spent most of a small day already.
        for business_id, name, owner, limit, spent in (
            (seeded.tidewater, "Tidewater Coffee Co.", "alice", None, 0),
            (seeded.shoestring, "Shoestring Tea", "alice", Decimal("0.25"), 180_000_000),
            (seeded.corner_shop, "Corner Shop", "alice", Decimal("0.05"), 48_000_000),
            (seeded.globex, "Globex", "bob", None, 0),
        ):
            business = Business.model_validate(
                {
                    "business_id": business_id,
                    "name": name,
                    "tier": "pro",
                    "members": [owner],
                    "owners": [owner],
                    "overrides": {"daily_limit_usd": limit} if limit else {},
                }
            )
            save_business(business)
            if spent:
                spend(business, spent)
        sample = BusinessInput.model_validate_json(SAMPLE.read_text())
        globex = sample.model_copy(update={"business_id": seeded.globex, "name": "Globex"})
        documents.run_ref(seeded.bobs_run).create(
            documents.new_run_document(seeded.bobs_run, globex, "pro")
        )
    # Out of the patch: later tests of the session must not talk to this stack's emulator.
    get_settings.cache_clear()
    yield seeded


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, web: webapp.WebStack, people: People) -> Iterator[Page]:
    """A fresh browser context (nobody signed in) on the web app."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
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
    page.wait_for_selector("#app:not([hidden])")
