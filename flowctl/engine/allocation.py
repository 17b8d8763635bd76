"""Allocation rules: who gets the next record, task or notice of an ``AllocationRule``.

``round_robin`` takes the rule's users in turn; its position is state the step returns in
``allocations``. ``least_loaded`` picks the user who owns the fewest *open* records of the object
the deciding automation runs on: records whose owner is the user, not deleted, not in a final
stage of their pipeline. The counts are part of the state the engine is handed (the store counts
them, the simulator counts its memory; both add what the current batch and step changed), so the
choice is deterministic and the same in ``flowctl test`` and the daemon. Ties go in turn: to the
first tied user at or after the rule's position, as round robin would, and the position moves on.

Only a change of owner (``handover``, ``update_fields`` of ``owner``) changes the counts: a task or
a notice for a user does not, so several tasks in a row go to the same least loaded user; spread
those with ``round_robin``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from flowctl.engine.state import Record

#: (pipeline, stage) pairs of the final stages of an object's pipelines.
Final = Collection[tuple[str, str]]


def open_owner(record: Record | None, final: Final) -> str:
    """The user ``record`` counts for in ``least_loaded`` ('' for nobody): its owner, when it is
    not deleted and not in a final stage."""
    if record is None or record.deleted or not record.owner or (record.pipeline, record.stage) in final:
        return ""
    return record.owner


def shift(counts: dict[str, int], before: Record | None, after: Record | None, final: Final) -> None:
    """Move one record's weight in ``counts`` from where ``before`` counted to where ``after`` does."""
    old, new = open_owner(before, final), open_owner(after, final)
    if old == new:
        return
    if old in counts:
        counts[old] -= 1
    if new in counts:
        counts[new] += 1


def count_open(records: Collection[Record], object: str, users: Sequence[str], final: Final) -> dict[str, int]:
    """``least_loaded``'s counts, from records in memory (what the store computes with one query)."""
    counts = dict.fromkeys(users, 0)
    for record in records:
        if record.object == object:
            owner = open_owner(record, final)
            if owner in counts:
                counts[owner] += 1
    return counts


def pick(
    strategy: str, users: Sequence[str], state: Mapping[str, Any], counts: Mapping[str, int] | None = None
) -> tuple[str, dict[str, Any]]:
    """The user the rule gives the next one to, and the rule's new state.

    ``counts`` (open records owned per user) is needed for ``least_loaded`` only.
    """
    size = len(users)
    position = int(state.get("position", 0)) % size
    step = 0  # round robin: the user at the position
    if strategy == "least_loaded":
        assert counts is not None
        fewest = min(counts.get(user, 0) for user in users)
        step = next(i for i in range(size) if counts.get(users[(position + i) % size], 0) == fewest)
    return users[(position + step) % size], {"position": (position + step + 1) % size}
