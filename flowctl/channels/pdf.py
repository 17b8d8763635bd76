"""Rendered documents to PDF (fpdf2), with a Unicode font so Vietnamese diacritics survive.

fpdf2's core fonts are Latin-1 only, so a TrueType font is required: ``FLOWCTL_PDF_FONT`` (a path
to a regular-weight ``.ttf``), else DejaVu Sans from the usual places. Bold and italic faces are
taken from beside the regular file when they exist, else the regular face stands in for them.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from flowctl.channels.plaintext import html_to_text

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = ["FontNotFound", "PdfError", "find_font", "html_to_text", "looks_like_html", "render_pdf"]

FONT_ENV = "FLOWCTL_PDF_FONT"
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Ubuntu: fonts-dejavu-core
    "/usr/share/fonts/dejavu",  # Fedora, Arch
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)
FONT_FILE = "DejaVuSans.ttf"
# The other faces of DejaVu Sans, by fpdf2 style letter.
FACES = {"B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf", "BI": "DejaVuSans-BoldOblique.ttf"}

# fpdf2 logs a warning for every unclosed <p> or repeated <title>; user templates are full of
# them and they are harmless, so they would only flood the daemon's log once per email.
logging.getLogger("fpdf.html").setLevel(logging.ERROR)


class PdfError(Exception):
    """A document that could not be turned into a PDF."""


class FontNotFound(PdfError):
    def __init__(self, searched: list[str]) -> None:
        super().__init__(
            "no Unicode TrueType font for PDF documents: looked for "
            + ", ".join(searched)
            + f". Install one (Debian/Ubuntu: apt-get install fonts-dejavu-core) or set {FONT_ENV} "
            "to the path of a .ttf file"
        )


def find_font(env: Mapping[str, str] | None = None) -> Path:
    """The regular TrueType font to embed; raises :class:`FontNotFound` saying how to get one."""
    env = os.environ if env is None else env
    searched: list[str] = []
    if configured := env.get(FONT_ENV):
        path = Path(configured)
        if path.is_file():
            return path
        searched.append(f"{configured} (from {FONT_ENV})")
    dirs = list(FONT_DIRS)
    if matplotlib_dir := _matplotlib_fonts():
        dirs.append(matplotlib_dir)
    for folder in dirs:
        path = Path(folder) / FONT_FILE
        searched.append(str(path))
        if path.is_file():
            return path
    raise FontNotFound(searched)


def _matplotlib_fonts() -> str:
    """matplotlib ships DejaVu Sans; use it when it happens to be installed."""
    try:
        matplotlib = importlib.import_module("matplotlib")  # optional, and slow: only looked for here
        return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except (ImportError, OSError, AttributeError):  # not installed or broken: one place fewer to look
        return ""


_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")
_DROP = re.compile(r"<(head|style|script|title)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BODY = re.compile(r"<body\b[^>]*>(.*?)(?:</body\s*>|$)", re.IGNORECASE | re.DOTALL)
_OUTER = re.compile(r"</?(html|body)\b[^>]*>|<!doctype[^>]*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)


def looks_like_html(text: str) -> bool:
    return bool(_TAG.search(text))


def _body_html(source: str) -> str:
    """What fpdf2 can lay out: the body's content, without head, styles, scripts or comments."""
    source = _DROP.sub("", source)
    if body := _BODY.search(source):
        source = body.group(1)
    return _OUTER.sub("", source)


@functools.cache
def _faces(regular: Path) -> dict[str, Path]:
    faces = {"": regular}
    for style, name in FACES.items():
        candidate = regular.with_name(name)
        faces[style] = candidate if regular.name == FONT_FILE and candidate.is_file() else regular
    return faces


def render_pdf(title: str, html_or_text: str, *, font: Path | None = None) -> bytes:
    """A PDF of ``html_or_text`` (laid out as HTML when it looks like HTML) headed by ``title``.

    Raises :class:`FontNotFound` when no Unicode font exists, :class:`PdfError` for other failures.
    """
    from fpdf import FPDF  # imported here: it takes a third of a second and only PDFs need it

    font = font or find_font()
    title = unicodedata.normalize("NFC", title)
    content = unicodedata.normalize("NFC", html_or_text)

    def new_document() -> FPDF:
        pdf = FPDF(format="A4")
        for style, path in _faces(font).items():
            pdf.add_font("body", style, str(path))
        pdf.set_title(title)
        pdf.set_creator("flowctl")
        pdf.add_page()
        pdf.set_font("body", size=11)
        return pdf

    try:
        if looks_like_html(content):
            try:
                pdf = new_document()
                if title and not re.search(r"<h1\b", content, re.IGNORECASE):
                    _heading(pdf, title)
                pdf.write_html(_body_html(content))
                return bytes(pdf.output())
            except Exception:  # noqa: BLE001 - fpdf2 fails on odd markup in many ways; keep the words
                content = html_to_text(content)
        pdf = new_document()
        if title:
            _heading(pdf, title)
        pdf.multi_cell(0, 6, content)
        return bytes(pdf.output())
    except Exception as exc:  # whatever fpdf2 raises, the caller sees a PdfError
        raise PdfError(f"could not render the PDF '{title}': {exc}") from exc


def _heading(pdf: FPDF, title: str) -> None:
    pdf.set_font("body", "B", 16)
    pdf.multi_cell(0, 9, title)
    pdf.ln(3)
    pdf.set_font("body", "", 11)
