"""What changes between two versions: documents added, changed or removed, field by field.

Documents are compared as the YAML gave them (plain data). Lists of mappings that carry an ``id``
(stages) or a ``name`` (rules) are matched by it, so moving or inserting a stage reads as that,
not as every later stage changing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Op = Literal["added", "changed", "removed"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldChange:
    path: str  # spec.stages[documents].rules[nudge supervisor].delay
    op: Op
    old: Any = None
    new: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "op": self.op}
        if self.op != "added":
            out["old"] = self.old
        if self.op != "removed":
            out["new"] = self.new
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class DocumentChange:
    key: str  # Kind/name
    op: Op
    fields: tuple[FieldChange, ...] = ()

    @property
    def kind(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"document": self.key, "kind": self.kind, "name": self.name, "op": self.op}
        if self.op == "changed":
            out["fields"] = [f.to_json() for f in self.fields]
        return out


@dataclass(kw_only=True, slots=True)
class FileChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed}


def diff_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[DocumentChange]:
    """Per document, in kind/name order: added, removed, or changed with its field changes."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(DocumentChange(key=key, op="added"))
        elif key not in new:
            out.append(DocumentChange(key=key, op="removed"))
        else:
            changes = tuple(diff_values(old[key], new[key]))
            if changes:
                out.append(DocumentChange(key=key, op="changed", fields=changes))
    return out


def diff_files(old: Mapping[str, str], new: Mapping[str, str]) -> FileChanges:
    out = FileChanges()
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.added.append(name)
        elif name not in new:
            out.removed.append(name)
        elif old[name] != new[name]:
            out.changed.append(name)
    return out


def diff_values(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Field changes from ``old`` to ``new``; mappings and keyed lists are walked into."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[FieldChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(FieldChange(path=sub, op="removed", old=old[key]))
            elif key not in old:
                out.append(FieldChange(path=sub, op="added", new=new[key]))
            else:
                out.extend(diff_values(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list):
        key = _list_key(old)
        if key and key == _list_key(new):
            before = {item[key]: item for item in old}
            after = {item[key]: item for item in new}
            out = [
                FieldChange(path=f"{path}[{name}]", op="removed", old=before[name])
                for name in before
                if name not in after
            ]
            for name, item in after.items():
                sub = f"{path}[{name}]"
                if name not in before:
                    out.append(FieldChange(path=sub, op="added", new=item))
                else:
                    out.extend(diff_values(before[name], item, sub))
            if not out and list(before) != list(after):
                out.append(FieldChange(path=path, op="changed", old=list(before), new=list(after)))  # reordered
            return out
        if len(old) == len(new):
            out = []
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                out.extend(diff_values(a, b, f"{path}[{i}]"))
            return out
    if old == new and type(old) is type(new):
        return []
    return [FieldChange(path=path, op="changed", old=old, new=new)]


def _list_key(items: list[Any]) -> str:
    """``id`` or ``name`` when every item is a mapping with a distinct value for it."""
    if not items or not all(isinstance(item, Mapping) for item in items):
        return ""
    for key in ("id", "name"):
        values = [item.get(key) for item in items]
        if all(isinstance(v, str) and v for v in values) and len(set(values)) == len(values):
            return key
    return ""
