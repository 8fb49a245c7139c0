"""Structured logging: one JSON object per line, in Cloud Logging's format.

Callers pass fields with `extra={"json_fields": {...}}` (the key google-cloud-logging uses too).
Never put a secret in a message or a field; as a last line of defence, every secret value this
process has read is replaced by "[REDACTED]" in whatever is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from common.platform.secrets import redact

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as a Cloud Logging structured entry."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "logger": record.name,
        }
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


def configure(level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` carrying structured fields: `logger.info("...", extra=fields(a=1))`."""
    return {"json_fields": values}
