"""The one `main` of the scripts that write a committed, generated file: write it, or with
`--check` say whether it is current (exit 1 and the fix if not); anything else prints the usage."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(argv: list[str], target: Path, expected: str, stale: str, usage: str) -> int:
    """`stale`: what to print (to stderr) when `target` differs from `expected` under --check."""
    if argv == ["--check"]:
        current = target.read_text() if target.exists() else ""
        if current != expected:
            sys.stderr.write(stale)
            return 1
        return 0
    if argv:
        sys.stderr.write(usage)
        return 2
    target.write_text(expected)
    return 0
