"""/api/v1/units: the effective-dated org tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from giaoban.errors import Conflict, DomainError
from giaoban.org import tree
from giaoban.org import units as svc
from giaoban.org.access import Perm
from giaoban.org.schemas import (
    IsoDate,
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
    unit_out,
)
from giaoban.org.scope import changeable_unit, merge_allowed, readable_unit, writable_parent
from giaoban.org.tree import UnitQuery, UnitRow
from giaoban.types import Line
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.deps import Web, web
from giaoban.web.schemas import Page

router = APIRouter(prefix="/units", tags=["units"], responses=ERRORS, route_class=ApiRoute)


def _out(row: UnitRow) -> UnitOut:
    return unit_out(row.version, row.code, row.child_count)


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
    f = UnitQuery(
        kind=kind, parent=parent, under=under, roots=roots, as_of=as_of, q=q, limit=limit, offset=offset
    )
    with w.read() as session:
        found = tree.list_units(session, w.principal, f)
        return Page(items=[_out(r) for r in found.items], total=found.total)


@router.get("/{unit_id:int}", response_model=UnitDetail, summary="One unit, with its ancestors")
def get_unit(
    w: Annotated[Web, Depends(web)],
    unit_id: PathId,
    as_of: Annotated[IsoDate | None, Query()] = None,
) -> UnitDetail:
    with w.read() as session:
        view = tree.unit_detail(session, w.principal, unit_id, as_of)
        return UnitDetail(
            **_out(view.unit).model_dump(),
            ancestors=[_out(a) for a in view.ancestors],
            site_count=view.site_count,
        )


@router.get("/{unit_id:int}/history", response_model=UnitHistory, summary="Versions, events and lineage")
def unit_history(w: Annotated[Web, Depends(web)], unit_id: PathId) -> UnitHistory:
    with w.read() as session:
        readable_unit(session, w.principal, unit_id)
        data = svc.history(session, unit_id)
        unit = data.pop("unit")
        return UnitHistory(unit=UnitOut(**unit, depth=0), **data)


@router.post("", response_model=UnitOut, status_code=201, summary="Create a unit")
def create_unit(w: Annotated[Web, Depends(web)], body: UnitCreate) -> UnitOut:
    with w.tx() as tx, tree_rules():
        if body.parent_id is None:
            raise svc.second_root_error()  # the organization has its root; nobody makes another
        readable_unit(tx.session, w.principal, body.parent_id, Perm.unit_write)
        unit = svc.create_unit(
            tx,
            code=body.code,
            name=body.name,
            kind=body.kind,
            parent_id=body.parent_id,
            effective=body.effective,
            kinds=_kinds(w),
        )
        return unit_out(unit, unit.code)


@router.patch(
    "/{unit_id:int}", response_model=UnitOut, summary="Rename or change kind, effective from a date"
)
def update_unit(w: Annotated[Web, Depends(web)], unit_id: PathId, body: UnitUpdate) -> UnitOut:
    with w.tx() as tx, tree_rules():
        changeable_unit(tx.session, w.principal, unit_id)
        unit = svc.update_unit(
            tx, unit_id, name=body.name, kind=body.kind, effective=body.effective, kinds=_kinds(w)
        )
        return unit_out(unit, unit.code)


@router.post("/{unit_id:int}/move", response_model=UnitOut, summary="Move under another parent")
def move_unit(w: Annotated[Web, Depends(web)], unit_id: PathId, body: UnitMove) -> UnitOut:
    with w.tx() as tx, tree_rules():
        changeable_unit(tx.session, w.principal, unit_id)
        if body.parent_id is not None:
            readable_unit(tx.session, w.principal, body.parent_id, Perm.unit_write)
        unit = svc.move_unit(tx, unit_id, new_parent_id=body.parent_id, effective=body.effective)
        return unit_out(unit, unit.code)


@router.post("/{unit_id:int}/close", response_model=UnitOut, summary="Dissolve a unit that has no successor")
def close_unit(w: Annotated[Web, Depends(web)], unit_id: PathId, body: UnitClose) -> UnitOut:
    with w.tx() as tx, tree_rules():
        changeable_unit(tx.session, w.principal, unit_id)
        unit = svc.close_unit(tx, unit_id, effective=body.effective)
        return unit_out(unit, unit.code)


@router.post("/merge", response_model=ReorgOut, summary="Merge units into one (sáp nhập)")
def merge_units(w: Annotated[Web, Depends(web)], body: UnitMerge) -> ReorgOut:
    with w.tx() as tx, tree_rules():
        new_parent = body.new_target.parent_id if body.new_target is not None else None
        merge_allowed(
            tx.session, w.principal, body.source_ids, body.target_id, body.new_target is not None, new_parent
        )
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
        source = changeable_unit(tx.session, w.principal, unit_id)
        writable_parent(tx.session, w.principal, source.parent_id)
        result = svc.split_unit(
            tx,
            unit_id,
            parts=[svc.SplitPart(**p.model_dump()) for p in body.parts],
            keep_source=body.keep_source,
            effective=body.effective,
            kinds=_kinds(w),
        )
        return ReorgOut(**result.__dict__)
