"""The one writer of spreadsheets and delimited files: every export (units, sites, attendance, and
the records to come) goes through ``write``.

It makes two promises whatever the data holds:
- a cell never runs as a formula: XLSX text cells are written as text (Excel and LibreOffice never
  evaluate them), and a CSV/TSV text cell that a spreadsheet would read as a formula (one starting
  with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed with an apostrophe, which
  spreadsheets show as text and ``read_back`` strips again on import;
- a file is always produced: characters that XLSX cannot hold (controls stored before the text
  policy existed) are replaced with U+FFFD rather than failing the whole export.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font

FORMATS = ("tsv", "csv", "xlsx")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# What XML 1.0 (so XLSX) cannot carry, whatever openpyxl's own check says.
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

MEDIA_TYPES = {
    "tsv": "text/tab-separated-values; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _formula_like(value: str) -> bool:
    """Starts with a formula character, maybe after apostrophes (``=1``, ``'=1``, ``''=1``)."""
    return value.lstrip("'").startswith(FORMULA_START)


def neutralise(value: str) -> str:
    """A text cell of a delimited file as a spreadsheet must read it: as text. A text that already
    starts with apostrophes before a formula character gets one more, so that ``read_back`` gives
    it back whole."""
    return "'" + value if _formula_like(value) else value


def read_back(value: str) -> str:
    """The inverse of ``neutralise`` for a cell read from an imported file."""
    return value[1:] if value.startswith("'") and _formula_like(value) else value


def _delimited(value: str) -> str:
    """A carriage return in a cell would end the row (the writer quotes only ``\n``): a line break
    inside a cell is ``\n``."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _writable(value: str) -> str:
    return _UNWRITABLE.sub("\ufffd", value)


@dataclass
class Sheet:
    """What an export holds: a header row and data rows, and for a printable report a title, lines
    under it (date, place) and closing rows (totals)."""

    name: str
    header: Sequence[str]
    rows: Iterable[Sequence[Any]]
    title: str = ""
    subtitle: Sequence[str] = ()
    footer: Sequence[Sequence[Any]] = ()
    widths: Sequence[int] = field(default_factory=tuple)


def _plain(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def write(sheet: Sheet, fmt: str) -> bytes:
    """``sheet`` as a TSV, CSV (UTF-8 with BOM, for Excel) or XLSX file."""
    if fmt == "xlsx":
        return _xlsx(sheet)
    if fmt not in ("tsv", "csv"):
        raise ValueError(f"unknown format {fmt!r}")
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    lines: list[Sequence[Any]] = []
    if sheet.title:
        lines += [[sheet.title], *([s] for s in sheet.subtitle), []]
    lines.append(sheet.header)
    for row in (*lines, *sheet.rows, *sheet.footer):
        writer.writerow(
            [_delimited(neutralise(v)) if isinstance(v, str) else v for v in (_plain(c) for c in row)]
        )
    data = buf.getvalue().encode("utf-8", "replace")
    # Excel reads a CSV without a byte-order mark in the local code page, garbling Vietnamese; with
    # one it reads UTF-8. TSV stays bare, for scripts.
    return codecs.BOM_UTF8 + data if fmt == "csv" else data


def _xlsx(sheet: Sheet) -> bytes:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(_writable(sheet.name)[:31] or "Sheet1")
    for i, width in enumerate(sheet.widths):
        ws.column_dimensions[chr(ord("A") + i)].width = width
    bold = Font(bold=True)

    wrap = Alignment(wrap_text=True, vertical="top")

    def cell(value: Any, *, font: Font | None = None, alignment: Alignment | None = None) -> Any:
        value = _plain(value)
        c = WriteOnlyCell(ws, value=_writable(value) if isinstance(value, str) else value)
        if isinstance(value, str):
            c.data_type = "s"  # text stays text: never a formula
        if font is not None:
            c.font = font
        if alignment is not None:
            c.alignment = alignment
        return c

    if sheet.title:
        # A report is printed: landscape, as wide as the page, the header row on every page.
        header_row = len(sheet.subtitle) + 3
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = "9"  # A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.print_title_rows = f"{header_row}:{header_row}"
        ws.freeze_panes = f"A{header_row + 1}"
        ws.append([cell(sheet.title, font=Font(bold=True, size=14))])
        for line in sheet.subtitle:
            ws.append([cell(line)])
        ws.append([])
    ws.append([cell(value, font=bold, alignment=wrap) for value in sheet.header])
    for row in sheet.rows:
        ws.append([cell(v) for v in row])
    for row in sheet.footer:
        ws.append([cell(v, font=bold) for v in row])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
