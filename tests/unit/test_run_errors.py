"""What a failed run keeps as its `error`: one readable, redacted line from the workflow's error
(`common.runs.lifecycle.readable_error`), whatever shape that error has."""

from __future__ import annotations

import json

from common.runs.lifecycle import ERROR_MAX_CHARS, readable_error


def http_error(status: int, code: str, message: str, phase: str) -> dict[str, object]:
    """The error map our engine (like Cloud Workflows) raises for a function's 4xx/5xx answer."""
    return {
        "message": f"HTTP server responded with error code {status}",
        "code": status,
        "tags": ["HttpError"],
        "headers": {"Content-Type": "application/json"},
        "body": {"error": {"code": code, "message": message}},
        "phase": phase,
    }


def test_a_failed_phase_reads_as_its_answer_message() -> None:
    error = http_error(503, "providers_unavailable", "all providers failed: openai: x", "research")
    message = 'failed in ["research"]: ' + json.dumps(error)
    assert readable_error(message) == (
        "research failed: all providers failed: openai: x (HTTP 503 providers_unavailable)"
    )


def test_failed_parallel_branches_each_give_their_cause() -> None:
    branches = [
        {
            "id": "icps_branch",
            "error": {
                "context": "",
                "payload": json.dumps(
                    http_error(500, "providers_refused_key", "keys refused", "icps")
                ),
            },
        },
        {
            "id": "strategy_branch",
            "error": {
                "context": "",
                "payload": json.dumps(
                    {"message": "ConnectionError: refused", "tags": ["ConnectionError"]}
                ),
            },
        },
    ]
    error = {
        "message": "UnhandledBranchError: ...",
        "tags": ["UnhandledBranchError"],
        "branches": branches,
    }
    message = 'failed in ["icps", "strategy"]: ' + json.dumps(error)
    assert readable_error(message) == (
        "icps, strategy failed: keys refused (HTTP 500 providers_refused_key); "
        "ConnectionError: refused"
    )


def test_other_text_is_kept_on_one_line_redacted_and_bounded() -> None:
    assert readable_error("run x was cancelled") == "run x was cancelled"
    assert readable_error("a\n  b\tc") == "a b c"
    cut = 'failed in ["research"]: {"body": {"error": {"mess'  # cut by the workflow's bound
    assert readable_error(cut) == cut
    assert readable_error("key sk-proj-abcdefghijklmnopqrstuvwxyz was refused") == (
        "key [REDACTED] was refused"
    )
    assert len(readable_error("x" * 10 * ERROR_MAX_CHARS)) == ERROR_MAX_CHARS
