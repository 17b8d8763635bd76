"""What the flow and pipeline runners may use of the engine: a typed view, not the ``Engine`` itself.

The runners decide what a trigger, a node or a stage rule does; the engine owns the indexes built
once per bundle, the context conditions and templates see, and the one way an action is performed
and a changed record is stored. Keeping the runners to this view keeps them from reaching into the
engine's other parts (and lets ``engine/core.py`` import the runners without a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any, Protocol

from flowctl.engine.state import Record, Run
from flowctl.engine.tx import Tx
from flowctl.spec import model as m


class EngineView(Protocol):
    @property
    def bundle(self) -> m.Bundle: ...

    @property
    def tz(self) -> tzinfo:
        """The config's time zone (delays to a time of day are in it)."""

    @property
    def limits(self) -> m.Limits: ...

    @property
    def flows_by_trigger(self) -> Mapping[tuple[str, str], list[m.Flow]]:
        """The enabled flows of each (object, trigger kind)."""

    def context(
        self,
        record: Record,
        *,
        before: Record | None = None,
        event: Mapping[str, Any] | None = None,
        changed: tuple[str, ...] = (),
        now: datetime | None = None,
        tx: Tx | None = None,
    ) -> dict[str, Any]:
        """What conditions and templates see for ``record`` (``linked`` read through ``tx``)."""

    def node_context(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        """A trigger's context as flow nodes see it."""

    def condition(self, source: str, ctx: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        """A condition's result and the record values it looked at."""

    def perform(
        self, tx: Tx, run: Run, action: m.Action, node: str, record: Record, ctx: Mapping[str, Any], /, **changes: Any
    ) -> tuple[Run, bool]:
        """Perform one action for a run; the traced run and whether it succeeded."""

    def apply_record(self, tx: Tx, before: Record, after: Record, by: Run | None = None, node: str = "") -> None:
        """Store a record an action changed and let it trigger automations."""
