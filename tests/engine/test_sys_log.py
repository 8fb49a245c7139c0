"""What sys.log writes: the sys.log page's own examples, in map and list form, logged with their
severity and payload kind (https://cloud.google.com/workflows/docs/reference/stdlib/sys/log)."""

from __future__ import annotations

import logging

import pytest

from workflows.engine import VirtualClock, parse_workflow, run_workflow

PAGE_EXAMPLES = """
- assignStep:
    assign:
      - myVar: "Log my error message"
      - myMap: {"Message1": "Log my error message"}
- argsMap:
    call: sys.log
    args:
      data: ${myVar}
      severity: "ERROR"
- argsList:
    call: sys.log
    args: [${myVar}, "ERROR"]
- textList:
    call: sys.log
    args: [${null}, "ERROR", ${myVar}]
- jsonList:
    call: sys.log
    args: [${null}, "ERROR", ${null}, ${myMap}]
- dataMap:
    call: sys.log
    args:
      data: ${myMap}
- textOfAMap:
    call: sys.log
    args:
      text: ${myMap}
      severity: DEBUG
"""


def test_the_pages_examples_log_what_the_page_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="workflows.engine")
    run_workflow(parse_workflow(PAGE_EXAMPLES), clock=VirtualClock())
    logged = []
    for record in caplog.records:
        if record.name == "workflows.engine":
            fields = record.__dict__["json_fields"]
            logged.append(
                (
                    record.levelname,
                    record.getMessage(),
                    fields["workflow_severity"],
                    fields["payload"],
                )
            )
    message, as_json = "Log my error message", '{"Message1":"Log my error message"}'
    assert logged == [
        ("ERROR", message, "ERROR", "textPayload"),
        ("ERROR", message, "ERROR", "textPayload"),
        ("ERROR", message, "ERROR", "textPayload"),
        ("ERROR", as_json, "ERROR", "jsonPayload"),
        ("INFO", as_json, "DEFAULT", "jsonPayload"),
        ("DEBUG", as_json, "DEBUG", "textPayload"),
    ]
