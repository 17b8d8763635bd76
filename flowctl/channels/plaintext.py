"""The plain-text twin of an HTML email (and the words of a PDF that fpdf2 cannot lay out).

A mail client that shows text/plain, a screen reader or a spam filter reads this part, so it keeps
what the HTML says: a link keeps its URL (``[đơn hàng](https://…)``, a bare URL once), a table keeps
its cells in rows and columns, a list its bullets. inscriptis (Apache-2.0) lays the HTML out the
way a browser would; head, styles and scripts are dropped.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["html_to_text"]

# inscriptis writes <a href="u">u</a> as [u](u): the URL once is enough.
_SELF_LINK = re.compile(r"\[([^\[\]\s]+)\]\(\1\)")
_BLANK_RUNS = re.compile(r"\n{3,}")


def html_to_text(source: str) -> str:
    """Readable plain text from HTML: paragraphs, line breaks, links with URLs, tables as rows."""
    if not source.strip():
        return ""
    get_text, config = _inscriptis()
    text = str(get_text(source, config))
    text = _SELF_LINK.sub(r"\1", text)
    lines = (line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


@functools.cache
def _inscriptis() -> tuple[Any, Any]:
    """inscriptis' ``get_text`` and the configuration that keeps link URLs."""
    # lazy: start-up time (inscriptis loads lxml, 35 ms, and `validate` imports the channels)
    from inscriptis import get_text  # type: ignore[import-untyped]  # ships no py.typed
    from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]

    return get_text, ParserConfig(display_links=True)
