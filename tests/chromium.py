"""Debian's Chromium driven by Playwright (the PyPI package; no browser download:
`executable_path`), for the browser tests and every other test that renders a page."""

from __future__ import annotations

from pathlib import Path

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
