"""/api/v1/units: the effective-dated org tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from giaoban.errors import Conflict, DomainError, Forbidden, NotFound
from giaoban.org import units as svc
from giaoban.org.access import Perm
from giaoban.org.models import Site, Unit, UnitVersion
from giaoban.org.schemas import (
    IsoDate,
    Page,
    ReorgOut,
    SearchText,
    UnitClose,
    UnitCreate,
    UnitDetail,
    UnitHistory,
    UnitMerge,
    UnitMove,
    UnitOut,
    UnitSplit,
    UnitUpdate,
)
from giaoban.types import Line, local_today
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.deps import Web, web

router = APIRouter(prefix="/units", tags=["units"], responses=ERRORS, route_class=ApiRoute)


def _out(version: UnitVersion | Unit, code: str, child_count: int = 0) -> UnitOut:
    unit_id = version.unit_id if isinstance(version, UnitVersion) else version.id
    return UnitOut(
        id=unit_id,
        code=code,
        name=version.name,
        kind=version.kind,
        parent_id=version.parent_id,
        depth=version.depth,
        valid_from=version.valid_from,
        valid_to=version.valid_to,
        child_count=child_count,
    )


def readable_unit(w: Web, session: Session, unit_id: int, perm: Perm = Perm.unit_read) -> Unit:
    """The unit if the caller may read it; otherwise "not found", so nothing about it leaks."""
    unit = session.get(Unit, unit_id)
    if unit is None or not w.principal.can_unit(Perm.unit_read, unit.path):
        raise NotFound(f"Không có đơn vị mã số {unit_id}.", code="unit_not_found")
    if perm != Perm.unit_read and not w.principal.can_unit(perm, unit.path):
        raise Forbidden("Bạn không có quyền thay đổi đơn vị này.")
    return unit


def changeable_unit(w: Web, session: Session, unit_id: int) -> Unit:
    """The unit if the caller may rename, move, close or merge it: ``unit.write`` from strictly
    above it. The unit at the top of a caller's own scope is theirs to work in, not to change."""
    unit = readable_unit(w, session, unit_id, Perm.unit_write)
    if not w.principal.can_unit_above(Perm.unit_write, unit.path):
        raise Forbidden(
            "Đơn vị này là phạm vi quản lý của bạn: chỉ cấp trên được đổi tên, di chuyển, giải thể "
            "hoặc sáp nhập đơn vị này.",
            code="own_scope_unit",
        )
    return unit


def _kinds(w: Web) -> tuple[str, ...]:
    return svc.allowed_kinds(w.ctx.settings.extra_unit_kinds)


# Refusals that depend on the tree as it stands today (its history, its shape, today's date), not
# on the request's shape: a well-formed request that conflicts with the current state is a 409.
TREE_CONFLICTS = frozenset(
    {
        "effective_in_future",
        "effective_before_history",
        "effective_before_parent",
        "tree_cycle",
        "tree_too_deep",
        "merge_nested",
        "split_child",
        "split_site",
        "split_unassigned",
    }
)


@contextmanager
def tree_rules() -> Iterator[None]:
    try:
        yield
    except DomainError as exc:
        if exc.status == 400 and exc.code in TREE_CONFLICTS:
            raise Conflict(exc.message, code=exc.code, details=exc.details) from exc
        raise


@router.get("", response_model=Page[UnitOut], summary="List units (as of a date)")
def list_units(
    w: Annotated[Web, Depends(web)],
    kind: Annotated[Annotated[str, Line(40, required=False)] | None, Query()] = None,
    parent: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Direct children of this unit")
    ] = None,
    under: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Whole subtree of this unit")] = None,
    roots: Annotated[bool, Query(description="Only top-level units the caller can see")] = False,
    as_of: Annotated[
        IsoDate | None, Query(description="Tree as it stood on this date (default today)")
    ] = None,
    q: Annotated[SearchText | None, Query(description="Name (diacritics-insensitive) or code")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[UnitOut]:
    with w.read() as session:
        scope = w.principal.unit_paths(Perm.unit_read)
        under_path = None
        if under is not None:
            readable_unit(w, session, under)
            # The subtree as it stood on that date: a unit that moved since had its old path then.
            under_path = svc.path_as_of(session, under, as_of) or readable_unit(w, session, under).path
        f = svc.UnitFilter(
            kind=kind, parent_id=parent, under_path=under_path, as_of=as_of, q=q, scope_paths=scope
        )
        stmt = svc.query_units(f)
        if roots:
            # The caller's own top: units whose parent they cannot see.
            roots_ids = [int(p.strip("/").split("/")[-1]) for p in scope]
            stmt = stmt.where(UnitVersion.unit_id.in_(roots_ids))
        total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
        rows = session.execute(stmt.limit(limit).offset(offset)).all()
        counts = svc.child_counts(session, [v.unit_id for v, _ in rows], as_of)
        return Page(items=[_out(v, code, counts.get(v.unit_id, 0)) for v, code in rows], total=total)


@router.get("/{unit_id:int}", response_model=UnitDetail, summary="One unit, with its ancestors")
def get_unit(
    w: Annotated[Web, Depends(web)],
    unit_id: PathId,
    as_of: Annotated[IsoDate | None, Query()] = None,
) -> UnitDetail:
    with w.read() as session:
        unit = readable_unit(w, session, unit_id)
        day = as_of or local_today()
        version = session.execute(
            select(UnitVersion).where(UnitVersion.unit_id == unit.id, svc.versions_as_of(day))
        ).scalar_one_or_none()
        if version is None:
            raise NotFound(
                f"Đơn vị chưa có hoặc đã giải thể vào ngày {day.isoformat()}.", code="unit_not_in_effect"
            )
        counts = svc.child_counts(session, [unit.id], day)
        sites = session.execute(select(func.count()).where(Site.unit_id == unit.id)).scalar_one()
        ancestors = [
            _out(a, a.code)
            for a in svc.ancestors(session, unit)
            if w.principal.can_unit(Perm.unit_read, a.path)
        ]
        base = _out(version, unit.code, counts.get(unit.id, 0))
        return UnitDetail(**base.model_dump(), ancestors=ancestors, site_count=sites)


@router.get("/{unit_id:int}/history", response_model=UnitHistory, summary="Versions, events and lineage")
def unit_history(w: Annotated[Web, Depends(web)], unit_id: PathId) -> UnitHistory:
    with w.read() as session:
        readable_unit(w, session, unit_id)
        data = svc.history(session, unit_id)
        unit = data.pop("unit")
        return UnitHistory(unit=UnitOut(**unit, depth=0), **data)


@router.post("", response_model=UnitOut, status_code=201, summary="Create a unit")
def create_unit(w: Annotated[Web, Depends(web)], body: UnitCreate) -> UnitOut:
    with w.tx() as tx, tree_rules():
        if body.parent_id is None:
            raise svc.second_root_error()  # the organization has its root; nobody makes another
        readable_unit(w, tx.session, body.parent_id, Perm.unit_write)
        unit = svc.create_unit(
            tx,
            code=body.code,
            name=body.name,
            kind=body.kind,
            parent_id=body.parent_id,
            effective=body.effective,
            kinds=_kinds(w),
        )
        return _out(unit, unit.code)


@router.patch(
    "/{unit_id:int}", response_model=UnitOut, summary="Rename or change kind, effective from a date"
)
def update_unit(w: Annotated[Web, Depends(web)], unit_id: PathId, body: UnitUpdate) -> UnitOut:
    with w.tx() as tx, tree_rules():
        changeable_unit(w, tx.session, unit_id)
        unit = svc.update_unit(
            tx, unit_id, name=body.name, kind=body.kind, effective=body.effective, kinds=_kinds(w)
        )
        return _out(unit, unit.code)


@router.post("/{unit_id:int}/move", response_model=UnitOut, summary="Move under another parent")
def move_unit(w: Annotated[Web, Depends(web)], unit_id: PathId, body: UnitMove) -> UnitOut:
    with w.tx() as tx, tree_rules():
        changeable_unit(w, tx.session, unit_id)
        if body.parent_id is not None:
            readable_unit(w, tx.session, body.parent_id, Perm.unit_write)
        unit = svc.move_unit(tx, unit_id, new_parent_id=body.parent_id, effective=body.effective)
        return _out(unit, unit.code)


@router.post("/{unit_id:int}/close", response_model=UnitOut, summary="Dissolve a unit that has no successor")
def close_unit(w: Annotated[Web, Depends(web)], unit_id: PathId, body: UnitClose) -> UnitOut:
    with w.tx() as tx, tree_rules():
        changeable_unit(w, tx.session, unit_id)
        unit = svc.close_unit(tx, unit_id, effective=body.effective)
        return _out(unit, unit.code)


@router.post("/merge", response_model=ReorgOut, summary="Merge units into one (sáp nhập)")
def merge_units(w: Annotated[Web, Depends(web)], body: UnitMerge) -> ReorgOut:
    with w.tx() as tx, tree_rules():
        for source_id in body.source_ids:
            readable_unit(w, tx.session, source_id, Perm.unit_write)
        if body.target_id is not None:
            readable_unit(w, tx.session, body.target_id, Perm.unit_write)
        # Visible and writable first (a refusal above must not tell which is whose), then "from above".
        for unit_id in [*body.source_ids, *([body.target_id] if body.target_id is not None else [])]:
            changeable_unit(w, tx.session, unit_id)
        if body.new_target is not None:
            parent_id = body.new_target.parent_id
            if parent_id is None:
                parent_id = readable_unit(w, tx.session, body.source_ids[0]).parent_id
            if parent_id is not None:  # None: the source is the root, which the domain refuses
                readable_unit(w, tx.session, parent_id, Perm.unit_write)
        result = svc.merge_units(
            tx,
            source_ids=body.source_ids,
            target_id=body.target_id,
            new_target=svc.NewUnit(**body.new_target.model_dump()) if body.new_target else None,
            new_name=body.new_name,
            effective=body.effective,
            kinds=_kinds(w),
        )
        return ReorgOut(**result.__dict__)


@router.post(
    "/{unit_id:int}/split", response_model=ReorgOut, summary="Split a unit into new ones (chia tách)"
)
def split_unit(w: Annotated[Web, Depends(web)], unit_id: PathId, body: UnitSplit) -> ReorgOut:
    with w.tx() as tx, tree_rules():
        source = changeable_unit(w, tx.session, unit_id)
        if source.parent_id is not None:  # None: the root, which the domain refuses to split
            parent = svc.get_unit(tx.session, source.parent_id)
            if not w.principal.can_unit(Perm.unit_write, parent.path):
                raise Forbidden("Các đơn vị mới sẽ thuộc cấp trên, nơi bạn không có quyền tạo đơn vị.")
        result = svc.split_unit(
            tx,
            unit_id,
            parts=[svc.SplitPart(**p.model_dump()) for p in body.parts],
            keep_source=body.keep_source,
            effective=body.effective,
            kinds=_kinds(w),
        )
        return ReorgOut(**result.__dict__)
