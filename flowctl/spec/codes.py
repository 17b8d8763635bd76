"""The stable validation codes and what each means, read from the shipped ``docs/errors.md``.

``docs/errors.md`` is the one place a code is described (its table row and its section); the
package carries it (``flowctl/spec/errors.md`` links to it), so SARIF rules and editors name the
same meaning as the docs, and a code added to the docs needs no second list. A code missing from
the page still gets a rule: its description is the code itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PAGE = Path(__file__).with_name("errors.md")
_ROW = re.compile(r"^\| \[([EW]\d{3})\]\(#([^)]+)\) \| (.+?) \|$", re.MULTILINE)
_SECTION = re.compile(r"^## ([EW]\d{3})\b[^\n]*\n\n(.*?)(?:\n\n|\Z)", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True, kw_only=True, slots=True)
class Code:
    code: str
    anchor: str  #: the section's anchor in docs/errors.md (``e041``)
    short: str  #: the table's one-line meaning
    full: str  #: the first paragraph of the section


def _plain(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"\1", " ".join(text.split()))


@cache
def codes() -> dict[str, Code]:
    text = PAGE.read_text(encoding="utf-8")
    sections = {m[1]: _plain(m[2]) for m in _SECTION.finditer(text)}
    return {
        code: Code(code=code, anchor=anchor, short=_plain(short), full=sections.get(code, _plain(short)))
        for code, anchor, short in _ROW.findall(text)
    }


def describe(code: str) -> Code:
    """The code's meaning; a code the page lacks is described by itself (never a KeyError)."""
    return codes().get(code) or Code(code=code, anchor=code.lower(), short=code, full=code)
