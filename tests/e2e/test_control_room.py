"""The control room in Chromium, with all 71 sites of the network invited to a live meeting on a real
Janus: a Chromium site (Hà Nội, fake camera) and aiortc bots publish, most other sites are connected
without media, two drop out, the rest never come. The wall must show the Chromium site's live
figures, the alerts with their "Đã biết" button, the list view and a site's history chart.

Screenshots at 1366×768 go to test-artifacts/control-*.png.
"""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import Future
from typing import Any

import pytest
from sqlalchemy import select

from giaoban.lab.serve import Served
from giaoban.org.models import Site
from tests.conftest import DEMO_PASSWORD, Demo
from tests.e2e.helpers import ARTIFACTS, join_room
from tests.e2e.test_briefing import Tabs, shot, wait_for
from tests.live.test_media_janus import Tab, open_meeting, publish

pytestmark = [pytest.mark.browser, pytest.mark.janus]
pytest.importorskip("aiortc")


class Bots:
    """Site tabs (and aiortc publishers) on an event loop of their own, beside the sync browser."""

    def __init__(self, base: str, meeting_id: int) -> None:
        self.base = base
        self.meeting_id = meeting_id
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tabs: dict[int, Tab] = {}
        self.pcs: list[Any] = []

    def run(self, coro: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    async def _join(self, code: str, site_id: int, media: bool) -> None:
        tab = await Tab.open(
            self.base,
            f"dc-{code.lower()}",
            self.meeting_id,
            password=DEMO_PASSWORD,
            **{"as": "site", "site_id": site_id},
        )
        self.tabs[site_id] = tab
        if media:
            self.pcs.append(await publish(tab))

    def join(self, sites: dict[str, int], media: bool = False) -> None:
        async def all_of() -> None:
            for code, site_id in sites.items():  # one by one: logins are cheap, Janus joins queue anyway
                await self._join(code, site_id, media)

        self.run(all_of(), timeout=120)

    def leave(self, site_id: int) -> None:
        self.run(self.tabs.pop(site_id).close())

    def close(self) -> None:
        async def stop() -> None:
            for pc in self.pcs:
                await pc.close()
            for tab in self.tabs.values():
                await tab.close()

        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


def site_codes(demo: Demo) -> dict[str, int]:
    with demo.ctx.db.session() as s:
        return {code: sid for sid, code in s.execute(select(Site.id, Site.code).order_by(Site.code)).all()}


def test_control_room_shows_live_figures_for_a_chromium_site(
    media_browser: Any, served: Served, demo: Demo
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    mid, sites = open_meeting(demo)  # every site of the network (71), open
    codes = site_codes(demo)
    assert len(codes) >= 70
    hanoi = sites["01"]
    publishers = {c: codes[c] for c in ("TW", "46", "92")}
    quiet = {c: i for c, i in codes.items() if c not in ("TW", "01", "46", "92")}
    quiet_codes = sorted(quiet)
    connected = {c: quiet[c] for c in quiet_codes[:52]}  # connected, no media yet (amber)
    leaving = [quiet[c] for c in quiet_codes[52:54]]  # connect, then drop (red + alert)
    bots = Bots(served.base, mid)
    tabs = Tabs(media_browser, served.base)
    try:
        bots.join(publishers, media=True)
        bots.join(connected)
        bots.join({c: quiet[c] for c in quiet_codes[52:54]})
        for site_id in leaving:
            bots.leave(site_id)

        # The Chromium site joins its room with camera and microphone.
        room = tabs.open("dc-01", f"/meetings/{mid}/room")
        join_room(room)

        control = tabs.open("chutri", f"/meetings/{mid}/control")
        expect(control.locator("#conn")).to_contain_text("Cập nhật")

        def hanoi_figures() -> Any:
            data = control.evaluate(
                f"() => window.giaobanControl.data && window.giaobanControl.data.sites.find((s) => s.site_id === {hanoi})"
            )
            return data if data and data["in_kbps"] and data["video_kbps"] and data["packets_in"] else None

        figures = wait_for(hanoi_figures, "live figures for the Chromium site", timeout=40)
        print(
            "control room, Chromium site:",
            {
                k: figures[k]
                for k in (
                    "level",
                    "reasons",
                    "in_kbps",
                    "video_kbps",
                    "audio_kbps",
                    "rtt_ms",
                    "loss_pct",
                    "jitter_ms",
                    "layers",
                    "layers_total",
                )
            },
        )
        assert figures["connected"] and figures["publishing"] and figures["video"]
        tile = control.locator(f'.q-tile[data-site="{hanoi}"]')
        expect(tile).to_contain_text("Hà Nội")  # the short name; the full one is in the tooltip
        expect(tile).to_have_attribute("title", re.compile("^Điểm cầu Thành ủy Hà Nội"))
        expect(tile).to_contain_text("↑")
        tile_text = tile.inner_text()
        up = int(tile_text.split("↑", 1)[1].split()[0])
        assert up > 0, tile_text
        # Alerts: the two sites that dropped, with sound once enabled, acknowledged from the bar.
        control.get_by_role("button", name="Bấm để bật âm thanh cảnh báo").click()
        alerts = control.locator("#alerts .q-alert")
        expect(alerts).to_have_count(2, timeout=30_000)
        expect(alerts.first).to_contain_text("Mất kết nối")
        expect(control.locator("#n-connected")).to_have_text(f"{4 + len(connected)}/{len(codes)}")
        control.wait_for_timeout(2500)  # one more sample, so every tile shows the latest figures
        shot(control, "control-grid")
        alerts.first.get_by_role("button", name="Đã biết").click()
        expect(alerts).to_have_count(1)

        # The list view, problems first.
        control.get_by_role("button", name="Danh sách").click()
        rows = control.locator("#list-body tr")
        expect(rows).to_have_count(len(codes))
        expect(rows.first).to_have_class("q-red")
        shot(control, "control-list")
        row = control.locator(f'#list-body tr[data-site="{hanoi}"]')
        expect(row).to_contain_text("Điểm cầu Thành ủy Hà Nội")

        # A site's history: inline SVG charts.
        row.click()
        dialog = control.locator("#history")
        expect(dialog).to_be_visible()
        expect(dialog.locator("h2")).to_contain_text("Hà Nội")
        expect(dialog.locator("svg.q-chart")).to_have_count(4)
        wait_for(lambda: dialog.locator("svg.q-chart polyline").count() > 0, "a line in the chart")
        ARTIFACTS.mkdir(exist_ok=True)
        control.screenshot(path=str(ARTIFACTS / "control-history.png"))
        dialog.get_by_role("button", name="Đóng").click()
        assert not tabs.problems, tabs.problems
    finally:
        tabs.close()
        bots.close()
