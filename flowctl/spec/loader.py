"""Read every YAML document under a directory, keeping the place of every node.

PyYAML implements YAML 1.1, whose implicit typing surprises people who write config by hand:
``at: 08:00`` is the base-60 integer 480, ``on:``/``no``/``yes`` are booleans, and an unquoted
``2026-03-01`` becomes a ``date``. flowctl resolves plain scalars by the YAML 1.2 core schema
instead, on purpose: only ``true``/``false`` are booleans, only decimal (and ``0x``/``0o``)
numbers are numbers, and times and dates stay the strings the author wrote; the model parses
them where a time or a date is expected. Duplicate keys are errors (PyYAML keeps the last one
silently). ``${ENV}`` references are ordinary strings here; they are resolved at run time.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from flowctl.spec.issues import Issue, error
from flowctl.spec.places import Path as NodePath
from flowctl.spec.places import Span

try:  # libyaml's composer is several times faster; the pure one behaves the same
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

#: Suffix under which the span of a mapping *value* is kept (the bare path holds the key's span).
VALUE = "\x00value"

IGNORE_FILE = ".flowctlignore"

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


@dataclass(frozen=True, slots=True, eq=False)
class RawDocument:
    """One YAML document: its data (plain dicts, lists and scalars) and the span of every node."""

    file: str  # relative to the loaded directory, POSIX separators
    index: int  # 0-based position in its file
    data: Any
    marks: dict[NodePath, Span] = field(repr=False)
    path: Path | None = None  # absolute path of the file on disk
    #: The text of plain numbers written otherwise than Python prints them (``0944000111``,
    #: ``+84…``, ``1.50``), by path: a phone number in a test's records keeps its leading zero.
    texts: dict[NodePath, str] = field(default_factory=dict, repr=False)

    @property
    def span(self) -> Span:
        return self.marks.get((), Span(self.file, 1, 1))


@dataclass(slots=True)
class LoadResult:
    documents: list[RawDocument] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    #: Each error that stopped the reading of a file, with the text that was left unread
    #: (``spec/dependencies.py`` guesses from it which documents are missing).
    unread: list[tuple[Issue, str]] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.documents.extend(other.documents)
        self.issues.extend(other.issues)
        self.files.extend(other.files)
        self.unread.extend(other.unread)


class _Builder:
    """Turns a composed YAML node tree into Python values while recording spans."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[NodePath, Span] = {}
        self.texts: dict[NodePath, str] = {}
        self.issues: list[Issue] = []

    def span(self, node: yaml.Node) -> Span:
        mark = node.start_mark
        return Span(self.file, mark.line + 1, mark.column + 1)

    def build(self, node: yaml.Node, path: NodePath) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self.marks[(*path, i)] = self.span(item)
                self.marks[(*path, i, VALUE)] = self.span(item)
                out.append(self.build(item, (*path, i)))
            return out
        return self.scalar(cast(yaml.ScalarNode, node), path)  # what is neither mapping nor sequence

    def mapping(self, node: yaml.MappingNode, path: NodePath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Span] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or (
                isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and key_node.style is None
            ):
                merged.update(self.merge(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.append(
                    error(
                        "E003",
                        "a mapping key must be a plain string, not a list or mapping",
                        self.span(key_node),
                        "write the key as text",
                    )
                )
                continue
            key = str(key_node.value)
            key_span = self.span(key_node)
            if key in seen:
                first = seen[key]
                self.issues.append(
                    error(
                        "E002",
                        f"duplicate key '{key}' (first defined at line {first.line})",
                        key_span,
                        "YAML keeps only one of them; remove or rename the duplicate",
                    )
                )
                continue
            seen[key] = key_span
            self.marks[(*path, key)] = key_span
            self.marks[(*path, key, VALUE)] = self.span(value_node)
            out[key] = self.build(value_node, (*path, key))
        for key, value in merged.items():
            out.setdefault(key, value)
        return out

    def merge(self, node: yaml.Node, path: NodePath) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in sources:
            value = self.build(source, path)
            if not isinstance(value, dict):
                self.issues.append(error("E003", "'<<' merges only mappings", self.span(source)))
                continue
            for key, item in value.items():
                merged.setdefault(key, item)
        return merged

    def scalar(self, node: yaml.ScalarNode, path: NodePath) -> Any:
        text = node.value
        if node.tag.startswith("!"):
            self.issues.append(
                error(
                    "E003",
                    f"unsupported YAML tag '{node.tag}'",
                    self.span(node),
                    "flowctl files use plain YAML; remove the tag",
                )
            )
            return text
        if node.style:  # quoted or block scalar: always a string (libyaml gives "" for plain)
            return text
        # PyYAML tagged this plain scalar by YAML 1.1 rules (base-60, yes/no, timestamps);
        # flowctl ignores that tag and types it by the YAML 1.2 core schema instead.
        value = resolve_plain(text)
        if (type(value) is int or type(value) is float) and str(value) != text:
            self.texts[path] = text
        return value


def resolve_plain(text: str) -> Any:
    """Type a plain (unquoted) scalar by the YAML 1.2 core schema."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text)
    if _INT_HEX.match(text):
        return int(text, 16)
    if _INT_OCT.match(text):
        return int(text[2:], 8)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.match(text):
        return float("nan")
    return text


def _compose(text: str, file: str, result: LoadResult) -> list[yaml.Node]:
    """The documents of ``text`` up to the first syntax error, which goes to ``result``."""
    nodes: list[yaml.Node] = []
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            nodes.append(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        issue = error(
            "E001", f"YAML syntax error: {problem}", span, "check indentation, quotes and ':' spacing on this line"
        )
    except yaml.YAMLError as exc:
        issue = error("E001", f"YAML error: {exc}", Span(file, 1, 1))
    else:
        return nodes
    # cut by line, not by mark.index: libyaml's index may count bytes rather than characters
    read = max((node.end_mark.line for node in nodes if node is not None), default=0)
    result.issues.append(issue)
    result.unread.append((issue, "".join(text.splitlines(keepends=True)[read:])))
    return nodes


def load_text(text: str, file: str, path: Path | None = None) -> LoadResult:
    """Parse every document of one YAML text; those before a syntax error are kept."""
    result = LoadResult(files=[file])
    nodes = _compose(text, file, result)
    index = 0
    for node in nodes:
        if node is None:
            continue
        builder = _Builder(file)
        builder.marks[()] = builder.span(node)
        data = builder.build(node, ())
        result.issues.extend(builder.issues)
        if data is None:
            continue
        result.documents.append(
            RawDocument(file=file, index=index, data=data, marks=builder.marks, path=path, texts=builder.texts)
        )
        index += 1
    return result


def read_ignore(root: Path) -> list[str]:
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return []
    lines = ignore.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("/"):
            if is_dir and (fnmatch.fnmatch(rel, pattern[:-1]) or fnmatch.fnmatch(rel.split("/")[-1], pattern[:-1])):
                return True
            continue
        if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel.split("/")[-1], pattern):
            return True
    return False


def yaml_files(root: Path) -> Iterator[Path]:
    """Every ``*.yaml``/``*.yml`` under ``root`` in a stable order.

    Hidden files and folders (``.git``, ``.github``…) are skipped, and so is whatever the
    directory's ``.flowctlignore`` lists (one glob a line; a trailing ``/`` means a folder).
    """
    patterns = read_ignore(root)

    def walk(folder: Path) -> Iterator[Path]:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if entry.name.startswith("."):
                continue
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir():
                if not _ignored(rel, True, patterns):
                    yield from walk(entry)
            elif entry.suffix in (".yaml", ".yml") and not _ignored(rel, False, patterns):
                yield entry

    if root.is_file():
        yield root
        return
    yield from walk(root)


def load_directory(root: Path | str, tick: Callable[[], None] | None = None) -> LoadResult:
    """Load every YAML document under ``root`` (or the single file ``root``); ``tick`` is called
    after each file (the CLI's progress on a terminal)."""
    root = Path(root)
    result = LoadResult()
    if not root.exists():
        result.issues.append(error("E000", f"no such file or directory: {root}", Span(str(root), 1, 1)))
        return result
    base = root.parent if root.is_file() else root
    for path in yaml_files(root):
        rel = path.relative_to(base).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            result.files.append(rel)
            issue = error("E001", f"file is not UTF-8 text: {exc.reason}", Span(rel, 1, 1), "save the file as UTF-8")
            result.issues.append(issue)
            result.unread.append((issue, ""))
            continue
        except OSError as exc:
            result.files.append(rel)
            result.issues.append(error("E000", f"cannot read file: {exc.strerror}", Span(rel, 1, 1)))
            continue
        result.extend(load_text(text, rel, path))
        if tick is not None:
            tick()
    return result
