"""What compiling, rendering and checking a template can report."""

from __future__ import annotations

from dataclasses import dataclass


class TemplateError(Exception):
    """A template or condition failed to compile or render; ``message`` says why for a user."""

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        return self.message


class TemplateLimitError(TemplateError):
    """A render would build a value or an output larger than a limit (``limit``, in ``unit``).

    The message starts with where (``template 'x', text, line 4: ``) and says what went over.
    """

    def __init__(self, message: str, *, source: str = "", line: int = 0, limit: int = 0, unit: str = "") -> None:
        super().__init__(message, source=source)
        self.line = line
        self.limit = limit
        self.unit = unit


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    message: str
    offset: int = 0  # 0-based char offset into the source where known (Jinja gives lines only), else 0


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldRef:
    name: str
    offset: int  # 0-based char offset of the field name in the source: source[offset:].startswith(name)
