"""The layers import one way: ``cli → runtime → adapters (store, channels, gitops) → ports → engine → spec``.

Every import counts, at module level or inside a function: a lazy import is for start-up time, not
a way around an arrow. ``spec`` and ``engine`` stay free of I/O libraries, so that ``validate``,
``test`` and ``dry-run`` run the same deterministic core as the daemon.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import flowctl

PACKAGE = Path(flowctl.__file__).parent

#: A package may import those of a lower rank, never its own rank's siblings or a higher one.
RANK = {
    "spec": 0,
    "engine": 1,
    "ports": 2,
    "store": 3,
    "channels": 3,
    "gitops": 3,
    "sources": 3,
    "runtime": 4,
    "cli": 5,
    "testing": 5,
    "__main__": 6,
}
#: Modules at the package root that every layer may use.
SHARED = {"__init__", "__version__", "py"}
IO_LIBRARIES = {"sqlalchemy", "httpx", "apscheduler", "click", "starlette", "uvicorn", "psycopg", "alembic"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "flowctl":
                for alias in node.names:
                    yield node.lineno, f"flowctl.{alias.name}"
            else:
                yield node.lineno, node.module


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_every_package_has_a_rank() -> None:
    layers = {_layer(p) for p in _modules()} - SHARED
    assert layers <= set(RANK), f"give {sorted(layers - set(RANK))} a rank in tests/test_layers.py"


def test_imports_go_down_the_layers() -> None:
    wrong = []
    for path in _modules():
        source = _layer(path)
        if source in SHARED:
            continue
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "flowctl" or len(parts) < 2:
                continue
            target = parts[1]
            if target == source or target in SHARED:
                continue
            if RANK[target] >= RANK[source]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {source} imports {module}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_core_uses_no_io_library() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in _modules()
        if _layer(path) in ("spec", "engine")
        for line, module in _imports(path)
        if module.split(".")[0] in IO_LIBRARIES
    ]
    assert not wrong, "spec and engine must not import I/O libraries:\n" + "\n".join(wrong)


def test_the_rule_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flowctl.cli.run import setup_logging\n", encoding="utf-8")
    assert list(_imports(module)) == [(2, "flowctl.cli.run")]


def test_the_runtime_leaves_sqlalchemy_to_the_store() -> None:
    """What an outage is belongs to the store (``store/errors.py``), and another database's table is
    read by the polling source (``sources/foreign.py``): the runtime catches the store's errors and
    never imports SQLAlchemy."""
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in _modules()
        if _layer(path) == "runtime"
        for line, module in _imports(path)
        if module.split(".")[0] == "sqlalchemy"
    ]
    assert not wrong, "runtime/ imports SQLAlchemy; use flowctl.store.errors or a store helper:\n" + "\n".join(wrong)


#: The size a module may reach before it holds more than one idea (issue "The house").
MAX_MODULE_LINES = 600
LAZY = "lazy: start-up time"


def _imports_flowctl(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").startswith("flowctl")
    return isinstance(node, ast.Import) and any(a.name.startswith("flowctl") for a in node.names)


def _lazy_imports(path: Path) -> Iterator[tuple[int, bool]]:
    """Each import of a flowctl module inside a function: its line, and whether a ``# lazy:
    start-up time (why)`` comment sits on it (on any of its lines) or on the line above."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for function in ast.walk(ast.parse(text, str(path))):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not _imports_flowctl(node):
                continue
            span = lines[node.lineno - 2 : (node.end_lineno or node.lineno)]
            yield node.lineno, any(LAZY in line for line in span)


def test_modules_stay_small() -> None:
    big = [
        f"{path.relative_to(PACKAGE.parent)}: {count} lines"
        for path in _modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not big, f"split these by idea (at most {MAX_MODULE_LINES} lines):\n" + "\n".join(big)


def test_an_import_inside_a_function_says_it_is_for_start_up_time() -> None:
    """A lazy import hides an arrow from a reader; it is kept only where it saves start-up time,
    and says so (``# lazy: start-up time (<what it avoids loading>)``)."""
    silent = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in _modules()
        for line, explained in _lazy_imports(path)
        if not explained
    ]
    assert not silent, f"move these imports to the module's top, or comment '# {LAZY} (...)':\n" + "\n".join(silent)


def test_the_lazy_import_rule_sees_an_unexplained_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from flowctl.spec import model\n\n\n"
        "def g():\n    # lazy: start-up time (jinja2)\n    from flowctl.spec import model\n",
        encoding="utf-8",
    )
    assert list(_lazy_imports(module)) == [(2, False), (7, True)]
