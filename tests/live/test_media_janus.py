"""The floor enforced on a real Janus, driven through our WebSocket protocol by aiortc bots.

A "spy" subscribes straight to Janus (bypassing our slots) to every site's audio: whatever our
subscriptions carry, Janus itself must forward only the host's and the floor holders' audio, also
after a site republishes (Janus forgets moderation on a new PeerConnection). The bots send audio all
the time, as a browser that switched its own microphone on would.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.lab.client import LiveClient as Tab
from giaoban.lab.serve import Served
from giaoban.meetings import scheduling as svc
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.org.models import Site, Unit, User
from tests.conftest import DEMO_PASSWORD, Demo
from tests.support import media_app

pytestmark = pytest.mark.janus

# The app with Janus, on SQLite (tests/support/media_app.py).
db_url = media_app.db_url
served = media_app.served

aiortc = pytest.importorskip("aiortc")
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack  # noqa: E402

from giaoban.lab.rtpfast import RtpCounter  # noqa: E402

NO_STUN = RTCConfiguration(iceServers=[])  # traffic stays on the lab link


def open_meeting(demo: Demo) -> tuple[int, dict[str, int]]:
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        sites = {
            c: s.execute(select(Site.id).where(Site.code == c)).scalar_one() for c in ("TW", "01", "46", "92")
        }
        now = datetime.now()
        meeting = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Giao ban có kiểm soát phát biểu",
                kind="briefing",
                starts_at=now + timedelta(minutes=5),
                ends_at=now + timedelta(hours=1),
                owner_unit_id=s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one(),
                host_site_id=sites["TW"],
                chair_user_id=s.execute(select(User.id).where(User.username == "chutri")).scalar_one(),
                # Every site of the network (71): the wall has pages.
                invite=svc.InviteSpec(
                    under_unit_ids=[s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()]
                ),
            ),
        )
        svc.transition(tx, meeting.id, MeetingStatus.open)
        return meeting.id, sites


class SmallVideo(VideoStreamTrack):
    """160×120 frames: VP8 encoding in Python stays cheap."""

    async def recv(self) -> Any:
        from av import VideoFrame

        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts, frame.time_base = pts, time_base or fractions.Fraction(1, 90000)
        return frame


async def until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def publish(tab: Tab) -> RTCPeerConnection:
    pc = RTCPeerConnection(NO_STUN)
    pc.addTrack(AudioStreamTrack())
    pc.addTrack(SmallVideo())
    await pc.setLocalDescription(await pc.createOffer())
    result = await tab.ok("media.publish", jsep={"type": "offer", "sdp": pc.localDescription.sdp})
    await pc.setRemoteDescription(RTCSessionDescription(**result["jsep"]))
    return pc


async def answer(
    offer: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[Any]]
) -> RTCPeerConnection:
    """Answer a subscription offer; RTP is counted per mid from the packet headers (aiortc routes the
    packets of several audio m-lines with one payload type to one receiver, so its stats cannot tell
    the slots apart)."""
    pc = RTCPeerConnection(NO_STUN)
    counter = RtpCounter()
    counter.map_mids(offer["sdp"])
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    await pc.setLocalDescription(await pc.createAnswer())
    counter.hook(pc, rcvbuf=None)
    await send({"type": "answer", "sdp": pc.localDescription.sdp})
    pc._counter = counter  # type: ignore[attr-defined]
    return pc


async def packets(pc: RTCPeerConnection) -> dict[str, int]:
    """RTP packets received per mid."""
    counter: RtpCounter = pc._counter  # type: ignore[attr-defined]
    return counter.packets_by_mid()


async def growth(pc: RTCPeerConnection, seconds: float = 1.2) -> dict[str, int]:
    before = await packets(pc)
    await asyncio.sleep(seconds)
    after = await packets(pc)
    return {mid: n - before.get(mid, 0) for mid, n in after.items()}


async def close_pc(pc: RTCPeerConnection) -> None:
    await pc.close()


def test_floor_is_enforced_on_janus(served: Served, demo: Demo) -> None:
    mid, sites = open_meeting(demo)
    tw, hn, hue, ct = (sites[c] for c in ("TW", "01", "46", "92"))
    asyncio.run(asyncio.wait_for(scenario(served, mid, tw, hn, hue, ct), 90))


async def scenario(served: Served, mid: int, tw: int, hn: int, hue: int, ct: int) -> None:
    from giaoban.media.client import JanusClient
    from giaoban.media.videoroom import VideoRoomSubscriber

    base = served.base
    pcs: list[RTCPeerConnection] = []
    chair = await Tab.open(base, "chutri", mid, password=DEMO_PASSWORD, **{"as": "console"})
    host = await Tab.open(base, "dc-tw", mid, password=DEMO_PASSWORD, **{"as": "site", "site_id": tw})
    hanoi = await Tab.open(base, "dc-01", mid, password=DEMO_PASSWORD, **{"as": "site", "site_id": hn})
    hue_tab = await Tab.open(base, "dc-46", mid, password=DEMO_PASSWORD, **{"as": "site", "site_id": hue})
    client = JanusClient(served.janus_url, api_secret=served.api_secret)
    await client.connect()
    try:
        # Malformed offers: refused by us (not SDP at all) or by Janus (no ICE, no DTLS); no change.
        not_sdp = {"type": "offer", "sdp": "v=0\r\nthis is not SDP\r\n"}
        assert (await hue_tab.call("media.publish", jsep=not_sdp))["code"] == "invalid"
        bogus = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n"
        reply = await hue_tab.call("media.publish", jsep={"type": "offer", "sdp": bogus})
        assert reply["type"] == "error" and reply["code"] == "publish_failed", reply
        assert not chair.sites[str(hue)]["publishing"]
        assert hue not in served.app.state.hub.rooms[mid].stage.publishers
        # The wall needs a picture, the view needs the host.
        assert (await chair.call("media.wall", page=1))["code"] == "no_video"
        assert (await hanoi.call("media.subscribe"))["code"] == "host_not_ready"

        for tab in (host, hanoi, hue_tab):
            pcs.append(await publish(tab))
        for site_id in (tw, hn, hue):
            await until(lambda s=site_id: chair.sites[str(s)]["publishing"], f"site {site_id} publishing")
        stage = served.app.state.hub.rooms[mid].stage
        assert {s: p.muted for s, p in stage.publishers.items()} == {tw: False, hn: True, hue: True}

        # Hà Nội's view: the host, sound and picture.
        result = await hanoi.ok("media.subscribe")
        slots = result["slots"]
        assert slots["host"]["site_id"] == tw and all(s["site_id"] is None for s in slots["speakers"])
        view = await answer(result["jsep"], lambda jsep: hanoi.ok("media.start", jsep=jsep))
        pcs.append(view)

        async def renegotiate(msg: dict[str, Any]) -> None:  # as the browser does on media.offer
            view._counter.map_mids(msg["jsep"]["sdp"])  # type: ignore[attr-defined]
            await view.setRemoteDescription(RTCSessionDescription(**msg["jsep"]))
            await view.setLocalDescription(await view.createAnswer())
            await hanoi.ok("media.start", jsep={"type": "answer", "sdp": view.localDescription.sdp})

        hanoi.on_offer = renegotiate
        host_audio, speaker = slots["host"]["audio"], slots["speakers"][0]
        await until(lambda: _grew(view, host_audio), "host audio at Hà Nội")

        # The spy: straight from Janus, every site's audio.
        session = await client.create_session()
        spy_handle = await VideoRoomSubscriber.attach(session, opaque_id="test-spy")

        async def spy_on(handle: VideoRoomSubscriber) -> tuple[RTCPeerConnection, dict[int, str]]:
            feeds = [tw, hn, hue]
            streams = [{"feed": f, "mid": stage.publishers[f].audio_mids[0]} for f in feeds]
            joined = await handle.join(stage.room, streams)
            mids = {f: str(s["mid"]) for f, s in zip(feeds, joined.data["streams"], strict=True)}
            spy_pc = await answer(joined.jsep, handle.start)
            return spy_pc, mids

        spy, spy_mids = await spy_on(spy_handle)
        pcs.append(spy)
        await until(lambda: _grew(spy, spy_mids[tw]), "the spy hears the host")
        heard = await growth(spy)
        assert heard.get(spy_mids[hn], 0) == 0 and heard.get(spy_mids[hue], 0) == 0, (
            heard
        )  # moderated on Janus

        # Huế asks, the chair gives the floor: Janus forwards Huế; Hà Nội's speaker slot switches to it.
        await hue_tab.ok("floor.request")
        await chair.ok("floor.grant", seconds=120)
        await until(
            lambda: (s := hanoi.slots()) and s["speakers"][0]["site_id"] == hue, "Huế in Hà Nội's slot"
        )
        await until(lambda: _grew(view, speaker["audio"]), "Huế's audio at Hà Nội")
        await until(lambda: _grew(spy, spy_mids[hue]), "the spy hears Huế")
        assert (await growth(spy)).get(spy_mids[hn], 0) == 0

        # Huế reconnects its media (a new PeerConnection) while holding: back in the slot, audible.
        await close_pc(pcs[2])
        pcs[2] = await publish(hue_tab)
        await until(lambda: _grew(view, speaker["audio"]), "Huế back at Hà Nội after republishing")
        assert stage.publishers[hue].muted is False

        # The chair ends the turn: the slot empties and Janus drops Huë's audio again.
        await chair.ok("floor.revoke", site_id=hue)
        await until(
            lambda: (s := hanoi.slots()) and s["speakers"][0]["site_id"] is None, "Hà Nội's slot emptied"
        )
        await asyncio.sleep(0.3)
        assert (await growth(view)).get(speaker["audio"], 0) == 0
        # Huế republishes without the floor: moderation is applied to its new streams at once.
        await close_pc(pcs[2])
        pcs[2] = await publish(hue_tab)
        await until(
            lambda: chair.sites[str(hue)]["publishing"] and stage.publishers[hue].handle, "Huế republished"
        )
        await until(lambda: stage.publishers[hue].started, "Huế's new PeerConnection up")
        spy2_handle = await VideoRoomSubscriber.attach(session, opaque_id="test-spy-2")
        spy2, spy2_mids = await spy_on(spy2_handle)
        pcs.append(spy2)
        await until(lambda: _grew(spy2, spy2_mids[tw]), "the second spy hears the host")
        heard = await growth(spy2)
        assert heard.get(spy2_mids[hue], 0) == 0 and heard.get(spy2_mids[hn], 0) == 0, heard
        assert stage.publishers[hue].muted is True

        # The console's wall: one tile per site of the page, video where the site publishes; the host,
        # the speakers and the sites sending a picture first (giaoban.meetings.order.wall_order).
        order = stage.wall_sites()
        assert len(order) == 71 and order[:3] == [tw, hn, hue] and stage.order[0] == tw
        publishing = {tw, hn, hue}

        def expected(page: int) -> list[tuple[int | None, bool]]:
            ids = order[(page - 1) * 24 : page * 24]
            return [(i, i in publishing) for i in ids] + [(None, False)] * (24 - len(ids))

        wall = await chair.ok("media.wall", page=1)
        assert wall["page"] == 1 and wall["pages"] == 3 and len(wall["tiles"]) == 24
        assert [(t["site_id"], t["video"]) for t in wall["tiles"]] == expected(1)
        wall_pc = await answer(wall["jsep"], lambda jsep: chair.ok("media.start", jsep=jsep, target="wall"))
        pcs.append(wall_pc)
        tiles = {t["site_id"]: t["mid"] for t in wall["tiles"]}
        await until(lambda: _grew(wall_pc, tiles[tw]), "the host's picture on the wall")
        # Turning to page 2 (nobody there sends): the same subscription, switched (no new offer).
        turned = await chair.ok("media.wall", page=2)
        assert "jsep" not in turned and [(t["site_id"], t["video"]) for t in turned["tiles"]] == expected(2)
        await asyncio.sleep(0.5)
        moved = await growth(wall_pc, 0.8)
        assert all(moved.get(t["mid"], 0) == 0 for t in turned["tiles"]), moved
        # Back to page 1: Huế's picture comes.
        page = 1
        turned = await chair.ok("media.wall", page=page)
        assert [(t["site_id"], t["video"]) for t in turned["tiles"]] == expected(1)
        hue_mid = next(t["mid"] for t in turned["tiles"] if t["site_id"] == hue)
        await until(lambda: _grew(wall_pc, hue_mid), "Huế's picture on its page of the wall")
        assert (await chair.call("media.wall", page=4))["code"] == "no_such_page"
        # A console that lost its PeerConnection asks for a new subscription.
        renewed = await chair.ok("media.wall", page=page, renew=True)
        assert renewed["jsep"]["type"] == "offer" and len(renewed["tiles"]) == 24
        await close_pc(wall_pc)
        wall_pc = await answer(
            renewed["jsep"], lambda jsep: chair.ok("media.start", jsep=jsep, target="wall")
        )
        pcs.append(wall_pc)
        hue_mid = next(t["mid"] for t in renewed["tiles"] if t["site_id"] == hue)
        await until(lambda: _grew(wall_pc, hue_mid), "Huế's picture on the renewed wall")
        # Hà Nội leaves: the console is told its tile has no picture any more, and Huế moves up.
        await chair.ok("media.wall", page=1)
        await hanoi.close()
        await until(
            lambda: any(
                m["type"] == "media.wall"
                and any(t["site_id"] == hn and not t["video"] for t in m["tiles"])
                and [t["site_id"] for t in m["tiles"][:2]] == [tw, hue]
                for m in chair.pushes
            ),
            "the wall updated",
        )
    finally:
        for pc in pcs:
            with contextlib.suppress(Exception):
                await close_pc(pc)
        for tab in (chair, host, hanoi, hue_tab):
            with contextlib.suppress(Exception):
                await tab.close()
        await client.close()


async def _grew(pc: RTCPeerConnection, mid: str) -> bool:
    return (await growth(pc, 0.5)).get(mid, 0) > 0
