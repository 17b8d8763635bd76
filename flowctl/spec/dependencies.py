"""One mistake, one error: findings that only follow from an invalid document are held back.

A document that fails the JSON Schema (or a file that is not even YAML) is left out of the
bundle, so every check that looks it up would report it as missing: one typo in a pipeline
became the real error plus an E032 for each test naming its stages. Instead, each document that
could not be built leaves *keys* (``Pipeline/sales``, ``stages/contact``), each finding says
which keys it ``needs`` (``spec/issues.py``), and a finding whose need matches a broken key is
held back: it is not shown and does not fail validation, and the root error's hint counts it.

Keys are ``Kind/name``, ``Kind/*`` when the name could not be read, ``stages/<object>`` for the
stages a Pipeline contributes to its object type, and ``*`` for a file whose content is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from flowctl.spec.issues import Issue

#: A file that could not be read at all could have held any document.
ANY = "*"

_SEPARATOR = re.compile(r"^---.*$", re.MULTILINE)
_KIND = re.compile(r"^kind:[ \t]*[\"']?([A-Za-z]+)", re.MULTILINE)
_NAME_FLOW = re.compile(r"^metadata:[ \t]*\{[^}\n]*?\bname:[ \t]*[\"']?([^,}\"'\n]+?)[\"']?[ \t]*[,}]", re.MULTILINE)
_NAME_LINE = re.compile(r"[ \t]+name:[ \t]*[\"']?([^\"'\n#]*?)[\"']?[ \t]*(?:#.*)?")
_OBJECT = re.compile(r"^[ \t]{1,4}object:[ \t]*[\"']?([\w.-]+)", re.MULTILINE)


def needs_document(kind: str, name: str) -> tuple[str, ...]:
    """What a finding that names document ``name`` of ``kind`` needs."""
    return (f"{kind}/{name}",)


def needs_stages(object_name: str, pipeline: str = "") -> tuple[str, ...]:
    """What a finding about the stages of a pipeline (or of an object type's pipelines) needs."""
    return (f"Pipeline/{pipeline}",) if pipeline else (f"stages/{object_name}",)


def document_keys(data: Any) -> set[str]:
    """The keys a raw document would have provided, read from its data as far as it goes."""
    if not isinstance(data, dict):
        return {ANY}
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        return {ANY}
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    spec = data.get("spec")
    obj = spec.get("object") if isinstance(spec, dict) else None
    return _keys(kind, name if isinstance(name, str | int) else None, obj if isinstance(obj, str) else None)


def guess_keys(text: str) -> set[str]:
    """The keys the documents of a text that is not valid YAML would have provided, read by pattern.

    The text is cut at ``---`` lines; a part whose ``kind:`` cannot be found could be anything.
    """
    keys: set[str] = set()
    for part in _SEPARATOR.split(text):
        if not part.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in part.splitlines()):
            continue
        kind = _KIND.search(part)
        if kind is None:
            return {ANY}
        flow = _NAME_FLOW.search(part)
        name = flow[1].strip() if flow else _block_name(part)
        obj = _OBJECT.search(part)
        keys |= _keys(kind[1], name or None, obj[1] if obj else None)
    return keys or {ANY}


def _block_name(text: str) -> str:
    """The ``name:`` under a block ``metadata:`` line, read line by line (no backtracking regex)."""
    lines = iter(text.splitlines())
    for line in lines:
        if line.rstrip() == "metadata:":
            for inner in lines:
                if inner and not inner[0].isspace():
                    return ""
                match = _NAME_LINE.fullmatch(inner)
                if match:
                    return match[1].strip()
    return ""


def _keys(kind: str, name: str | int | None, obj: str | None) -> set[str]:
    keys = {f"{kind}/{name}" if name not in (None, "") else f"{kind}/*"}
    if kind == "Pipeline":
        keys.add(f"stages/{obj}" if obj else "stages/*")
    return keys


def _matches(need: str, key: str) -> bool:
    if key == ANY or need == key:
        return True
    need_kind, _, need_name = need.partition("/")
    key_kind, _, key_name = key.partition("/")
    return need_kind == key_kind and ANY in (need_name, key_name)


def hold_back(issues: Iterable[Issue], broken: Mapping[str, Issue]) -> tuple[list[Issue], list[Issue]]:
    """Split ``issues`` into those shown and those held back by a broken document.

    A held finding's message ends with ``(because file:line is invalid)``; the hint of each root
    error counts the findings it holds back.
    """
    shown: list[Issue] = []
    held: list[Issue] = []
    counts: dict[int, int] = {}
    roots: dict[int, Issue] = {}
    for issue in issues:
        root = _root(issue, broken) if issue.needs and broken else None
        if root is None:
            shown.append(issue)
            continue
        held.append(replace(issue, message=f"{issue.message} (because {root.file}:{root.line} is invalid)"))
        counts[id(root)] = counts.get(id(root), 0) + 1
        roots[id(root)] = root
    if not counts:
        return shown, held
    renamed = {id(root): _counted(root, counts[id(root)]) for root in roots.values()}
    return [renamed.get(id(issue), issue) for issue in shown], held


def _root(issue: Issue, broken: Mapping[str, Issue]) -> Issue | None:
    for need in issue.needs:
        for key, root in broken.items():
            if _matches(need, key):
                return root
    return None


def _counted(root: Issue, count: int) -> Issue:
    what = "file" if root.code == "E001" else "document"
    note = (
        f"1 finding that depends on this {what} is held back until it is fixed"
        if count == 1
        else f"{count} findings that depend on this {what} are held back until it is fixed"
    )
    return replace(root, hint=f"{root.hint}; {note}" if root.hint else note)
