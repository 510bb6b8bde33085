"""Who may do what in a meeting: open its console, chair it, or act as one of its sites."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from giaoban.conference.models import Invitation, Meeting
from giaoban.context import AppContext
from giaoban.org.access import Principal
from giaoban.org.models import Role, Site, Unit

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


def meeting_access(ctx: AppContext, principal: Principal, meeting_id: int) -> MeetingAccess | None:
    """What ``principal`` may do in the meeting, or None when it is not theirs to see."""
    with ctx.db.session() as session:
        meeting = session.get(Meeting, meeting_id)
        if meeting is None:
            return None
        owner_path = session.execute(select(Unit.path).where(Unit.id == meeting.owner_unit_id)).scalar_one()
        access = MeetingAccess(meeting.id, meeting.status, meeting.host_site_id, owner_path=owner_path)
        access.console = holds(principal, CONSOLE_ROLES, owner_path)
        covering = [
            g for g in principal.grants if g.role in CONSOLE_ROLES and owner_path.startswith(g.unit_path)
        ]
        if covering:
            deepest = max(covering, key=lambda g: len(g.unit_path))
            access.person_unit = (
                session.execute(select(Unit.name).where(Unit.id == deepest.unit_id)).scalar() or ""
            )
        access.manage = holds(principal, MANAGE_ROLES, owner_path)
        # The meeting's own chair, or a central operator running the queue for them.
        access.chair = holds(principal, MANAGE_ROLES, owner_path) or (
            meeting.chair_user_id in (None, principal.user_id) and holds(principal, CHAIR_ROLES, owner_path)
        )
        rows = session.execute(
            select(Site.id, Unit.path)
            .join(Invitation, Invitation.site_id == Site.id)
            .join(Unit, Unit.id == Site.unit_id)
            .where(Invitation.meeting_id == meeting_id)
        ).all()
        for site_id, path in rows:
            if holds(principal, SITE_ROLES, path, site_id) or (
                site_id == meeting.host_site_id and holds(principal, HOST_ROLES, path)
            ):
                access.sites_as_site.add(site_id)
        return access if access.visible else None
