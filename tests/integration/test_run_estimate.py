"""A run starts when what it is expected to cost fits (issue 23): learned from what calls of each
task type cost lately, it lands close above a run's actual cost; a refusal names the estimate,
what is left and what work in flight holds; and every model call still reserves its own upper
bound, so a run that started on its estimate never spends past the limit."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from common.analysis import outcomes
from common.analysis.admission import expected_run_cost, require_run_room
from common.analysis.launch import start_run
from common.analysis.phases import run_phase
from common.analysis.preflight import check_phase
from common.budget.clock import server_clock
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key
from common.budget.usage import get_daily_cost, run_totals
from common.models import PHASE_ORDER, BusinessInput
from common.money import nanos
from common.platform.errors import Busy, PaymentRequired
from common.platform.settings import get_settings
from common.runs import documents, lifecycle
from common.tenants.businesses import Business, get_business

pytestmark = pytest.mark.emulator


@pytest.fixture(autouse=True)
def learn_after_one_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # One run records one call of most task types (five of the options' critic): enough here.
    monkeypatch.setenv("RUN_ESTIMATE_MIN_CALLS", "1")
    get_settings.cache_clear()
    outcomes.forget()
    yield
    outcomes.forget()
    get_settings.cache_clear()


def started_run(business: BusinessInput, *, checked: bool = False) -> str:
    """A run document started (its phases run in this process), after the start's budget
    check if `checked`."""
    run_id = uuid.uuid4().hex
    if checked:
        require_run_room(run_id, business, "enterprise")
    documents.run_ref(run_id).create(documents.new_run_document(run_id, business, "enterprise"))
    lifecycle.transition(run_id, "start")
    return run_id


def full_run(business: BusinessInput) -> str:
    run_id = started_run(business)
    for phase in PHASE_ORDER:
        run_phase(run_id, phase)
    return run_id


def spent_today(business_id: str) -> int:
    return nanos(str(get_daily_cost(business_id, day_key(server_clock.now()))))


def test_once_costs_are_recorded_a_runs_estimate_lands_just_above_its_actual_cost(
    register: Callable[..., Business], business_input: BusinessInput
) -> None:
    register(business_input.business_id, "enterprise")
    cold = expected_run_cost(business_input, "enterprise")
    first = run_totals(full_run(business_input)).cost_nanos

    outcomes.forget()  # what that run recorded
    learned = expected_run_cost(business_input, "enterprise")
    second = run_totals(full_run(business_input)).cost_nanos

    # Cold, the catalogue's prices of typical answers: above the actual, by far.
    assert cold > 2 * first
    # Learned: close to what the run then cost (its prompts carry a little more evidence than
    # the first run's did) and within the target of 1.5 times it.
    assert 0.9 * second <= learned <= 1.5 * second


def test_a_refused_start_names_the_estimate_what_is_left_and_what_is_held(
    register: Callable[..., Business], business_input: BusinessInput
) -> None:
    register(business_input.business_id, "enterprise")
    full_run(business_input)
    outcomes.forget()
    expected = nanos(str(require_run_room("probe", business_input, "enterprise").estimate_usd))
    # A limit with room for a little less than one more run, part of it held by a call in flight.
    spent = spent_today(business_input.business_id)
    register(
        business_input.business_id,
        "enterprise",
        overrides={"daily_limit_usd": str((spent + expected * 9 // 10) / 1e9)},
    )
    ledger = BudgetLedger(
        get_business(business_input.business_id), run_id="other", phase="research"
    )
    ledger.reserve(key="in-flight", model="gpt-5-nano", tier="nano", upper_bound_nanos=1000)

    with pytest.raises(PaymentRequired) as refused:
        start_run(business_input)

    message = str(refused.value)
    assert refused.value.code == "daily_budget_exceeded"
    assert f"${expected / 1e9:.6f} needed" in message
    assert re.search(r"\$[\d.]+ of \$[\d.]+ left; \$[\d.]+ is held by work in flight", message)
    ledger.close()


def test_a_run_started_with_just_enough_never_spends_past_the_limit(
    register: Callable[..., Business], business_input: BusinessInput
) -> None:
    register(business_input.business_id, "enterprise")
    full_run(business_input)
    outcomes.forget()
    needed = nanos(str(require_run_room("probe", business_input, "enterprise").estimate_usd))
    spent = spent_today(business_input.business_id)
    # Room for what the start needs and not a nano more.
    limit = spent + needed
    register(
        business_input.business_id, "enterprise", overrides={"daily_limit_usd": str(limit / 1e9)}
    )

    run_id = started_run(business_input, checked=True)
    finished = []
    for phase in PHASE_ORDER:
        for _ in range(5):  # as the workflow does, a busy phase (money held by its own
            try:  # parallel calls' blocks) is run again, reusing what it finished
                check_phase(run_id, phase)  # the workflow's gate before the phase
                run_phase(run_id, phase)
                finished.append(phase)
                break
            except Busy:
                continue
            except PaymentRequired as refused:
                assert refused.code == "daily_budget_exceeded", refused
                break
        if finished[-1:] != [phase]:
            break
    # However far it got, it never spent past the limit; what it finished is kept.
    assert spent + run_totals(run_id).cost_nanos <= limit
    assert finished and finished == list(PHASE_ORDER[: len(finished)])
