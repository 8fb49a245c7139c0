"""The layering rule of README's architecture section, checked over every import in the code.

    local → functions → backend → analysis → runs → budget → tenants → llm → search → spend
          → platform → models, money

A module may import its own package and any layer to its right, never one to its left; nothing in
`common` or `functions` imports `local` (developer tools are not deployed), and no two modules
import each other, directly or through others. Imports inside functions count too: a lazy import
that climbs back up is the same dependency, only hidden.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Left to right: who may import whom (a layer imports only layers with a smaller rank).
LAYERS = (
    ("common.models", "common.money"),
    ("common.platform",),
    ("common.spend",),
    ("common.search",),
    ("common.llm",),
    ("common.tenants",),
    ("common.budget",),
    ("common.runs",),
    ("common.analysis",),
    ("common.backend",),
    ("functions",),
    ("local",),
)
RANK = {prefix: rank for rank, prefixes in enumerate(LAYERS) for prefix in prefixes}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The layer prefix `module` belongs to (None: not ours, e.g. a library)."""
    matches = [prefix for prefix in RANK if module == prefix or module.startswith(prefix + ".")]
    return max(matches, key=len) if matches else None


def sources() -> Iterator[Path]:
    for folder in ("common", "functions", "local"):
        yield from (ROOT / folder).rglob("*.py")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of our code in `path`, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = (package or module_name(path)).split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # `from common.budget import ledger` imports a module
                yield node.lineno, f"{base}.{alias.name}"


def ours(name: str) -> bool:
    return (ROOT / Path(*name.split("."))).with_suffix(".py").is_file() or (
        ROOT / Path(*name.split(".")) / "__init__.py"
    ).is_file()


def graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of ours: line}."""
    edges: dict[str, dict[str, int]] = {}
    for path in sources():
        found = edges.setdefault(module_name(path), {})
        for line, name in imports(path):
            if ours(name) and layer_of(name) is not None:
                found.setdefault(name, line)
    return edges


def test_every_import_follows_the_layers() -> None:
    wrong = []
    for module, targets in graph().items():
        if module in ("common", "functions") and not targets:
            continue  # the namespace's own __init__, importing nothing
        here = layer_of(module)
        assert here is not None, f"{module} is in no layer: add its package to LAYERS"
        for target, line in targets.items():
            there = layer_of(target)
            assert there is not None
            if there != here and RANK[there] >= RANK[here]:
                wrong.append(f"{module}:{line} imports {target} ({there} is not below {here})")
    assert not wrong, "imports against the layering rule:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    edges = graph()
    # Importing a package runs its __init__, which a module of the package may not import back.
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in edges.get(module, {}):
            if target == module:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("name", ["common.budget.ledger", "local.cli", "functions.research.main"])
def test_the_checker_sees_the_modules(name: str) -> None:
    """Guard against a checker that passes because it found nothing to check."""
    assert name in graph()
    assert graph()[name], f"{name} seems to import nothing of ours"


def defined_names(package: str) -> dict[str, str]:
    """Every class and function a package's modules define at their top level, by name."""
    found = {}
    for path in (ROOT / Path(*package.split("."))).rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                found[node.name] = module_name(path)
    return found


def test_spend_and_tenants_live_in_their_own_layers() -> None:
    """The budget's protocol and errors are in `common.spend` (below `llm` and `search`, which
    only see the protocol), and tenants in `common.tenants` (below `budget`)."""
    spend_types = {"Ledger", "NullLedger", "BudgetDenied", "BudgetBusy", "AttemptRecord"}
    assert spend_types <= defined_names("common.spend").keys()
    assert not spend_types & defined_names("common.llm").keys()
    tenant_names = {"Business", "get_business", "save_business", "add_member", "remove_member"}
    assert tenant_names <= defined_names("common.tenants").keys()
    assert not tenant_names & defined_names("common.budget").keys()
    assert RANK["common.spend"] < RANK["common.search"] < RANK["common.llm"]
    assert RANK["common.tenants"] < RANK["common.budget"]
