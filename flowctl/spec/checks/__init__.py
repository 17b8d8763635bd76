"""Semantic checks beyond the schema: references, graphs, expressions, limits.

Each check is a function ``check_*(bundle) -> Iterator[Issue]`` that yields every problem it
finds with its place, so users see all of them at once. ``CHECKS`` lists them in the order
they run; ``run_checks`` isolates them so one check's bug cannot hide another's findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from flowctl.spec.issues import Issue
from flowctl.spec.model import Bundle

Check = Callable[[Bundle], Iterable[Issue]]

CHECKS: list[Check] = []


def run_checks(bundle: Bundle) -> Iterator[Issue]:
    for check in CHECKS:
        yield from check(bundle)
