"""Import and export of units and sites as TSV, CSV or XLSX.

Imports are all-or-nothing: every row is checked first (required fields, kinds, duplicate codes,
unknown parents, cycles), and if any row is wrong nothing is written and the caller gets one error
per bad row. Only a clean file is then written, through the same actions the API uses.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from openpyxl import Workbook, load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from giaoban.context import Tx
from giaoban.errors import DomainError
from giaoban.org import sites as site_svc
from giaoban.org import units as unit_svc
from giaoban.org.models import Site, SiteStatus, Unit
from giaoban.text import nfc

MAX_ROWS = 50_000
MAX_BYTES = 20 * 1024 * 1024

# Accepted header names (Vietnamese and English, compared without diacritics / case).
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
FORMATS = ("tsv", "csv", "xlsx")


@dataclass
class RowError:
    row: int  # 1-based line/row number in the file, header included
    message: str
    code: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "code": self.code, "message": self.message}


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


def _fold(header: str) -> str:
    from giaoban.text import search_key

    return search_key(header).replace("_", " ").strip()


def _format_of(filename: str, declared: str | None = None) -> str:
    fmt = (declared or filename.rsplit(".", 1)[-1]).lower()
    if fmt not in FORMATS:
        raise DomainError(f"Định dạng '{fmt}' không được hỗ trợ (tsv, csv, xlsx).", code="unsupported_format")
    return fmt


def read_table(data: bytes, filename: str, fmt: str | None = None) -> list[list[str]]:
    """Rows of cells as text. Raises a clear error for files that cannot be read at all."""
    if len(data) > MAX_BYTES:
        raise DomainError("Tệp quá lớn (tối đa 20 MB).", code="file_too_large")
    fmt = _format_of(filename, fmt)
    if fmt == "xlsx":
        try:
            wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a broken file
            raise DomainError(
                f"Không đọc được tệp Excel: {exc.__class__.__name__}.", code="unreadable_file"
            ) from exc
        sheet = wb.worksheets[0] if wb.worksheets else None
        if sheet is None:
            raise DomainError("Tệp Excel không có trang tính nào.", code="unreadable_file")
        rows = [
            ["" if c is None else _cell_text(c) for c in row] for row in sheet.iter_rows(values_only=True)
        ]
        wb.close()
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DomainError("Tệp phải được mã hóa UTF-8.", code="bad_encoding") from exc
        if "\x00" in text:
            raise DomainError("Tệp có ký tự không hợp lệ (NUL).", code="unreadable_file")
        try:
            rows = list(csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ","))
        except csv.Error as exc:
            raise DomainError(f"Không đọc được tệp: {exc}.", code="unreadable_file") from exc
    if len(rows) > MAX_ROWS + 1:
        raise DomainError(f"Tệp có quá nhiều dòng (tối đa {MAX_ROWS}).", code="too_many_rows")
    return rows


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _map_header(
    header: Sequence[str], columns: dict[str, tuple[str, ...]], required: Sequence[str]
) -> dict[str, int]:
    folded = [_fold(h) for h in header]
    mapping: dict[str, int] = {}
    for name, aliases in columns.items():
        for i, h in enumerate(folded):
            if h in aliases and name not in mapping:
                mapping[name] = i
    missing = [c for c in required if c not in mapping]
    if missing:
        raise ImportRejected(
            f"Thiếu cột bắt buộc: {', '.join(missing)}.",
            details=[RowError(1, f"Thiếu cột bắt buộc: {', '.join(missing)}.", "missing_column").as_dict()],
        )
    return mapping


def _records(rows: list[list[str]], mapping: dict[str, int]) -> list[tuple[int, dict[str, str]]]:
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines are not rows
        rec = {name: nfc(row[i]) if i < len(row) else "" for name, i in mapping.items()}
        out.append((lineno, rec))
    return out


@dataclass
class _UnitRow:
    line: int
    code: str
    name: str
    kind: str
    parent: str


def import_units(
    tx: Tx,
    data: bytes,
    filename: str,
    *,
    fmt: str | None = None,
    effective: date | None = None,
    with_sites: bool = False,
    kinds: Sequence[str] = unit_svc.BUILTIN_KINDS,
    may_create_under: Any = None,
    dry_run: bool = False,
) -> ImportReport:
    """Create the units listed in a file (parents may be in the file or already in the tree).

    ``with_sites`` also gives every new unit one site ("điểm cầu") carrying the unit's code and
    name, as the demo network has one site per unit. ``may_create_under(parent_unit | None)`` lets
    the web layer refuse parents outside the caller's scope; refusals are row errors too.
    """
    rows = read_table(data, filename, fmt)
    if not rows:
        raise ImportRejected("Tệp rỗng.", details=[RowError(1, "Tệp rỗng.", "empty").as_dict()])
    mapping = _map_header(rows[0], UNIT_COLUMNS, ("code", "name", "kind"))
    records = _records(rows, mapping)
    report = ImportReport(kind="units", rows=len(records), dry_run=dry_run)
    session = tx.session
    parsed: dict[str, _UnitRow] = {}
    for line, rec in records:
        problems = []
        if not rec["code"] or len(rec["code"]) > 32:
            problems.append(("Mã đơn vị phải có từ 1 đến 32 ký tự.", "invalid_unit_code"))
        if not rec["name"] or len(rec["name"]) > 300:
            problems.append(("Tên đơn vị phải có từ 1 đến 300 ký tự.", "invalid_unit_name"))
        if rec["kind"] not in kinds:
            problems.append((f"Loại đơn vị '{rec['kind']}' không hợp lệ.", "invalid_unit_kind"))
        if rec["code"] in parsed:
            problems.append(
                (f"Mã '{rec['code']}' trùng với dòng {parsed[rec['code']].line}.", "duplicate_code")
            )
        elif rec["code"] and unit_svc.get_unit_by_code(session, rec["code"]) is not None:
            problems.append((f"Mã '{rec['code']}' đã có trong hệ thống.", "unit_code_exists"))
        for message, code in problems:
            report.errors.append(RowError(line, message, code))
        if not problems:
            parsed[rec["code"]] = _UnitRow(line, rec["code"], rec["name"], rec["kind"], rec.get("parent", ""))
    # Parents: in the file, or an active unit already in the tree; and no cycles within the file.
    existing: dict[str, Unit | None] = {}
    for row in parsed.values():
        if row.parent and row.parent not in parsed and row.parent not in existing:
            existing[row.parent] = unit_svc.get_unit_by_code(session, row.parent)
    order: list[_UnitRow] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(row: _UnitRow) -> bool:
        if state.get(row.code) == 2:
            return True
        if state.get(row.code) == 1:
            report.errors.append(RowError(row.line, f"Vòng lặp cấp trên qua mã '{row.code}'.", "cycle"))
            return False
        state[row.code] = 1
        ok = True
        if row.parent:
            if row.parent == row.code:
                report.errors.append(
                    RowError(row.line, "Đơn vị không thể là cấp trên của chính nó.", "cycle")
                )
                ok = False
            elif row.parent in parsed:
                ok = visit(parsed[row.parent])
            else:
                parent = existing.get(row.parent)
                if parent is None:
                    report.errors.append(
                        RowError(
                            row.line, f"Không tìm thấy đơn vị cấp trên '{row.parent}'.", "unknown_parent"
                        )
                    )
                    ok = False
                elif parent.valid_to is not None:
                    report.errors.append(
                        RowError(row.line, f"Đơn vị cấp trên '{row.parent}' đã giải thể.", "unit_closed")
                    )
                    ok = False
                elif may_create_under is not None and not may_create_under(parent):
                    report.errors.append(
                        RowError(row.line, f"Bạn không có quyền tạo đơn vị dưới '{row.parent}'.", "forbidden")
                    )
                    ok = False
        elif may_create_under is not None and not may_create_under(None):
            report.errors.append(
                RowError(row.line, "Bạn không có quyền tạo đơn vị cấp cao nhất.", "forbidden")
            )
            ok = False
        state[row.code] = 2
        if ok:
            order.append(row)
        return ok

    for row in list(parsed.values()):
        visit(row)
    if report.errors:
        report.errors.sort(key=lambda e: e.row)
        raise ImportRejected(
            f"Tệp có {len(report.errors)} lỗi; chưa ghi gì vào hệ thống.",
            details=[e.as_dict() for e in report.errors],
        )
    if dry_run:
        report.created = len(order)
        report.sites_created = len(order) if with_sites else 0
        return report
    ids: dict[str, int] = {}
    for row in order:
        if row.parent in ids:
            parent_id: int | None = ids[row.parent]
        elif row.parent:
            parent_unit = existing[row.parent]
            parent_id = parent_unit.id if parent_unit else None
        else:
            parent_id = None
        unit = unit_svc.create_unit(
            tx,
            code=row.code,
            name=row.name,
            kind=row.kind,
            parent_id=parent_id,
            effective=effective,
            kinds=kinds,
        )
        ids[row.code] = unit.id
        report.created += 1
        if with_sites:
            site_svc.create_site(tx, code=row.code, unit_id=unit.id, name=f"Điểm cầu {row.name}")
            report.sites_created += 1
    return report


def import_sites(
    tx: Tx,
    data: bytes,
    filename: str,
    *,
    fmt: str | None = None,
    may_create_in: Any = None,
    dry_run: bool = False,
) -> ImportReport:
    """Create the sites listed in a file; each names its unit by code."""
    rows = read_table(data, filename, fmt)
    if not rows:
        raise ImportRejected("Tệp rỗng.", details=[RowError(1, "Tệp rỗng.", "empty").as_dict()])
    mapping = _map_header(rows[0], SITE_COLUMNS, ("code", "unit", "name"))
    records = _records(rows, mapping)
    report = ImportReport(kind="sites", rows=len(records), dry_run=dry_run)
    session = tx.session
    seen: dict[str, int] = {}
    ready: list[tuple[dict[str, str], Unit]] = []
    statuses = {s.value for s in SiteStatus}
    for line, rec in records:
        errors_before = len(report.errors)

        def err(message: str, code: str, line: int = line) -> None:
            report.errors.append(RowError(line, message, code))

        if not rec["code"] or len(rec["code"]) > 40:
            err("Mã điểm cầu phải có từ 1 đến 40 ký tự.", "invalid_site_code")
        elif rec["code"] in seen:
            err(f"Mã '{rec['code']}' trùng với dòng {seen[rec['code']]}.", "duplicate_code")
        elif session.execute(select(Site.id).where(Site.code == rec["code"])).first():
            err(f"Mã điểm cầu '{rec['code']}' đã có trong hệ thống.", "site_code_exists")
        if not rec["name"] or len(rec["name"]) > 300:
            err("Tên điểm cầu phải có từ 1 đến 300 ký tự.", "invalid_site_name")
        status = rec.get("status") or "active"
        if status not in statuses:
            err(f"Trạng thái '{status}' không hợp lệ.", "invalid_site_status")
        for key, limit in site_svc.FIELD_LIMITS.items():
            if key != "name" and len(rec.get(key, "")) > limit:
                err(f"Trường {key} dài quá {limit} ký tự.", "field_too_long")
        unit = unit_svc.get_unit_by_code(session, rec["unit"]) if rec["unit"] else None
        if unit is None:
            err(f"Không tìm thấy đơn vị '{rec['unit']}'.", "unknown_unit")
        elif unit.valid_to is not None:
            err(f"Đơn vị '{rec['unit']}' đã giải thể.", "unit_closed")
        elif may_create_in is not None and not may_create_in(unit):
            err(f"Bạn không có quyền tạo điểm cầu cho đơn vị '{rec['unit']}'.", "forbidden")
        if rec["code"]:
            seen.setdefault(rec["code"], line)
        if len(report.errors) == errors_before and unit is not None:
            rec["status"] = status
            ready.append((rec, unit))
    if report.errors:
        raise ImportRejected(
            f"Tệp có {len(report.errors)} lỗi; chưa ghi gì vào hệ thống.",
            details=[e.as_dict() for e in report.errors],
        )
    if dry_run:
        report.created = len(ready)
        return report
    for rec, unit in ready:
        fields = {k: v for k, v in rec.items() if k not in ("code", "unit", "name")}
        site_svc.create_site(tx, code=rec["code"], unit_id=unit.id, name=rec["name"], **fields)
        report.created += 1
    return report


def _write(rows: list[Sequence[Any]], fmt: str, title: str) -> bytes:
    if fmt == "xlsx":
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.title = title
        for row in rows:
            ws.append(["" if v is None else v for v in row])
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue()
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else (v.isoformat() if isinstance(v, date) else v) for v in row])
    return buf.getvalue().encode("utf-8")


def export_units(session: Session, fmt: str, f: unit_svc.UnitFilter) -> bytes:
    """Units as of ``f.as_of`` in a file that ``import_units`` reads back."""
    fmt = _format_of("", fmt)
    rows: list[Sequence[Any]] = [UNIT_EXPORT]
    versions = session.execute(unit_svc.query_units(f)).all()
    codes = {v.unit_id: code for v, code in versions}
    missing = {v.parent_id for v, _ in versions if v.parent_id and v.parent_id not in codes}
    if missing:
        codes.update(
            dict(session.execute(select(Unit.id, Unit.code).where(Unit.id.in_(missing))).tuples().all())
        )
    # Parents before children, so the file imports in order.
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
    return _write(rows, fmt, "units")


def export_sites(session: Session, fmt: str, stmt: Any) -> bytes:
    fmt = _format_of("", fmt)
    rows: list[Sequence[Any]] = [SITE_EXPORT]
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
    return _write(rows, fmt, "sites")
