"""A whole briefing in real browsers: the host site, three sites and the chair's console, through the
real pages, with media on a real Janus in the lab namespace.

- the chair opens the technical check and starts the meeting from the meeting page;
- the host (dc-tw) and three sites (dc-01 Hà Nội, dc-46 Huế, dc-92 Cần Thơ) check their camera and
  microphone and join; every view shows the host;
- Huế asks for the floor, the chair gives it: every other site (and the console) receives Huế's
  audio on a speaker slot (RTCPeerConnection.getStats: inbound-rtp audio bytes growing);
- lean publishing: a site without the floor sends only its lowest simulcast layer and no audio
  (RTCPeerConnection.getStats of its outbound streams, per rid); once granted, its top layer and its
  microphone come back and the other sites' speaker slot shows its top layer; after the turn it is
  lean again. The host always sends everything;
- Cần Thơ puts its own microphone back on its sender from the page (replaceTrack + enabled, as a
  modified browser would): it really sends audio, yet nobody receives a byte of it, and Janus keeps
  it muted;
- the chair ends Huế's turn: Huế's audio stops everywhere;
- the roll-call board counts 4 sites present.

Screenshots at 1366×768 (the console, a site's room, the speaking site) go to test-artifacts/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest

from giaoban.lab.serve import Served
from tests.conftest import DEMO_PASSWORD, Demo
from tests.e2e.helpers import ARTIFACTS, CONNECTED, SITES, ready_to_join
from tests.e2e.helpers import briefing_meeting as _meeting

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1366, "height": 768}
# media_browser, served (the app with Janus in the lab namespace) and the SQLite-only db_url are
# fixtures of tests/e2e/conftest.py.


class Tabs:
    """Browser contexts (one per person), all watched for script errors."""

    def __init__(self, browser: Any, base: str) -> None:
        self.browser = browser
        self.base = base
        self.contexts: list[Any] = []
        self.problems: list[str] = []

    def open(self, username: str, path: str) -> Any:
        context = self.browser.new_context(
            base_url=self.base, viewport=VIEWPORT, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh"
        )
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"{username}: script error: {error}"))
        page.on(
            "console",
            lambda msg: (
                self.problems.append(f"{username}: console: {msg.text}")
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.goto(path)
        assert urlparse(page.url).path == "/login"
        page.get_by_label("Tên đăng nhập").fill(username)
        page.get_by_label("Mật khẩu").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Đăng nhập").click()
        page.wait_for_url(lambda url: urlparse(url).path == urlparse(path).path)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


# JavaScript run in the pages: bytes received per (kind:mid) on the view, and which site each slot shows.
VIEW_BYTES = """async (which) => {
  const app = window.giaobanRoom || window.giaobanConsole;
  const pc = app.view && app.view.pc;
  const out = {};
  if (!pc) return out;
  (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp") out[r.kind + ":" + r.mid] = r.bytesReceived; });
  return out;
}"""


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def growth(page: Any, seconds: float = 1.5) -> dict[str, int]:
    """Bytes received per kind:mid over ``seconds``."""
    before = page.evaluate(VIEW_BYTES)
    time.sleep(seconds)
    after = page.evaluate(VIEW_BYTES)
    return {k: v - before.get(k, 0) for k, v in after.items()}


# What a site's publishing PeerConnection sends: audio packets, and per simulcast rid video packets
# and frame height.
SENT = """async () => {
  const pc = window.giaobanRoom.pub;
  const out = {audio: 0, video: {}};
  if (!pc) return out;
  (await pc.getStats()).forEach((r) => {
    if (r.type !== "outbound-rtp") return;
    if (r.kind === "audio") out.audio += r.packetsSent;
    else out.video[r.rid || "-"] = [r.packetsSent, r.frameHeight || 0];
  });
  return out;
}"""

# Frame height received per video mid of the view.
RECEIVED_HEIGHT = """async () => {
  const app = window.giaobanRoom || window.giaobanConsole;
  const out = {};
  (await app.view.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") out[r.mid] = r.frameHeight || 0;
  });
  return out;
}"""


def sending(page: Any, seconds: float = 1.5) -> tuple[int, dict[str, int], dict[str, int]]:
    """Audio packets, video packets per rid sent over ``seconds``, and each rid's frame height."""
    before = page.evaluate(SENT)
    time.sleep(seconds)
    after = page.evaluate(SENT)
    video = {rid: n - before["video"].get(rid, [0, 0])[0] for rid, (n, _h) in after["video"].items()}
    heights = {rid: h for rid, (_n, h) in after["video"].items()}
    return after["audio"] - before["audio"], video, heights


def sending_all(page: Any) -> tuple[int, dict[str, int], dict[str, int]] | None:
    """``sending(page)`` once it shows audio and the top layer ("h"), else None.

    Chrome may pause its top layer for a moment when the machine is busy (its CPU adaptation), so
    callers poll this rather than judge one sample."""
    sample = sending(page)
    audio, video, _heights = sample
    return sample if audio > 0 and video.get("h", 0) > 0 else None


def lean(page: Any) -> bool:
    """Sends no audio, and video only on its lowest layer ("l")."""
    audio, video, _heights = sending(page)
    return audio == 0 and video.get("l", 0) > 0 and all(n == 0 for rid, n in video.items() if rid != "l")


def slots_of(page: Any) -> dict[str, Any] | None:
    return page.evaluate(
        "() => { const r = window.giaobanRoom; const c = window.giaobanConsole;"
        " return r ? r.slots : (c ? c.slots : null); }"
    )


def speaker_audio_mid(page: Any, site_id: int) -> str | None:
    slots = slots_of(page)
    if not slots:
        return None
    return next((s["audio"] for s in slots["speakers"] if s["site_id"] == site_id), None)


def _hanoi_roster(demo: Demo) -> None:
    """Hà Nội's standing delegates ("đại biểu thường trực"), offered by its check-in form."""
    from giaoban.audit.log import Actor
    from giaoban.context import Tx
    from giaoban.org import roster

    hanoi = demo.unit_id("01")
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        for name in ("Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường"):
            roster.add_entry(tx, hanoi, full_name=name)


@pytest.mark.janus
def test_briefing_floor_is_enforced_end_to_end(media_browser: Any, served: Served, demo: Demo) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    started = time.monotonic()
    mid, sites = _meeting(demo)
    _hanoi_roster(demo)
    hue, can_tho = sites["46"], sites["92"]
    tabs = Tabs(media_browser, served.base)
    try:
        # The chair opens the technical check and starts the meeting from the meeting page.
        chair = tabs.open("chutri", "/meetings")
        expect(chair.get_by_role("link", name="Giao ban trực tuyến công tác tổ chức")).to_be_visible()
        shot(chair, "briefing-meetings")
        chair.get_by_role("link", name="Giao ban trực tuyến công tác tổ chức").click()
        shot(chair, "briefing-meeting-detail")
        chair.get_by_role("button", name="Mở kiểm tra kỹ thuật").click()
        expect(chair.get_by_text("Đã mở kiểm tra kỹ thuật")).to_be_visible()
        chair.get_by_role("button", name="Bắt đầu hội nghị").click()
        expect(chair.get_by_text("Hội nghị đã bắt đầu.")).to_be_visible()
        chair.get_by_role("link", name="Mở phòng điều hành").click()
        expect(chair.locator("#conn")).to_have_text("Đã kết nối")

        # The host and the three sites check their devices and join.
        rooms: dict[str, Any] = {}
        for code, username in SITES.items():
            page = tabs.open(username, f"/meetings/{mid}/room")
            expect(page.locator("#conn")).to_have_text("Đã kết nối")
            page.get_by_label("Chất lượng hình gửi đi").select_option("360")
            join = page.get_by_role("button", name="Vào phòng họp")
            expect(join).to_be_enabled()
            if code == "01":
                # (page.evaluate, not wait_for_function: the page's CSP forbids eval.)
                wait_for(
                    lambda p=page: p.evaluate("() => document.getElementById('preview').videoWidth > 0"),
                    "preview",
                )
                wait_for(
                    lambda p=page: p.evaluate("() => document.getElementById('level').value > 0.01"),
                    "mic level",
                    every=0.05,
                )
                shot(page, "briefing-site-setup")
            join.click()
            rooms[code] = page
        for code, page in rooms.items():
            # Every view receives the host's picture and, except at the host itself, its sound.
            wait_for(
                lambda p=page: (
                    growth(p, 0.5).get(f"video:{slots_of(p)['host']['video']}", 0) > 0
                    if slots_of(p)
                    else False
                ),
                f"host video at {code}",
            )
        expect(chair.locator("#host-wait")).to_be_hidden()
        if chair.locator("#sound").is_visible():  # the browser wants a click before it plays sound
            chair.locator("#sound").click()
        wait_for(
            lambda: (
                growth(chair, 0.5).get(f"audio:{slots_of(chair)['host']['audio']}", 0) > 0
                if slots_of(chair)
                else False
            ),
            "host audio at the console",
        )
        host_at_tw = growth(rooms["TW"])
        assert host_at_tw.get(f"audio:{slots_of(rooms['TW'])['host']['audio']}", 0) == 0, (
            "the host hears itself"
        )

        # Roll call at Hà Nội, and a private word with the control room.
        # Two ticked from the unit's roster, one typed; the count follows (3) and is then corrected.
        hanoi = rooms["01"]
        hanoi.get_by_label("Nguyễn Văn An").check()
        hanoi.get_by_label("Trần Thị Bình").check()
        hanoi.get_by_label("Đại biểu khác (mỗi dòng một người)").fill("Võ Văn Phúc")
        expect(hanoi.get_by_label("Số đại biểu có mặt")).to_have_value("3")
        hanoi.get_by_label("Số đại biểu có mặt").fill("12")
        hanoi.get_by_role("button", name="Gửi điểm danh").click()
        expect(hanoi.locator("#checkin-state")).to_contain_text("12 đại biểu")
        expect(chair.locator("#delegates-total")).to_have_text("Đại biểu đã điểm danh: 12 (1 điểm cầu báo)")
        checked_in = ["Nguyễn Văn An", "Trần Thị Bình", "Võ Văn Phúc"]
        assert served.app.state.hub.rooms[mid].live.sites[sites["01"]].names == checked_in
        names_at_console = "(s) => window.giaobanConsole.socket.state.site(s).checkin.names"
        assert chair.evaluate(names_at_console, sites["01"]) == checked_in
        hanoi.get_by_label("Nội dung tin nhắn").fill("Điểm cầu Hà Nội đã sẵn sàng")
        hanoi.get_by_label("Gửi tới").select_option("control")
        hanoi.get_by_role("button", name="Gửi", exact=True).click()
        chat = chair.locator("#chat")
        expect(chat).to_contain_text("Điểm cầu Hà Nội đã sẵn sàng")
        chat.get_by_role("button", name="Trả lời riêng").click()
        chair.get_by_label("Nội dung tin nhắn").fill("Đã nhận, cảm ơn Hà Nội")
        chair.get_by_role("button", name="Gửi", exact=True).click()
        expect(hanoi.locator("#chat")).to_contain_text("Đã nhận, cảm ơn Hà Nội")
        expect(rooms["46"].locator("#chat")).not_to_contain_text("Hà Nội")  # private, both ways

        # Lean publishing: every site without the floor sends its lowest layer only and no audio;
        # the host sends all of it.
        for code in ("01", "46", "92"):
            wait_for(lambda p=rooms[code]: lean(p), f"{code} sending lean", every=0)
        wait_for(lambda: sending_all(rooms["TW"]), "the host sending audio and its top layer", every=0)

        # Huế asks for the floor; the chair gives it from the queue.
        rooms["46"].get_by_role("button", name="Xin phát biểu").click()
        expect(rooms["46"].locator("#floor-state")).to_have_text("Đã đăng ký phát biểu — thứ tự 1")
        queue = chair.locator("#queue")
        expect(queue).to_contain_text("Điểm cầu Tỉnh ủy Thừa Thiên Huế")
        queue.get_by_role("button", name="Mời phát biểu").click()
        expect(chair.locator("#holders")).to_contain_text("Điểm cầu Tỉnh ủy Thừa Thiên Huế")
        expect(rooms["46"].locator("#floor-state")).to_contain_text("Điểm cầu của bạn đang phát biểu")

        listeners = {"TW": rooms["TW"], "01": rooms["01"], "92": rooms["92"], "console": chair}
        for name, page in listeners.items():
            audio_mid = wait_for(lambda p=page: speaker_audio_mid(p, hue), f"Huế's slot at {name}")
            wait_for(
                lambda p=page, m=audio_mid: growth(p, 0.7).get(f"audio:{m}", 0) > 500,
                f"Huế's audio at {name}",
            )
        # Huế does not hear itself.
        own = speaker_audio_mid(rooms["46"], hue)
        assert own is not None and growth(rooms["46"]).get(f"audio:{own}", 0) == 0
        # Holding the floor, Huế sends its microphone and every layer; the speaker slots receive
        # its top layer (Janus moves up to it once it arrives), not the wall's lowest.
        _audio, _video, heights = wait_for(
            lambda: sending_all(rooms["46"]), "Huế sending audio and its top layer", every=0
        )
        hue_video = next(s["video"] for s in slots_of(rooms["01"])["speakers"] if s["site_id"] == hue)
        wait_for(
            lambda: rooms["01"].evaluate(RECEIVED_HEIGHT).get(hue_video, 0) == heights["h"],
            f"Huế's top layer ({heights}) in Hà Nội's speaker slot",
        )
        assert heights["h"] > heights["l"], heights

        # Cần Thơ puts its own microphone back from the page: it sends, nobody receives it.
        sent = rooms["92"].evaluate(
            """async () => {
              const room = window.giaobanRoom;
              const sender = room.pub.getTransceivers().find((t) => t.receiver.track.kind === "audio").sender;
              await sender.replaceTrack(room.local.getAudioTracks()[0]);
              sender.track.enabled = true;
              const bytes = async () => { let n = 0; (await window.giaobanRoom.pub.getStats()).forEach(
                (r) => { if (r.type === "outbound-rtp" && r.kind === "audio") n += r.bytesSent; }); return n; };
              const before = await bytes();
              await new Promise((done) => setTimeout(done, 1500));
              return [(await bytes()) - before, sender.track.enabled];
            }"""
        )
        assert sent[0] > 1000 and sent[1] is True, sent
        room_state = served.app.state.hub.rooms[mid]
        assert room_state.stage.publishers[can_tho].muted is True  # moderated on Janus
        for name, page in {**listeners, "46": rooms["46"]}.items():
            slots = slots_of(page)
            assert slots is not None
            assert all(s["site_id"] != can_tho for s in [slots["host"], *slots["speakers"]]), name
            moved = growth(page, 1.0)
            for slot in slots["speakers"]:
                if slot["site_id"] is None:
                    assert moved.get(f"audio:{slot['audio']}", 0) == 0, (name, slot)
        shot(rooms["01"], "briefing-site-room")
        shot(rooms["46"], "briefing-site-speaking")
        shot(chair, "briefing-console")

        # The chair ends Huế's turn: its audio stops everywhere.
        mids = {name: speaker_audio_mid(page, hue) for name, page in listeners.items()}
        chair.locator("#holders").get_by_role("button", name="Kết thúc phát biểu").click()
        expect(chair.locator("#holders")).to_contain_text("Chưa có điểm cầu nào đang phát biểu.")
        for name, page in listeners.items():
            wait_for(lambda p=page: speaker_audio_mid(p, hue) is None, f"Huế's slot emptied at {name}")
            wait_for(
                lambda p=page, m=mids[name]: growth(p, 0.7).get(f"audio:{m}", 0) == 0, f"Huế silent at {name}"
            )
        expect(rooms["46"].get_by_role("button", name="Xin phát biểu")).to_be_visible()
        wait_for(lambda: lean(rooms["46"]), "Huế sending lean after its turn", every=0)

        # Roll call: the four sites are present.
        expect(chair.locator("#n-present")).to_have_text("4")
        expect(chair.locator("#n-absent")).to_have_text("0")
        shot(chair, "briefing-console-after")
        assert not tabs.problems, tabs.problems
        # ~45 s on an idle 2-core machine; the suite's 300 s timeout bounds it on a loaded one.
        print(f"briefing test body: {time.monotonic() - started:.1f} s")
    finally:
        tabs.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("() => window.scrollTo(0, 0)")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), (
        f"{name}: wider than the screen"
    )
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_central_operator_schedules_a_briefing(media_browser: Any, live_server: str) -> None:
    """The schedule form in a browser: times in Vietnam's time, invitations by unit kind and by list."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    tabs = Tabs(media_browser, live_server)
    try:
        page = tabs.open("dieuhanh", "/meetings")
        page.get_by_role("link", name="Lên lịch hội nghị").click()
        page.get_by_label("Tên hội nghị").fill("Hội nghị chuyên đề công tác cán bộ")
        page.get_by_label("Loại hội nghị").select_option("thematic")
        page.get_by_label("Ngày họp").fill("2030-03-12")
        page.get_by_label("Giờ bắt đầu").fill("14:00")
        page.get_by_label("Giờ kết thúc").fill("16:30")
        page.get_by_label("Chủ trì").select_option(label="Đồng chí Chủ trì")
        page.get_by_label("Chương trình").fill("Khai mạc | Đồng chí Chủ trì | 10\nThảo luận | | 60")
        page.get_by_label("Đảng bộ trực thuộc Trung ương").check()
        page.get_by_label("01 Điểm cầu Thành ủy Hà Nội").check()
        shot(page, "schedule-form")
        page.get_by_role("button", name="Lên lịch hội nghị").click()
        expect(page.get_by_text("Đã lên lịch hội nghị.")).to_be_visible()
        expect(page.get_by_role("heading", name="Hội nghị chuyên đề công tác cán bộ")).to_be_visible()
        expect(page.locator("main")).to_contain_text("14:00–16:30 12/03/2030")
        expect(page.locator("#sites-table")).to_contain_text("Điểm cầu Thành ủy Hà Nội")
        expect(page.get_by_role("button", name="Mở kiểm tra kỹ thuật")).to_be_visible()
        shot(page, "schedule-detail")
        assert not tabs.problems, tabs.problems
    finally:
        tabs.close()


@pytest.mark.janus
def test_briefing_by_hand_as_the_readme_says(media_browser: Any, served: Served, demo: Demo) -> None:
    """README "Holding a briefing by hand", step by step, in the pages only: the operator schedules the
    whole tree and starts; the sites and the console see that the host is missing and what to do; the
    host's room waits for nobody; once it sends every site sees it; a site gets the floor. Screenshots
    at 1366×768: the operator's meeting page (71 sites), a site's room and the console while the host is
    missing, the host's room, the console's wall in the meeting."""
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    tabs = Tabs(media_browser, served.base)
    title = "Giao ban trực tuyến toàn quốc"
    try:
        # 1. The operator schedules (the whole tree, host Trung ương, chair chutri) and starts it.
        op = tabs.open("dieuhanh", "/meetings")
        op.get_by_role("link", name="Lên lịch hội nghị").click()
        op.get_by_label("Tên hội nghị").fill(title)
        op.get_by_label("Mời mọi điểm cầu thuộc đơn vị").select_option(
            label="Ban Tổ chức Trung ương (điểm cầu chính)"
        )
        expect(op.get_by_label("Điểm cầu chính", exact=True)).to_have_value(str(demo_site(demo, "TW")))
        op.get_by_label("Chủ trì").select_option(label="Đồng chí Chủ trì")
        op.get_by_role("button", name="Lên lịch hội nghị").click()
        expect(op.get_by_text("Đã lên lịch hội nghị.")).to_be_visible()
        op.get_by_role("button", name="Mở kiểm tra kỹ thuật").click()
        op.get_by_role("button", name="Bắt đầu hội nghị").click()
        expect(op.get_by_text("Hội nghị đã bắt đầu.")).to_be_visible()
        meeting_url = urlparse(op.url).path
        expect(op.locator("#host-step")).to_contain_text("Điểm cầu chính chưa vào phòng")
        # "Bắt đầu hội nghị" and the console are on the first screen; the sites in a table below.
        assert op.get_by_role("link", name="Mở phòng điều hành").bounding_box()["y"] < 768
        expect(op.locator("#sites-table tbody tr")).to_have_count(71)
        op.get_by_label("Tìm điểm cầu").fill("hue")
        expect(op.locator("#sites-table tbody tr:visible")).to_have_count(1)
        expect(op.locator("#sites-table tbody tr:visible")).to_contain_text("Thừa Thiên Huế")
        op.locator("#sites").scroll_into_view_if_needed()
        op.screenshot(path=str(ARTIFACTS / "by-hand-operator-filtered.png"))
        op.get_by_label("Tìm điểm cầu").fill("")
        shot(op, "by-hand-operator-meeting")
        op.screenshot(path=str(ARTIFACTS / "by-hand-operator-meeting-full.png"), full_page=True)
        listing = tabs.open("dieuhanh", "/meetings")
        expect(listing.get_by_role("link", name="Chọn trong 71 điểm cầu")).to_be_visible()
        shot(listing, "by-hand-meetings-list")
        # The control room says so too.
        listing.goto(f"{meeting_url}/control")
        expect(listing.locator("#host-state")).to_contain_text("Điểm cầu chính chưa vào phòng")
        shot(listing, "by-hand-control-no-host")

        # 3. The chair opens the console: the host is missing, and it says who must do what.
        chair = tabs.open("chutri", meeting_url)
        chair.get_by_role("link", name="Mở phòng điều hành").click()
        expect(chair.locator("#conn")).to_have_text(CONNECTED)
        expect(chair.locator("#host-state")).to_contain_text("Điểm cầu chính chưa vào phòng")
        expect(chair.locator("#host-state")).to_contain_text("không gửi hình")
        shot(chair, "by-hand-console-no-host")

        # 4 (before 2). Hà Nội comes early: its room says the host is missing, and it may join.
        hanoi = tabs.open("dc-01", meeting_url)
        hanoi.get_by_role("link", name="Vào phòng họp tại Điểm cầu Thành ủy Hà Nội").click()
        join = ready_to_join(hanoi)
        expect(hanoi.locator("#host-state")).to_contain_text("Điểm cầu chính chưa vào phòng")
        expect(hanoi.locator("#path-state")).to_have_text(
            "Đường truyền hình: chờ điểm cầu chính vào phòng và phát hình."
        )
        shot(hanoi, "by-hand-site-no-host")
        join.click()

        # 2. The host joins: its room knows it is the host and waits for nobody.
        host = tabs.open("dc-tw", meeting_url)
        host.get_by_role("link", name="Vào phòng họp tại Điểm cầu Ban Tổ chức Trung ương").click()
        host_join = ready_to_join(host)
        expect(host.locator("#host-self")).to_contain_text("Đây là điểm cầu chính")
        expect(host.locator("main")).not_to_contain_text("chờ điểm cầu chính")
        shot(host, "by-hand-host-room")
        expect(chair.locator("#host-state")).to_contain_text("đã kết nối nhưng chưa phát hình")
        host_join.click()
        expect(chair.locator("#host-state")).to_be_hidden()
        expect(hanoi.locator("#host-state")).to_be_hidden()
        expect(hanoi.locator("#host-wait")).to_be_hidden()
        expect(host.locator("#host-wait")).to_be_hidden()

        # 4. Huế joins after the host: the media path is ready before the click.
        hue = tabs.open("dc-46", meeting_url)
        hue.get_by_role("link", name="Vào phòng họp tại Điểm cầu Tỉnh ủy Thừa Thiên Huế").click()
        hue_join = ready_to_join(hue)
        expect(hue.locator("#host-state")).to_be_hidden()
        expect(hue.locator("#path-state")).to_have_attribute("data-ready", "yes")
        hue_join.click()

        # 5. Huế asks for the floor, the chair grants it.
        hue.get_by_role("button", name="Xin phát biểu").click()
        chair.locator("#queue").get_by_role("button", name="Mời phát biểu").click()
        expect(chair.locator("#holders")).to_contain_text("Điểm cầu Tỉnh ủy Thừa Thiên Huế")
        expect(hue.locator("#floor-state")).to_contain_text("Điểm cầu của bạn đang phát biểu")
        # The wall: host, speaker, the other site sending, then the rest in code order.
        codes = {sid: code for code, sid in demo_sites(demo).items()}
        expected = ["TW", "46", "01", "02", "04"]
        wait_for(
            lambda: (
                [
                    codes[int(x)]
                    for x in chair.eval_on_selector_all(
                        "#wall > li", "(els) => els.map((e) => e.dataset.site)"
                    )[:5]
                ]
                == expected
            ),
            "the wall's order",
        )
        wait_for(
            lambda: chair.evaluate(
                "() => [...document.querySelectorAll('#wall > li')].slice(0, 3)"
                ".every((li) => li.querySelector('video') && !li.querySelector('video').hidden)"
            ),
            "pictures on the wall's first tiles",
        )
        shot(chair, "by-hand-console")
        op.reload()
        expect(op.locator("#host-step")).to_have_count(0)
        expect(op.locator("#host-presence")).to_have_text("Đang phát hình")
        assert not tabs.problems, tabs.problems
    finally:
        tabs.close()


def demo_sites(demo: Demo) -> dict[str, int]:
    from sqlalchemy import select

    from giaoban.org.models import Site

    with demo.ctx.db.session() as s:
        return {code: sid for sid, code in s.execute(select(Site.id, Site.code)).all()}


def demo_site(demo: Demo, code: str) -> int:
    return demo_sites(demo)[code]
