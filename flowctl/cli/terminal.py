"""What a person at a terminal sees: colour, aligned tables and progress; none of it reaches a pipe.

Colour is decided once per run, by the ``flowctl`` group (``decide_color``): ``--no-color`` or a
non-empty ``NO_COLOR`` turn it off, ``--color`` or a non-empty ``FORCE_COLOR`` force it on, and
otherwise ``click.echo`` strips the styles when the output is not a terminal. Commands style text
with ``paint`` and print it with ``click.echo``, which applies that decision.

Tables (``echo_table``) put a header over columns as wide as their widest cell. On a terminal a
line longer than the window is cut to its width with ``…``; piped, lines stay whole, so scripts
and ``grep`` see every value.

Progress (``Progress``) is a counter redrawn on stderr at most ten times a second, shown only when
stdout and stderr are both terminals and the command prints text: never in a pipe, a file, CI or
``--format json``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Literal

import click

Kind = Literal["error", "warning", "ok", "added", "removed", "changed", "header"]

STYLES: dict[Kind, dict[str, object]] = {
    "error": {"fg": "red", "bold": True},
    "warning": {"fg": "yellow"},
    "ok": {"fg": "green"},
    "added": {"fg": "green"},
    "removed": {"fg": "red"},
    "changed": {"fg": "yellow"},
    "header": {"bold": True},
}

GAP = "  "  # between table columns
REDRAW = 0.1  # seconds between two progress redraws


def decide_color(no_color: bool, color: bool, env: Mapping[str, str]) -> bool | None:
    """False: never colour; True: always; None: click colours only a terminal."""
    if no_color or env.get("NO_COLOR"):
        return False
    if color or env.get("FORCE_COLOR"):
        return True
    return None


def paint(text: str, kind: Kind) -> str:
    """``text`` styled for ``kind``; ``click.echo`` removes the style where there is no colour."""
    return click.style(text, **STYLES[kind])  # type: ignore[arg-type]


def diff(text: str, op: str) -> str:
    """A diff line painted for its ``op``: added (+) green, removed (-) red, changed (~) yellow."""
    if op == "added":
        return paint(text, "added")
    if op == "removed":
        return paint(text, "removed")
    return paint(text, "changed") if op == "changed" else text


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def terminal_width(stream: IO[str] | None = None) -> int | None:
    """The window's width when ``stream`` (default stdout) is a terminal, else None (keep lines whole)."""
    if not is_terminal(stream or sys.stdout):
        return None
    return shutil.get_terminal_size().columns


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int | None = None) -> list[str]:
    """The header and the rows as aligned lines; the last column is not padded. ``width`` cuts each
    line to that many characters, its end replaced by ``…``."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = []
    for cells in [headers, *rows]:
        padded = [cell.ljust(w) for cell, w in zip(cells[:-1], widths[:-1], strict=True)] + [cells[-1]]
        line = GAP.join(padded).rstrip()
        if width is not None and len(line) > width:
            line = line[: max(width - 1, 0)] + "…"
        lines.append(line)
    return lines


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``table`` to stdout, the header in bold on a colour terminal."""
    header, *body = table(headers, rows, width=terminal_width())
    click.echo(paint(header, "header"))
    for line in body:
        click.echo(line)


class Progress:
    """``label: done/total`` redrawn on stderr while a long command works, erased when it ends.

    Use as a context manager and call ``advance`` for each item; ``shown`` is False (and
    ``advance`` only counts) unless stdout and stderr are terminals and ``enabled``.
    """

    def __init__(self, label: str, total: int | None = None, *, enabled: bool = True) -> None:
        self.label, self.total, self.done = label, total, 0
        self.shown = enabled and is_terminal(sys.stdout) and is_terminal(sys.stderr)
        self._next = 0.0
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._drawn:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.shown:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + REDRAW
                self._draw()

    def _draw(self) -> None:
        of = f"/{self.total:,}" if self.total else ""
        sys.stderr.write(f"\r\x1b[2K{self.label}: {self.done:,}{of}")
        sys.stderr.flush()
        self._drawn = True
