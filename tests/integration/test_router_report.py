"""`raptorflow router-report`: how calls ended, from the usage records the ledger wrote."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from common.budget import usage
from common.budget.ledger import BudgetLedger
from common.llm import AllProvidersFailed, CircuitBreaker, Router
from common.llm.base import Message, RateLimited
from common.models import SelectedPositioning
from common.spend.records import AttemptRecord, TokenUsage
from common.tenants.businesses import Business
from local.cli import main
from tests.unit.llm.doubles import ScriptedProvider, business_messages, failure
from tools import router_feedback

VALID = SelectedPositioning(
    option_number=1, statement="Coffee for the morning rush.", rationale="Research."
).model_dump_json()
DAY10 = dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC)
DAY12 = dt.datetime(2026, 11, 12, 9, tzinfo=dt.UTC)


class Calls:
    """Runs calls through the real router and ledger, on a settable day."""

    def __init__(self, business: Business) -> None:
        self.now = DAY10
        self.ledger = BudgetLedger(business, clock=lambda: self.now)
        self.openai, self.gemini = ScriptedProvider("openai"), ScriptedProvider("gemini")
        # No cool-down: a model that failed once is tried again on the next call.
        breaker = CircuitBreaker(cooldown_seconds=0)
        self.router = Router({"openai": self.openai, "gemini": self.gemini}, breaker=breaker)
        self.count = 0

    def run(self, task: str, messages: list[Message] | None = None) -> None:
        self.count += 1
        self.router.execute(
            task,
            messages or business_messages(),
            schema=SelectedPositioning,
            ledger=self.ledger,
            call_key=f"report-run:{task}:{self.count}",
        )


@pytest.mark.emulator
def test_the_report_counts_each_calls_outcome_by_task_type_and_tier(
    register: Callable[..., Business], capsys: pytest.CaptureFixture[str]
) -> None:
    calls = Calls(register("report-co", "enterprise"))
    # positioning_analysis is balanced (mini tier): gpt-5-mini, then gemini-2.5-flash.
    calls.openai.push(VALID)
    calls.run("positioning_analysis")  # first try
    calls.openai.push("not json", VALID)
    calls.run("positioning_analysis")  # repaired
    calls.openai.push(failure(RateLimited, "openai", "gpt-5-mini"))
    calls.gemini.push(VALID)
    calls.run("positioning_analysis")  # fell back
    # strategy_analysis is complex (full tier): gpt-5, then gemini-2.5-pro; neither answers.
    calls.openai.push(failure(RateLimited, "openai", "gpt-5"))
    calls.gemini.push("not json", "not json either")
    with pytest.raises(AllProvidersFailed):
        calls.run("strategy_analysis")
    # An ad-hoc task: the classifier sends small talk to nano.
    calls.openai.push(VALID)
    calls.run("general", [Message(role="user", content="thanks, have a great day!")])
    # Two days later: outside a report that ends on the 11th.
    calls.now = DAY12
    calls.openai.push(VALID)
    calls.run("positioning_analysis")
    # A record written before outcomes were kept, and another business's call.
    calls.ledger.reserve(key="old-attempt", model="gpt-5-nano", tier="nano", upper_bound_nanos=10)
    calls.ledger.settle(
        AttemptRecord(
            key="old-attempt",
            task_type="general",
            model="gpt-5-nano",
            provider="openai",
            usage=TokenUsage(input_tokens=10),
            cost_nanos=1,
            latency_ms=1.0,
            fallback_used=False,
            ok=True,
        )
    )
    other = Calls(register("someone-else", "enterprise"))
    other.openai.push(VALID)
    other.run("positioning_analysis")

    report = usage.router_report("report-co", dt.date(2026, 11, 10), dt.date(2026, 11, 11))
    found = {(row.task_type, row.tier): row for row in report.rows}
    assert list(found) == [
        ("general", "nano"),
        ("positioning_analysis", "mini"),
        ("strategy_analysis", "full"),
    ]
    mini = found[("positioning_analysis", "mini")]
    assert mini.calls == 3
    assert mini.outcomes == {
        "first_try": 1, "repaired": 1, "fell_back": 1, "escalated": 0, "failed": 0,
    }  # fmt: skip
    assert mini.share("repaired") == pytest.approx(1 / 3)
    full = found[("strategy_analysis", "full")]
    assert (full.calls, full.outcomes["failed"]) == (1, 1)
    assert full.cost_nanos > 0  # the invalid answers were billed
    assert found[("general", "nano")].outcomes["first_try"] == 1
    assert report.attempts_without_outcome == 0  # the old record is dated the 12th

    everything = usage.router_report("report-co")
    assert {row.task_type: row.calls for row in everything.rows}["positioning_analysis"] == 4
    assert everything.attempts_without_outcome == 1
    assert sum(row.calls for row in usage.router_report().rows) >= 6  # every business

    assert (
        main(
            [
                "router-report",
                "--business",
                "report-co",
                "--from",
                "2026-11-10",
                "--to",
                "2026-11-30",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "task", "type", "tier", "calls", "first", "try", "repaired", "fell", "back", "escalated",
        "failed", "cost", "$",
    ]  # fmt: skip
    row = next(line for line in out if line.startswith("positioning_analysis"))
    assert row.split()[1:8] == ["mini", "4", "50.0%", "25.0%", "25.0%", "0.0%", "0.0%"]
    assert "1 attempts recorded before outcomes were kept are not counted" in out[-1]


@pytest.mark.emulator
def test_router_feedback_exports_each_calls_attempts_and_trains_the_router(
    register: Callable[..., Business], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = Calls(register("feedback-co", "enterprise"))
    calls.openai.push(VALID)
    calls.run("positioning_analysis")  # mini, first try
    calls.openai.push("not json", VALID)
    calls.run("positioning_analysis")  # mini, repaired
    calls.openai.push(failure(RateLimited, "openai", "gpt-5"))
    calls.gemini.push(VALID)
    calls.run("strategy_analysis")  # full: fell back to Gemini

    lines = usage.router_feedback("feedback-co")
    found = [sorted((a["tier"], a["outcome"]) for a in line["attempts"]) for line in lines]
    assert found == [
        [("mini", "first_try")],
        [("mini", "failed"), ("mini", "repaired")],  # the invalid answer, then its repair
        [("full", "failed"), ("full", "fell_back")],  # OpenAI's 429, then Gemini
    ]
    assert all(line["format"] == "raptorflow-router-feedback/1" for line in lines)
    assert all("prompt" not in line for line in lines)  # usage records hold no prompt

    # A deployment's own prompt log, joined by call key, then the trainer's reading of it.
    log = tmp_path / "prompts.jsonl"
    log.write_text(
        "".join(
            json.dumps({"call_key": line["call_key"], "prompt": f"prompt {i}"}) + "\n"
            for i, line in enumerate(lines[:2])
        )
    )
    out = tmp_path / "feedback.jsonl"
    args = ["router-feedback", "--business", "feedback-co", "--prompts", str(log)]
    assert main([*args, "--out", str(out)]) == 0
    assert "3 calls (2 with a prompt) written to" in capsys.readouterr().out
    tally = router_feedback.Tally()
    prompts = router_feedback.prompts(out, tally)
    assert [(p.text, p.quality) for p in prompts] == [
        ("prompt 0", {"strong": 1.0, "weak": 1.0}),
        ("prompt 1", {"strong": 1.0, "weak": 0.8}),
    ]
    assert tally.skipped == {"without a prompt": 1}

    log.write_text("not json\n")
    assert main(args) == 2
    assert "--prompts: " in capsys.readouterr().err
