"""PDF documents keep Vietnamese text (checked by extracting it back with pypdf)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from flowctl.channels.pdf import FontNotFound, find_font, html_to_text, render_pdf

PHRASE = "Chúc mừng sinh nhật"


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_html_document_round_trips_vietnamese() -> None:
    html = (
        "<!doctype html><html><head><title>x</title><style>p {color: red}</style></head>"
        f"<body><h1>{PHRASE} anh Đức</h1><p>Kính gửi <b>Nguyễn Thị Lan</b>,<p><i>Trân trọng</i></body></html>"
    )
    data = render_pdf("Thiệp", html)
    assert data.startswith(b"%PDF-")
    text = text_of(data)
    assert f"{PHRASE} anh Đức" in text
    assert "Kính gửi Nguyễn Thị Lan" in text
    assert "color" not in text  # styles are dropped, not printed


def test_plain_text_document_has_title_and_lines() -> None:
    text = text_of(render_pdf("Hợp đồng số 7", f"{PHRASE}\nDòng thứ hai"))
    assert text.splitlines()[:3] == ["Hợp đồng số 7", PHRASE, "Dòng thứ hai"]


def test_decomposed_diacritics_are_normalised() -> None:
    import unicodedata

    assert PHRASE in text_of(render_pdf("", unicodedata.normalize("NFD", PHRASE)))


def test_font_from_the_environment(tmp_path: Path) -> None:
    font = find_font({})
    copy = tmp_path / "MyFont.ttf"
    copy.write_bytes(font.read_bytes())
    assert find_font({"FLOWCTL_PDF_FONT": str(copy)}) == copy
    assert PHRASE in text_of(render_pdf("", f"<p>{PHRASE}</p>", font=copy))


def test_missing_font_says_how_to_install_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flowctl.channels.pdf.FONT_DIRS", (str(tmp_path),))
    monkeypatch.setattr("flowctl.channels.pdf._matplotlib_fonts", lambda: "")
    with pytest.raises(FontNotFound, match="fonts-dejavu-core") as info:
        find_font({"FLOWCTL_PDF_FONT": str(tmp_path / "nope.ttf")})
    assert "FLOWCTL_PDF_FONT" in str(info.value)


def test_html_to_text() -> None:
    assert html_to_text("<html><head><style>x</style></head><body><p>A &amp; B<br>C</p><p>D</p></body></html>") == (
        "A & B\nC\n\nD"
    )
