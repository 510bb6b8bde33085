"""A unit's delegate roster in Chromium, and the site's check-in from it, against the real app with
its media plane (Janus in the lab namespace): no camera join is needed to check in.

- Hà Nội's org staff keep the roster on its page: add a delegate, move her up, correct a position,
  stop inviting someone (every change through the API, checked in the database);
- Hà Nội's site operator opens the room of a live briefing: the check-in form lists the active
  roster as checkboxes; they tick two, type one more name, the count follows (3) and is sent;
- the meeting's live state, the chair's console and the roll-call XLSX have the three names;
- reloading the room shows the check-in as it was sent.

Screenshots at 1366×768: test-artifacts/roster-page.png and roster-checkin.png.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from openpyxl import load_workbook

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.lab.serve import Served
from giaoban.org import roster as svc
from tests.conftest import Demo
from tests.e2e.helpers import ARTIFACTS, live_meeting
from tests.e2e.test_briefing import Tabs, shot

pytestmark = pytest.mark.browser

NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường"]


def shot_at(page: Any, selector: str, name: str) -> None:
    """A screenshot of the viewport scrolled to ``selector`` (``shot`` shows the top of the page)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("(s) => document.querySelector(s).scrollIntoView({block: 'start'})", selector)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), name
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _roster(demo: Demo, unit_id: int) -> list[tuple[str, str, bool]]:
    with demo.ctx.db.session() as s:
        return [(e.full_name, e.position, e.active) for e in svc.list_entries(s, unit_id)]


@pytest.mark.janus
def test_roster_page_and_checkin_from_the_roster(media_browser: Any, served: Served, demo: Demo) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    hanoi = demo.unit_id("01")
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        for name, position in zip(
            NAMES, ("Phó Bí thư Thường trực", "Trưởng ban Tổ chức", "Chánh Văn phòng"), strict=True
        ):
            svc.add_entry(tx, hanoi, full_name=name, position=position)
        gone = svc.add_entry(tx, hanoi, full_name="Phạm Văn Dũng", position="Nguyên Ủy viên")
        svc.deactivate_entry(tx, hanoi, gone.id)
    mid, sites = live_meeting(demo)
    tabs = Tabs(media_browser, served.base)
    try:
        # The org staff keep the roster on its page.
        # …reached from the unit's pane of the org tree.
        staff = tabs.open("tochuc-01", f"/org?unit={hanoi}")
        staff.get_by_role("link", name="Danh sách đại biểu thường trực").click()
        staff.wait_for_url(f"**/units/{hanoi}/roster")
        rows = staff.locator("#roster-rows tr")
        expect(rows).to_have_count(4)
        staff.get_by_label("Họ và tên").fill("Hoàng Thị Em")
        staff.get_by_label("Chức vụ").fill("Ủy viên Ban Thường vụ")
        staff.get_by_role("button", name="Thêm vào danh sách").click()
        expect(staff.locator("#roster-status")).to_have_text("Đã thêm Hoàng Thị Em.")
        expect(rows).to_have_count(5)
        staff.get_by_role("button", name="Đưa Hoàng Thị Em lên trên").click()
        expect(rows.nth(3)).to_contain_text("Hoàng Thị Em")
        staff.get_by_role("button", name="Sửa thông tin Trần Thị Bình").click()
        staff.locator("tr.roster-editing").get_by_label("Chức vụ").fill("Trưởng Ban Tổ chức Thành ủy")
        staff.get_by_role("button", name="Lưu").click()
        expect(staff.locator("#roster-status")).to_have_text("Đã lưu thông tin Trần Thị Bình.")
        staff.locator("tr", has_text="Lê Văn Cường").get_by_role("button", name="Ngừng mời").click()
        expect(staff.locator("#roster-status")).to_have_text("Lê Văn Cường không còn được mời dự.")
        shot(staff, "roster-page")
        assert _roster(demo, hanoi) == [
            ("Nguyễn Văn An", "Phó Bí thư Thường trực", True),
            ("Trần Thị Bình", "Trưởng Ban Tổ chức Thành ủy", True),
            ("Lê Văn Cường", "Chánh Văn phòng", False),
            ("Hoàng Thị Em", "Ủy viên Ban Thường vụ", True),
            ("Phạm Văn Dũng", "Nguyên Ủy viên", False),
        ]

        # The chair watches the roll call.
        chair = tabs.open("chutri", f"/meetings/{mid}/console")
        expect(chair.locator("#conn")).to_have_text("Đã kết nối")

        # Hà Nội's site checks in from the roster: two ticked, one typed.
        room = tabs.open("dc-01", f"/meetings/{mid}/room")
        expect(room.locator("#conn")).to_have_text("Đã kết nối")
        boxes = room.locator('#roster-checks input[type="checkbox"]')
        labels = room.locator("#roster-checks label")
        expect(labels).to_have_count(3)
        expect(labels.nth(0)).to_contain_text("Nguyễn Văn An")
        expect(labels.nth(1)).to_contain_text("Trần Thị Bình")
        expect(labels.nth(2)).to_contain_text("Hoàng Thị Em")
        expect(room.locator("#checkin")).not_to_contain_text("Phạm Văn Dũng")
        for box in boxes.all():
            expect(box).not_to_be_checked()
        room.get_by_label("Nguyễn Văn An").check()
        room.get_by_label("Trần Thị Bình").check()
        expect(room.get_by_label("Số đại biểu có mặt")).to_have_value("2")
        room.get_by_label("Đại biểu khác (mỗi dòng một người)").fill("Võ Văn Phúc")
        expect(room.get_by_label("Số đại biểu có mặt")).to_have_value("3")
        shot_at(room, "#checkin-title", "roster-checkin")
        room.get_by_role("button", name="Gửi điểm danh").click()
        expect(room.locator("#checkin-state")).to_contain_text("3 đại biểu")

        expected = ["Nguyễn Văn An", "Trần Thị Bình", "Võ Văn Phúc"]
        site = served.app.state.hub.rooms[mid].live.sites[sites["01"]]
        assert site.delegates == 3 and site.names == expected
        expect(chair.locator("#delegates-total")).to_have_text("Đại biểu đã điểm danh: 3 (1 điểm cầu báo)")
        seen = chair.evaluate(
            "(id) => window.giaobanConsole.socket.state.site(id).checkin.names", sites["01"]
        )
        assert seen == expected

        # The roll-call spreadsheet names them as sent.
        xlsx = chair.request.get(f"/meetings/{mid}/attendance.xlsx")
        assert xlsx.ok
        sheet = load_workbook(io.BytesIO(xlsx.body())).active
        assert sheet is not None
        table = [list(r) for r in sheet.iter_rows(values_only=True)]
        at = next(i for i, r in enumerate(table) if r[:3] == ["STT", "Mã điểm cầu", "Điểm cầu"])
        header, lines = table[at], table[at + 1 :]  # after the title lines
        hanoi_row = next(r for r in lines if "Hà Nội" in str(r[header.index("Điểm cầu")]))
        assert hanoi_row[header.index("Số đại biểu")] == 3
        assert hanoi_row[header.index("Đại biểu")] == ", ".join(expected)

        # Back in the room after a reload, the form shows what was sent.
        room.reload()
        expect(room.locator("#conn")).to_have_text("Đã kết nối")
        expect(room.get_by_label("Nguyễn Văn An")).to_be_checked()
        expect(room.get_by_label("Trần Thị Bình")).to_be_checked()
        expect(room.get_by_label("Hoàng Thị Em")).not_to_be_checked()
        expect(room.get_by_label("Đại biểu khác (mỗi dòng một người)")).to_have_value("Võ Văn Phúc")
        expect(room.get_by_label("Số đại biểu có mặt")).to_have_value("3")
        assert not tabs.problems, tabs.problems
    finally:
        tabs.close()
