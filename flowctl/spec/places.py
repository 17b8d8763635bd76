"""Where a value came from: file, line and column, kept for every YAML node.

The loader records a ``Span`` for every mapping key, value and list item under its JSON path
(a tuple of keys and indexes). Model objects carry a ``Where`` so that checks written long after
loading can still point users at ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """A 1-based line and column in a file (what editors and CI annotations expect)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True, eq=False)
class Where:
    """A node's path inside one YAML document plus the document's table of spans.

    ``at("spec", "nodes", "x")`` gives the span of that sub-path, or of its nearest ancestor that
    has one, so a missing key still points at the mapping that should have held it.
    """

    file: str
    path: Path = ()
    marks: Mapping[Path, Span] = field(default_factory=dict, repr=False)

    def child(self, *sub: PathPart) -> Where:
        return Where(self.file, self.path + tuple(sub), self.marks)

    def at(self, *sub: PathPart) -> Span:
        full = self.path + tuple(sub)
        for cut in range(len(full), -1, -1):
            span = self.marks.get(full[:cut])
            if span is not None:
                return span
        return Span(self.file, 1, 1)

    @property
    def span(self) -> Span:
        return self.at()


NOWHERE = Where("<memory>")
