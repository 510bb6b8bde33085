"""Bots publishing a pre-encoded clip through real Janus, and server-side moderation of their audio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("aiortc", reason="aiortc is needed for media bots (pip install aiortc)")

from giaoban.media.bots import Clip, PublisherBot, SubscriberBot, ensure_clip
from giaoban.media.client import JanusClient
from giaoban.media.videoroom import RoomOptions, VideoRoom
from tests.lab.fixtures import RunningJanus

pytestmark = [pytest.mark.janus, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    return Clip.load(ensure_clip(tmp_path_factory.mktemp("clip") / "bot.webm", seconds=4))


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _count_over(sub: SubscriberBot, seconds: float) -> dict[str, int]:
    before = dict(sub.packets)
    await asyncio.sleep(seconds)
    return {kind: sub.packets[kind] - before[kind] for kind in before}


def _scenario(janus: RunningJanus, clip: Clip, *, moderate: bool) -> None:
    async def scenario() -> None:
        async with JanusClient(janus.url, api_secret=janus.api_secret) as client:
            session = await client.create_session()
            vr = await VideoRoom.attach(session)
            room = await vr.create(options=RoomOptions(secret="s"))
            local = janus.ns.host_address
            pub = PublisherBot(session, clip, "site-pub", local_address=local)
            sub = SubscriberBot(session, "site-sub", local_address=local)
            try:
                feed = await pub.join_and_publish(room)
                await sub.subscribe(room, [{"feed": feed}])
                await _wait(
                    lambda: sub.packets["audio"] > 10 and sub.packets["video"] > 10, 10, "RTP at subscriber"
                )
                rates = await _count_over(sub, 0.5)
                assert rates["audio"] >= 15 and rates["video"] >= 15, rates  # ~50 and ~65 packets/s
                if not moderate:
                    return
                await vr.moderate(room, "s", feed, "0", mute=True)
                await asyncio.sleep(0.2)  # packets already in flight
                muted = await _count_over(sub, 1.0)
                assert muted["audio"] == 0 and muted["video"] >= 30, muted
                await vr.moderate(room, "s", feed, "0", mute=False)
                await _wait(lambda: sub.packets["audio"] > 0, 2, "audio back")
                unmuted = await _count_over(sub, 1.0)
                assert unmuted["audio"] >= 30, unmuted
            finally:
                await sub.close()
                await pub.close()
                await vr.destroy(room, "s")

    asyncio.run(scenario())


def test_subscriber_receives_publisher_rtp(janus_server: RunningJanus, clip: Clip) -> None:
    _scenario(janus_server, clip, moderate=False)


def test_moderate_mute_stops_forwarded_audio(janus_server: RunningJanus, clip: Clip) -> None:
    _scenario(janus_server, clip, moderate=True)


def test_clip_is_cached(tmp_path: Path) -> None:
    path = ensure_clip(tmp_path / "c.webm", seconds=1)
    mtime = path.stat().st_mtime_ns
    assert ensure_clip(path).stat().st_mtime_ns == mtime
    loaded = Clip.load(path)
    assert len(loaded.video) >= 25 and len(loaded.audio) >= 45 and 0.9 < loaded.duration < 1.2
