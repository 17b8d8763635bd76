"""The house's figures for a checkout: module sizes, imports inside functions, formatter opt-outs.

Not a speed benchmark: the figures issue "The house" asks for, printed the same way before and
after a change (``git worktree add /tmp/before <rev>`` and run this script on both). The tests
enforce the limits (``tests/test_layers.py``); this prints where the code stands. The last line:

    house: 173 modules, median 121 lines, largest 581 (flowctl/runtime/delivery/deliverer.py), 0 over 600;
    8 flowctl imports inside functions; 0 '# fmt: skip'

Run: ``python bench/house.py [CHECKOUT]`` (default: this repository).
"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path

LIMIT = 600


def inner_imports(tree: ast.AST) -> int:
    """Imports of flowctl modules inside functions (a nested function's count once)."""
    seen: set[int] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            from_flowctl = isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flowctl")
            if from_flowctl or (isinstance(node, ast.Import) and any(a.name.startswith("flowctl") for a in node.names)):
                seen.add(id(node))
    return len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent)
    root: Path = parser.parse_args().checkout
    modules = sorted((root / "flowctl").rglob("*.py"))
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in modules}
    inner = sum(inner_imports(ast.parse(p.read_text(encoding="utf-8"))) for p in modules)
    marker = "# fmt: " + "skip"  # not written whole, so that this file does not count itself
    skips = sum(
        line.rstrip().endswith(marker)
        for folder in ("flowctl", "tests", "bench")
        for p in (root / folder).rglob("*.py")
        for line in p.read_text(encoding="utf-8").splitlines()
    )
    largest = max(sizes, key=lambda p: sizes[p])
    over = sorted(f"{p.relative_to(root)} ({n})" for p, n in sizes.items() if n > LIMIT)
    for line in over:
        print(f"over {LIMIT} lines: {line}")
    print(
        f"house: {len(modules)} modules, median {statistics.median(sizes.values()):g} lines, largest {sizes[largest]} "
        f"({largest.relative_to(root)}), {len(over)} over {LIMIT}; {inner} flowctl imports inside functions; "
        f"{skips} '# fmt: skip'"
    )


if __name__ == "__main__":
    main()
