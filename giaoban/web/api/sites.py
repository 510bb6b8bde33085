"""/api/v1/sites: briefing endpoints ("điểm cầu")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from giaoban.org import scope
from giaoban.org import sites as svc
from giaoban.org.schemas import SearchText, SiteCreate, SiteOut, SiteStatusLit, SiteUpdate, site_out
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.deps import Web, web
from giaoban.web.schemas import Page

router = APIRouter(prefix="/sites", tags=["sites"], responses=ERRORS, route_class=ApiRoute)


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
        f = svc.SiteFilter(unit_id=unit, status=status, q=q)
        found = svc.list_sites(session, w.principal, f, under=under, limit=limit, offset=offset)
        return Page(items=[site_out(s, u) for s, u in found.items], total=found.total)


@router.get("/{site_id:int}", response_model=SiteOut, summary="One site")
def get_site(w: Annotated[Web, Depends(web)], site_id: PathId) -> SiteOut:
    with w.read() as session:
        return site_out(*scope.readable_site(session, w.principal, site_id))


@router.post("", response_model=SiteOut, status_code=201, summary="Create a site")
def create_site(w: Annotated[Web, Depends(web)], body: SiteCreate) -> SiteOut:
    with w.tx() as tx:
        return site_out(*svc.add_site(tx, w.principal, **body.model_dump()))


@router.patch("/{site_id:int}", response_model=SiteOut, summary="Update a site (operators: contacts only)")
def update_site(w: Annotated[Web, Depends(web)], site_id: PathId, body: SiteUpdate) -> SiteOut:
    with w.tx() as tx:
        changes = body.model_dump(exclude_unset=True, exclude={"unit_id"})
        return site_out(*svc.edit_site(tx, w.principal, site_id, changes, body.unit_id))
