"""Who sees a meeting is one rule (``giaoban.meetings.access``): the list's SQL predicate and the
per-meeting check agree for every demo account and for grants pinned to a site, on SQLite and
PostgreSQL, and a page of the list costs the same few queries whatever its length."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import event, select
from sqlalchemy.orm import selectinload

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.meetings import access
from giaoban.meetings import scheduling as svc
from giaoban.org.access import Grant, Principal
from giaoban.org.models import Role, RoleAssignment, Site, Unit, User
from giaoban.org.units import root_path
from tests.conftest import Demo


def _meetings(demo: Demo) -> list[int]:
    """Meetings of the centre and of a province, inviting a list, a subtree and a kind of unit."""
    with demo.ctx.db.session() as session:
        tx = Tx(session, demo.ctx.audit, Actor.system("test"))
        unit = {c: i for c, i in session.execute(select(Unit.code, Unit.id))}
        site = {c: i for c, i in session.execute(select(Site.code, Site.id))}
        specs = [
            ("TW", "TW", svc.InviteSpec(unit_kinds=["province"])),
            ("TW", "TW", svc.InviteSpec(site_ids=[site["79"]])),
            ("01", "01", svc.InviteSpec(under_unit_ids=[unit["01"]])),
            ("79", "79", svc.InviteSpec()),
        ]
        ids = []
        for n, (owner, host, invite) in enumerate(specs):
            m = svc.create_meeting(
                tx,
                svc.MeetingSpec(
                    title=f"Hội nghị {n}",
                    kind="briefing",
                    starts_at=datetime(2026, 12, 1 + n, 8, 0),
                    ends_at=datetime(2026, 12, 1 + n, 11, 0),
                    owner_unit_id=unit[owner],
                    host_site_id=site[host],
                    invite=invite,
                ),
            )
            ids.append(m.id)
        return ids


def _principals(demo: Demo) -> list[Principal]:
    with demo.ctx.db.session() as session:
        root = root_path(session)
        users = session.execute(
            select(User).options(selectinload(User.roles).selectinload(RoleAssignment.unit))
        ).scalars()
        found = [Principal.from_user(u, root_path=root) for u in users]
        hn = session.execute(select(Unit).where(Unit.code == "01")).scalar_one()
        hn_site = session.execute(select(Site.id).where(Site.code == "01")).scalar_one()
    # Grants pinned to a site: a console role pinned there covers no control room; a site role
    # pinned there covers that site's room only.
    for role in (Role.chair, Role.secretary, Role.site_operator, Role.central_operator):
        found.append(
            Principal(
                user_id=10_000, username=f"pinned-{role.value}", grants=[Grant(role, hn.id, hn.path, hn_site)]
            )
        )
    found.append(Principal(user_id=10_001, username="nobody", grants=[]))
    return found


def test_the_list_and_the_check_are_one_rule(demo: Demo) -> None:
    ids = _meetings(demo)
    seen_by_someone = set()
    for p in _principals(demo):
        with demo.ctx.db.session() as session:
            listed = {m.id: a for m, a in access.list_meetings(session, p, limit=500).items}
            for meeting_id in ids:
                one = access.access_in(session, p, meeting_id)
                assert (one is not None) == (meeting_id in listed), (p.username, meeting_id)
                if one is not None:
                    assert one == listed[meeting_id], (p.username, meeting_id)
                    assert one.visible
                    seen_by_someone.add(meeting_id)
    assert seen_by_someone == set(ids)


def test_pinned_grants(demo: Demo) -> None:
    ids = _meetings(demo)
    by_name = {p.username: p for p in _principals(demo)}
    with demo.ctx.db.session() as session:
        for name in ("pinned-chair", "pinned-secretary"):
            # A chair's grant pinned to the Hà Nội site: not the province's control room; the host
            # desk only without a pin (HOST_ROLES) — so none of these meetings.
            assert access.list_meetings(session, by_name[name]).total == 0
        operator = access.list_meetings(session, by_name["pinned-site_operator"])
        # The Hà Nội site is invited by the provinces meeting and by Hà Nội's own one.
        assert {m.id for m, _a in operator.items} == {ids[0], ids[2]}
        assert all(a.sites_as_site and not a.console for _m, a in operator.items)
        assert access.list_meetings(session, by_name["nobody"]).total == 0


def test_a_page_of_meetings_costs_a_fixed_number_of_queries(demo: Demo) -> None:
    _meetings(demo)
    admin = next(p for p in _principals(demo) if p.username == "admin")
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(demo.ctx.db.engine, "before_cursor_execute", count)
    try:
        with demo.ctx.db.session() as session:
            access.list_meetings(session, admin, limit=1)
        few = len(statements)
        statements.clear()
        with demo.ctx.db.session() as session:
            assert len(access.list_meetings(session, admin, limit=50).items) == 4
        assert len(statements) == few
    finally:
        event.remove(demo.ctx.db.engine, "before_cursor_execute", count)
