"""/api/v1/{units,sites}/{import,export}: spreadsheets in and out (all rows or nothing).

Exports hold what the caller may read. An import is checked row by row before anything is written;
a row whose parent (or, for sites, whose unit) lies outside the caller's write scope is a row error
like any other ("forbidden"; "unknown_parent" / "unknown_unit" when the caller may not even see it),
and a file with any row error writes nothing: 422 with every bad row listed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from giaoban import tabular
from giaoban.errors import Forbidden, NotFound
from giaoban.org import io as svc
from giaoban.org import sites as site_svc
from giaoban.org import units as unit_svc
from giaoban.org.access import Perm
from giaoban.org.models import Unit
from giaoban.org.schemas import IsoDate
from giaoban.org.scope import readable_unit, sites_in_scope
from giaoban.types import local_today
from giaoban.web.api.common import ERRORS, ApiRoute
from giaoban.web.api.units import tree_rules
from giaoban.web.deps import Web, web

router = APIRouter(tags=["import-export"], responses=ERRORS, route_class=ApiRoute)

Format = Literal["tsv", "csv", "xlsx"]
# Routes that take a file: their bodies may be as large as GIAOBAN_MAX_UPLOAD_BYTES (giaoban.web.limits).
UPLOAD_PATHS = ("/units/import", "/sites/import")


class RowErrorOut(BaseModel):
    row: int = Field(
        description="Line (TSV/CSV) or row (XLSX) of the file, header included; 0 = the whole file."
    )
    code: str = Field(description="Stable machine-readable reason, e.g. unknown_parent, duplicate_code.")
    message: str = Field(description="What is wrong with the row (Vietnamese).")
    column: str | None = Field(
        default=None, description="The header of the column at fault, when one cell is (e.g. a refused text)."
    )


class ImportErrorBody(BaseModel):
    code: Literal["import_rejected"]
    message: str
    details: list[RowErrorOut]


class ImportRejectedOut(BaseModel):
    error: ImportErrorBody


class ImportReportOut(BaseModel):
    rows: int = Field(description="Data rows read (blank lines are not rows).")
    created: int = Field(description="Units (or sites) created, or that would be with dry_run.")
    sites_created: int = Field(description="Sites created along with the units (with_sites).")
    dry_run: bool


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """FastAPI's answer to a malformed request (no file, a bad query parameter)."""

    detail: list[ValidationIssue]


# A file that fails the checks is answered with its row errors, a malformed request with the usual
# validation errors: both are 422, so the document names both shapes.
IMPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ImportRejectedOut | ValidationErrorOut,
        "description": "The file was rejected and nothing was written (row errors), or the request is malformed",
    },
}


def _export_responses(description: str) -> dict[int | str, dict[str, Any]]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {
            "description": description,
            "content": {media.split(";")[0]: binary for media in tabular.MEDIA_TYPES.values()},
        }
    }


def _file_response(data: bytes, fmt: str, stem: str) -> Response:
    return Response(
        content=data,
        media_type=tabular.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'},
    )


def _upload_bytes(file: UploadFile) -> bytes:
    # One byte over the limit is enough for read_table to refuse the file without reading it all.
    return file.file.read(svc.MAX_BYTES + 1)


ExportFormat = Annotated[Format, Query(description="File format")]
ImportFormat = Annotated[
    Format | None, Query(description="File format; default: the uploaded file name's extension")
]
UnderId = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this unit's subtree")]
DryRun = Annotated[bool, Query(description="Check the whole file, write nothing")]
Upload = Annotated[UploadFile, File(description="TSV, CSV (UTF-8) or XLSX; first row is the header")]


@router.get(
    "/units/export",
    response_class=Response,
    responses=_export_responses("Units as of the date, parents before children"),
    summary="Export units (TSV/CSV/XLSX) as of a date",
)
def export_units(
    w: Annotated[Web, Depends(web)],
    format: ExportFormat = "tsv",
    as_of: Annotated[
        IsoDate | None, Query(description="Tree as it stood on this date (default today)")
    ] = None,
    under: UnderId = None,
) -> Response:
    scope = w.principal.unit_paths(Perm.unit_read)
    if not scope:
        raise Forbidden("Bạn không có quyền xem cơ cấu tổ chức.")
    day = as_of or local_today()
    with w.read() as session:
        under_path = None
        if under is not None:
            root = readable_unit(session, w.principal, under)
            under_path = unit_svc.path_as_of(session, root.id, day)
            if under_path is None:
                raise NotFound(
                    f"Đơn vị chưa có hoặc đã giải thể vào ngày {day.isoformat()}.", code="unit_not_in_effect"
                )
        f = unit_svc.UnitFilter(as_of=day, under_path=under_path, scope_paths=scope)
        data = svc.export_units(session, format, f)
    return _file_response(data, format, f"units-{day.isoformat()}")


@router.post(
    "/units/import",
    response_model=ImportReportOut,
    responses=IMPORT_RESPONSES,
    summary="Import units from a file (all rows or nothing)",
)
def import_units(
    w: Annotated[Web, Depends(web)],
    file: Upload,
    effective: Annotated[IsoDate | None, Query(description="Valid from (default today)")] = None,
    with_sites: Annotated[bool, Query(description="Give every new unit one site")] = False,
    dry_run: DryRun = False,
    format: ImportFormat = None,
) -> ImportReportOut:
    p = w.principal
    if not p.can_any(Perm.unit_write) or (with_sites and not p.can_any(Perm.site_write)):
        raise Forbidden("Bạn không có quyền tạo đơn vị.")
    data = _upload_bytes(file)

    def may_create_under(parent: Unit | None) -> bool:
        if parent is None:
            return p.is_global(Perm.unit_write) and (not with_sites or p.is_global(Perm.site_write))
        return p.can_unit(Perm.unit_write, parent.path) and (
            not with_sites or p.can_unit(Perm.site_write, parent.path)
        )

    with w.tx() as tx, tree_rules():
        report = svc.import_units(
            tx,
            data,
            file.filename or "",
            fmt=format,
            effective=effective,
            with_sites=with_sites,
            kinds=unit_svc.allowed_kinds(w.ctx.settings.extra_unit_kinds),
            may_create_under=may_create_under,
            may_see=lambda unit: p.can_unit(Perm.unit_read, unit.path),
            dry_run=dry_run,
        )
    return _report(report)


@router.get(
    "/sites/export",
    response_class=Response,
    responses=_export_responses("Sites the caller may read"),
    summary="Export sites (TSV/CSV/XLSX)",
)
def export_sites(
    w: Annotated[Web, Depends(web)],
    format: ExportFormat = "tsv",
    under: UnderId = None,
) -> Response:
    p = w.principal
    paths = p.unit_paths(Perm.site_read)
    pinned = p.pinned_sites(Perm.site_read)
    if not paths and not pinned:
        raise Forbidden("Bạn không có quyền xem điểm cầu.")
    with w.read() as session:
        under_path = readable_unit(session, w.principal, under).path if under is not None else None
        stmt = site_svc.query_sites(site_svc.SiteFilter(under_path=under_path))
        data = svc.export_sites(session, format, stmt.where(sites_in_scope(p, Perm.site_read)))
    return _file_response(data, format, f"sites-{local_today().isoformat()}")


@router.post(
    "/sites/import",
    response_model=ImportReportOut,
    responses=IMPORT_RESPONSES,
    summary="Import sites from a file (all rows or nothing)",
)
def import_sites(
    w: Annotated[Web, Depends(web)],
    file: Upload,
    dry_run: DryRun = False,
    format: ImportFormat = None,
) -> ImportReportOut:
    p = w.principal
    if not p.can_any(Perm.site_write):
        raise Forbidden("Bạn không có quyền tạo điểm cầu.")
    data = _upload_bytes(file)
    with w.tx() as tx:
        report = svc.import_sites(
            tx,
            data,
            file.filename or "",
            fmt=format,
            may_create_in=lambda unit: p.can_unit(Perm.site_write, unit.path),
            may_see=lambda unit: p.can_unit(Perm.unit_read, unit.path),
            dry_run=dry_run,
        )
    return _report(report)


def _report(report: svc.ImportReport) -> ImportReportOut:
    return ImportReportOut(
        rows=report.rows, created=report.created, sites_created=report.sites_created, dry_run=report.dry_run
    )
