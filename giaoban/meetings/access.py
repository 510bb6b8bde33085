"""Who may do what in a meeting: open its console, chair it, or act as one of its sites."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select
from sqlalchemy.orm import Session, selectinload

from giaoban.context import AppContext
from giaoban.errors import NotFound
from giaoban.meetings.models import Invitation, Meeting
from giaoban.org.access import Principal
from giaoban.org.models import Role, Site, Unit
from giaoban.org.units import subtree
from giaoban.types import Listing

# The control room: chair, secretary, central operators (and system admins) over the organizing unit.
CONSOLE_ROLES = frozenset({Role.admin, Role.central_operator, Role.chair, Role.secretary})
# Who gives and ends the floor: the chair, and the central operator who runs the queue for the chair.
CHAIR_ROLES = frozenset({Role.admin, Role.central_operator, Role.chair})
# Who schedules meetings, invites sites and moves them through their lifecycle (with the chair).
MANAGE_ROLES = frozenset({Role.admin, Role.central_operator})
# Who may run a site's room: its site operator, or a central operator / admin covering it.
SITE_ROLES = frozenset({Role.admin, Role.central_operator, Role.site_operator})
# People at the host site who run its room from the chair's desk.
HOST_ROLES = frozenset({Role.chair, Role.secretary})


def holds(p: Principal, roles: frozenset[Role], path: str, site_id: int | None = None) -> bool:
    """``p`` has one of ``roles`` over ``path`` (a grant pinned to a site covers only that site)."""
    return any(
        g.role in roles and path.startswith(g.unit_path) and (g.site_id is None or g.site_id == site_id)
        for g in p.grants
    )


@dataclass
class MeetingAccess:
    meeting_id: int
    status: str
    host_site_id: int
    console: bool = False
    chair: bool = False
    manage: bool = False
    owner_path: str = ""
    sites_as_site: set[int] = field(default_factory=set)
    # The unit the person works for, as chat shows it beside their full name: the unit of their
    # console grant over the meeting (the deepest one), or "" for site technicians.
    person_unit: str = ""

    @property
    def visible(self) -> bool:
        return self.console or bool(self.sites_as_site)


# --- who sees a meeting: one rule, asked of one meeting in Python and of a list in SQL -----------
#
# A meeting is visible to whoever holds CONSOLE_ROLES over its organizing unit (its control room),
# SITE_ROLES over one of its invited sites (that site's room), or HOST_ROLES over its host site
# (the chair's desk). ``holds`` answers it for one grant set and one path; ``_held`` is the same
# test as SQL, grant by grant, so the list (``visible_meetings``) and the per-meeting check
# (``meeting_access``) cannot drift apart: ``meeting_access`` reads the meeting through the list's
# predicate, and the flags it reports are ``holds`` over the same role sets.


def _held(p: Principal, roles: frozenset[Role], path: Any, site: Any = None) -> ColumnElement[bool]:
    """``holds(p, roles, path, site)`` as a SQL predicate (``site`` None: no pinned grant counts)."""
    conds: list[ColumnElement[bool]] = []
    for g in p.grants:
        if g.role not in roles:
            continue
        cond = subtree(path, g.unit_path)
        if g.site_id is not None:
            if site is None:
                continue
            cond = and_(cond, site == g.site_id)
        conds.append(cond)
    return or_(*conds) if conds else false()


def visible_meetings(p: Principal) -> ColumnElement[bool]:
    """The meetings ``p`` may see, as a predicate on ``Meeting``."""
    owner = exists(
        select(Unit.id).where(Unit.id == Meeting.owner_unit_id, _held(p, CONSOLE_ROLES, Unit.path))
    )
    invited = exists(
        select(Invitation.id)
        .join(Site, Site.id == Invitation.site_id)
        .join(Unit, Unit.id == Site.unit_id)
        .where(
            Invitation.meeting_id == Meeting.id,
            or_(
                _held(p, SITE_ROLES, Unit.path, Site.id),
                and_(Site.id == Meeting.host_site_id, _held(p, HOST_ROLES, Unit.path)),
            ),
        )
    )
    return or_(owner, invited)


def accesses(session: Session, principal: Principal, meetings: Sequence[Meeting]) -> dict[int, MeetingAccess]:
    """What ``principal`` may do in each of ``meetings`` (in three queries, whatever their number)."""
    if not meetings:
        return {}
    ids = [m.id for m in meetings]
    owner_paths = dict(
        session.execute(
            select(Unit.id, Unit.path).where(Unit.id.in_({m.owner_unit_id for m in meetings}))
        ).all()
    )
    invited: dict[int, list[tuple[int, str]]] = {}
    for meeting_id, site_id, path in session.execute(
        select(Invitation.meeting_id, Site.id, Unit.path)
        .join(Site, Site.id == Invitation.site_id)
        .join(Unit, Unit.id == Site.unit_id)
        .where(Invitation.meeting_id.in_(ids))
    ):
        invited.setdefault(meeting_id, []).append((site_id, path))
    out: dict[int, MeetingAccess] = {}
    deepest: dict[int, int] = {}
    for meeting in meetings:
        owner_path = owner_paths[meeting.owner_unit_id]
        access = MeetingAccess(meeting.id, meeting.status, meeting.host_site_id, owner_path=owner_path)
        access.console = holds(principal, CONSOLE_ROLES, owner_path)
        covering = [
            g for g in principal.grants if g.role in CONSOLE_ROLES and owner_path.startswith(g.unit_path)
        ]
        if covering:
            deepest[meeting.id] = max(covering, key=lambda g: len(g.unit_path)).unit_id
        access.manage = holds(principal, MANAGE_ROLES, owner_path)
        # The meeting's own chair, or a central operator running the queue for them.
        access.chair = access.manage or (
            meeting.chair_user_id in (None, principal.user_id) and holds(principal, CHAIR_ROLES, owner_path)
        )
        for site_id, path in invited.get(meeting.id, []):
            if holds(principal, SITE_ROLES, path, site_id) or (
                site_id == meeting.host_site_id and holds(principal, HOST_ROLES, path)
            ):
                access.sites_as_site.add(site_id)
        out[meeting.id] = access
    if deepest:
        names = dict(
            session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(set(deepest.values())))).all()
        )
        for meeting_id, unit_id in deepest.items():
            out[meeting_id].person_unit = names.get(unit_id) or ""
    return out


def access_in(session: Session, principal: Principal, meeting_id: int) -> MeetingAccess | None:
    """``meeting_access`` inside an open session."""
    meeting = session.execute(
        select(Meeting).where(Meeting.id == meeting_id, visible_meetings(principal))
    ).scalar_one_or_none()
    if meeting is None:
        return None
    access = accesses(session, principal, [meeting])[meeting.id]
    return access if access.visible else None


def meeting_access(ctx: AppContext, principal: Principal, meeting_id: int) -> MeetingAccess | None:
    """What ``principal`` may do in the meeting, or None when it is not theirs to see."""
    with ctx.db.session() as session:
        return access_in(session, principal, meeting_id)


def require_access(session: Session, principal: Principal, meeting_id: int) -> MeetingAccess:
    """``access_in``, or "not found" (a meeting outside the caller's reach does not exist for them)."""
    access = access_in(session, principal, meeting_id)
    if access is None:
        raise NotFound(f"Không có hội nghị mã số {meeting_id}.", code="meeting_not_found")
    return access


def list_meetings(
    session: Session, principal: Principal, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> Listing[tuple[Meeting, MeetingAccess]]:
    """The meetings ``principal`` may see, newest first, each with what they may do in it."""
    stmt = select(Meeting).where(visible_meetings(principal))
    if status:
        stmt = stmt.where(Meeting.status == status)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    meetings = (
        session.execute(
            stmt.options(selectinload(Meeting.invitations))
            .order_by(Meeting.starts_at.desc(), Meeting.id.desc())
            .limit(limit)
            .offset(offset)
        )
        .scalars()
        .all()
    )
    found = accesses(session, principal, meetings)
    return Listing([(m, found[m.id]) for m in meetings], total)
