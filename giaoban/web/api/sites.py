"""/api/v1/sites: briefing endpoints ("điểm cầu")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from giaoban.errors import Forbidden, NotFound
from giaoban.org import sites as svc
from giaoban.org.access import Perm
from giaoban.org.models import Site, Unit
from giaoban.org.schemas import Page, SearchText, SiteCreate, SiteOut, SiteStatusLit, SiteUpdate
from giaoban.org.units import in_any_subtree
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.api.units import readable_unit
from giaoban.web.deps import Web, web

router = APIRouter(prefix="/sites", tags=["sites"], responses=ERRORS, route_class=ApiRoute)


def site_out(site: Site, unit: Unit) -> SiteOut:
    return SiteOut(
        id=site.id,
        code=site.code,
        unit_id=unit.id,
        unit_code=unit.code,
        unit_name=unit.name,
        name=site.name,
        location=site.location,
        contact_name=site.contact_name,
        contact_phone=site.contact_phone,
        tech_name=site.tech_name,
        tech_phone=site.tech_phone,
        status=site.status,
    )


def readable_site(w: Web, session: Session, site_id: int) -> tuple[Site, Unit]:
    site = session.get(Site, site_id)
    if site is not None:
        unit = session.get(Unit, site.unit_id)
        if unit is not None and w.principal.can_site(Perm.site_read, site.id, unit.path):
            return site, unit
    raise NotFound(f"Không có điểm cầu mã số {site_id}.", code="site_not_found")


@router.get("", response_model=Page[SiteOut], summary="List sites")
def list_sites(
    w: Annotated[Web, Depends(web)],
    unit: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Sites of this unit")] = None,
    under: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Sites in this subtree")] = None,
    status: SiteStatusLit | None = None,
    q: Annotated[SearchText | None, Query(description="Site or unit name, or site code")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[SiteOut]:
    with w.read() as session:
        p = w.principal
        paths = p.unit_paths(Perm.site_read)
        pinned = p.pinned_sites(Perm.site_read)
        under_path = readable_unit(w, session, under).path if under is not None else None
        stmt = svc.query_sites(svc.SiteFilter(unit_id=unit, under_path=under_path, status=status, q=q))
        scope = in_any_subtree(Unit.path, paths)
        stmt = stmt.where(scope | Site.id.in_(pinned)) if pinned else stmt.where(scope)
        total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
        rows = session.execute(stmt.limit(limit).offset(offset)).all()
        return Page(items=[site_out(s, u) for s, u in rows], total=total)


@router.get("/{site_id:int}", response_model=SiteOut, summary="One site")
def get_site(w: Annotated[Web, Depends(web)], site_id: PathId) -> SiteOut:
    with w.read() as session:
        return site_out(*readable_site(w, session, site_id))


@router.post("", response_model=SiteOut, status_code=201, summary="Create a site")
def create_site(w: Annotated[Web, Depends(web)], body: SiteCreate) -> SiteOut:
    with w.tx() as tx:
        unit = readable_unit(w, tx.session, body.unit_id)
        if not w.principal.can_unit(Perm.site_write, unit.path):
            raise Forbidden("Bạn không có quyền tạo điểm cầu cho đơn vị này.")
        site = svc.create_site(tx, **body.model_dump())
        return site_out(site, unit)


@router.patch("/{site_id:int}", response_model=SiteOut, summary="Update a site (operators: contacts only)")
def update_site(w: Annotated[Web, Depends(web)], site_id: PathId, body: SiteUpdate) -> SiteOut:
    with w.tx() as tx:
        site, unit = readable_site(w, tx.session, site_id)
        p = w.principal
        fields = body.model_dump(exclude_unset=True, exclude={"unit_id"})
        changes = {key: value for key, value in fields.items() if value is not None}
        if p.can_unit(Perm.site_write, unit.path):
            allowed: tuple[str, ...] = svc.SITE_FIELDS
        elif p.can_site(Perm.site_contact_write, site.id, unit.path):
            allowed = svc.CONTACT_FIELDS
        else:
            raise Forbidden("Bạn không có quyền sửa điểm cầu này.")
        # Everything is authorized before anything is written.
        refused = sorted(set(changes) - set(allowed))
        if refused:
            raise Forbidden(
                f"Bạn chỉ được sửa thông tin liên hệ của điểm cầu này (không được sửa: {', '.join(refused)}).",
                code="field_not_allowed",
            )
        target = None
        if body.unit_id is not None and body.unit_id != site.unit_id:
            if not p.can_unit(Perm.site_write, unit.path):
                raise Forbidden("Bạn không có quyền chuyển điểm cầu này.")
            target = readable_unit(w, tx.session, body.unit_id)
            if not p.can_unit(Perm.site_write, target.path):
                raise Forbidden("Bạn không có quyền chuyển điểm cầu vào đơn vị này.")
        site = svc.update_site(tx, site.id, allowed=allowed, **changes)
        if target is not None:
            site = svc.move_site(tx, site.id, target.id)
            unit = target
        return site_out(site, unit)
