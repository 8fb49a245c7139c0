"""A phase's first read primes its first take (`blocks.prime`): what no take used while it was
fresh is dropped, so a long-lived instance (a budget check answering for many businesses, a
phase replaying stored results) does not keep a snapshot per business it ever read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from common.budget import blocks
from common.budget.blocks import PRIMED_SECONDS, prime


def snapshot(path: str) -> SimpleNamespace:
    return SimpleNamespace(reference=SimpleNamespace(path=path))


def test_snapshots_no_take_used_while_fresh_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(blocks, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(blocks, "_primed", {})
    for n in range(1000):  # a thousand businesses checked in one second
        prime([snapshot(f"budget_scopes/business:b{n}:2026-12-07"), snapshot(f"runs/r{n}")])
    assert len(blocks._primed) == 1000  # only the scopes a take reads are kept

    now[0] += PRIMED_SECONDS + 0.1
    prime([snapshot("budget_scopes/business:next:2026-12-07")])

    assert list(blocks._primed) == ["budget_scopes/business:next:2026-12-07"]


def test_a_fresh_snapshot_stays_for_the_take_it_primes(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(blocks, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(blocks, "_primed", {})
    prime([snapshot("budget_scopes/business:a:2026-12-07")])
    now[0] += PRIMED_SECONDS / 2
    prime([snapshot("budget_scopes/business:b:2026-12-07")])

    assert set(blocks._primed) == {
        "budget_scopes/business:a:2026-12-07",
        "budget_scopes/business:b:2026-12-07",
    }
