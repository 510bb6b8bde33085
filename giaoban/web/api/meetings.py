"""/api/v1/meetings: schedule briefings, invite sites, move them through their lifecycle.

Each route parses the request, calls one function of ``giaoban.meetings.service`` (which
authorizes through ``giaoban.meetings.access``) and renders its answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from giaoban.live import service as live_service
from giaoban.live import techcheck
from giaoban.meetings import service
from giaoban.meetings.schemas import InviteIn, MeetingDetail, MeetingIn, MeetingOut, StatusIn
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.deps import Web, web
from giaoban.web.downloads import ics_response, xlsx_response
from giaoban.web.schemas import Page

router = APIRouter(prefix="/meetings", tags=["meetings"], responses=ERRORS, route_class=ApiRoute)


@router.get("", response_model=Page[MeetingOut], summary="Meetings I run or my sites are invited to")
def list_meetings(
    w: Annotated[Web, Depends(web)],
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[MeetingOut]:
    with w.read() as session:
        found = service.meetings_for(session, w.principal, status=status, limit=limit, offset=offset)
    return Page(items=found.items, total=found.total)


@router.post("", response_model=MeetingDetail, status_code=201, summary="Schedule a meeting")
def create_meeting(w: Annotated[Web, Depends(web)], body: MeetingIn) -> MeetingDetail:
    with w.tx() as tx:
        return service.schedule(tx, w.principal, body)


@router.get("/{meeting_id}", response_model=MeetingDetail, summary="One meeting with agenda and sites")
def get_meeting(w: Annotated[Web, Depends(web)], meeting_id: PathId) -> MeetingDetail:
    with w.read() as session:
        return service.meeting_detail(session, w.principal, meeting_id)


@router.put("/{meeting_id}/invitations", response_model=MeetingDetail, summary="Replace the invited sites")
def set_invitations(w: Annotated[Web, Depends(web)], meeting_id: PathId, body: InviteIn) -> MeetingDetail:
    with w.tx() as tx:
        return service.invite(tx, w.principal, meeting_id, body)


@router.post("/{meeting_id}/status", response_model=MeetingOut, summary="Open, start, end or cancel")
async def change_status(
    request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId, body: StatusIn
) -> MeetingOut:
    return await live_service.change_status(
        w.ctx, request.app.state.hub, w.principal, meeting_id, body.status
    )


@router.get("/{meeting_id}/ics", summary="The meeting as an iCalendar file", response_class=Response)
def meeting_ics(w: Annotated[Web, Depends(web)], meeting_id: PathId) -> Response:
    with w.read() as session:
        data = service.ics(session, w.principal, meeting_id)
    return ics_response(data, meeting_id)


@router.get("/{meeting_id}/attendance.xlsx", summary="Roll call as a spreadsheet", response_class=Response)
async def attendance_xlsx(request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId) -> Response:
    data = await live_service.attendance_xlsx(w.ctx, request.app.state.hub, w.principal, meeting_id)
    return xlsx_response(data, meeting_id)


# --- tech checks ("kiểm tra kỹ thuật") -----------------------------------------------------------


@router.get(
    "/{meeting_id}/techcheck",
    response_model=techcheck.Readiness,
    summary="Tech check readiness of the sites I can see (all of them from the console)",
)
async def get_readiness(request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId) -> Any:
    return await live_service.readiness(w.ctx, request.app.state.hub, w.principal, meeting_id)


@router.post(
    "/{meeting_id}/sites/{site_id}/techcheck",
    response_model=techcheck.SiteReadiness,
    summary="A site reports its tech check (its own site only)",
)
async def submit_techcheck(
    request: Request,
    w: Annotated[Web, Depends(web)],
    meeting_id: PathId,
    site_id: PathId,
    body: techcheck.TechCheckIn,
) -> Any:
    hub = request.app.state.hub
    return await live_service.submit_techcheck(w.ctx, hub, w.principal, meeting_id, site_id, body)


@router.post(
    "/{meeting_id}/sites/{site_id}/techcheck/request",
    response_model=techcheck.SiteReadiness,
    summary="The control room asks a site to run its tech check",
)
async def request_techcheck(
    request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId, site_id: PathId
) -> Any:
    hub = request.app.state.hub
    return await live_service.request_techcheck(w.ctx, hub, w.principal, meeting_id, site_id)
