"""What a principal may do with meetings, for every caller alike: the JSON API, the pages, the CLI.

Each function authorizes through ``giaoban.meetings.access`` (one rule for who sees a meeting and
what they may do in it), calls the domain (``scheduling``, ``lifecycle``)
and answers domain objects or the API's shapes (``giaoban.meetings.schemas``). The web layer only
parses the request, calls one of these and renders the answer.
"""

from __future__ import annotations

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.errors import Conflict, Forbidden, NotFound
from giaoban.meetings import scheduling as svc
from giaoban.meetings.access import MANAGE_ROLES, MeetingAccess, holds, list_meetings, require_access
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.meetings.models import Invitation, Meeting
from giaoban.meetings.order import site_order
from giaoban.meetings.schemas import AgendaOut, InvitedSite, InviteIn, MeetingDetail, MeetingIn, MeetingOut
from giaoban.org.access import Perm, Principal
from giaoban.org.models import Site, Unit
from giaoban.types import Listing


def _tx(ctx: AppContext, session: Session, p: Principal) -> Tx:
    return Tx(session=session, audit=ctx.audit, actor=Actor(p.user_id, p.username, p.ip))


def manage_scope(p: Principal) -> list[str]:
    """The subtrees where ``p`` schedules meetings and invites sites."""
    return sorted({g.unit_path for g in p.grants if g.role in MANAGE_ROLES})


# --- rendering ---------------------------------------------------------------------------------


def meeting_out(m: Meeting, access: MeetingAccess | None) -> MeetingOut:
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
    out = meeting_out(m, access)
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


# --- reading -----------------------------------------------------------------------------------


def meetings_for(
    session: Session, p: Principal, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> Listing[MeetingOut]:
    """The meetings ``p`` runs or whose invited sites they operate, newest first (one session)."""
    found = list_meetings(session, p, status=status, limit=limit, offset=offset)
    return Listing([meeting_out(m, a) for m, a in found.items], found.total)


def meeting_detail(session: Session, p: Principal, meeting_id: int) -> MeetingDetail:
    access = require_access(session, p, meeting_id)
    return _detail(session, svc.get_meeting(session, meeting_id), access)


def ics(session: Session, p: Principal, meeting_id: int) -> bytes:
    require_access(session, p, meeting_id)
    meeting = svc.get_meeting(session, meeting_id)
    host = session.get(Site, meeting.host_site_id)
    return svc.to_ics(meeting, host.name if host else "")


# --- scheduling --------------------------------------------------------------------------------


def schedule(tx: Tx, p: Principal, body: MeetingIn) -> MeetingDetail:
    """Schedule a meeting of a unit ``p`` manages, hosted by and inviting sites in their scope."""
    owner = tx.session.get(Unit, body.owner_unit_id)
    if owner is None or not p.can_unit(Perm.unit_read, owner.path):
        raise NotFound(f"Không có đơn vị mã số {body.owner_unit_id}.", code="unit_not_found")
    if not holds(p, MANAGE_ROLES, owner.path):
        raise Forbidden("Chỉ điều hành Trung ương hoặc quản trị được lên lịch hội nghị của đơn vị này.")
    scope = [g.unit_path for g in p.grants if g.role in MANAGE_ROLES]
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
    tx.session.flush()
    return meeting_detail(tx.session, p, meeting.id)


def invite(tx: Tx, p: Principal, meeting_id: int, body: InviteIn) -> MeetingDetail:
    access = require_access(tx.session, p, meeting_id)
    if not access.manage:
        raise Forbidden("Bạn không có quyền mời điểm cầu cho hội nghị này.")
    scope = [g.unit_path for g in p.grants if g.role in MANAGE_ROLES]
    svc.set_invitations(
        tx, meeting_id, svc.InviteSpec(body.site_ids, body.under_unit_ids, body.unit_kinds), scope
    )
    tx.session.flush()
    return meeting_detail(tx.session, p, meeting_id)


# --- the lifecycle -----------------------------------------------------------------------------


def _access(ctx: AppContext, p: Principal, meeting_id: int) -> MeetingAccess:
    with ctx.db.session() as session:
        return require_access(session, p, meeting_id)


async def access(ctx: AppContext, p: Principal, meeting_id: int) -> MeetingAccess:
    """``require_access`` from async code (the database in a worker thread)."""
    return await anyio.to_thread.run_sync(_access, ctx, p, meeting_id)


async def transition(ctx: AppContext, p: Principal, meeting_id: int, status: str) -> MeetingOut:
    """Open, start, end or cancel: the chair's (or a central operator's) decision. The live room
    hears of it through ``giaoban.live.service.change_status``, which calls this."""
    allowed = await access(ctx, p, meeting_id)
    if not allowed.chair:
        raise Forbidden("Chỉ chủ trì hoặc điều hành Trung ương được chuyển trạng thái hội nghị.")
    target = MeetingStatus(status)

    def change() -> MeetingOut:
        with ctx.db.session() as session:
            meeting = svc.transition(_tx(ctx, session, p), meeting_id, target)
            return meeting_out(meeting, allowed)

    return await anyio.to_thread.run_sync(change)
