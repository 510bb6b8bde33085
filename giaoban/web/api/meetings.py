"""/api/v1/meetings: schedule briefings, invite sites, move them through their lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, selectinload

from giaoban import tabular
from giaoban.conference import attendance, techcheck
from giaoban.conference import meetings as svc
from giaoban.conference.access import (
    CONSOLE_ROLES,
    HOST_ROLES,
    MANAGE_ROLES,
    SITE_ROLES,
    MeetingAccess,
    holds,
    meeting_access,
)
from giaoban.conference.lifecycle import MeetingStatus
from giaoban.conference.models import Invitation, Meeting
from giaoban.conference.order import site_order
from giaoban.conference.schemas import (
    AgendaOut,
    InvitedSite,
    InviteIn,
    MeetingDetail,
    MeetingIn,
    MeetingOut,
    StatusIn,
)
from giaoban.errors import Conflict, Forbidden, NotFound
from giaoban.org.access import Perm
from giaoban.org.models import Site, Unit
from giaoban.org.schemas import Page
from giaoban.org.units import in_any_subtree
from giaoban.types import as_utc
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.deps import Web, web

router = APIRouter(prefix="/meetings", tags=["meetings"], responses=ERRORS, route_class=ApiRoute)


def _access(w: Web, meeting_id: int) -> MeetingAccess:
    access = meeting_access(w.ctx, w.principal, meeting_id)
    if access is None:
        raise NotFound(f"Không có hội nghị mã số {meeting_id}.", code="meeting_not_found")
    return access


def _out(m: Meeting, access: MeetingAccess | None) -> MeetingOut:
    return MeetingOut(
        id=m.id,
        title=m.title,
        kind=m.kind,
        status=m.status,
        starts_at=m.starts_at,
        ends_at=m.ends_at,
        owner_unit_id=m.owner_unit_id,
        host_site_id=m.host_site_id,
        chair_user_id=m.chair_user_id,
        secretary_user_id=m.secretary_user_id,
        site_count=len(m.invitations),
        can_manage=bool(access and access.manage),
        can_chair=bool(access and access.chair),
        can_console=bool(access and access.console),
        my_sites=sorted(access.sites_as_site) if access else [],
    )


def _detail(session: Session, m: Meeting, access: MeetingAccess) -> MeetingDetail:
    rows = session.execute(
        select(Site.id, Site.code, Site.name, Unit.name)
        .join(Invitation, Invitation.site_id == Site.id)
        .join(Unit, Unit.id == Site.unit_id)
        .where(Invitation.meeting_id == m.id)
    ).all()
    rows = site_order(rows, code=lambda r: r[1], site_id=lambda r: r[0], host_site_id=m.host_site_id)
    out = _out(m, access)
    rank = {r[0]: i for i, r in enumerate(rows)}
    out.my_sites = sorted(out.my_sites, key=lambda s: rank.get(s, len(rank)))
    return MeetingDetail(
        **out.model_dump(),
        description=m.description,
        agenda=[
            AgendaOut(position=a.position, title=a.title, presenter=a.presenter, minutes=a.minutes)
            for a in m.agenda
        ],
        sites=[InvitedSite(site_id=i, code=c, name=n, unit_name=u) for i, c, n, u in rows],
    )


@router.get("", response_model=Page[MeetingOut], summary="Meetings I run or my sites are invited to")
def list_meetings(
    w: Annotated[Web, Depends(web)],
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[MeetingOut]:
    p = w.principal
    console_paths = [g.unit_path for g in p.grants if g.role in CONSOLE_ROLES]
    site_paths = [g.unit_path for g in p.grants if g.role in SITE_ROLES and g.site_id is None]
    pinned = [g.site_id for g in p.grants if g.role in SITE_ROLES and g.site_id is not None]
    # The chair's desk at the host site runs the host's room (meeting_access): list those too.
    host_paths = [g.unit_path for g in p.grants if g.role in HOST_ROLES and g.site_id is None]
    with w.read() as session:
        invited = (
            select(Invitation.id)
            .join(Site, Site.id == Invitation.site_id)
            .join(Unit, Unit.id == Site.unit_id)
            .where(
                Invitation.meeting_id == Meeting.id,
                or_(
                    in_any_subtree(Unit.path, site_paths),
                    Site.id.in_(pinned),
                    (Site.id == Meeting.host_site_id) & in_any_subtree(Unit.path, host_paths),
                ),
            )
        )
        owner = select(Unit.id).where(
            Unit.id == Meeting.owner_unit_id, in_any_subtree(Unit.path, console_paths)
        )
        stmt = select(Meeting).where(or_(exists(owner), exists(invited)))
        if status:
            stmt = stmt.where(Meeting.status == status)
        total = len(session.execute(stmt.with_only_columns(Meeting.id)).all())
        meetings = (
            session.execute(
                stmt.options(selectinload(Meeting.invitations))
                .order_by(Meeting.starts_at.desc())
                .limit(limit)
                .offset(offset)
            )
            .scalars()
            .all()
        )
    return Page(items=[_out(m, meeting_access(w.ctx, p, m.id)) for m in meetings], total=total)


@router.post("", response_model=MeetingDetail, status_code=201, summary="Schedule a meeting")
def create_meeting(w: Annotated[Web, Depends(web)], body: MeetingIn) -> MeetingDetail:
    with w.tx() as tx:
        owner = tx.session.get(Unit, body.owner_unit_id)
        if owner is None or not w.principal.can_unit(Perm.unit_read, owner.path):
            raise NotFound(f"Không có đơn vị mã số {body.owner_unit_id}.", code="unit_not_found")
        if not holds(w.principal, MANAGE_ROLES, owner.path):
            raise Forbidden("Chỉ điều hành Trung ương hoặc quản trị được lên lịch hội nghị của đơn vị này.")
        scope = [g.unit_path for g in w.principal.grants if g.role in MANAGE_ROLES]
        # The host site is invited with the meeting: it must lie in the scheduler's scope like every
        # other invited site (refused exactly like a host that does not exist).
        host_path = tx.session.execute(
            select(Unit.path).join(Site, Site.unit_id == Unit.id).where(Site.id == body.host_site_id)
        ).scalar_one_or_none()
        if host_path is None or not any(host_path.startswith(path) for path in scope):
            raise Conflict("Điểm cầu chính không hợp lệ.", code="invalid_host_site")
        spec = svc.MeetingSpec(
            title=body.title,
            kind=body.kind,
            description=body.description,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            owner_unit_id=owner.id,
            host_site_id=body.host_site_id,
            chair_user_id=body.chair_user_id,
            secretary_user_id=body.secretary_user_id,
            agenda=[svc.AgendaSpec(a.title, a.presenter, a.minutes) for a in body.agenda],
            invite=svc.InviteSpec(body.invite.site_ids, body.invite.under_unit_ids, body.invite.unit_kinds),
        )
        meeting = svc.create_meeting(tx, spec, scope_paths=scope)
        meeting_id = meeting.id
    access = _access(w, meeting_id)
    with w.read() as session:
        return _detail(session, svc.get_meeting(session, meeting_id), access)


@router.get("/{meeting_id}", response_model=MeetingDetail, summary="One meeting with agenda and sites")
def get_meeting(w: Annotated[Web, Depends(web)], meeting_id: PathId) -> MeetingDetail:
    access = _access(w, meeting_id)
    with w.read() as session:
        return _detail(session, svc.get_meeting(session, meeting_id), access)


@router.put("/{meeting_id}/invitations", response_model=MeetingDetail, summary="Replace the invited sites")
def set_invitations(w: Annotated[Web, Depends(web)], meeting_id: PathId, body: InviteIn) -> MeetingDetail:
    access = _access(w, meeting_id)
    if not access.manage:
        raise Forbidden("Bạn không có quyền mời điểm cầu cho hội nghị này.")
    scope = [g.unit_path for g in w.principal.grants if g.role in MANAGE_ROLES]
    with w.tx() as tx:
        svc.set_invitations(
            tx, meeting_id, svc.InviteSpec(body.site_ids, body.under_unit_ids, body.unit_kinds), scope
        )
    access = _access(w, meeting_id)  # before the read: on SQLite two sessions must not nest
    with w.read() as session:
        return _detail(session, svc.get_meeting(session, meeting_id), access)


@router.post("/{meeting_id}/status", response_model=MeetingOut, summary="Open, start, end or cancel")
async def change_status(
    request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId, body: StatusIn
) -> MeetingOut:
    access = await anyio.to_thread.run_sync(_access, w, meeting_id)
    if not access.chair:
        raise Forbidden("Chỉ chủ trì hoặc điều hành Trung ương được chuyển trạng thái hội nghị.")

    def change() -> MeetingOut:
        with w.tx() as tx:
            meeting = svc.transition(tx, meeting_id, MeetingStatus(body.status))
            return _out(meeting, access)

    out = await anyio.to_thread.run_sync(change)
    await request.app.state.hub.status_changed(meeting_id, MeetingStatus(body.status))
    return out


@router.get("/{meeting_id}/ics", summary="The meeting as an iCalendar file", response_class=Response)
def meeting_ics(w: Annotated[Web, Depends(web)], meeting_id: PathId) -> Response:
    _access(w, meeting_id)
    with w.read() as session:
        meeting = svc.get_meeting(session, meeting_id)
        host = session.get(Site, meeting.host_site_id)
        data = svc.to_ics(meeting, host.name if host else "")
    return Response(
        data,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="giaoban-{meeting_id}.ics"'},
    )


@router.get("/{meeting_id}/attendance.xlsx", summary="Roll call as a spreadsheet", response_class=Response)
async def attendance_xlsx(request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId) -> Response:
    access = await anyio.to_thread.run_sync(_access, w, meeting_id)
    if not access.console:
        raise Forbidden("Chỉ phòng điều hành xem được điểm danh.")
    room = await request.app.state.hub.room(meeting_id)

    def heading() -> tuple[str, datetime, datetime, str]:
        with w.read() as session:
            meeting = svc.get_meeting(session, meeting_id)
            host = session.get(Site, meeting.host_site_id)
            return meeting.title, meeting.starts_at, meeting.ends_at, host.name if host else ""

    title, starts, ends, host_name = await anyio.to_thread.run_sync(heading)
    sheet = attendance.attendance_sheet(
        room.live,
        title=title,
        starts_at=as_utc(starts),
        ends_at=as_utc(ends),
        host_name=host_name,
        now=datetime.now(UTC),
    )
    return Response(
        tabular.write(sheet, "xlsx"),
        media_type=tabular.MEDIA_TYPES["xlsx"],
        headers={"Content-Disposition": f'attachment; filename="diem-danh-{meeting_id}.xlsx"'},
    )


# --- tech checks ("kiểm tra kỹ thuật") -----------------------------------------------------------


async def _live_access(request: Request, w: Web, meeting_id: int) -> tuple[MeetingAccess, Any]:
    """The caller's access and the meeting's live room (loaded from its records if need be)."""
    access = await anyio.to_thread.run_sync(_access, w, meeting_id)
    if access.status in (MeetingStatus.ended, MeetingStatus.cancelled):
        raise Conflict("Hội nghị đã kết thúc.", code="meeting_closed")
    return access, await request.app.state.hub.room(meeting_id)


def _invited(room: Any, site_id: int) -> dict[str, Any]:
    site = room.live.sites.get(site_id)
    if site is None:
        raise NotFound(f"Điểm cầu {site_id} không được mời dự hội nghị này.", code="site_not_invited")
    return dict(site.to_json())


async def _apply(request: Request, meeting_id: int) -> Any:
    hub = request.app.state.hub

    async def apply(record: Any) -> Any:
        applied = await hub.record(meeting_id, record)
        if applied is None:
            raise Conflict("Hội nghị đã kết thúc.", code="meeting_closed")
        return applied

    return apply


@router.get(
    "/{meeting_id}/techcheck",
    response_model=techcheck.Readiness,
    summary="Tech check readiness of the sites I can see (all of them from the console)",
)
async def get_readiness(request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId) -> Any:
    access = await anyio.to_thread.run_sync(_access, w, meeting_id)
    room = await request.app.state.hub.room(meeting_id)
    sites = [
        techcheck.readiness(site.to_json())
        for sid in room.live.order
        if access.console or sid in access.sites_as_site
        for site in [room.live.sites[sid]]
    ]
    return techcheck.Readiness(items=sites)


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
    access, room = await _live_access(request, w, meeting_id)
    _invited(room, site_id)
    if site_id not in access.sites_as_site:
        raise Forbidden("Bạn không vận hành điểm cầu này trong hội nghị.")
    result = body.check()
    now = request.app.state.hub.clock()
    await techcheck.store(await _apply(request, meeting_id), now, site_id, w.principal.username, result)
    return techcheck.readiness(_invited(room, site_id))


@router.post(
    "/{meeting_id}/sites/{site_id}/techcheck/request",
    response_model=techcheck.SiteReadiness,
    summary="The control room asks a site to run its tech check",
)
async def request_techcheck(
    request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId, site_id: PathId
) -> Any:
    access, room = await _live_access(request, w, meeting_id)
    if not access.console:
        raise Forbidden("Chỉ phòng điều hành được đề nghị điểm cầu kiểm tra kỹ thuật.")
    _invited(room, site_id)
    now = request.app.state.hub.clock()
    await techcheck.ask(await _apply(request, meeting_id), now, site_id, w.principal.username)
    return techcheck.readiness(_invited(room, site_id))
