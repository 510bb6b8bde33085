"""A site's tech check in Chromium against real Janus (lab namespace): fake camera and microphone,
the echo looped through our server to Janus's echotest and back, and the result "ready" with the
echo's round trip and bandwidth in the meeting's live state — still there after the app rebuilds the
room from the meeting's records. The control room's request reaches the site's room as a private
message. Screenshot at 1366×768 in test-artifacts/techcheck-site.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from giaoban.lab.serve import Served
from giaoban.live.hub import Hub
from giaoban.meetings.lifecycle import MeetingStatus
from tests.conftest import Demo
from tests.e2e.helpers import briefing_meeting
from tests.e2e.test_briefing import Tabs, shot

pytestmark = pytest.mark.browser


@pytest.mark.janus
def test_site_tech_check_against_real_janus(media_browser: Any, served: Served, demo: Demo) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    mid, sites = briefing_meeting(demo)
    hanoi = sites["01"]
    tabs = Tabs(media_browser, served.base)
    try:
        # The control room opens the check, then asks Hà Nội for a tech check.
        chair = tabs.open("dieuhanh", f"/meetings/{mid}")
        chair.get_by_role("button", name="Mở kiểm tra kỹ thuật").click()
        expect(chair.get_by_text("Đã mở kiểm tra kỹ thuật")).to_be_visible()

        room = tabs.open("dc-01", f"/meetings/{mid}/room")
        expect(room.locator("#conn")).to_have_text("Đã kết nối")
        chair.get_by_role("link", name="Tình trạng kỹ thuật các điểm cầu").click()
        row = chair.locator("tr", has_text="Hà Nội")
        expect(row).to_contain_text("Chưa kiểm tra")
        row.get_by_role("button", name="Đề nghị kiểm tra").click()
        expect(chair.get_by_text("Đã gửi đề nghị kiểm tra kỹ thuật.")).to_be_visible()
        expect(chair.locator("tr", has_text="Hà Nội")).to_contain_text("đã đề nghị")
        # …which the site's room shows as a private message from the control room.
        expect(room.get_by_text("đề nghị điểm cầu kiểm tra kỹ thuật")).to_be_visible()

        # The site runs its check from the room's link.
        with room.context.expect_page() as opened:
            room.get_by_role("link", name="Kiểm tra kỹ thuật").click()
        page = opened.value
        page.wait_for_load_state()
        expect(page.get_by_role("heading", name="Kiểm tra kỹ thuật")).to_be_visible()
        page.get_by_role("button", name="Bắt đầu kiểm tra").click()
        expect(page.locator("#tc-verdict")).to_contain_text("Sẵn sàng", timeout=45_000)
        expect(page.locator('[data-check="echo"]')).to_contain_text("trễ khứ hồi")
        expect(page.locator('[data-check="turn"]')).to_contain_text("không cấu hình TURN")
        expect(page.get_by_text("Đã gửi kết quả về phòng điều hành.")).to_be_visible()
        result = page.evaluate("() => window.giaobanTechcheck.result")
        assert result["status"] == "ready", result
        assert result["camera"] is True and result["mic_level"] > 0.02
        assert 0 <= result["echo_rtt_ms"] < 1000 and result["bandwidth_kbps"] >= 100
        shot(page, "techcheck-site")

        # The meeting's live state has it (the console and the wall read it from the site's JSON)…
        hub: Hub = served.app.state.hub
        live = hub.rooms[mid].live
        state = live.sites[hanoi].techcheck_json()
        assert state["status"] == "ready" and state["echo_rtt_ms"] == result["echo_rtt_ms"]
        assert state["bandwidth_kbps"] == result["bandwidth_kbps"] and state["requested_at"] is not None

        # …and so does the state rebuilt from the meeting's records, as the hub does after an app
        # restart (replayed here without touching the running app's room or log).
        rebuilt, records, _seq = Hub(served.app.state.ctx)._load(mid)
        for record in records:
            rebuilt.apply(record)
        assert "techcheck" in [r.kind for r in records] and "techcheck.request" in [r.kind for r in records]
        again = rebuilt.sites[hanoi].techcheck_json()
        assert again["status"] == "ready" and again["echo_rtt_ms"] == result["echo_rtt_ms"]
        assert again["bandwidth_kbps"] == result["bandwidth_kbps"]

        # The control room's board shows it.
        chair.reload()
        board = chair.locator("tr", has_text="Hà Nội")
        expect(board).to_contain_text("Sẵn sàng")
        expect(board).to_contain_text(f"{result['bandwidth_kbps']} kbit/s")
        shot(chair, "techcheck-board")
        assert not tabs.problems, tabs.problems
    finally:
        tabs.close()
    assert live.status in (MeetingStatus.open, MeetingStatus.live)
