"""Write functions/requirements.txt from pyproject.toml's runtime dependencies.

Cloud Build installs that file into every function (it is zipped beside main.py by
terraform/functions.tf). Committed rather than generated at plan time so `terraform apply` needs
no build step; tests/terraform fails when it drifts from pyproject.toml.

usage: python terraform/scripts/requirements.py [--check]
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from generated import write_or_check

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "functions" / "requirements.txt"
HEADER = (
    "# Generated from pyproject.toml [project].dependencies by terraform/scripts/requirements.py;\n"
    "# do not edit. Cloud Build installs it into every function.\n"
)


def render(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The requirements file for the dependencies listed in `pyproject`."""
    with pyproject.open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    return HEADER + "".join(f"{line}\n" for line in dependencies)


def main(argv: list[str]) -> int:
    """Write the file, or with --check report whether it is current (exit 1 if not)."""
    expected = render()
    stale = (
        f"{TARGET.relative_to(ROOT)} is out of date with pyproject.toml; run "
        f"`python terraform/scripts/requirements.py`. Expected:\n{expected}"
    )
    return write_or_check(argv, TARGET, expected, stale, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
