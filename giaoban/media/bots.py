"""Synthetic sites: publish a pre-encoded VP8 + Opus clip and subscribe, without encoding per bot.

The clip is encoded once with ffmpeg (360p VP8 ~500 kbit/s, 1 s GOP, Opus) and cached; it is demuxed
once into memory and every bot replays the same packets, paced by their timestamps, through aiortc (which
then only packetizes them). Subscribers count the RTP packets they receive per kind.

Bots never use a STUN server (``iceServers=[]``) and, given ``local_address``, gather host candidates on
that address only, so ICE traffic stays on the lab link.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import aioice.ice
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from giaoban.media.client import JanusSession, JsonDict
from giaoban.media.videoroom import VideoRoomPublisher, VideoRoomSubscriber

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000


def ensure_clip(path: Path, *, seconds: int = 6) -> Path:
    """Encode the bot clip once (cached at ``path``): VP8 640x360 30 fps ~500 kbit/s, GOP 1 s, Opus 48 kHz."""
    if path.exists() and path.stat().st_size > 0:
        return path
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is needed once to encode the bot clip")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.webm")
    argv = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libvpx", "-b:v", "500k", "-g", "30", "-keyint_min", "30", "-deadline", "realtime",
        "-cpu-used", "8", "-c:a", "libopus", "-b:a", "32k", "-ar", "48000", "-ac", "2",
        str(tmp),
    ]  # fmt: skip
    subprocess.run(argv, check=True, timeout=120)
    tmp.replace(path)
    return path


@dataclass(slots=True)
class Clip:
    """Demuxed packets: (seconds from start, payload) per kind, and the loop length."""

    video: list[tuple[float, bytes]]
    audio: list[tuple[float, bytes]]
    duration: float

    @classmethod
    def load(cls, path: Path) -> Clip:
        """Demux ``path`` into memory (no decoding)."""
        video: list[tuple[float, bytes]] = []
        audio: list[tuple[float, bytes]] = []
        with av.open(str(path)) as container:
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None or packet.time_base is None:
                    continue
                t = float(packet.pts * packet.time_base)
                target = video if packet.stream.type == "video" else audio
                target.append((t, bytes(packet)))
        end = max(video[-1][0] if video else 0.0, audio[-1][0] if audio else 0.0)
        return cls(video=video, audio=audio, duration=end + 1 / 30)


class ReplayTrack(MediaStreamTrack):
    """Replays a clip's packets of one kind in real time, looping with continuous timestamps."""

    def __init__(self, kind: str, clip: Clip) -> None:
        super().__init__()
        self.kind = kind
        self._packets = clip.video if kind == "video" else clip.audio
        self._duration = clip.duration
        self._clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        self._index = 0
        self._round = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        """The next packet, when its time has come."""
        if self._start is None:
            self._start = time.monotonic()
        if self._index >= len(self._packets):
            self._index = 0
            self._round += 1
        offset, payload = self._packets[self._index]
        self._index += 1
        t = self._round * self._duration + offset
        delay = self._start + t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(payload)
        packet.pts = int(t * self._clock)
        packet.time_base = Fraction(1, self._clock)
        return packet


@contextlib.contextmanager
def host_candidates_only(address: str | None) -> Iterator[None]:
    """While active, aiortc gathers host candidates on ``address`` only (None: unchanged)."""
    if address is None:
        yield
        return
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [address]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def _pc() -> RTCPeerConnection:
    # No STUN server: aiortc would otherwise default to a public one.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def _jsep(desc: RTCSessionDescription) -> JsonDict:
    return {"type": desc.type, "sdp": desc.sdp}


@dataclass
class PublisherBot:
    """A site publishing the clip (audio mid "0", video mid "1")."""

    session: JanusSession
    clip: Clip
    opaque_id: str
    local_address: str | None = None
    publisher: VideoRoomPublisher | None = None
    pc: RTCPeerConnection | None = None

    @property
    def id(self) -> int:
        assert self.publisher is not None and self.publisher.id is not None
        return self.publisher.id

    async def join_and_publish(self, room: int, *, display: str | None = None, timeout: float = 10.0) -> int:
        """Join ``room`` and publish; return the publisher id once Janus answered."""
        self.publisher = await VideoRoomPublisher.attach(self.session, self.opaque_id)
        await self.publisher.join(room, display=display or self.opaque_id)
        self.pc = _pc()
        self.pc.addTrack(ReplayTrack("audio", self.clip))
        self.pc.addTrack(ReplayTrack("video", self.clip))
        with host_candidates_only(self.local_address):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await self.publisher.publish(_jsep(self.pc.localDescription), timeout=timeout)
        assert response.jsep is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(response.jsep["sdp"], response.jsep["type"]))
        # Subscribing to a feed before its PeerConnection is up fails with 428: wait for Janus to say so.
        await self.publisher.handle.next_event(lambda m: m.get("janus") == "webrtcup", timeout=timeout)
        return self.id

    async def close(self) -> None:
        """Hang up and leave."""
        if self.pc is not None:
            await self.pc.close()
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.handle.detach()


@dataclass
class SubscriberBot:
    """A site subscribing to feeds; counts received RTP packets per kind without looking at them."""

    session: JanusSession
    opaque_id: str
    local_address: str | None = None
    subscriber: VideoRoomSubscriber | None = None
    pc: RTCPeerConnection | None = None
    packets: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    _drains: list[asyncio.Task[None]] = field(default_factory=list)

    async def subscribe(self, room: int, streams: list[JsonDict], *, timeout: float = 10.0) -> None:
        """Join as subscriber to ``streams`` and complete the negotiation."""
        self.subscriber = await VideoRoomSubscriber.attach(self.session, self.opaque_id)
        response = await self.subscriber.join(room, streams, timeout=timeout)
        assert response.jsep is not None
        self.pc = _pc()
        self.pc.on("track", self._on_track)
        await self.pc.setRemoteDescription(RTCSessionDescription(response.jsep["sdp"], response.jsep["type"]))
        with host_candidates_only(self.local_address):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        for receiver in self.pc.getReceivers():
            self._count(receiver)
        await self.subscriber.start(_jsep(self.pc.localDescription))

    def _count(self, receiver: Any) -> None:
        kind = receiver.track.kind if receiver.track is not None else "video"
        original = receiver._handle_rtp_packet

        async def counting(packet: Any, arrival_time_ms: int) -> None:
            self.packets[kind] += 1
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counting

    def _on_track(self, track: MediaStreamTrack) -> None:
        async def drain() -> None:
            # aiortc queues every decoded frame on the track: consume them so memory stays flat.
            with contextlib.suppress(Exception):
                while True:
                    await track.recv()

        self._drains.append(asyncio.ensure_future(drain()))

    async def close(self) -> None:
        """Hang up and leave."""
        for task in self._drains:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.subscriber is not None:
            with contextlib.suppress(Exception):
                await self.subscriber.handle.detach()
