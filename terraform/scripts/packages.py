"""Write terraform/packages.json: for each function, the files of our code its zip must hold.

A function's zip (terraform/functions.tf) holds its main.py, functions/requirements.txt and the
import closure of main.py over `common/`: every module it imports, at module level or inside a
function, then every module those import, and so on; the `__init__.py` of every package on the
way; and the data files (YAML, JSON, ...) that sit beside the modules of a package in the
closure. Imports under `if TYPE_CHECKING:` never run and are left out. `local/` and `workflows/`
are developer tools and are never deployed; an import of them from a function's closure is an
error here (tests/unit/test_layers.py forbids it too).

Committed rather than computed at plan time so `terraform plan` needs nothing but Terraform;
tests/terraform fails when it drifts from the code, and the production-parity run
(tests/parity) runs every function from exactly these files.

usage: python terraform/scripts/packages.py [--check]
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

from generated import write_or_check

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "terraform" / "packages.json"
DEPLOYED = "common"
NEVER_DEPLOYED = ("local", "workflows", "tests", "tools", "bench")


class ClosureError(RuntimeError):
    """A function's code imports something that is never deployed."""


def _module_file(name: str) -> Path | None:
    """The file of module `name` under ROOT (a package's `__init__.py`), or None."""
    path = ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _is_type_checking(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name an import statement of `path` may load (run-time imports only)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.stmt) and _is_type_checking(node):
            for other in node.orelse:  # the `else:` of `if TYPE_CHECKING` does run
                visit(other)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            names.add(source)
            # `from common.llm import setup` imports the module common.llm.setup.
            names.update(f"{source}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return names


def closure(main: Path) -> list[str]:
    """The repository-relative files of our code that `main` needs at run time, sorted."""
    modules: dict[str, Path] = {}
    pending = [(main, "__main__")]
    while pending:
        path, module = pending.pop()
        for name in sorted(_imported_names(path, module)):
            top = name.split(".")[0]
            if top in NEVER_DEPLOYED and _module_file(top) is not None:
                raise ClosureError(
                    f"{path.relative_to(ROOT)} imports {name}, which is never deployed"
                )
            if top != DEPLOYED:
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                file = _module_file(prefix)
                if file is not None and prefix not in modules:
                    modules[prefix] = file
                    pending.append((file, prefix))
    files = {file for file in modules.values()}
    for package in {file.parent for file in files}:
        files |= {
            data
            for data in package.iterdir()
            if data.is_file() and data.suffix not in {".py", ".pyc"}
        }
    return sorted(file.relative_to(ROOT).as_posix() for file in files)


def render() -> str:
    """The packages file: {function name: [files]} for every functions/<name>/main.py."""
    mains = sorted((ROOT / "functions").glob("*/main.py"))
    document = {main.parent.name: closure(main) for main in mains}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Write the file, or with --check report whether it is current (exit 1 if not)."""
    expected = render()
    stale = (
        f"{TARGET.relative_to(ROOT)} is out of date with the functions' imports; run "
        "`python terraform/scripts/packages.py`.\n"
    )
    return write_or_check(argv, TARGET, expected, stale, __doc__ or "")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
