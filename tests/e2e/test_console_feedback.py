"""The chair's console, a site's room and the control room in Chromium at 1366×768, without media:
all 71 sites invited, some on time, some late, one left. Roll-call counts partition the invited
sites, the queue shows waiting times and a "Từ chối" that the site hears about, sites see the queue,
the chat names the chair and counts unread lines, control-room tiles are updated in place.

Screenshots go to test-artifacts/feedback-*.png.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.lab.client import LiveClient
from giaoban.live.state import LATE_AFTER_SECONDS
from giaoban.meetings import scheduling as svc
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.org.models import Site, Unit, User
from tests.conftest import DEMO_PASSWORD, Demo
from tests.e2e.test_briefing import Tabs, shot

pytestmark = pytest.mark.browser
ON_TIME_FOR = 25  # seconds left, after the meeting is made, in which joining still counts as on time


def all_sites_meeting(demo: Demo) -> tuple[int, dict[str, int], float]:
    """Every site invited, starting so that joining is on time for ``ON_TIME_FOR`` more seconds."""
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        codes = {code: sid for sid, code in s.execute(select(Site.id, Site.code)).all()}
        root = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        chair = s.execute(select(User.id).where(User.username == "chutri")).scalar_one()
        starts = datetime.now(svc.LOCAL_TZ).replace(microsecond=0, tzinfo=None) - timedelta(
            seconds=LATE_AFTER_SECONDS - ON_TIME_FOR
        )
        m = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Giao ban trực tuyến toàn quốc",
                kind="briefing",
                starts_at=starts,
                ends_at=starts + timedelta(hours=2),
                owner_unit_id=root,
                host_site_id=codes["TW"],
                chair_user_id=chair,
                invite=svc.InviteSpec(under_unit_ids=[root]),
            ),
        )
        svc.transition(tx, m.id, MeetingStatus.open)
        return m.id, codes, time.monotonic() + ON_TIME_FOR


class Bots:
    """Site tabs on an event loop of their own, beside the sync browser."""

    def __init__(self, base: str, meeting_id: int) -> None:
        self.base, self.meeting_id = base, meeting_id
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tabs: dict[int, LiveClient] = {}

    def run(self, coro: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def join(self, sites: dict[str, int]) -> None:
        async def all_of() -> None:
            for code, sid in sites.items():
                self.tabs[sid] = await LiveClient.open(
                    self.base,
                    f"dc-{code.lower()}",
                    self.meeting_id,
                    password=DEMO_PASSWORD,
                    **{"as": "site", "site_id": sid},
                )

        self.run(all_of(), timeout=120)

    def call(self, site_id: int, type: str, **payload: Any) -> Any:
        return self.run(self.tabs[site_id].ok(type, **payload))

    def leave(self, site_id: int) -> None:
        self.run(self.tabs.pop(site_id).close())

    def close(self) -> None:
        async def stop() -> None:
            for tab in self.tabs.values():
                await tab.close()

        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


def status(base: str, meeting_id: int, to: str) -> None:
    import httpx

    with httpx.Client(base_url=base, trust_env=False) as http:
        token = http.post("/api/v1/auth/login", json={"username": "chutri", "password": DEMO_PASSWORD}).json()
        r = http.post(
            f"/api/v1/meetings/{meeting_id}/status",
            json={"status": to},
            headers={"Authorization": f"Bearer {token['token']}"},
        )
        assert r.status_code == 200, r.text


ROLL = """() => ["n-present", "n-late", "n-absent", "n-left"].map((id) => Number(document.getElementById(id).textContent))"""


def test_console_room_and_control_room_give_clear_feedback(
    browser: Any, live_server: str, demo: Demo
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    mid, codes, on_time_until = all_sites_meeting(demo)
    invited = len(codes)
    assert invited >= 70
    bots = Bots(live_server, mid)
    tabs = Tabs(browser, live_server)
    try:
        on_time = {c: codes[c] for c in ("01", "46", "92")}
        bots.join(on_time)
        assert time.monotonic() < on_time_until, "the machine is too slow for the on-time joins"

        # Before the start, the control room counts sites not joined yet apart ("Chưa vào"), not as problems.
        control = tabs.open("chutri", f"/meetings/{mid}/control")
        expect(control.locator("#n-waiting")).to_have_text(str(invited - 3))
        expect(control.locator("#n-red")).to_have_text("0")
        expect(control.locator(f'.q-tile[data-site="{codes["79"]}"]')).to_contain_text("Chưa vào")
        expect(control.locator("#legend")).to_contain_text("kbit/s")
        # Tiles are updated in place: the same element across polls (a click in between lands).
        control.evaluate(
            f"() => {{ window.__tile = document.querySelector('.q-tile[data-site=\"{codes['46']}\"]'); }}"
        )
        control.wait_for_timeout(4500)  # two polls
        assert control.evaluate(
            f"() => window.__tile.isConnected && window.__tile === document.querySelector('.q-tile[data-site=\"{codes['46']}\"]')"
        ), "the control room rebuilt its tiles"
        shot(control, "feedback-control-open")

        status(live_server, mid, "live")
        time.sleep(max(0.0, on_time_until - time.monotonic()) + 1)
        late = {c: codes[c] for c in ("79", "48", "31")}
        bots.join(late)
        bots.leave(codes["92"])  # came on time, then left

        chair = tabs.open("chutri", f"/meetings/{mid}/console")
        expect(chair.locator("#n-late")).to_have_text("3")
        counts = chair.evaluate(ROLL)
        assert counts == [2, 3, invited - 6, 1], counts
        assert sum(counts) == invited  # each invited site counted once
        expect(chair.locator("#roll-total")).to_contain_text(f"Tổng {invited} điểm cầu được mời")
        # The console shows the server's partition (roll_call), the one the attendance sheet totals.
        sent = chair.evaluate("() => window.giaobanConsole.socket.state.rollCall")
        assert [sent[k] for k in ("present", "late", "absent", "left")] == counts
        assert sent["invited"] == invited

        # The queue: waiting time per site, "Từ chối", and the site is told.
        bots.call(codes["46"], "floor.request", kind="normal")
        bots.call(codes["79"], "floor.request", kind="normal")
        room = tabs.open("dc-46", f"/meetings/{mid}/room")
        expect(room.locator("#floor-state")).to_have_text("Đã đăng ký phát biểu — thứ tự 1")
        expect(room.locator("#queue-ahead")).to_have_text("Điểm cầu của bạn là điểm cầu tiếp theo.")
        expect(room.locator("#site-queue li")).to_have_count(2)
        queue = chair.locator("#queue")
        expect(queue.locator(".waited").first).to_contain_text("chờ")
        first = queue.locator(".waited").first.inner_text()
        chair.wait_for_timeout(1600)
        assert queue.locator(".waited").first.inner_text() != first, "the waiting time is not updated"

        # The chat: the chair by full name, unread lines counted while scrolled away.
        for i in range(12):
            bots.call(codes["79"], "chat.send", text=f"Điểm cầu báo cáo tình hình số {i + 1}", to="all")
        chair.get_by_label("Nội dung tin nhắn").fill("Đề nghị các điểm cầu giữ trật tự")
        chair.get_by_role("button", name="Gửi", exact=True).click()
        expect(room.locator("#chat")).to_contain_text("Phòng điều hành · Đồng chí Chủ trì")
        expect(chair.locator("#chat")).to_contain_text("Đồng chí Chủ trì")
        expect(chair.locator("#chat")).not_to_contain_text("(chutri)")
        bottom = chair.evaluate(
            "() => document.getElementById('chat-form').getBoundingClientRect().bottom + window.scrollY"
        )
        assert bottom <= 768, f"the chat is below the fold of a 1366×768 screen: {bottom}"
        # The host is missing: its notice heads the middle column, and the console stays one screenful
        # (the columns scroll on their own, the page does not).
        expect(chair.locator(".console-center #host-state")).to_be_visible()
        height = chair.evaluate("() => document.documentElement.scrollHeight")
        assert height <= 768, f"the console is taller than a 1366×768 screen: {height}"
        chair.evaluate("() => { document.getElementById('chat').scrollTop = 0; }")
        chair.wait_for_timeout(300)
        bots.call(codes["79"], "chat.send", text="Tin nhắn mới khi đang cuộn lên", to="all")
        expect(chair.locator("#chat-unread")).to_have_text("1 tin mới")
        shot(chair, "feedback-console")
        chair.locator("#chat-unread").click()
        expect(chair.locator("#chat-unread")).to_be_hidden()

        # The chair declines Huế: the room says so and Huế may ask again.
        queue.locator(f'[data-site="{codes["46"]}"]').get_by_role("button", name="Từ chối").click()
        expect(room.locator("#floor-state")).to_contain_text("Chủ trì chưa mời điểm cầu phát biểu lần này")
        expect(room.locator("#site-queue li")).to_have_count(1)
        expect(queue.locator("li")).to_have_count(1)
        # Huế's room is not joined: the request button looks disabled and says why.
        request = room.get_by_role("button", name="Xin phát biểu")
        expect(request).to_be_disabled()
        expect(room.locator("#request-why")).to_contain_text("Vào phòng họp")
        assert (
            room.evaluate("() => getComputedStyle(document.getElementById('request')).cursor")
            == "not-allowed"
        )
        shot(room, "feedback-room")
        control.reload()
        expect(control.locator("#n-red")).not_to_have_text("0")  # live now: absent sites are problems
        expect(control.locator("#count-waiting")).to_be_hidden()
        shot(control, "feedback-control-live")
        assert not tabs.problems, tabs.problems
    finally:
        tabs.close()
        bots.close()
