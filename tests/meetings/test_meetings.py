"""Scheduling meetings: validation, invitations by list / subtree / kind, lifecycle, .ics."""

from __future__ import annotations

from datetime import datetime

import pytest
from icalendar import Calendar
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.errors import Conflict, DomainError
from giaoban.meetings import scheduling as svc
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.org.models import Site, Unit, User
from tests.conftest import Demo


def _site(tx: Tx, code: str) -> int:
    return tx.session.execute(select(Site.id).where(Site.code == code)).scalar_one()


def _user(tx: Tx, username: str) -> int:
    return tx.session.execute(select(User.id).where(User.username == username)).scalar_one()


def _spec(tx: Tx, **kw: object) -> svc.MeetingSpec:
    root = tx.session.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
    values: dict[str, object] = {
        "title": "Giao ban công tác tổ chức xây dựng Đảng tháng 12",
        "kind": "briefing",
        "starts_at": datetime(2026, 12, 1, 8, 0),
        "ends_at": datetime(2026, 12, 1, 11, 30),
        "owner_unit_id": root,
        "host_site_id": _site(tx, "TW"),
        "chair_user_id": _user(tx, "chutri"),
        "secretary_user_id": _user(tx, "thuky"),
        "agenda": [
            svc.AgendaSpec("Khai mạc", "Đồng chí Chủ trì"),
            svc.AgendaSpec("Báo cáo sơ kết", minutes=30),
        ],
    }
    values.update(kw)
    return svc.MeetingSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
def demo_tx(demo: Demo):  # type: ignore[no-untyped-def]
    with demo.ctx.db.session() as session:
        yield Tx(session, demo.ctx.audit, Actor.system("test"))


def test_invite_by_kind_subtree_and_list(demo_tx: Tx) -> None:
    tx = demo_tx
    m = svc.create_meeting(tx, _spec(tx, invite=svc.InviteSpec(unit_kinds=["province"])))
    assert len(m.invitations) == 64  # 63 provinces + the host site
    hn = tx.session.execute(select(Unit.id).where(Unit.code == "01")).scalar_one()
    m2 = svc.create_meeting(
        tx, _spec(tx, invite=svc.InviteSpec(under_unit_ids=[hn], site_ids=[_site(tx, "79")]))
    )
    assert {i.site_id for i in m2.invitations} == {_site(tx, "TW"), _site(tx, "01"), _site(tx, "79")}
    assert m2.starts_at == datetime(2026, 12, 1, 1, 0)  # 08:00 in Hà Nội is 01:00 UTC


def test_invites_outside_scope_are_refused(demo_tx: Tx) -> None:
    tx = demo_tx
    hn_path = tx.session.execute(select(Unit.path).where(Unit.code == "01")).scalar_one()
    with pytest.raises(DomainError) as err:
        svc.create_meeting(
            tx, _spec(tx, invite=svc.InviteSpec(site_ids=[_site(tx, "79")])), scope_paths=[hn_path]
        )
    assert err.value.code == "invalid_sites"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"title": " "}, "invalid_title"),
        ({"kind": "party"}, "invalid_kind"),
        ({"ends_at": datetime(2026, 12, 1, 7, 0)}, "invalid_times"),
        ({"host_site_id": 999999}, "invalid_host_site"),
    ],
)
def test_bad_meetings_are_refused(demo_tx: Tx, change: dict[str, object], code: str) -> None:
    with pytest.raises(DomainError) as err:
        svc.create_meeting(demo_tx, _spec(demo_tx, **change))
    assert err.value.code == code


def test_chair_must_hold_the_chair_role(demo_tx: Tx) -> None:
    with pytest.raises(DomainError) as err:
        svc.create_meeting(demo_tx, _spec(demo_tx, chair_user_id=_user(demo_tx, "thuky")))
    assert err.value.code == "invalid_user_role"


def test_lifecycle_and_ics(demo_tx: Tx) -> None:
    tx = demo_tx
    m = svc.create_meeting(tx, _spec(tx))
    with pytest.raises(Conflict):
        svc.transition(tx, m.id, MeetingStatus.live)
    for status in (MeetingStatus.open, MeetingStatus.live, MeetingStatus.ended):
        assert svc.transition(tx, m.id, status).status == status
    with pytest.raises(Conflict):
        svc.transition(tx, m.id, MeetingStatus.open)
    cal = Calendar.from_ical(svc.to_ics(m, "Điểm cầu Trung ương"))
    event = next(iter(cal.walk("VEVENT")))
    assert str(event["summary"]) == m.title
    assert event.decoded("dtstart").isoformat() == "2026-12-01T01:00:00+00:00"
    assert "Báo cáo sơ kết" in str(event["description"])
