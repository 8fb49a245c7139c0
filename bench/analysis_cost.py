"""What one analysis costs per plan, three ways, under a stated failure model.

For each plan (basic, pro, enterprise) on the Firestore emulator, with the offline provider
priced as the routed models and a seeded share of its answers weak (by default nano's 30%,
mini's 10%, full's none: schema-valid answers that repeat the business's description, which
the checks catch):

- **all strongest**: the phases' sub-tasks, every call on the strongest tier the plan allows
  (`ANALYSIS_ROUTING=strongest`); failing answers are asked again there;
- **static**: today's routing before the cascade, one call per phase at its task's fixed tier
  (research and strategy "complex", the rest "balanced"; no checks of sense), with what the
  checks would have said of its answers;
- **cascade**: the sub-tasks starting cheap, where recorded outcomes say (after `--warmup`
  analyses whose outcomes the router learns from), escalating one tier when checks fail.

Each analysis is for a business of its own (its own prompts, its own draws of the failure
model); costs, calls and escalations are the mean of `--runs` cascade analyses and of three
all-strongest ones. Prints cost, the cascade's share of all-strongest (the acceptance: at most
40%, with every check passed), model calls per tier, escalations, checks still failing, and the
largest jump of the progress bar a listener saw (offline answers streamed over `--latency-ms`).

    .venv/bin/python -m bench.analysis_cost [--warmup 3] [--weak '{"nano": 0.3, "mini": 0.1}']
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common.analysis import checks, outcomes
from common.analysis.phases import output_model, run_phase
from common.analysis.prompts import phase_messages
from common.analysis.registry import PHASE_TASKS, STAGES
from common.budget.blocks import USAGE
from common.budget.escrow import escrow
from common.llm import get_router
from common.models import PHASE_ORDER, BusinessInput, PhaseName, Strict
from common.money import usd
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents, lifecycle
from common.spend.ledger import NullLedger
from common.tenants.businesses import Business, save_business
from common.tenants.tiers import TierName, limits_for
from local import emulator

SAMPLE = Path(__file__).resolve().parents[1] / "local" / "samples" / "tidewater.json"
PLANS: tuple[TierName, ...] = ("basic", "pro", "enterprise")
TARGET_SHARE = 0.40


@dataclass
class Outcome:
    """One analysis: what it cost and how its calls went."""

    cost_nanos: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    escalations: int = 0
    unresolved: int = 0
    largest_jump: int | None = None
    by_task: Counter[tuple[str, str]] = field(default_factory=Counter)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Settings from these variables for the duration (the router and caches follow)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


# Ids drawn from the seed: the same seed, the same prompts, the same draws, the same figures.
_ids = itertools.count()
_seed = 0


def next_id() -> str:
    return hashlib.sha256(f"{_seed}:{next(_ids)}".encode()).hexdigest()[:32]


def business_for(plan: TierName) -> BusinessInput:
    sample = BusinessInput.model_validate(json.loads(SAMPLE.read_text()))
    business = sample.model_copy(
        update={"business_id": f"bench-{plan}-{next_id()[:10]}", "icp_count": 3}
    )
    save_business(Business(business_id=business.business_id, tier=plan, name=business.name))
    return business


def analyse(business: BusinessInput, plan: TierName, *, watch: bool = False) -> Outcome:
    """One full analysis in this process, the phases of a stage at once (as the workflow
    runs them)."""
    run_id = next_id()
    documents.run_ref(run_id).create(documents.new_run_document(run_id, business, plan))
    lifecycle.transition(run_id, "start")
    seen: list[int] = []
    listener = None
    if watch:
        listener = documents.run_ref(run_id).on_snapshot(
            lambda snapshots, _c, _t: seen.extend(
                int((s.to_dict() or {})["percent"]) for s in snapshots
            )
        )
    try:
        for stage in STAGES:
            threads = [threading.Thread(target=run_phase, args=(run_id, p)) for p in stage]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        lifecycle.transition(run_id, "succeed")
        if listener is not None:
            deadline = time.monotonic() + 10
            while (not seen or seen[-1] != 100) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        if listener is not None:
            listener.unsubscribe()
    found = Outcome()
    for record in (s.to_dict() or {} for s in db().collection(USAGE).stream()):
        if record.get("run_id") == run_id:
            found.cost_nanos += int(record["charged_nanos"])
            found.calls[record["model_tier"]] += 1
            found.escalations += record.get("outcome") == "escalated"
            found.by_task[(record["task_type"], record["model_tier"])] += 1
    run = documents.get_run(run_id)
    still = [u for p in PHASE_ORDER for u in run.phases[p].get("unresolved") or []]
    found.unresolved = len(still)
    for problem in still:
        print("    still failing:", problem[:160])
    if seen:
        found.largest_jump = max(b - a for a, b in itertools.pairwise(seen))
    return found


def static(business: BusinessInput, plan: TierName) -> Outcome:
    """Today's routing before the cascade: each phase one call at its task's tier."""
    router = get_router()
    allowed = limits_for(plan).model_tiers
    earlier: dict[PhaseName, Strict] = {}
    found = Outcome()
    inputs = checks.Inputs.of(business)
    for phase in PHASE_ORDER:
        completion = router.execute(
            PHASE_TASKS[phase],
            phase_messages(phase, business, earlier),
            schema=output_model(phase, business),
            allowed_tiers=allowed,
            ledger=NullLedger(),
            call_key=f"bench-static:{phase}",
        )
        output = completion.value()
        earlier[phase] = output
        found.cost_nanos += completion.cost_nanos
        found.calls.update(a.model_tier or "?" for a in completion.attempts)
        found.unresolved += len(checks.universal(output, inputs))
    icps = earlier["icps"].model_dump()["icps"]
    names = [icp["name"] for icp in icps]
    found.unresolved += len(checks.calendar(earlier["content"], names))  # type: ignore[arg-type]
    found.unresolved += len(checks.analytics(earlier["analytics"]))  # type: ignore[arg-type]
    return found


def mean(runs: list[Outcome]) -> Outcome:
    """The average analysis of `runs` (calls and escalations rounded to whole ones)."""
    count = len(runs)
    calls: Counter[str] = Counter()
    for run in runs:
        calls.update(run.calls)
    return Outcome(
        cost_nanos=round(sum(run.cost_nanos for run in runs) / count),
        calls=Counter({tier: round(n / count) for tier, n in calls.items()}),
        escalations=round(sum(run.escalations for run in runs) / count),
        unresolved=sum(run.unresolved for run in runs),
    )


def row(label: str, outcome: Outcome, strongest: Outcome) -> str:
    share = outcome.cost_nanos / strongest.cost_nanos
    calls = " ".join(f"{tier} {outcome.calls.get(tier, 0):>2}" for tier in ("nano", "mini", "full"))
    jump = "" if outcome.largest_jump is None else f"{outcome.largest_jump:>5}"
    return (
        f"  {label:<22} ${usd(outcome.cost_nanos):>9.5f} {share:>6.0%}   {calls}   "
        f"{outcome.escalations:>5} {outcome.unresolved:>9} {jump}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=3, help="analyses the cascade learns from")
    parser.add_argument("--weak", default='{"nano": 0.3, "mini": 0.1}', help="weak answers' share")
    parser.add_argument("--latency-ms", type=int, default=150, help="offline answers' time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10, help="cascade analyses averaged")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the phases' own log lines; the figures are below
    global _seed
    _seed = args.seed
    print("starting the Firestore emulator...")
    running = emulator.start()
    common = {
        "FIRESTORE_EMULATOR_HOST": running.host,
        "GOOGLE_CLOUD_PROJECT": f"bench-{uuid.uuid4().hex[:8]}",
        "DOTENV_PATH": "/nonexistent/.env",
        "LLM_OFFLINE": "true",
        "OFFLINE_WEAK_RATES": args.weak,
        "OFFLINE_WEAK_SEED": str(args.seed),
        "ROUTER_MIN_SAMPLES": "5",
    }
    print(
        f"failure model: weak answers {args.weak} (full tier: none); the cascade learns from "
        f"{args.warmup} analyses first (ROUTER_MIN_SAMPLES=5); seed {args.seed}"
    )
    header = (
        f"  {'':<22} {'cost':>10} {'share':>6}   {'calls per tier':<23}   "
        f"{'esc.':>5} {'unchecked':>9} {'jump':>5}"
    )
    failures = []
    try:
        for plan in PLANS:
            with environment(**common, ANALYSIS_ROUTING="strongest"):
                strongest = mean([analyse(business_for(plan), plan) for _ in range(3)])
            with environment(**common):
                baseline = static(business_for(plan), plan)
            with environment(**common):
                # Each analysis for a business of its own: other prompts, other draws of the
                # failure model (the outcomes the router learns from are everyone's).
                for _ in range(args.warmup):
                    analyse(business_for(plan), plan)
                outcomes.forget()
                cascade = mean([analyse(business_for(plan), plan) for _ in range(args.runs)])
            with environment(
                **common, OFFLINE_LATENCY_MS=str(args.latency_ms), PROGRESS_WRITE_SECONDS="0.25"
            ):
                outcomes.forget()
                watched = analyse(business_for(plan), plan, watch=True)
            cascade.largest_jump = watched.largest_jump
            share = cascade.cost_nanos / strongest.cost_nanos
            print(f"\n{plan} (tiers {', '.join(sorted(limits_for(plan).model_tiers))}):")
            print(header)
            print(row("all strongest", strongest, strongest))
            print(row("static (one call/phase)", baseline, strongest))
            print(row("cascade", cascade, strongest))
            passed = cascade.unresolved == 0 and watched.unresolved == 0
            print(
                f"  cascade / all strongest = {share:.1%} (target <= {TARGET_SHARE:.0%}); "
                f"every check passed: {'yes' if passed else 'no'}"
            )
            if share > TARGET_SHARE or not passed:
                failures.append(plan)
            with environment(**common):
                escrow.release()
    finally:
        running.stop()
    print(
        "\nshare: of the all-strongest cost; esc.: calls that moved up a tier; unchecked: "
        "checks still failing in the stored results (static: what the checks would say of "
        "its unchecked answers); jump: the largest move of the progress bar a listener saw "
        "in a streamed cascade run (points)."
    )
    if failures:
        print(f"NOT MET for: {', '.join(failures)}")


if __name__ == "__main__":
    main()
