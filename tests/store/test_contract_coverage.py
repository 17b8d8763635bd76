"""Every method of every role of the store is called by a contract test.

The contract suite (one module per role of ``flowctl.ports``, each run against memory, SQLite and
PostgreSQL) is what keeps the adapters alike; a method no test calls can differ between them
unnoticed. This reads the role protocols and the test modules' calls, so a method added to a role
without a test fails here by name.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from flowctl import ports

HERE = Path(__file__).parent
ROLES: tuple[type, ...] = (
    ports.RecordState,
    ports.ChangeQueue,
    ports.Outbox,
    ports.CareLedger,
    ports.Deployments,
    ports.Leases,
    ports.SourceCursors,
    ports.Inspection,
    ports.RecycleBin,
    ports.Purging,
    ports.ChannelTokens,
    ports.Store,
)


def methods(role: type) -> set[str]:
    """The methods a protocol declares itself (not those of the roles it combines)."""
    return {name for name, value in vars(role).items() if inspect.isfunction(value) and not name.startswith("_")}


def calls(sources: Iterable[str]) -> set[str]:
    """Names called as ``something.name(...)`` anywhere in ``sources``."""
    found: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                found.add(node.func.attr)
    return found


def untested(roles: Iterable[type], sources: Iterable[str]) -> list[str]:
    called = calls(sources)
    return sorted(f"{role.__name__}.{name}" for role in roles for name in methods(role) if name not in called)


def contract_sources() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in sorted(HERE.glob("test_*.py")) if path != Path(__file__)]


def test_every_method_of_every_role_is_called_by_a_contract_test() -> None:
    missing = untested(ROLES, contract_sources())
    assert not missing, "store methods no contract test calls (add one to tests/store/):\n" + "\n".join(missing)


def test_the_roles_together_are_the_store() -> None:
    every = set().union(*(methods(role) for role in ROLES))
    store = {
        name for name in dir(ports.Store) if not name.startswith("_") and inspect.isfunction(getattr(ports.Store, name))
    }
    assert every == store
    assert len(every) >= 55


def test_a_method_added_without_a_test_is_named() -> None:
    class Extra(Protocol):
        def record(self, object: str, id: str) -> None: ...
        def compact(self) -> None: ...

    assert untested([Extra], ["store.record('deal', '7')"]) == ["Extra.compact"]
