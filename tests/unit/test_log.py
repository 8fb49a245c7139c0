"""Log lines are Cloud Logging JSON entries, and never carry a secret this process has read."""

from __future__ import annotations

import json
import logging

import pytest

from common.platform import log
from common.platform.secrets import find_secret
from common.platform.settings import get_settings


def entry(message: str, **fields: object) -> dict[str, object]:
    record = logging.LogRecord("raptorflow", logging.WARNING, __file__, 1, message, None, None)
    record.json_fields = fields
    parsed: dict[str, object] = json.loads(log.JsonFormatter().format(record))
    return parsed


def test_a_log_line_is_one_cloud_logging_json_object() -> None:
    line = entry("budget warning", event="budget_warning", level=90)
    assert line["severity"] == "WARNING" and line["message"] == "budget warning"
    assert line["event"] == "budget_warning" and line["level"] == 90


def test_a_secret_that_was_read_never_reaches_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-proj-Zq3vX9tL2mN8pR4sW7yB1cD6fH0jK5nQ"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    get_settings.cache_clear()
    assert find_secret("OPENAI_API_KEY") == key
    line = json.dumps(entry(f"calling with {key}", header=f"Bearer {key}"))
    assert key not in line
    assert line.count("[REDACTED]") == 2
