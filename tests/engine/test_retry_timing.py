"""Retry delays measured exactly with the injected clock (no real sleeping)."""

from __future__ import annotations

import pytest

from workflows.engine import VirtualClock, WorkflowError, parse_workflow, run_workflow

POLICY = """
- init:
    assign:
      - attempts: 0
- t:
    try:
      steps:
        - count:
            assign:
              - attempts: ${{attempts + 1}}
        - fail:
            raise: {{code: 503, tags: [HttpError], message: unavailable}}
    retry:
      predicate: ${{http.default_retry_predicate}}
      max_retries: {retries}
      backoff:
        initial_delay: {initial}
        max_delay: {maximum}
        multiplier: {multiplier}
"""


@pytest.mark.parametrize(
    ("retries", "initial", "maximum", "multiplier", "expected"),
    [
        (4, 1, 60, 2, [1, 2, 4, 8]),
        (5, 2, 10, 3, [2, 6, 10, 10, 10]),
        (3, 0.5, 60, 1.5, [0.5, 0.75, 1.125]),
        (3, 5, 5, 1, [5, 5, 5]),
        (0, 1, 60, 2, []),
    ],
)
def test_backoff_sequence(
    retries: int, initial: float, maximum: float, multiplier: float, expected: list[float]
) -> None:
    text = POLICY.format(retries=retries, initial=initial, maximum=maximum, multiplier=multiplier)
    clock = VirtualClock()
    with pytest.raises(WorkflowError) as info:
        run_workflow(parse_workflow(text), None, clock=clock)
    assert info.value.error["code"] == 503
    assert clock.sleeps == pytest.approx(expected)


def test_initial_delay_caps_at_max_delay() -> None:
    text = POLICY.format(retries=2, initial=30, maximum=10, multiplier=2)
    clock = VirtualClock()
    with pytest.raises(WorkflowError):
        run_workflow(parse_workflow(text), None, clock=clock)
    assert clock.sleeps == [10, 10]


def test_default_policy_delays(refused_url: str) -> None:
    text = """
- t:
    try:
      call: http.get
      args:
        url: ${sys.get_env("URL")}
    retry: ${http.default_retry}
"""
    clock = VirtualClock()
    with pytest.raises(WorkflowError) as info:
        run_workflow(parse_workflow(text), None, env={"URL": refused_url}, clock=clock)
    assert info.value.tags == ["ConnectionFailedError"]
    assert clock.sleeps == pytest.approx([1, 1.25, 1.5625, 1.953125, 2.44140625])
    assert clock.now() == pytest.approx(1_700_000_000 + sum(clock.sleeps))
