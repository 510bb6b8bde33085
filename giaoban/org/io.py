"""Import and export of units and sites as TSV, CSV or XLSX.

Imports are all-or-nothing: every row is checked first (required fields, kinds, duplicate codes,
unknown parents, cycles, the caller's rights), and if any row is wrong nothing is written and the
caller gets one error per bad row, with the row's line number in the file. Only a clean file is then
written, through the same batch actions the API uses (``create_units`` / ``create_sites``).

Files are read as text only: the header names the columns (English or Vietnamese, with or without
diacritics), each once; unknown columns are ignored. Every cell is one line under the text policy
(``giaoban.text``); a refused cell is an error of its row and column. The ``valid_from`` /
``valid_to`` columns of an export say what the tree looked like; an import creates every unit
effective from one date (``effective``). Exports are written by ``giaoban.tabular`` (formulas
neutralised), and read back by the imports.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from giaoban import tabular
from giaoban.context import Tx
from giaoban.errors import Conflict, DomainError
from giaoban.org import sites as site_svc
from giaoban.org import units as unit_svc
from giaoban.org.models import Site, SiteStatus, Unit
from giaoban.tabular import FORMATS
from giaoban.text import TextError, clean_line, nfc, search_key

MAX_ROWS = 50_000
MAX_BYTES = 20 * 1024 * 1024
# An XLSX is a zip: refuse one whose parts would inflate beyond this (a "zip bomb").
MAX_XLSX_INFLATED = 256 * 1024 * 1024
MAX_COLUMNS = 64
# A file with thousands of bad rows gets the first ones listed; the message gives the total.
MAX_REPORTED = 1000
SITE_NAME_PREFIX = "Điểm cầu "

# Accepted header names (Vietnamese and English), compared after folding: no diacritics, no case,
# "_" and "-" read as spaces.
UNIT_COLUMNS = {
    "code": ("code", "ma", "ma don vi"),
    "name": ("name", "ten", "ten don vi"),
    "kind": ("kind", "loai", "cap", "loai don vi"),
    "parent": ("parent", "cap tren", "ma cap tren", "don vi cap tren", "parent code"),
}
SITE_COLUMNS = {
    "code": ("code", "ma", "ma diem cau"),
    "unit": ("unit", "don vi", "ma don vi", "unit code"),
    "name": ("name", "ten", "ten diem cau"),
    "location": ("location", "dia diem", "phong"),
    "contact_name": ("contact_name", "contact", "nguoi lien he"),
    "contact_phone": ("contact_phone", "dien thoai lien he", "so dien thoai"),
    "tech_name": ("tech_name", "ky thuat vien", "technician"),
    "tech_phone": ("tech_phone", "dien thoai ky thuat"),
    "status": ("status", "trang thai"),
}
UNIT_EXPORT = ("code", "name", "kind", "parent", "valid_from", "valid_to")
SITE_EXPORT = (
    "code",
    "unit",
    "name",
    "location",
    "contact_name",
    "contact_phone",
    "tech_name",
    "tech_phone",
    "status",
)
# Every cell read is one line under the text policy (giaoban.text), at most the size of the column
# it fills. A CSV/TSV cell loses the apostrophe the export writer put before a formula character
# first (tabular.read_back), so an export imports back unchanged.
UNIT_LIMITS = {
    "code": unit_svc.CODE_MAX,
    "name": unit_svc.NAME_MAX,
    "kind": unit_svc.KIND_MAX,
    "parent": unit_svc.CODE_MAX,
}
SITE_LIMITS = {"code": site_svc.CODE_MAX, "unit": unit_svc.CODE_MAX, "status": 20, **site_svc.FIELD_LIMITS}
# The error code of a refused cell: the existing per-field codes where there are some.
CELL_CODES = {
    "units": {"code": "invalid_unit_code", "name": "invalid_unit_name", "kind": "invalid_unit_kind"},
    "sites": {"code": "invalid_site_code", "name": "invalid_site_name", "unit": "unknown_unit"},
}
UNIT_WIDTHS = (14, 48, 14, 14, 12, 12)
SITE_WIDTHS = (14, 14, 40, 30, 24, 16, 24, 16, 12)


@dataclass
class RowError:
    row: int  # 1-based line (TSV/CSV) or row (XLSX) of the file, header included; 0 = the whole file
    message: str
    code: str = ""
    column: str = ""  # the header of the column at fault, as the file spells it ("" = the row)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "code": self.code, "message": self.message}
        if self.column:
            out["column"] = self.column
        return out


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    created: int = 0
    sites_created: int = 0
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


class ImportRejected(DomainError):
    """The file has errors; nothing was written. ``details`` lists them row by row."""

    status = 422
    code = "import_rejected"


def _rejected(errors: list[RowError]) -> ImportRejected:
    errors = sorted(errors, key=lambda e: e.row)
    if len(errors) == 1 and errors[0].row == 0:
        message = f"{errors[0].message} Chưa ghi gì vào hệ thống."
    else:
        shown = "" if len(errors) <= MAX_REPORTED else f" (liệt kê {MAX_REPORTED} lỗi đầu)"
        message = f"Tệp có {len(errors)} lỗi{shown}; chưa ghi gì vào hệ thống."
    return ImportRejected(message, details=[e.as_dict() for e in errors[:MAX_REPORTED]])


def _file_error(message: str, code: str, row: int = 0) -> ImportRejected:
    return _rejected([RowError(row, message, code)])


def _fold(header: str) -> str:
    return " ".join(search_key(header).replace("_", " ").replace("-", " ").split())


def format_of(filename: str, declared: str | None = None) -> str:
    """The file format: the declared one, else the file name's extension."""
    fmt = (declared or (filename.rsplit(".", 1)[-1] if "." in filename else "")).lower()
    if fmt not in FORMATS:
        what = f"Định dạng '{fmt}'" if fmt else "Tệp không có đuôi nên định dạng"
        raise _file_error(f"{what} không được hỗ trợ (cần .tsv, .csv hoặc .xlsx).", "unsupported_format")
    return fmt


Table = list[tuple[int, list[str]]]  # (line or row number in the file, cells)


def read_table(data: bytes, filename: str, fmt: str | None = None) -> Table:
    """Rows of cells as text, each with its line (TSV/CSV) or row (XLSX) number.

    A file that cannot be read at all raises ``ImportRejected`` with a single error.
    """
    if len(data) > MAX_BYTES:
        raise _file_error("Tệp quá lớn (tối đa 20 MB).", "file_too_large")
    fmt = format_of(filename, fmt)
    return _read_xlsx(data) if fmt == "xlsx" else _read_text(data, "\t" if fmt == "tsv" else ",")


def _too_many_rows() -> ImportRejected:
    return _file_error(f"Tệp có quá nhiều dòng (tối đa {MAX_ROWS}).", "too_many_rows")


def _read_xlsx(data: bytes) -> Table:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _file_error(
            "Không đọc được tệp Excel (tệp hỏng hoặc không phải .xlsx).", "unreadable_file"
        ) from exc
    if inflated > MAX_XLSX_INFLATED:
        raise _file_error("Tệp Excel giải nén ra quá lớn.", "file_too_large")
    rows: Table = []
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            if not wb.worksheets:
                raise _file_error("Tệp Excel không có trang tính nào.", "unreadable_file")
            sheet = wb.worksheets[0]
            # Read what is really there: the stored dimensions may be missing or wrong.
            sheet.reset_dimensions()
            for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
                if len(rows) > MAX_ROWS:
                    raise _too_many_rows()
                rows.append((number, ["" if c is None else _cell_text(c) for c in cells[:MAX_COLUMNS]]))
        finally:
            wb.close()
    except ImportRejected:
        raise
    except Exception as exc:  # openpyxl raises many kinds (KeyError, XML errors...) for a broken file
        raise _file_error(f"Không đọc được tệp Excel ({exc.__class__.__name__}).", "unreadable_file") from exc
    return rows


def _decode(data: bytes) -> str:
    # Excel's "Unicode text" is UTF-16 with a byte-order mark; everything else must be UTF-8.
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _file_error(
            "Tệp phải được mã hóa UTF-8 (trong Excel: lưu dạng 'CSV UTF-8').", "bad_encoding", line
        ) from exc


def _read_text(data: bytes, delimiter: str) -> Table:
    text = _decode(data)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _file_error("Tệp có ký tự không hợp lệ (NUL).", "unreadable_file", line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: Table = []
    start = 1
    try:
        for cells in reader:
            if len(rows) > MAX_ROWS:
                raise _too_many_rows()
            # A cell the export writer neutralised ("'=...") reads back as it was stored.
            rows.append((start, [tabular.read_back(c) for c in cells[:MAX_COLUMNS]]))
            start = reader.line_num + 1  # a quoted cell may span several lines
    except csv.Error as exc:
        raise _file_error(f"Không đọc được tệp: {exc}.", "unreadable_file", reader.line_num) from exc
    return rows


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _column_name(i: int) -> str:
    """The spreadsheet's name of the ``i``-th column (0 → A, 26 → AA)."""
    name = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def _map_header(
    header: Sequence[str], columns: dict[str, tuple[str, ...]], required: Sequence[str], line: int
) -> dict[str, int]:
    folded = [_fold(h) for h in header]
    mapping: dict[str, int] = {}
    for name, aliases in columns.items():
        accepted = {_fold(a) for a in aliases}
        for i, h in enumerate(folded):
            if h not in accepted:
                continue
            if name in mapping:
                first = mapping[name]
                raise _file_error(
                    f"Cột “{header[first].strip()}” (cột {_column_name(first)}) và cột “{header[i].strip()}” "
                    f"(cột {_column_name(i)}) cùng là {name}: dòng tiêu đề chỉ được có một cột như vậy.",
                    "duplicate_column",
                    line,
                )
            mapping[name] = i
    missing = [c for c in required if c not in mapping]
    if missing:
        raise _file_error(
            f"Thiếu cột bắt buộc: {', '.join(missing)} (dòng tiêu đề phải là dòng đầu tiên).",
            "missing_column",
            line,
        )
    return mapping


def _records(
    table: Table,
    columns: dict[str, tuple[str, ...]],
    required: Sequence[str],
    limits: dict[str, int],
    kind: str,
    errors: list[RowError],
) -> tuple[list[tuple[int, dict[str, str]]], dict[int, set[str]]]:
    """Data rows as {column: text in its stored form}, and for each line the columns refused.

    The first non-blank row is the header, blank lines are skipped. Every cell of a named column
    goes through the text policy (one line, not blank if the column is required, at most the
    column's size); a refused one is an error of its row and column (in ``errors``), and is
    returned so that no further check of that cell repeats the complaint.
    """
    body = [(line, cells) for line, cells in table if any(c.strip() for c in cells)]
    if not body:
        raise _file_error("Tệp rỗng.", "empty")
    (header_line, header), rows = body[0], body[1:]
    mapping = _map_header(header, columns, required, header_line)
    codes = CELL_CODES[kind]
    records: list[tuple[int, dict[str, str]]] = []
    bad: dict[int, set[str]] = {}
    for line, cells in rows:
        rec: dict[str, str] = {}
        for name, i in mapping.items():
            raw = cells[i] if i < len(cells) else ""
            try:
                rec[name] = clean_line(raw, max_length=limits[name], required=name in required)
            except TextError as exc:
                label = header[i].strip() or _column_name(i)
                code = codes.get(name) or ("field_too_long" if exc.code == "too_long" else "invalid_text")
                message = f"Cột “{label}” (cột {_column_name(i)}): {exc.message[:1].lower()}{exc.message[1:]}"
                errors.append(RowError(line, message, code, column=label))
                rec[name] = nfc(raw)
                bad.setdefault(line, set()).add(name)
        records.append((line, rec))
    return records, bad


def _kind_lookup(kinds: Sequence[str]) -> dict[str, str]:
    """Folded spelling → kind: "province", "Province", "Tỉnh, thành phố" all name the same kind."""
    lookup = {_fold(k): k for k in kinds}
    for kind, label in unit_svc.KIND_LABELS_VI.items():
        if kind in kinds:
            lookup.setdefault(_fold(label), kind)
    return lookup


@dataclass
class _UnitRow:
    line: int
    code: str
    name: str
    kind: str
    parent: str


CreateCheck = Callable[[Unit | None], bool]


def import_units(
    tx: Tx,
    data: bytes,
    filename: str,
    *,
    fmt: str | None = None,
    effective: date | None = None,
    with_sites: bool = False,
    kinds: Sequence[str] = unit_svc.BUILTIN_KINDS,
    may_create_under: CreateCheck | None = None,
    may_see: Callable[[Unit], bool] | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Create the units listed in a file (parents may be in the file or already in the tree).

    ``with_sites`` also gives every new unit one site ("điểm cầu") carrying the unit's code and
    name, as the demo network has one site per unit. ``may_create_under(parent_unit | None)`` lets
    the web layer refuse parents outside the caller's scope; refusals are row errors too. A parent
    the caller may not see (``may_see``) is reported exactly as one that does not exist, so a file
    cannot probe which codes exist elsewhere. With ``dry_run`` the file is checked in full and
    nothing is written.
    """
    effective = unit_svc.check_effective(effective)
    errors: list[RowError] = []
    table = read_table(data, filename, fmt)
    records, bad = _records(table, UNIT_COLUMNS, ("code", "name", "kind"), UNIT_LIMITS, "units", errors)
    report = ImportReport(kind="units", rows=len(records), dry_run=dry_run, errors=errors)
    session = tx.session
    kind_of = _kind_lookup(kinds)
    codes = [rec["code"] for _, rec in records]
    in_db = unit_svc.units_by_code(session, codes)
    sites_in_db = site_svc.existing_site_codes(session, codes) if with_sites else set()
    first_line: dict[str, int] = {}  # code -> first line declaring it, good or bad
    parsed: dict[str, _UnitRow] = {}
    for line, rec in records:
        code, name = rec["code"], rec["name"]
        refused = bad.get(line, set())  # cells already reported (blank, too long, not text)
        before = len(errors)
        if "code" in refused:
            pass
        elif code in first_line:
            errors.append(RowError(line, f"Mã '{code}' trùng với dòng {first_line[code]}.", "duplicate_code"))
        elif code in in_db:
            errors.append(RowError(line, f"Mã '{code}' đã có trong hệ thống.", "unit_code_exists"))
        elif code in sites_in_db:
            errors.append(RowError(line, f"Mã điểm cầu '{code}' đã có trong hệ thống.", "site_code_exists"))
        if (
            "name" not in refused
            and with_sites
            and len(SITE_NAME_PREFIX + name) > site_svc.FIELD_LIMITS["name"]
        ):
            errors.append(
                RowError(line, "Tên đơn vị quá dài để đặt tên cho điểm cầu kèm theo.", "invalid_site_name")
            )
        kind = None if "kind" in refused else kind_of.get(_fold(rec["kind"]))
        if kind is None and "kind" not in refused:
            errors.append(
                RowError(
                    line,
                    f"Loại đơn vị '{rec['kind']}' không hợp lệ; các loại: {', '.join(kinds)}.",
                    "invalid_unit_kind",
                )
            )
        if code:
            first_line.setdefault(code, line)
        if len(errors) == before and not refused and kind is not None:
            parsed[code] = _UnitRow(line, code, name, kind, rec.get("parent", ""))
    order = _resolve_parents(session, parsed, first_line, effective, may_create_under, may_see, errors)
    if errors:
        raise _rejected(errors)
    report.created = len(order)
    report.sites_created = len(order) if with_sites else 0
    if dry_run:
        return report
    drafts = [unit_svc.UnitDraft(r.code, r.name, r.kind, parent_code=r.parent or None) for r in order]
    try:
        units = unit_svc.create_units(tx, drafts, effective=effective, kinds=kinds)
        if with_sites:
            site_svc.create_sites(
                tx, [site_svc.SiteDraft(u.code, u.id, SITE_NAME_PREFIX + u.name) for u in units]
            )
    except IntegrityError as exc:  # another writer took a code between our checks and our insert
        raise Conflict(
            "Dữ liệu vừa bị thay đổi đồng thời; hãy nhập lại tệp.", code="concurrent_change"
        ) from exc
    return report


def _resolve_parents(
    session: Session,
    parsed: dict[str, _UnitRow],
    first_line: dict[str, int],
    effective: date,
    may_create_under: CreateCheck | None,
    may_see: Callable[[Unit], bool] | None,
    errors: list[RowError],
) -> list[_UnitRow]:
    """Check every good row's parent chain; return the rows in an order that creates parents first.

    Iterative (a file may hold a chain thousands deep). Every row on a cycle is reported; a row
    whose ancestor row is bad is not, as fixing the ancestor fixes it.
    """
    outside = {r.parent for r in parsed.values() if r.parent and r.parent not in first_line}
    existing = unit_svc.units_by_code(session, outside)
    active = [u for u in existing.values() if u.valid_to is None]
    anchored = unit_svc.anchored_since(session, active, effective) if active else set()
    allowed: dict[str | None, bool] = {}
    # Only the first unit of an empty tree is the root; every other row names its parent.
    roots_left = 0 if unit_svc.root_path(session) is not None else 1

    def may_create(parent: Unit | None) -> bool:
        key = parent.code if parent else None
        if key not in allowed:
            allowed[key] = may_create_under is None or may_create_under(parent)
        return allowed[key]

    def top_ok(row: _UnitRow) -> bool:
        """The row's parent is not a row of the file: check it against the tree."""
        nonlocal roots_left
        if not row.parent:
            if roots_left == 0:
                message = (
                    "Thiếu mã đơn vị cấp trên: tổ chức chỉ có một đơn vị gốc, mỗi đơn vị khác "
                    "phải có đơn vị cấp trên."
                )
                errors.append(RowError(row.line, message, "second_root"))
                return False
            if may_create(None):
                roots_left -= 1
                return True
            errors.append(RowError(row.line, "Bạn không có quyền tạo đơn vị cấp cao nhất.", "forbidden"))
            return False
        if row.parent in first_line:
            return False  # the parent's own row is wrong and reported
        parent = existing.get(row.parent)
        if parent is None or (may_see is not None and not may_see(parent)):
            message, code = f"Không tìm thấy đơn vị cấp trên '{row.parent}'.", "unknown_parent"
        elif parent.valid_to is not None:
            message, code = f"Đơn vị cấp trên '{row.parent}' đã giải thể.", "unit_closed"
        elif not may_create(parent):
            message, code = f"Bạn không có quyền tạo đơn vị dưới '{row.parent}'.", "forbidden"
        elif parent.id not in anchored:
            message = (
                f"Vào ngày {effective.isoformat()} đơn vị cấp trên '{row.parent}' chưa có "
                "hoặc chưa ở vị trí hiện nay."
            )
            code = "effective_before_parent"
        else:
            return True
        errors.append(RowError(row.line, message, code))
        return False

    ok: dict[str, bool] = {}
    order: list[_UnitRow] = []
    for start in parsed.values():
        chain: list[_UnitRow] = []  # from ``start`` up towards the top, all still undecided
        on_chain: dict[str, int] = {}
        row: _UnitRow | None = start
        verdict = False
        while row is not None:
            if row.code in ok:
                verdict = ok[row.code]
                break
            if row.code in on_chain:
                cycle = chain[on_chain[row.code] :]
                del chain[on_chain[row.code] :]
                for member in cycle:
                    if len(cycle) == 1:
                        message = "Đơn vị không thể là cấp trên của chính nó."
                    else:
                        message = "Vòng lặp cấp trên: " + " → ".join(
                            [m.code for m in cycle] + [cycle[0].code]
                        )
                    errors.append(RowError(member.line, message, "cycle"))
                    ok[member.code] = False
                verdict = False
                break
            on_chain[row.code] = len(chain)
            chain.append(row)
            if row.parent in parsed:
                row = parsed[row.parent]
                continue
            chain.pop()
            verdict = ok[row.code] = top_ok(row)
            if verdict:
                order.append(row)
            break
        for member in reversed(chain):  # top-most first, so parents precede children in ``order``
            ok[member.code] = verdict
            if verdict:
                order.append(member)
    depth: dict[str, int] = {}
    for row in order:
        if row.parent in depth:
            depth[row.code] = depth[row.parent] + 1
        else:
            depth[row.code] = existing[row.parent].depth + 1 if row.parent else 0
        if depth[row.code] > unit_svc.MAX_DEPTH:
            message = f"Đơn vị nằm ở cấp {depth[row.code] + 1}; cây không được sâu quá {unit_svc.MAX_DEPTH + 1} cấp."
            errors.append(RowError(row.line, message, "tree_too_deep"))
    return order


def import_sites(
    tx: Tx,
    data: bytes,
    filename: str,
    *,
    fmt: str | None = None,
    may_create_in: Callable[[Unit], bool] | None = None,
    may_see: Callable[[Unit], bool] | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Create the sites listed in a file; each names its unit by code.

    ``may_create_in`` and ``may_see`` work as ``may_create_under`` and ``may_see`` of ``import_units``.
    """
    errors: list[RowError] = []
    table = read_table(data, filename, fmt)
    records, bad = _records(table, SITE_COLUMNS, ("code", "unit", "name"), SITE_LIMITS, "sites", errors)
    report = ImportReport(kind="sites", rows=len(records), dry_run=dry_run, errors=errors)
    session = tx.session
    in_db = site_svc.existing_site_codes(session, [rec["code"] for _, rec in records])
    units = unit_svc.units_by_code(session, [rec["unit"] for _, rec in records if rec["unit"]])
    allowed: dict[int, bool] = {}
    seen: dict[str, int] = {}
    drafts: list[site_svc.SiteDraft] = []
    statuses = {s.value for s in SiteStatus}
    for line, rec in records:
        refused = bad.get(line, set())  # cells already reported (blank, too long, not text)
        before = len(errors)

        def err(message: str, code: str, line: int = line) -> None:
            errors.append(RowError(line, message, code))

        code = rec["code"]
        if "code" in refused:
            pass
        elif code in seen:
            err(f"Mã '{code}' trùng với dòng {seen[code]}.", "duplicate_code")
        elif code in in_db:
            err(f"Mã điểm cầu '{code}' đã có trong hệ thống.", "site_code_exists")
        status = rec.get("status") or SiteStatus.active.value
        if status not in statuses and "status" not in refused:
            err(f"Trạng thái '{status}' không hợp lệ ({', '.join(sorted(statuses))}).", "invalid_site_status")
        unit = None if "unit" in refused else units.get(rec["unit"])
        if unit is not None and may_see is not None and not may_see(unit):
            unit = None
        if "unit" in refused:
            pass
        elif unit is None:
            err(f"Không tìm thấy đơn vị '{rec['unit']}'.", "unknown_unit")
        elif unit.valid_to is not None:
            err(f"Đơn vị '{rec['unit']}' đã giải thể.", "unit_closed")
        else:
            if unit.id not in allowed:
                allowed[unit.id] = may_create_in is None or may_create_in(unit)
            if not allowed[unit.id]:
                err(f"Bạn không có quyền tạo điểm cầu cho đơn vị '{rec['unit']}'.", "forbidden")
        if code:
            seen.setdefault(code, line)
        if len(errors) == before and not refused and unit is not None:
            fields = {k: v for k, v in rec.items() if k not in ("code", "unit", "name")}
            fields["status"] = status
            drafts.append(site_svc.SiteDraft(code, unit.id, rec["name"], fields))
    if errors:
        raise _rejected(errors)
    report.created = len(drafts)
    if dry_run:
        return report
    try:
        site_svc.create_sites(tx, drafts)
    except IntegrityError as exc:
        raise Conflict(
            "Dữ liệu vừa bị thay đổi đồng thời; hãy nhập lại tệp.", code="concurrent_change"
        ) from exc
    return report


def export_units(session: Session, fmt: str, f: unit_svc.UnitFilter) -> bytes:
    """Units as of ``f.as_of`` in a file that ``import_units`` reads back (parents before children).

    A parent outside the file is named by its code, so the file can be imported back under it,
    unless it lies outside ``f.scope_paths``: the caller may not learn of it.
    """
    fmt = format_of("", fmt)
    rows: list[Sequence[Any]] = []
    versions = session.execute(unit_svc.query_units(f)).all()
    codes = {v.unit_id: code for v, code in versions}
    missing = {v.parent_id for v, _ in versions if v.parent_id and v.parent_id not in codes}
    for parent in unit_svc.units_by_id(session, missing).values():
        if f.scope_paths is None or any(parent.path.startswith(p) for p in f.scope_paths):
            codes[parent.id] = parent.code
    for v, code in sorted(versions, key=lambda r: (r[0].depth, r[1])):
        rows.append(
            (
                code,
                v.name,
                v.kind,
                codes.get(v.parent_id, "") if v.parent_id else "",
                v.valid_from,
                v.valid_to,
            )
        )
    return tabular.write(tabular.Sheet("units", UNIT_EXPORT, rows, widths=UNIT_WIDTHS), fmt)


def export_sites(session: Session, fmt: str, stmt: Select[Site, Unit]) -> bytes:
    """The sites selected by ``stmt`` (a ``query_sites`` statement) in a file ``import_sites`` reads back."""
    fmt = format_of("", fmt)
    rows: list[Sequence[Any]] = []
    for site, unit in session.execute(stmt).all():
        rows.append(
            (
                site.code,
                unit.code,
                site.name,
                site.location,
                site.contact_name,
                site.contact_phone,
                site.tech_name,
                site.tech_phone,
                site.status,
            )
        )
    return tabular.write(tabular.Sheet("sites", SITE_EXPORT, rows, widths=SITE_WIDTHS), fmt)
