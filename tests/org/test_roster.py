"""A unit's delegate roster ("đại biểu thường trực"): the service, the API, the page and the site's
check-in form, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.audit.models import AuditEntry
from giaoban.context import AppContext, Tx
from giaoban.errors import Conflict, DomainError, NotFound
from giaoban.live.protocol import CheckIn, parse
from giaoban.meetings import checkin
from giaoban.meetings import scheduling as meeting_svc
from giaoban.meetings.models import MeetingRecord
from giaoban.models import Base
from giaoban.org import roster as svc
from giaoban.org import units
from giaoban.org.access import Principal
from giaoban.org.models import Site, User
from tests.conftest import Demo, login
from tests.org.helpers import act
from tests.security.conftest import changed_tables
from tests.web.test_pages import HTML, sign_in

NFD = unicodedata.normalize("NFD", "Nguyễn Văn An")


def site_of(demo: Demo, code: str) -> int:
    with demo.ctx.db.session() as s:
        return int(s.execute(select(Site.id).where(Site.code == code)).scalar_one())


def principal(ctx: AppContext, username: str) -> Principal:
    with ctx.db.session() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one()
        return Principal.from_user(user)


def rows(ctx: AppContext, unit_id: int) -> list[tuple[str, str, bool, int]]:
    with ctx.db.session() as s:
        return [(e.full_name, e.position, e.active, e.sort_order) for e in svc.list_entries(s, unit_id)]


def audit_actions(ctx: AppContext) -> list[str]:
    with ctx.db.session() as s:
        return list(
            s.execute(
                select(AuditEntry.action).where(AuditEntry.action.like("roster.%")).order_by(AuditEntry.id)
            ).scalars()
        )


def snapshot(ctx: AppContext) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with ctx.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name == "auth_sessions":
                continue
            out[table.name] = [
                tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
    return out


# --- schema ---------------------------------------------------------------------------------------


def test_migration_0004_matches_the_model(ctx: AppContext) -> None:
    with ctx.db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    mine = [d for d in diffs if "roster_entries" in repr(d)]
    assert mine == []
    with ctx.db.engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
    assert version >= "0004"


# --- the service ------------------------------------------------------------------------------------


def test_add_update_deactivate_reorder_with_audit(demo: Demo) -> None:
    ctx = demo.ctx
    hanoi = demo.unit_id("01")
    a = act(ctx, svc.add_entry, hanoi, full_name=f"  {NFD}  ", position="Phó Bí thư", phone="0912 000 111")
    b = act(ctx, svc.add_entry, hanoi, full_name="Trần Thị Bình", position="Trưởng ban Tổ chức")
    c = act(ctx, svc.add_entry, hanoi, full_name="Lê Văn Cường")
    assert a.full_name == "Nguyễn Văn An" and unicodedata.is_normalized("NFC", a.full_name)
    assert rows(ctx, hanoi) == [
        ("Nguyễn Văn An", "Phó Bí thư", True, 1),
        ("Trần Thị Bình", "Trưởng ban Tổ chức", True, 2),
        ("Lê Văn Cường", "", True, 3),
    ]
    # Diacritics-insensitive search, whatever the spelling.
    with ctx.db.session() as s:
        for q in ("nguyen van an", "NGUYỄN", NFD, "an"):
            assert "Nguyễn Văn An" in [e.full_name for e in svc.list_entries(s, hanoi, q=q)], q
        assert [e.full_name for e in svc.list_entries(s, hanoi, q="binh")] == ["Trần Thị Bình"]

    act(ctx, svc.update_entry, hanoi, b.id, position="Ủy viên Ban Thường vụ")
    act(ctx, svc.update_entry, hanoi, b.id, position="Ủy viên Ban Thường vụ")  # no change: no entry
    act(ctx, svc.deactivate_entry, hanoi, c.id)
    act(ctx, svc.reorder, hanoi, [c.id, a.id, b.id])
    assert rows(ctx, hanoi) == [
        ("Lê Văn Cường", "", False, 1),
        ("Nguyễn Văn An", "Phó Bí thư", True, 2),
        ("Trần Thị Bình", "Ủy viên Ban Thường vụ", True, 3),
    ]
    with ctx.db.session() as s:
        assert [e.full_name for e in svc.list_entries(s, hanoi, active=True)] == [
            "Nguyễn Văn An",
            "Trần Thị Bình",
        ]
    assert audit_actions(ctx) == [
        "roster.add",
        "roster.add",
        "roster.add",
        "roster.update",
        "roster.deactivate",
        "roster.reorder",
    ]
    # Another unit's roster is its own.
    assert rows(ctx, demo.unit_id("79")) == []
    with pytest.raises(NotFound):
        act(ctx, svc.update_entry, demo.unit_id("79"), a.id, position="X")


def test_bad_input_changes_nothing(demo: Demo) -> None:
    ctx = demo.ctx
    hanoi = demo.unit_id("01")
    a = act(ctx, svc.add_entry, hanoi, full_name="Nguyễn Văn An")
    b = act(ctx, svc.add_entry, hanoi, full_name="Trần Thị Bình")
    before = snapshot(ctx)
    cases = [
        (DomainError, svc.add_entry, (hanoi,), {"full_name": "   "}),
        (DomainError, svc.add_entry, (hanoi,), {"full_name": "A" * 201}),
        (DomainError, svc.update_entry, (hanoi, a.id), {"full_name": ""}),
        (DomainError, svc.update_entry, (hanoi, a.id), {"phone": "9" * 51}),
        (NotFound, svc.add_entry, (10**9,), {"full_name": "Ai đó"}),
        (NotFound, svc.update_entry, (hanoi, 10**9), {"position": "X"}),
        (Conflict, svc.reorder, (hanoi, [a.id]), {}),  # one missing
        (Conflict, svc.reorder, (hanoi, [a.id, a.id]), {}),  # a repeat
        (Conflict, svc.reorder, (hanoi, [b.id, a.id, 10**9]), {}),  # a stranger
    ]
    for error, action, args, kwargs in cases:
        with pytest.raises(error):
            act(ctx, action, *args, **kwargs)
    assert changed_tables(before, snapshot(ctx)) == []


def test_a_dissolved_unit_takes_no_new_delegates(demo: Demo) -> None:
    ctx = demo.ctx
    district = act(
        ctx, units.create_unit, code="01-RX", name="Huyện thử", kind="district", parent_id=demo.unit_id("01")
    )
    act(ctx, units.close_unit, district.id)
    with pytest.raises(Conflict):
        act(ctx, svc.add_entry, district.id, full_name="Nguyễn Văn An")


def test_who_may_edit(demo: Demo) -> None:
    ctx = demo.ctx
    hanoi = demo.unit_id("01")
    district = act(ctx, units.create_unit, code="01-RY", name="Huyện thử", kind="district", parent_id=hanoi)
    staff, operator, chair = (principal(ctx, u) for u in ("tochuc-01", "dc-01", "chutri"))
    admin = principal(ctx, "admin")
    hcm = demo.unit_id("79")
    with ctx.db.session() as s:
        unit_01 = units.get_unit(s, hanoi)
        unit_79 = units.get_unit(s, hcm)
        unit_d = units.get_unit(s, district.id)
        assert svc.may_edit(s, staff, unit_01) and svc.may_edit(s, staff, unit_d)
        assert not svc.may_edit(s, staff, unit_79)
        # The site operator (pinned to site 01) keeps the roster of site 01's unit only.
        assert svc.may_edit(s, operator, unit_01)
        assert not svc.may_edit(s, operator, unit_d) and not svc.may_edit(s, operator, unit_79)
        assert not svc.may_edit(s, chair, unit_01) and svc.may_read(chair, unit_01)
        assert svc.may_edit(s, admin, unit_79)
        assert svc.editable_unit_ids(s, operator) == [hanoi]
        assert svc.editable_unit_ids(s, staff) == []


# --- the check-in form ------------------------------------------------------------------------------


def _meeting_with(demo: Demo, site_codes: tuple[str, ...], days_ago: int) -> int:
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        start = datetime(2030, 3, 10, 8, 0) - timedelta(days=days_ago)
        spec = meeting_svc.MeetingSpec(
            title=f"Giao ban {days_ago}",
            kind="briefing",
            starts_at=start,
            ends_at=start + timedelta(hours=2),
            owner_unit_id=units.get_unit_by_code(s, "TW").id,  # type: ignore[union-attr]
            host_site_id=s.execute(select(Site.id).where(Site.code == "TW")).scalar_one(),
            invite=meeting_svc.InviteSpec(
                site_ids=list(s.execute(select(Site.id).where(Site.code.in_(site_codes))).scalars())
            ),
        )
        return meeting_svc.create_meeting(tx, spec).id


def _checkin(demo: Demo, meeting_id: int, site_id: int, at: float, names: list[str], seq: int = 1) -> None:
    with demo.ctx.db.session() as s:
        s.add(
            MeetingRecord(
                meeting_id=meeting_id,
                seq=seq,
                at=at,
                kind="checkin",
                site_id=site_id,
                user="dc-01",
                data={"delegates": len(names), "names": names},
            )
        )


def test_checkin_choices_tick_the_last_checkin(demo: Demo) -> None:
    ctx = demo.ctx
    hanoi, site = demo.unit_id("01"), site_of(demo, "01")
    a = act(ctx, svc.add_entry, hanoi, full_name="Nguyễn Văn An")
    b = act(ctx, svc.add_entry, hanoi, full_name="Trần Thị Bình")
    c = act(ctx, svc.add_entry, hanoi, full_name="Lê Văn Cường")
    act(ctx, svc.deactivate_entry, hanoi, c.id)
    with ctx.db.session() as s:
        fresh = checkin.checkin_choices(s, site)
        assert [e.id for e in fresh.entries] == [a.id, b.id] and fresh.ticked == []
    older, newer = _meeting_with(demo, ("01",), 14), _meeting_with(demo, ("01", "79"), 7)
    _checkin(demo, older, site, 1000.0, ["Trần Thị Bình"])
    _checkin(demo, newer, site, 2000.0, [NFD, "Lê Văn Cường", "Khách mời"])
    _checkin(demo, newer, site_of(demo, "79"), 3000.0, ["Trần Thị Bình"], seq=2)  # another site's
    with ctx.db.session() as s:
        choices = checkin.checkin_choices(s, site)
    # The latest check-in of this site, matched by name whatever its form; inactive ones not offered.
    assert choices.unit_id == hanoi and choices.ticked == [a.id]


def test_checkin_message_names_are_stored_nfc() -> None:
    msg = parse(json.dumps({"type": "checkin", "id": 1, "delegates": 2, "names": [f" {NFD}  ", " "]}))
    assert isinstance(msg, CheckIn) and msg.names == ["Nguyễn Văn An"]


def test_room_offers_only_the_sites_own_roster(client: TestClient, demo: Demo) -> None:
    ctx = demo.ctx
    hanoi = demo.unit_id("01")
    a = act(ctx, svc.add_entry, hanoi, full_name="Nguyễn Văn An", position="Phó Bí thư")
    act(ctx, svc.add_entry, hanoi, full_name="Trần Thị Bình")
    act(ctx, svc.add_entry, demo.unit_id("79"), full_name="Phạm Thị Sài Gòn")
    past = _meeting_with(demo, ("01",), 7)
    _checkin(demo, past, site_of(demo, "01"), 1000.0, ["Nguyễn Văn An"])
    mid = _meeting_with(demo, ("01", "79"), 0)
    sign_in(client, "dc-01")
    room = client.get(f"/meetings/{mid}/room", headers=HTML)
    assert room.status_code == 200, room.text
    boxes = re.findall(
        r'<input type="checkbox" name="roster" value="(\d+)" data-name="([^"]+)"( checked)?>', room.text
    )
    assert [(int(i), n, bool(c)) for i, n, c in boxes] == [
        (a.id, "Nguyễn Văn An", True),
        (a.id + 1, "Trần Thị Bình", False),
    ]
    assert "Phạm Thị Sài Gòn" not in room.text
    assert f'href="/units/{hanoi}/roster"' in room.text  # the operator keeps this roster
    assert "Đại biểu khác (mỗi dòng một người)" in room.text
    # The meeting list links the operator to their unit's roster.
    listing = client.get("/meetings", headers=HTML)
    assert f'href="/units/{hanoi}/roster"' in listing.text


# --- the API and the page ------------------------------------------------------------------------------


def test_api_scopes_and_validation(client: TestClient, demo: Demo) -> None:
    ctx = demo.ctx
    hanoi, hcm = demo.unit_id("01"), demo.unit_id("79")
    staff, operator, chair, other = (login(client, u) for u in ("tochuc-01", "dc-01", "chutri", "dc-79"))
    url = f"/api/v1/units/{hanoi}/roster"
    r = client.post(url, json={"full_name": NFD, "position": "Phó Bí thư"}, headers=staff)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["full_name"] == "Nguyễn Văn An" and first["active"] is True
    r = client.post(url, json={"full_name": "Trần Thị Bình", "phone": "0912 345 678"}, headers=operator)
    assert r.status_code == 201, r.text
    second = r.json()

    listing = client.get(url, headers=chair).json()
    assert [e["full_name"] for e in listing["items"]] == ["Nguyễn Văn An", "Trần Thị Bình"]
    assert listing["can_edit"] is False and listing["total"] == 2
    assert client.get(url, headers=staff).json()["can_edit"] is True
    assert client.get(url, params={"q": "tran thi"}, headers=staff).json()["total"] == 1

    r = client.patch(f"{url}/{second['id']}", json={"active": False}, headers=operator)
    assert r.status_code == 200 and r.json()["active"] is False
    assert [
        e["full_name"] for e in client.get(url, params={"active": True}, headers=staff).json()["items"]
    ] == ["Nguyễn Văn An"]
    r = client.put(f"{url}/order", json={"ids": [second["id"], first["id"]]}, headers=staff)
    assert r.status_code == 200 and [e["id"] for e in r.json()["items"]] == [second["id"], first["id"]]

    before = snapshot(ctx)
    refusals = [
        (chair, "POST", url, {"full_name": "Ai đó"}, 403),
        (other, "GET", url, None, 404),  # Hồ Chí Minh's operator cannot see Hà Nội
        (other, "POST", url, {"full_name": "Ai đó"}, 404),
        (staff, "GET", f"/api/v1/units/{hcm}/roster", None, 404),
        (staff, "PATCH", f"{url}/{first['id']}", {"full_name": "   "}, 422),
        (staff, "POST", url, {"full_name": "A" * 201}, 422),
        (staff, "POST", url, {"full_name": "An", "extra": 1}, 422),
        (staff, "PATCH", f"{url}/{first['id']}", {"active": "no"}, 422),
        (staff, "PUT", f"{url}/order", {"ids": [first["id"]]}, 409),
        (staff, "PATCH", f"/api/v1/units/{hcm}/roster/{first['id']}", {"position": "X"}, 404),
        (staff, "PATCH", f"{url}/999999", {"position": "X"}, 404),
    ]
    for headers, method, path, body, status in refusals:
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code == status, (method, path, body, r.status_code, r.text)
        assert status == 422 or set(r.json()) == {"error"}
    assert changed_tables(before, snapshot(ctx)) == []
    assert client.get(f"/api/v1/units/{hcm}/roster", headers=other).status_code == 200


def test_roster_page(client: TestClient, demo: Demo) -> None:
    hanoi = demo.unit_id("01")
    act(demo.ctx, svc.add_entry, hanoi, full_name="Nguyễn Văn An", position="Phó Bí thư")
    sign_in(client, "tochuc-01")
    page = client.get(f"/units/{hanoi}/roster", headers=HTML)
    assert page.status_code == 200
    assert "Danh sách đại biểu thường trực" in page.text and "Nguyễn Văn An" in page.text
    assert 'id="roster-add"' in page.text and "/static/js/roster.js" in page.text
    assert client.get(f"/units/{demo.unit_id('79')}/roster", headers=HTML).status_code == 404
    # Read-only for a chair: no form.
    client.cookies.clear()
    sign_in(client, "chutri")
    page = client.get(f"/units/{hanoi}/roster", headers=HTML)
    assert page.status_code == 200 and 'id="roster-add"' not in page.text
    assert unicodedata.is_normalized("NFC", page.text)
