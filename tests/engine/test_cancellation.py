"""Cancellation stops an execution between steps, in sleeps, retry delays and parallel branches."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from workflows.engine import ExecutionCancelled, parse_workflow, run_workflow

DEADLINE = 10.0  # generous bound so a hang fails the test instead of blocking the suite


def run_in_thread(
    text: str, cancel: threading.Event, env: dict[str, str] | None = None
) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    workflow = parse_workflow(text)

    def target() -> None:
        try:
            outcome["result"] = run_workflow(workflow, None, env=env or {}, cancel=cancel)
        except BaseException as exc:  # the test inspects whatever ended the run
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    outcome["thread"] = thread
    return outcome


def cancel_and_join(
    outcome: dict[str, Any], cancel: threading.Event, started: threading.Event | None = None
) -> None:
    if started is not None:
        assert started.wait(DEADLINE)
    cancel.set()
    outcome["thread"].join(DEADLINE)
    assert not outcome["thread"].is_alive(), "execution did not stop after cancel"
    assert isinstance(outcome.get("error"), ExecutionCancelled), outcome


def test_cancel_during_sleep() -> None:
    cancel = threading.Event()
    outcome = run_in_thread("- nap:\n    call: sys.sleep\n    args:\n      seconds: 3600\n", cancel)
    cancel_and_join(outcome, cancel)


def test_cancel_between_steps_of_an_endless_loop() -> None:
    cancel = threading.Event()
    text = """
- nap:
    call: sys.sleep
    args:
      seconds: 0.01
    next: nap
"""
    outcome = run_in_thread(text, cancel)
    cancel_and_join(outcome, cancel)


def test_cancel_during_retry_delay(refused_url: str) -> None:
    cancel = threading.Event()
    text = """
- t:
    try:
      call: http.get
      args:
        url: ${sys.get_env("URL")}
    retry:
      predicate: ${http.default_retry_predicate}
      max_retries: 10
      backoff:
        initial_delay: 3600
        max_delay: 3600
        multiplier: 1
"""
    outcome = run_in_thread(text, cancel, {"URL": refused_url})
    cancel_and_join(outcome, cancel)


def test_cancel_stops_every_parallel_branch() -> None:
    cancel = threading.Event()
    text = """
- p:
    parallel:
      for:
        value: v
        in: [1, 2, 3, 4]
        steps:
          - nap:
              call: sys.sleep
              args:
                seconds: 3600
"""
    outcome = run_in_thread(text, cancel)
    cancel_and_join(outcome, cancel)


def test_a_failing_branch_does_not_stop_its_siblings() -> None:
    """continueAll, Workflows' default and only policy: the other branches run to their end.

    https://cloud.google.com/workflows/docs/reference/syntax/parallel-steps
    """
    text = """
- init:
    assign:
      - finished: false
- t:
    try:
      steps:
        - p:
            parallel:
              shared: [finished]
              branches:
                - slow:
                    steps:
                      - nap:
                          call: sys.sleep
                          args:
                            seconds: 0.3
                      - mark:
                          assign:
                            - finished: true
                - fast:
                    steps:
                      - fail:
                          raise: fast failure
    except:
      as: e
      steps:
        - r:
            return: ${[finished, e.tags]}
"""
    outcome: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(result=run_workflow(parse_workflow(text), None)),
        daemon=True,
    )
    thread.start()
    thread.join(DEADLINE)
    assert outcome["result"] == [True, ["UnhandledBranchError"]]


def test_cancel_before_start_runs_nothing() -> None:
    cancel = threading.Event()
    cancel.set()
    workflow = parse_workflow("- r:\n    return: 1\n")
    with pytest.raises(ExecutionCancelled):
        run_workflow(workflow, None, cancel=cancel)
