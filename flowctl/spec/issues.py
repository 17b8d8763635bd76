"""Problems found in a configuration, each with a stable code, a place and a hint.

Codes are stable (CI and editors key on them); wording may change. ``E`` codes fail validation,
``W`` codes are warnings that are shown but do not fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowctl.spec.places import Span

Severity = Literal["error", "warning"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Issue:
    code: str
    message: str
    span: Span
    hint: str = ""
    severity: Severity = "error"
    #: The documents this finding depends on, as ``Kind/name`` (``Pipeline/sales``), ``Kind/*`` (any
    #: document of a kind) or ``stages/<object>`` (the stages of an object type's pipelines). A finding
    #: that needs a document which failed the schema is held back (see ``spec/dependencies.py``).
    needs: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        return self.span.file

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def col(self) -> int:
        return self.span.col

    def __str__(self) -> str:
        text = f"{self.span}: {self.severity}[{self.code}]: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "file": self.span.file,
            "line": self.span.line,
            "col": self.span.col,
        }


def error(code: str, message: str, span: Span, hint: str = "", *, needs: tuple[str, ...] = ()) -> Issue:
    return Issue(code=code, message=message, span=span, hint=hint, severity="error", needs=needs)


def warning(code: str, message: str, span: Span, hint: str = "", *, needs: tuple[str, ...] = ()) -> Issue:
    return Issue(code=code, message=message, span=span, hint=hint, severity="warning", needs=needs)


def sort_key(issue: Issue) -> tuple[str, int, int, str]:
    return (issue.span.file, issue.span.line, issue.span.col, issue.code)
