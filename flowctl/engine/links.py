"""Linked records as conditions and templates see them: ``linked.<ref>`` and ``saved.<name>``.

Only the links the bundle's automations read are looked up (``spec.links``), through the step's
state view, which the runtime filled with those records before the engine ran; a link that is
empty, or names a record that is gone, reads as the object's fields all None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowctl.engine.state import Record, Run
from flowctl.engine.tx import Tx
from flowctl.spec import model as m
from flowctl.spec.links import SAVED_READ, created_id, links_read, names_read, refs_of, saved_objects, strings


class Links:
    """The bundle's links, indexed once per engine."""

    def __init__(self, bundle: m.Bundle) -> None:
        self.bundle = bundle
        self.read = links_read(bundle)
        self.refs = {name: refs_of(obj) for name, obj in bundle.objects.items()}
        self.saved = saved_objects(bundle)
        self._reads_saved: dict[int, bool] = {}  # id(action) -> whether it reads saved.X

    def keys(self, object: str, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(object, id) of the records a record of ``object`` with ``fields`` links to through
        the ref fields its automations read: what the runtime loads before the engine runs."""
        refs = self.refs.get(object, {})
        return [
            (refs[ref], str(value))
            for ref in self.read.get(object, ())
            if (value := fields.get(ref)) not in (None, "") and isinstance(value, str | int)
        ]

    def blank(self, object: str) -> dict[str, Any]:
        obj = self.bundle.objects.get(object)
        return dict.fromkeys((*(obj.fields if obj else ()), "id", "object", "stage", "pipeline", "owner"))

    def target(self, tx: Tx | None, record: Record, ref: str) -> Record | None:
        """The live record ``record``'s ref field ``ref`` names, or None."""
        object = self.refs.get(record.object, {}).get(ref)
        value = record.fields.get(ref)
        if tx is None or not object or value in (None, ""):
            return None
        found = tx.record(object, str(value))
        return found if found is not None and not found.deleted else None

    def linked(self, tx: Tx | None, record: Record) -> dict[str, dict[str, Any]] | None:
        """``linked`` for ``record``: each ref field its automations read -> the linked record's
        fields; None when they read none."""
        refs = self.read.get(record.object)
        if not refs:
            return None
        out = {}
        for ref in refs:
            view = self.blank(self.refs[record.object][ref])
            found = self.target(tx, record, ref)
            if found is not None:
                view.update(found.view())
            out[ref] = view
        return out

    def reads_saved(self, action: m.Action) -> bool:
        known = self._reads_saved.get(id(action))
        if known is None:
            known = self._reads_saved[id(action)] = any(
                names_read(SAVED_READ, text) for text in strings(action) if "saved" in text
            )
        return known

    def saved_view(self, tx: Tx, run: Run) -> dict[str, dict[str, Any]]:
        """``saved`` for an action of ``run``: each record a ``create_record`` of this run (or of
        its stage entry) created under a ``save_as`` name."""
        scope = run_scope(run)
        out = {}
        for name, object in self.saved.items():
            view = self.blank(object)
            found = tx.record(object, created_id(scope, name))
            if found is not None:
                view.update(found.view())
            out[name] = view
        return out


def run_scope(run: Run) -> str:
    """What created ids derive from: the stage entry a rule belongs to (its sibling rules read
    what it saved), else the run."""
    return run.entry or run.id


def with_saved(ctx: Mapping[str, Any], saved: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {**ctx, "saved": saved}


def missing_ref(tx: Tx, obj: m.ObjectType | None, values: Mapping[str, Any]) -> str:
    """Why a write of ``values`` to a record of ``obj`` names a record that is not there ('' when
    every ref value names a live record): a link must point at something."""
    for name, object in refs_of(obj).items():
        value = values.get(name)
        if value in (None, ""):
            continue
        found = tx.record(object, str(value))
        if found is None or found.deleted:
            state = "is deleted" if found is not None else "does not exist"
            return f"field {name} links to {object} {value}, which {state}"
    return ""
