"""Bots publishing a pre-encoded clip through real Janus: RTP at subscribers, moderation, switch, simulcast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("aiortc", reason="aiortc is needed for media bots (pip install aiortc)")

from giaoban.lab.bots import Clip, ClipSet, PublisherBot, SubscriberBot, ensure_clip
from giaoban.lab.rtpfast import PacketPump
from giaoban.media.client import JanusClient, JanusSession, JsonDict
from giaoban.media.moderation import ModerationKeeper
from giaoban.media.videoroom import RoomOptions, VideoRoom
from tests.lab.fixtures import RunningJanus

pytestmark = [pytest.mark.janus, pytest.mark.timeout(60)]

SECRET = "s"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> ClipSet:
    return ClipSet.ensure(tmp_path_factory.mktemp("clips"), seconds=2)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def count_over(sub: SubscriberBot, seconds: float) -> dict[str, int]:
    """Packets per mid received during the next ``seconds``."""
    before = sub.counter.packets_by_mid()
    await asyncio.sleep(seconds)
    after = sub.counter.packets_by_mid()
    return {mid: after.get(mid, 0) - before.get(mid, 0) for mid in sub.mids}


@dataclass
class Lab:
    """One room on the shared Janus, a control handle, and the bots of a test (closed at the end)."""

    janus: RunningJanus
    clips: ClipSet
    session: JanusSession
    vr: VideoRoom
    room: int
    pump: PacketPump
    bots: list[PublisherBot | SubscriberBot] = field(default_factory=list)

    @property
    def local(self) -> str:
        return self.janus.ns.host_address

    async def publisher(self, name: str, **kw: object) -> PublisherBot:
        bot = PublisherBot(
            self.session, opaque_id=name, local_address=self.local, clips=self.clips, pump=self.pump, **kw
        )  # type: ignore[arg-type]
        self.bots.append(bot)
        await bot.join_and_publish(self.room)
        return bot

    async def subscriber(self, name: str, streams: list[JsonDict], **kw: object) -> SubscriberBot:
        bot = SubscriberBot(self.session, opaque_id=name, local_address=self.local, **kw)  # type: ignore[arg-type]
        self.bots.append(bot)
        await bot.subscribe(self.room, streams)
        return bot


@asynccontextmanager
async def lab(janus: RunningJanus, clips: ClipSet) -> AsyncIterator[Lab]:
    async with JanusClient(janus.url, api_secret=janus.api_secret) as client:
        session = await client.create_session()
        vr = await VideoRoom.attach(session)
        room = await vr.create(options=RoomOptions(secret=SECRET))
        pump = PacketPump()
        state = Lab(janus, clips, session, vr, room, pump)
        try:
            yield state
        finally:
            for bot in reversed(state.bots):
                await bot.close()
            await pump.close()
            await vr.destroy(room, SECRET)


@pytest.mark.parametrize(("publish", "subscribe"), [("raw", "header"), ("raw", "decode"), ("aiortc", "rtp")])
def test_subscriber_receives_publisher_rtp(
    janus_server: RunningJanus, clips: ClipSet, publish: str, subscribe: str
) -> None:
    async def scenario() -> None:
        async with lab(janus_server, clips) as lb:
            pub = await lb.publisher("site-pub", mode=publish, clip=clips.high)
            sub = await lb.subscriber("site-sub", [{"feed": pub.id}], mode=subscribe)
            await wait_until(lambda: min(sub.packets.values()) > 10, 10, "RTP at subscriber")
            assert sub.first_rtp_ms() is not None and sub.all_streams_ms() is not None
            rates = await count_over(sub, 1.0)
            kinds = {sub.mids[mid]: n for mid, n in rates.items()}
            # ~50 audio and ~65 video packets/s; generous bounds for a noisy shared machine
            assert 35 <= kinds["audio"] <= 65 and 40 <= kinds["video"] <= 110, kinds

    asyncio.run(scenario())


def test_moderate_mute_stops_forwarded_audio(janus_server: RunningJanus, clips: ClipSet) -> None:
    async def scenario() -> None:
        async with lab(janus_server, clips) as lb:
            pub = await lb.publisher("site-pub")
            sub = await lb.subscriber("site-sub", [{"feed": pub.id}])
            await wait_until(lambda: min(sub.packets.values()) > 10, 10, "RTP at subscriber")
            await lb.vr.moderate(lb.room, SECRET, pub.id, "0", mute=True)
            await asyncio.sleep(0.2)  # packets already in flight
            muted = await count_over(sub, 1.0)
            assert muted["0"] == 0 and muted["1"] >= 30, muted
            await lb.vr.moderate(lb.room, SECRET, pub.id, "0", mute=False)
            await wait_until(lambda: sub.packets["audio"] > 0, 2, "audio back")
            await asyncio.sleep(0.1)
            unmuted = await count_over(sub, 1.0)
            assert unmuted["0"] >= 30, unmuted

    asyncio.run(scenario())


def test_clip_is_cached(tmp_path: Path) -> None:
    path = ensure_clip(tmp_path / "c.webm", seconds=1)
    mtime = path.stat().st_mtime_ns
    assert ensure_clip(path).stat().st_mtime_ns == mtime
    loaded = Clip.load(path)
    assert len(loaded.video) >= 25 and len(loaded.audio) >= 45 and 0.9 < loaded.duration < 1.2
    assert loaded.keyframes[0] and sum(loaded.keyframes) <= 2
    track = loaded.packetized("video")
    assert track.frames[0][0][0][0] & 0x10  # S bit on the first packet of a frame


def test_switch_changes_source_without_renegotiation(janus_server: RunningJanus, clips: ClipSet) -> None:
    """A slot fed by A is switched to B: B's packets arrive on the same mids, no new SDP is exchanged."""

    async def scenario() -> None:
        async with lab(janus_server, clips) as lb:
            a = await lb.publisher("site-a")
            b = await lb.publisher("site-b")
            sub = await lb.subscriber("site-sub", [{"feed": a.id}])
            assert sub.mids == {"0": "audio", "1": "video"}
            assert sub.subscriber is not None and sub.pc is not None
            offers: list[JsonDict] = []
            sub.subscriber.handle.add_callback(lambda m: offers.append(m) if m.get("jsep") else None)
            sdp_before = sub.pc.remoteDescription.sdp
            await wait_until(lambda: min(sub.packets.values()) > 10, 10, "A's RTP")
            ssrcs_before = set(sub.counter.by_ssrc)
            # Silence A server-side: from now on, packets on the slot can only come from B.
            for mid in ("0", "1"):
                await lb.vr.moderate(lb.room, SECRET, a.id, mid, mute=True)
            await asyncio.sleep(0.3)
            assert await count_over(sub, 0.7) == {"0": 0, "1": 0}

            t0 = time.monotonic()
            before = sub.counter.packets_by_mid()
            response = await sub.subscriber.switch(
                [{"feed": b.id, "mid": "0", "sub_mid": "0"}, {"feed": b.id, "mid": "1", "sub_mid": "1"}]
            )
            assert response.jsep is None
            await wait_until(
                lambda: all(sub.counter.packets_by_mid().get(m, 0) > before.get(m, 0) for m in ("0", "1")),
                5,
                "B's RTP on the switched slots",
            )
            switch_ms = (time.monotonic() - t0) * 1000
            rates = await count_over(sub, 1.0)
            assert rates["0"] >= 35 and rates["1"] >= 40, rates
            # Same m-lines, same SSRCs towards the subscriber, and no offer of any kind.
            assert set(sub.counter.by_ssrc) == ssrcs_before
            assert sub.pc.remoteDescription.sdp == sdp_before
            assert offers == [], offers
            # Back to A (still muted): the slot falls silent again, so the source really moved.
            await sub.subscriber.switch(
                [{"feed": a.id, "mid": "0", "sub_mid": "0"}, {"feed": a.id, "mid": "1", "sub_mid": "1"}]
            )
            await asyncio.sleep(0.3)
            assert await count_over(sub, 0.7) == {"0": 0, "1": 0}
            assert offers == []
            print(f"switch -> first packets of B on both mids: {switch_ms:.0f} ms")

    asyncio.run(scenario())


def test_moderation_is_lost_on_republish_and_the_keeper_restores_it(
    janus_server: RunningJanus, clips: ClipSet
) -> None:
    async def audio_rate(lb: Lab, feed: int, name: str) -> dict[str, int]:
        sub = await lb.subscriber(name, [{"feed": feed}])
        await wait_until(lambda: sub.packets["video"] > 10, 10, f"video at {name}")
        await asyncio.sleep(0.2)
        return await count_over(sub, 1.0)

    async def republish(lb: Lab, old: PublisherBot, name: str) -> PublisherBot:
        """The site drops (PeerConnection and handle gone) and comes back under the same feed id."""
        feed = old.id
        await old.close()
        lb.bots.remove(old)
        # Janus drops the participant when its handle is detached; under load that lags the close,
        # and joining again under the same id before then is error 436 ("already exists").
        for _ in range(100):
            if all(p.get("id") != feed for p in await lb.vr.list_participants(lb.room)):
                break
            await asyncio.sleep(0.05)
        bot = PublisherBot(lb.session, opaque_id=name, local_address=lb.local, clips=lb.clips, pump=lb.pump)
        lb.bots.append(bot)
        await bot.join_and_publish(lb.room, feed_id=feed)
        assert bot.id == feed
        return bot

    async def scenario() -> None:
        async with lab(janus_server, clips) as lb:
            site = await lb.publisher("site-1")
            # 1. Plain moderate: muted, then the site republishes -> it comes back unmuted.
            await lb.vr.moderate(lb.room, SECRET, site.id, "0", mute=True)
            muted = await audio_rate(lb, site.id, "watch-1")
            assert muted["0"] == 0 and muted["1"] >= 40, muted
            site = await republish(lb, site, "site-1")
            lost = await audio_rate(lb, site.id, "watch-2")
            assert lost["0"] >= 35, f"moderation survived a republish? {lost}"

            # 2. With the keeper: the mute is re-applied on the new `publishers` announcement.
            keeper = await ModerationKeeper.start(lb.session, lb.room, SECRET)
            try:
                await keeper.mute(site.id)
                kept = await audio_rate(lb, site.id, "watch-3")
                assert kept["0"] == 0 and kept["1"] >= 40, kept
                for attempt in range(2):
                    site = await republish(lb, site, "site-1")
                    await keeper.wait_idle()
                    assert keeper.reapplied == attempt + 1 and keeper.errors == 0
                    kept = await audio_rate(lb, site.id, f"watch-4-{attempt}")
                    assert kept["0"] == 0 and kept["1"] >= 40, kept
                assert keeper.last_gap_ms is not None and keeper.last_gap_ms < 1000
                # Unmute through the keeper: audio back, and it stays unmuted after a republish.
                await keeper.unmute(site.id)
                assert (await audio_rate(lb, site.id, "watch-5"))["0"] >= 35
                site = await republish(lb, site, "site-1")
                await keeper.wait_idle()
                assert keeper.reapplied == 2
                assert (await audio_rate(lb, site.id, "watch-6"))["0"] >= 35
                print(f"keeper: announcement -> moderate acknowledged in {keeper.last_gap_ms:.1f} ms")
            finally:
                await keeper.close()

    asyncio.run(scenario())


def test_simulcast_layer_selection(janus_server: RunningJanus, clips: ClipSet) -> None:
    """aiortc cannot send simulcast; the raw bot sends 180p + 360p as an SSRC SIM group, Janus switches."""

    async def scenario() -> None:
        async with lab(janus_server, clips) as lb:
            pub = await lb.publisher("site-sc", simulcast=True)
            assert set(pub.streams) == {"audio", "video", "video-low"}
            sub = await lb.subscriber("wall", [{"feed": pub.id}])
            assert sub.subscriber is not None
            await wait_until(lambda: sub.packets["video"] > 30, 10, "video")
            high = (await count_over(sub, 1.0))["1"]
            layers: list[JsonDict] = []
            sub.subscriber.handle.add_callback(
                lambda m: (
                    layers.append(d)
                    if "substream" in (d := (m.get("plugindata") or {}).get("data") or {})
                    else None
                )
            )
            await sub.subscriber.set_layer("1", substream=0)
            await wait_until(lambda: any(d.get("substream") == 0 for d in layers), 3, "substream 0 event")
            await asyncio.sleep(0.2)
            low = (await count_over(sub, 1.0))["1"]
            await sub.subscriber.set_layer("1", substream=1)
            await wait_until(lambda: any(d.get("substream") == 1 for d in layers), 3, "substream 1 event")
            await asyncio.sleep(0.2)
            back = (await count_over(sub, 1.0))["1"]
            tracks = clips.tracks
            print(
                f"video packets/s: high {high} (clip {tracks['video'].packets_per_second:.0f}), "
                f"low {low} (clip {tracks['video-low'].packets_per_second:.0f}), back {back}"
            )
            assert low < 0.7 * high and back > 1.4 * low, (high, low, back)
            assert pub.streams["video-low"].packets > 0 and pub.streams["video"].packets > 0

    asyncio.run(scenario())
