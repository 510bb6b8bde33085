"""Resilience fault tests (issue 5): a site's link cut for 20 s, Janus killed mid-briefing, the app
killed and restarted. Real Janus (lab namespace), real Chromium pages, real app.

1. **Link cut** — a site (dc-01, its Chromium in its own namespace behind impairable links: see
   ``site_factory`` in tests/lab/fixtures.py) has joined, is in the speaker queue and has checked in.
   Its media link alone is cut until the page restarts ICE (``media.restart``); it keeps its
   PeerConnections. Then both its links (to the app and to Janus) are cut silently for 20 s, then restored. Without anyone
   clicking, it is connected again, publishing, receiving the host's picture; its queue place, its
   check-in and its attendance (present, timeline kept) are intact; its page showed the steps.
2. **Janus SIGKILL** — the host and two sites in the room, Huế holding the floor. Janus is killed; the
   supervisor restarts it, the stage recreates the room (same id), every tab gets ``media.reset`` and
   republishes/resubscribes by itself. Within 10 s of the kill media flows again at every site (the
   host's video, and Huế's audio where it belongs); Huế still holds the floor; no other site became
   audible — Hà Nội puts its own microphone back on its sender, and nobody receives a byte of it.
3. **App SIGKILL** — ``giaoban serve`` as its own process (SQLite file); the console and two site
   pages with a queue, a check-in and chat. The process is killed and started again on the same port:
   every page is connected again within 5 s of the app answering, and the queue, attendance and chat
   are what they were (timelines gain "left" + "rejoined").
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from giaoban.context import AppContext
from giaoban.lab.client import LiveClient
from giaoban.lab.serve import serve_with_media
from tests.conftest import DEMO_PASSWORD, Demo
from tests.e2e.helpers import ARTIFACTS, launch_chromium, launch_in_site
from tests.e2e.helpers import join_room as _join
from tests.e2e.helpers import live_meeting as _live_meeting
from tests.e2e.test_briefing import Tabs, growth, slots_of, speaker_audio_mid, wait_for
from tests.lab.fixtures import JanusNamespace, SiteNamespace

pytestmark = [pytest.mark.browser]

CONNECTED = "Đã kết nối"
ROOM_STATE = "() => { const r = window.giaobanRoom || window.giaobanConsole; return r.socket.state; }"

# Records every text the status lines (#conn, #media-state) show, so the test can see the steps.
WATCH_STEPS = """() => {
  const watching = Array.isArray(window.__steps);
  window.__steps = [];
  if (watching) return;
  for (const id of ["conn", "media-state"]) {
    const el = document.getElementById(id);
    if (!el) continue;
    new MutationObserver(() => { if (el.textContent) window.__steps.push(id + ": " + el.textContent); })
      .observe(el, {childList: true, characterData: true, subtree: true});
  }
}"""


# db_url (SQLite only), playwright (30 s expect timeout): fixtures of tests/e2e/conftest.py.


def _host_video_flows(page: Any) -> bool:
    slots = slots_of(page)
    return bool(slots) and growth(page, 0.5).get(f"video:{slots['host']['video']}", 0) > 0


def _grant(base: str, meeting_id: int, site_id: int) -> None:
    """The chair gives the floor from a script console (LiveClient: the protocol the console speaks)."""

    async def go() -> None:
        chair = await LiveClient.open(base, "chutri", meeting_id, password=DEMO_PASSWORD, **{"as": "console"})
        try:
            await chair.ok("floor.grant", site_id=site_id)
        finally:
            await chair.close()

    # (Playwright's sync API runs an event loop in this thread: use another one.)
    done: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(go())
            done.append(None)
        except BaseException as exc:  # reported in the test's thread
            done.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert done and done[0] is None, done


# ---- 1. a site's link cut for 20 s -----------------------------------------------------------------


@pytest.mark.janus
def test_site_link_cut_for_20s_rejoins_by_itself(
    ctx: AppContext, demo: Demo, janus_ns: JanusNamespace, site_factory: Any, tmp_path: Path, playwright: Any
) -> None:
    from playwright.sync_api import expect

    site: SiteNamespace = site_factory("cut", janus=janus_ns)
    mid, sites = _live_meeting(demo)
    hanoi = sites["01"]
    room = f"/meetings/{mid}/room"
    with serve_with_media(ctx, janus_ns, tmp_path / "janus", site_hosts=(site.app_address,)) as served:
        site_base = served.site_bases[site.app_address]
        direct = launch_chromium(playwright)
        behind = launch_in_site(playwright, site, site_base, tmp_path)
        host_tabs, site_tabs = Tabs(direct, served.base), Tabs(behind, site_base)
        try:
            host = host_tabs.open("dc-tw", room)
            _join(host)
            page = site_tabs.open("dc-01", room)
            _join(page)
            wait_for(lambda: _host_video_flows(page), "the host's video at Hà Nội", 30)
            # In the queue (the button needs the site publishing), and checked in.
            page.get_by_role("button", name="Xin phát biểu").click()
            expect(page.locator("#floor-state")).to_have_text("Đã đăng ký phát biểu — thứ tự 1")
            page.get_by_label("Số đại biểu có mặt").fill("9")
            page.get_by_role("button", name="Gửi điểm danh").click()
            expect(page.locator("#checkin-state")).to_contain_text("9 đại biểu")
            live = served.app.state.hub.rooms[mid].live
            timeline_before = [m.kind for m in live.sites[hanoi].timeline]

            # First only the media link: the signalling stays up, so the page restarts
            # ICE on its PeerConnections (media.restart) and keeps them.
            page.evaluate(WATCH_STEPS)
            page.evaluate("() => { window.__pcs = [window.giaobanRoom.pub, window.giaobanRoom.view.pc]; }")
            assert site.janus_link is not None
            site.outage([site.janus_link])
            # Restored once the page has started its ICE restart: the restart then succeeds on the
            # same PeerConnections. (Left cut longer, the page rightly falls back to replacing them
            # 6 s after a restart that got nowhere — the 20 s cut below covers that path.)
            wait_for(
                lambda: page.evaluate("() => window.giaobanRoom.mediaStep") == "restarting",
                "the page restarting ICE on the cut media link",
                30,
            )
            site.end_outage([site.janus_link])
            wait_for(
                lambda: page.evaluate("() => window.giaobanRoom.mediaStep") == "recovered",
                "ICE restarted",
                20,
            )
            wait_for(lambda: _host_video_flows(page), "the host's video after the ICE restart", 20)
            same_pcs = page.evaluate(
                "() => window.__pcs[0] === window.giaobanRoom.pub && window.__pcs[1] === window.giaobanRoom.view.pc"
            )
            ice_steps = page.evaluate("() => window.__steps")

            # Then both links, for 20 s.
            page.evaluate(WATCH_STEPS)

            site.outage()
            time.sleep(20)
            cut_view = page.evaluate("() => window.giaobanRoom.view && window.giaobanRoom.view.pc ? 1 : 0")
            site.end_outage()
            restored = time.monotonic()

            # Back by itself: connected, publishing, receiving the host again.
            expect(page.locator("#conn")).to_have_text(CONNECTED)
            wait_for(lambda: live.sites[hanoi].publishing, "Hà Nội publishing again", 30)
            wait_for(lambda: _host_video_flows(page), "the host's video at Hà Nội again", 30)
            back_s = time.monotonic() - restored
            expect(page.locator("#floor-state")).to_have_text("Đã đăng ký phát biểu — thứ tự 1")
            steps = page.evaluate("() => window.__steps")
            # (read before the browsers close: closing them disconnects the site)
            queue = [(r.site_id, r.dropped_at) for r in live.floor.queue]
            site_now = copy.deepcopy(live.sites[hanoi])
            ARTIFACTS.mkdir(exist_ok=True)
            page.evaluate("() => window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "faults-cut-site.png"))
            problems = [p for p in host_tabs.problems + site_tabs.problems if "WebSocket" not in p]
        finally:
            host_tabs.close()
            site_tabs.close()
            behind.close()
            direct.close()

    print(f"link cut 20 s: back {back_s:.1f} s after the restore; steps {steps}; view during cut {cut_view}")
    print(f"media link cut: steps {ice_steps}")
    assert same_pcs, "the ICE restart kept the PeerConnections"
    assert not any("Đang kết nối lại" in step for step in ice_steps), ice_steps
    assert queue == [(hanoi, None)], queue
    assert site_now.connected and site_now.attendance() == "present", site_now
    kinds = [m.kind for m in site_now.timeline]
    assert kinds[: len(timeline_before)] == timeline_before, kinds  # nothing rewritten
    assert kinds[-1] in ("joined", "late", "rejoined"), kinds  # ends connected
    assert site_now.delegates == 9
    # The technician saw it: the connection lost, then back.
    assert any(s.startswith("conn: Mất kết nối") for s in steps), steps
    assert steps[-1] == f"conn: {CONNECTED}" or any(s == f"conn: {CONNECTED}" for s in steps), steps
    assert not problems, problems


# ---- 2. Janus killed with the floor granted ------------------------------------------------------------

# Hà Nội puts its own microphone back on its sender (as a modified page could) and reports what it sent.
MIC_BACK = """async () => {
  const room = window.giaobanRoom;
  const sender = room.pub.getTransceivers().find((t) => t.receiver.track.kind === "audio").sender;
  await sender.replaceTrack(room.local.getAudioTracks()[0]);
  sender.track.enabled = true;
  const bytes = async () => { let n = 0; (await window.giaobanRoom.pub.getStats()).forEach(
    (r) => { if (r.type === "outbound-rtp" && r.kind === "audio") n += r.bytesSent; }); return n; };
  const before = await bytes();
  await new Promise((done) => setTimeout(done, 1500));
  return (await bytes()) - before;
}"""


@pytest.mark.janus
def test_janus_killed_mid_briefing_every_site_rejoins_with_the_same_floor(
    ctx: AppContext, demo: Demo, janus_ns: JanusNamespace, tmp_path: Path, playwright: Any
) -> None:
    mid, sites = _live_meeting(demo)
    hue, hanoi = sites["46"], sites["01"]
    room = f"/meetings/{mid}/room"
    with serve_with_media(ctx, janus_ns, tmp_path / "janus") as served:
        browser = launch_chromium(playwright)
        tabs = Tabs(browser, served.base)
        try:
            pages = {
                code: tabs.open(user, room)
                for code, user in (("TW", "dc-tw"), ("01", "dc-01"), ("46", "dc-46"))
            }
            for page in pages.values():
                _join(page)
            for code, page in pages.items():
                wait_for(lambda p=page: _host_video_flows(p), f"the host's video at {code}", 30)
            wait_for(lambda: served.app.state.hub.rooms[mid].live.sites[hue].publishing, "Huế publishing")
            _grant(served.base, mid, hue)
            listeners = {"TW": pages["TW"], "01": pages["01"]}

            def hue_heard(page: Any) -> bool:
                audio = speaker_audio_mid(page, hue)
                return audio is not None and growth(page, 0.5).get(f"audio:{audio}", 0) > 300

            for code, page in listeners.items():
                wait_for(lambda p=page: hue_heard(p), f"Huë's audio at {code}", 30)
            stage = served.app.state.hub.rooms[mid].stage
            janus_room = stage.room
            for page in pages.values():
                page.evaluate(WATCH_STEPS)

            supervisor = served.app.state.media.supervisor
            assert supervisor is not None and supervisor.pid is not None
            old_pid = supervisor.pid
            killed = time.monotonic()
            os.kill(old_pid, signal.SIGKILL)

            # Every site gets media again: the host's picture everywhere, Huế's voice at the others.
            back: dict[str, float] = {}
            deadline = killed + 30
            while len(back) < len(pages) and time.monotonic() < deadline:
                for code, page in pages.items():
                    if code in back:
                        continue
                    ok = (
                        _host_video_flows(page)
                        if code == "46"
                        else hue_heard(page) and _host_video_flows(page)
                    )
                    if ok and page.evaluate("() => window.__steps.some((s) => s.startsWith('media-state'))"):
                        back[code] = time.monotonic() - killed
            steps = {code: page.evaluate("() => window.__steps") for code, page in pages.items()}

            hub_room = served.app.state.hub.rooms[mid]
            holders = hub_room.live.floor.holder_ids()
            audible = hub_room.live.floor.audible()
            muted = {s: pub.muted for s, pub in hub_room.stage.publishers.items()}
            same_room = hub_room.stage.room == janus_room
            # No other site became audible: Hà Nội sends its microphone, nobody receives it.
            sent = pages["01"].evaluate(MIC_BACK)
            leaks: dict[str, dict[str, int]] = {}
            for code, page in pages.items():
                slots = slots_of(page)
                assert slots is not None
                allowed = {slots["host"]["audio"]} | {
                    s["audio"] for s in slots["speakers"] if s["site_id"] == hue
                }
                moved = growth(page, 1.0)
                leaks[code] = {
                    k: v for k, v in moved.items() if k.startswith("audio:") and k[6:] not in allowed and v
                }
                assert all(s["site_id"] in (None, hue) for s in slots["speakers"]), (code, slots)
            ARTIFACTS.mkdir(exist_ok=True)
            pages["01"].screenshot(path=str(ARTIFACTS / "faults-janus-site.png"))
            problems = list(tabs.problems)
        finally:
            tabs.close()
            browser.close()
        restarts = supervisor.restarts
    print(f"janus SIGKILL: media back after {back} s; steps {steps}")
    assert restarts >= 1 and supervisor.pid != old_pid
    assert same_room, "the meeting's Janus room keeps its id"
    assert set(back) == set(pages), f"media did not come back everywhere: {back}"
    assert all(t <= 10.0 for t in back.values()), back
    assert holders == [hue], holders
    assert audible == frozenset({hue, sites["TW"]}), audible
    assert muted[hanoi] is True and muted[hue] is False, muted
    assert sent > 1000, "Hà Nội's page really sent audio"
    assert not any(leaks.values()), leaks
    assert not problems, problems


# ---- 3. the app killed and restarted -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """``giaoban serve --no-media`` on a fixed port and database, as its own process."""

    def __init__(self, ctx: AppContext, data_dir: Path, port: int) -> None:
        self.port = port
        self.env = {
            **os.environ,
            "GIAOBAN_DATA_DIR": str(data_dir),
            "GIAOBAN_DATABASE_URL": ctx.settings.resolved_database_url,
            "GIAOBAN_SECRET_KEY": ctx.settings.resolved_secret_key,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "app.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start it; the monotonic time it first answered."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "giaoban.cli",
                    "serve",
                    "--no-media",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                httpx.get(f"{self.base}/healthz", timeout=1, trust_env=False)
                return time.monotonic()
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the app did not answer")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _connected(page: Any) -> bool:
    return bool(page.evaluate("() => (window.giaobanRoom || window.giaobanConsole).socket.connected"))


def test_app_killed_and_restarted_clients_resume_and_nothing_is_lost(
    ctx: AppContext, demo: Demo, tmp_path: Path, playwright: Any
) -> None:
    from playwright.sync_api import expect

    mid, sites = _live_meeting(demo)
    app = AppProcess(ctx, tmp_path, _free_port())
    app.start()
    browser = launch_chromium(playwright)
    tabs = Tabs(browser, app.base)
    try:
        console = tabs.open("chutri", f"/meetings/{mid}/console")
        hanoi = tabs.open("dc-01", f"/meetings/{mid}/room")
        hue = tabs.open("dc-46", f"/meetings/{mid}/room")
        pages = {"console": console, "01": hanoi, "46": hue}
        for page in pages.values():
            expect(page.locator("#conn")).to_have_text(CONNECTED)
        # A queue (Hà Nội then Huế), a check-in, chat both ways.
        for page in (hanoi, hue):
            page.evaluate("() => window.giaobanRoom.socket.send('floor.request', {kind: 'normal'})")
            expect(page.locator("#floor-state")).to_contain_text("Đã đăng ký phát biểu")
        hanoi.get_by_label("Số đại biểu có mặt").fill("15")
        hanoi.get_by_role("button", name="Gửi điểm danh").click()
        expect(hanoi.locator("#checkin-state")).to_contain_text("15 đại biểu")
        hue.get_by_label("Nội dung tin nhắn").fill("Huế đã sẵn sàng")
        hue.get_by_role("button", name="Gửi", exact=True).click()
        console.get_by_label("Nội dung tin nhắn").fill("Đề nghị các điểm cầu giữ trật tự")
        console.get_by_role("button", name="Gửi", exact=True).click()
        for page in pages.values():
            expect(page.locator("#chat")).to_contain_text("Đề nghị các điểm cầu giữ trật tự")
        before = console.evaluate(ROOM_STATE)
        for page in pages.values():
            page.evaluate(WATCH_STEPS)

        app.kill()
        for code, page in pages.items():
            wait_for(lambda p=page: not _connected(p), f"{code} noticing the app is gone", 15)
        time.sleep(2)  # the tabs keep retrying meanwhile
        up = app.start()
        resumed: dict[str, float] = {}
        while len(resumed) < len(pages) and time.monotonic() < up + 20:
            for code, page in pages.items():
                if code not in resumed and _connected(page):
                    resumed[code] = time.monotonic() - up
            time.sleep(0.05)
        after = {code: page.evaluate(ROOM_STATE) for code, page in pages.items()}
        expect(console.locator("#queue")).to_contain_text("Điểm cầu Thành ủy Hà Nội")
        expect(console.locator("#chat")).to_contain_text("Huế đã sẵn sàng")
        steps = {code: page.evaluate("() => window.__steps") for code, page in pages.items()}
        ARTIFACTS.mkdir(exist_ok=True)
        console.screenshot(path=str(ARTIFACTS / "faults-app-console.png"))
        problems = [p for p in tabs.problems if "WebSocket" not in p and "ERR_CONNECTION_REFUSED" not in p]
    finally:
        tabs.close()
        browser.close()
        app.stop()

    print(f"app SIGKILL: clients resumed {resumed} s after the app answered; steps {steps}")
    assert set(resumed) == set(pages), resumed
    assert all(t <= 5.0 for t in resumed.values()), resumed
    queue_before = [q["site_id"] for q in before["floor"]["queue"]]
    assert queue_before == [sites["01"], sites["46"]], before["floor"]
    for code, state in after.items():
        assert [q["site_id"] for q in state["floor"]["queue"]] == queue_before, (code, state["floor"])
        assert [c["text"] for c in state["chat"]] == [c["text"] for c in before["chat"]], code
        for site_id in (sites["01"], sites["46"]):
            old, new = before["sites"][str(site_id)], state["sites"][str(site_id)]
            assert new["connected"] and new["attendance"] == old["attendance"] == "present", (code, new)
            kinds_old = [m["kind"] for m in old["timeline"]]
            kinds_new = [m["kind"] for m in new["timeline"]]
            assert kinds_new[: len(kinds_old)] == kinds_old and kinds_new[-2:] == ["left", "rejoined"], (
                kinds_new
            )
        assert state["sites"][str(sites["01"])]["checkin"]["delegates"] == 15
    assert not problems, problems
