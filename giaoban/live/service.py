"""What a principal may do with a live meeting, for every caller alike: the JSON API, the pages.

Each function authorizes through ``giaoban.meetings.service.access`` (the one rule for who sees a
meeting and what they may do in it), then acts on the meeting's live room (``giaoban.live.hub``):
the status change the room hears of, the roll call, the tech checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio

from giaoban import tabular
from giaoban.context import AppContext
from giaoban.errors import Conflict, Forbidden, NotFound
from giaoban.live import attendance, techcheck
from giaoban.live.hub import Hub, Room
from giaoban.meetings import scheduling as svc
from giaoban.meetings.access import MeetingAccess
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.meetings.schemas import MeetingOut
from giaoban.meetings.service import access, transition
from giaoban.org.access import Principal
from giaoban.org.models import Site
from giaoban.types import as_utc


async def change_status(ctx: AppContext, hub: Hub, p: Principal, meeting_id: int, status: str) -> MeetingOut:
    """Open, start, end or cancel (``giaoban.meetings.service.transition``); the live room hears of
    it at once."""
    out = await transition(ctx, p, meeting_id, status)
    await hub.status_changed(meeting_id, MeetingStatus(status))
    return out


async def attendance_xlsx(ctx: AppContext, hub: Hub, p: Principal, meeting_id: int) -> bytes:
    """The roll call as a spreadsheet: for the control room only."""
    allowed = await access(ctx, p, meeting_id)
    if not allowed.console:
        raise Forbidden("Chỉ phòng điều hành xem được điểm danh.")
    room = await hub.room(meeting_id)

    def heading() -> tuple[str, datetime, datetime, str]:
        with ctx.db.session() as session:
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
    return tabular.write(sheet, "xlsx")


# --- tech checks ("kiểm tra kỹ thuật") ----------------------------------------------------------


async def _live_access(
    ctx: AppContext, hub: Hub, p: Principal, meeting_id: int
) -> tuple[MeetingAccess, Room]:
    """The caller's access and the meeting's live room (loaded from its records if need be)."""
    allowed = await access(ctx, p, meeting_id)
    if allowed.status in (MeetingStatus.ended, MeetingStatus.cancelled):
        raise Conflict("Hội nghị đã kết thúc.", code="meeting_closed")
    return allowed, await hub.room(meeting_id)


def _invited(room: Room, site_id: int) -> dict[str, Any]:
    site = room.live.sites.get(site_id)
    if site is None:
        raise NotFound(f"Điểm cầu {site_id} không được mời dự hội nghị này.", code="site_not_invited")
    return dict(site.to_json())


def _apply(hub: Hub, meeting_id: int) -> Any:
    async def apply(record: Any) -> Any:
        applied = await hub.record(meeting_id, record)
        if applied is None:
            raise Conflict("Hội nghị đã kết thúc.", code="meeting_closed")
        return applied

    return apply


async def readiness(ctx: AppContext, hub: Hub, p: Principal, meeting_id: int) -> techcheck.Readiness:
    """Tech check readiness of the sites ``p`` operates (every site, from the control room)."""
    allowed = await access(ctx, p, meeting_id)
    room = await hub.room(meeting_id)
    sites = [
        techcheck.readiness(site.to_json())
        for sid in room.live.order
        if allowed.console or sid in allowed.sites_as_site
        for site in [room.live.sites[sid]]
    ]
    return techcheck.Readiness(items=sites)


async def submit_techcheck(
    ctx: AppContext, hub: Hub, p: Principal, meeting_id: int, site_id: int, body: techcheck.TechCheckIn
) -> techcheck.SiteReadiness:
    """A site reports its tech check (its own site only)."""
    allowed, room = await _live_access(ctx, hub, p, meeting_id)
    _invited(room, site_id)
    if site_id not in allowed.sites_as_site:
        raise Forbidden("Bạn không vận hành điểm cầu này trong hội nghị.")
    result = body.check()
    await techcheck.store(_apply(hub, meeting_id), hub.clock(), site_id, p.username, result)
    return techcheck.readiness(_invited(room, site_id))


async def request_techcheck(
    ctx: AppContext, hub: Hub, p: Principal, meeting_id: int, site_id: int
) -> techcheck.SiteReadiness:
    """The control room asks a site to run its tech check."""
    allowed, room = await _live_access(ctx, hub, p, meeting_id)
    if not allowed.console:
        raise Forbidden("Chỉ phòng điều hành được đề nghị điểm cầu kiểm tra kỹ thuật.")
    _invited(room, site_id)
    await techcheck.ask(_apply(hub, meeting_id), hub.clock(), site_id, p.username)
    return techcheck.readiness(_invited(room, site_id))
