"""Synthetic sites: publish a pre-encoded VP8 + Opus clip and subscribe, without encoding or decoding.

The clip is encoded once with ffmpeg (360p VP8 ~500 kbit/s, 1 s GOP, Opus; plus a 180p layer for
simulcast) and cached; it is demuxed once into memory and every bot replays the same packets.

Publishing, two modes:

* ``raw`` (default, cheapest): aiortc only negotiates ICE/DTLS; the frames are pre-packetized once and
  sent by one :class:`~giaoban.lab.rtpfast.PacketPump` for all bots of the process (header write, SRTP
  protect, sendto). Supports simulcast (SSRC ``SIM`` group: 180p + 360p) and answers Janus's PLIs by
  jumping to the clip's next keyframe, as a browser would send one.
* ``aiortc``: the frames go through aiortc's ``RTCRtpSender`` (it packetizes; nothing is encoded).

Subscribing, three modes (see docs/benchmarks.md for what each costs):

* ``header`` (default, cheapest): RTP is counted from the datagram header before aiortc sees it.
* ``rtp``: aiortc unprotects and parses every packet; the receiver's handler only counts (no jitter
  buffer, no depacketizing, no decoding).
* ``decode``: plain aiortc, which decodes every frame (the frames are drained).

Bots never use a STUN server (``iceServers=[]``) and, given ``local_address``, gather host candidates on
that address only, so ICE traffic stays on the lab link.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import aioice.ice
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from giaoban.lab.rtpfast import (
    AUDIO_LEVEL_URI,
    MID_URI,
    PacketizedTrack,
    PacketPump,
    RawStream,
    RtpCounter,
    enlarge_receive_buffers,
    header_extension,
    munge_simulcast,
    parse_sections,
    transport_sender,
    vp8_payloads,
    watch_keyframe_requests,
)
from giaoban.media.client import JanusSession, JsonDict
from giaoban.media.videoroom import VideoRoomPublisher, VideoRoomSubscriber

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
PublishMode = Literal["raw", "aiortc"]
SubscribeMode = Literal["header", "rtp", "decode"]


def default_cache_dir() -> Path:
    """Where encoded clips are kept between runs (``~/.cache/giaoban/bots``)."""
    return Path.home() / ".cache" / "giaoban" / "bots"


def ensure_clip(
    path: Path,
    *,
    seconds: int = 6,
    size: str = "640x360",
    bitrate: str = "500k",
    fps: int = 30,
    audio: bool = True,
) -> Path:
    """Encode a bot clip once (cached at ``path``): VP8 ``size`` ``fps`` ~``bitrate``, GOP 1 s, Opus 48 kHz."""
    if path.exists() and path.stat().st_size > 0:
        return path
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is needed once to encode the bot clip")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{random.getrandbits(32):x}.tmp.webm")
    argv = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]  # fmt: skip
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    argv += ["-c:v", "libvpx", "-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate,
             "-g", str(fps), "-keyint_min", str(fps), "-deadline", "realtime", "-cpu-used", "8"]  # fmt: skip
    argv += ["-c:a", "libopus", "-b:a", "32k", "-ar", "48000", "-ac", "2"] if audio else ["-an"]
    argv.append(str(tmp))
    try:
        subprocess.run(argv, check=True, timeout=120)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass(slots=True)
class Clip:
    """Demuxed packets: (seconds from start, payload) per kind, keyframe flags, and the loop length."""

    video: list[tuple[float, bytes]]
    audio: list[tuple[float, bytes]]
    duration: float
    keyframes: list[bool] = field(default_factory=list)
    fps: float = 30.0

    @classmethod
    def load(cls, path: Path) -> Clip:
        """Demux ``path`` into memory (no decoding)."""
        video: list[tuple[float, bytes]] = []
        audio: list[tuple[float, bytes]] = []
        keys: list[bool] = []
        fps = 30.0
        with av.open(str(path)) as container:
            if container.streams.video and container.streams.video[0].average_rate:
                fps = float(container.streams.video[0].average_rate)
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None or packet.time_base is None:
                    continue
                t = float(packet.pts * packet.time_base)
                if packet.stream.type == "video":
                    video.append((t, bytes(packet)))
                    keys.append(bool(packet.is_keyframe))
                else:
                    audio.append((t, bytes(packet)))
        end = max(video[-1][0] if video else 0.0, audio[-1][0] if audio else 0.0)
        return cls(video=video, audio=audio, duration=end + 1 / fps, keyframes=keys, fps=fps)

    def packetized(self, kind: str) -> PacketizedTrack:
        """The track as RTP payloads (computed once per clip and kind)."""
        if kind == "video":
            return PacketizedTrack(
                "video", VIDEO_CLOCK, 1 / self.fps, [vp8_payloads(p) for _, p in self.video], self.keyframes
            )
        return PacketizedTrack(
            "audio", AUDIO_CLOCK, 0.02, [[(b"", p)] for _, p in self.audio], [False] * len(self.audio)
        )


@dataclass(slots=True)
class ClipSet:
    """What every bot sends: the 360p clip with audio and a 180p layer for simulcast (both cached)."""

    high: Clip
    low: Clip
    tracks: dict[str, PacketizedTrack] = field(default_factory=dict)

    @classmethod
    def ensure(cls, cache_dir: Path | None = None, *, seconds: int = 6) -> ClipSet:
        """Encode once (cached in ``cache_dir``, default ``~/.cache/giaoban/bots``) and load."""
        base = cache_dir or default_cache_dir()
        high = ensure_clip(base / f"vp8-360p-500k-{seconds}s.webm", seconds=seconds)
        low = ensure_clip(
            base / f"vp8-180p-150k-{seconds}s.webm",
            seconds=seconds,
            size="320x180",
            bitrate="150k",
            audio=False,
        )
        clips = cls(Clip.load(high), Clip.load(low))
        audio = clips.high.packetized("audio")
        clips.tracks = {
            "audio": audio,
            # A muted microphone with Opus DTX: one (comfort-noise sized) packet every 400 ms.
            "audio-dtx": PacketizedTrack(
                "audio", AUDIO_CLOCK, 0.4, audio.frames[::20], audio.keyframes[::20]
            ),
            "video": clips.high.packetized("video"),
            "video-low": clips.low.packetized("video"),
        }
        return clips


class ReplayTrack(MediaStreamTrack):
    """Replays a clip's packets of one kind in real time through aiortc, looping with continuous timestamps."""

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


class SilentTrack(MediaStreamTrack):
    """A track that never yields: the aiortc sender stays idle while we send RTP ourselves."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] | None = None

    async def recv(self) -> av.Packet:
        self._never = asyncio.get_running_loop().create_future()
        await self._never
        raise RuntimeError("unreachable")

    def stop(self) -> None:
        if self._never is not None and not self._never.done():
            self._never.cancel()
        super().stop()


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


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    """Wait until the PeerConnection's DTLS is up (RTP can flow)."""
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise TimeoutError(f"peer connection {pc.connectionState} after {timeout}s")
        await asyncio.sleep(0.01)


@dataclass
class PublisherBot:
    """A site publishing the clip (audio mid "0", video mid "1").

    ``mode="raw"`` needs a ``pump`` (shared by every bot of the process) and ``clips`` (a ClipSet);
    ``mode="aiortc"`` needs ``clip``.
    """

    session: JanusSession
    clip: Clip | None = None
    opaque_id: str = "bot"
    local_address: str | None = None
    mode: PublishMode = "raw"
    clips: ClipSet | None = None
    pump: PacketPump | None = None
    simulcast: bool = False
    audio_level: int = 40  # dBov written in the audio-level extension (raw mode)
    # Raw mode, what a site that does not hold the floor may send: a muted microphone with Opus DTX
    # (``audio_dtx``) and, with simulcast, only the low layer (``send_high=False``, as a browser does
    # with ``encodings[1].active = false``). Both can be changed later with :meth:`set_sending`.
    audio_dtx: bool = False
    send_high: bool = True
    publisher: VideoRoomPublisher | None = None
    pc: RTCPeerConnection | None = None
    streams: dict[str, RawStream] = field(default_factory=dict)
    publish_answered_at: float | None = None

    @property
    def id(self) -> int:
        assert self.publisher is not None and self.publisher.id is not None
        return self.publisher.id

    async def join_and_publish(
        self, room: int, *, display: str | None = None, feed_id: int | None = None, timeout: float = 10.0
    ) -> int:
        """Join ``room`` (as ``feed_id`` if given) and publish; return the publisher id once media is up."""
        self.publisher = await VideoRoomPublisher.attach(self.session, self.opaque_id)
        await self.publisher.join(room, display=display or self.opaque_id, id=feed_id, timeout=timeout)
        await self.publish(timeout=timeout)
        return self.id

    async def publish(self, *, timeout: float = 10.0) -> None:
        """(Re)publish on the joined handle with a fresh PeerConnection."""
        assert self.publisher is not None
        self.pc = pc = _pc()
        if self.mode == "aiortc":
            assert self.clip is not None, "mode 'aiortc' needs a clip"
            pc.addTrack(ReplayTrack("audio", self.clip))
            pc.addTrack(ReplayTrack("video", self.clip))
        else:
            assert self.clips is not None and self.pump is not None, "mode 'raw' needs clips and a pump"
            pc.addTrack(SilentTrack("audio"))
            pc.addTrack(SilentTrack("video"))
        with host_candidates_only(self.local_address):
            await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        layers: list[int] = []
        if self.mode == "raw":
            own = next(s for s in parse_sections(offer) if s.kind == "video").ssrcs[0]
            if self.simulcast:
                offer, layers = munge_simulcast(offer, [random.getrandbits(32) | 1])
            else:
                layers = [own]
        response = await self.publisher.publish({"type": "offer", "sdp": offer}, timeout=timeout)
        assert response.jsep is not None
        self.publish_answered_at = time.monotonic()
        await pc.setRemoteDescription(RTCSessionDescription(response.jsep["sdp"], response.jsep["type"]))
        if self.mode == "raw":
            await wait_connected(pc, timeout)
            self._start_raw(pc, offer, response.jsep["sdp"], layers)
        # Subscribing to a feed before its PeerConnection is up fails with 428: wait for Janus to say so.
        await self.publisher.handle.next_event(lambda m: m.get("janus") == "webrtcup", timeout=timeout)

    def _start_raw(self, pc: RTCPeerConnection, offer: str, answer: str, layers: list[int]) -> None:
        assert self.clips is not None and self.pump is not None
        send = transport_sender(pc)
        ours = {s.kind: s for s in parse_sections(offer)}
        theirs = {s.kind: s for s in parse_sections(answer)}
        tracks = self.clips.tracks
        for stream in self.streams.values():
            self.pump.remove(stream)
        self.streams = {}
        start = random.randrange(1 << 16)
        for kind in ("audio", "video"):
            sec = theirs[kind]
            codec = "opus" if kind == "audio" else "vp8"
            ext: list[tuple[int, bytes]] = []
            if MID_URI in sec.extmap and sec.mid is not None:
                ext.append((sec.extmap[MID_URI], sec.mid.encode()))
            if kind == "audio" and AUDIO_LEVEL_URI in sec.extmap:
                ext.append((sec.extmap[AUDIO_LEVEL_URI], bytes((0x80 | min(self.audio_level, 127),))))
            block = header_extension(ext) if ext else b""
            pt = sec.payload_types[codec]
            if kind == "audio":
                audio = tracks["audio-dtx" if self.audio_dtx else "audio"]
                names = [("audio", ours["audio"].ssrcs[0], audio)]
            elif len(layers) > 1:
                names = [("video-low", layers[0], tracks["video-low"])]
                if self.send_high:
                    names.append(("video", layers[-1], tracks["video"]))
            else:
                names = [("video", layers[0], tracks["video"])]
            for name, ssrc, track in names:
                # Layers start on the same frame so their keyframes stay aligned, as in a real encoder.
                stream = RawStream(track, ssrc=ssrc, payload_type=pt, extensions=block, start_index=start)
                stream.send = send
                self.streams[name] = stream
                self.pump.add(stream)
        by_ssrc = {s.ssrc: s for s in self.streams.values()}

        def on_keyframe_request(ssrc: int) -> None:
            targets = [by_ssrc[ssrc]] if ssrc in by_ssrc else [s for s in by_ssrc.values()]
            for stream in targets:
                stream.request_keyframe()

        watch_keyframe_requests(pc, on_keyframe_request)

    async def hangup(self) -> None:
        """Tear the PeerConnection down (stay joined): what a site's network drop does to its media."""
        for stream in self.streams.values():
            if self.pump is not None:
                self.pump.remove(stream)
        self.streams = {}
        if self.pc is not None:
            await self.pc.close()
            self.pc = None

    async def close(self) -> None:
        """Hang up and leave."""
        await self.hangup()
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.handle.detach()


@dataclass
class SubscriberBot:
    """A site subscribing to feeds; counts received RTP packets per kind and mid without decoding."""

    session: JanusSession
    opaque_id: str = "bot"
    local_address: str | None = None
    mode: SubscribeMode = "header"
    subscriber: VideoRoomSubscriber | None = None
    pc: RTCPeerConnection | None = None
    counter: RtpCounter = field(default_factory=RtpCounter)
    mids: dict[str, str] = field(default_factory=dict)  # mid -> kind
    requested_at: float | None = None
    remote_sdp: str | None = None
    rcvbuf: int | None = 2 << 20
    _drains: list[asyncio.Task[None]] = field(default_factory=list)

    async def subscribe(self, room: int, streams: list[JsonDict], *, timeout: float = 10.0) -> None:
        """Join as subscriber to ``streams`` and complete the negotiation."""
        self.subscriber = await VideoRoomSubscriber.attach(self.session, self.opaque_id)
        self.requested_at = time.monotonic()
        response = await self.subscriber.join(room, streams, timeout=timeout)
        assert response.jsep is not None
        self.remote_sdp = response.jsep["sdp"]
        sections = parse_sections(self.remote_sdp)
        self.mids = {s.mid: s.kind for s in sections if s.mid is not None and s.port > 0}
        self.counter.map_mids(self.remote_sdp)
        self.pc = pc = _pc()
        if self.mode == "decode":
            pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(response.jsep["sdp"], response.jsep["type"]))
        with host_candidates_only(self.local_address):
            await pc.setLocalDescription(await pc.createAnswer())
        if self.mode == "header":
            self.counter.hook(pc, rcvbuf=self.rcvbuf)
        else:
            if self.rcvbuf:
                enlarge_receive_buffers(pc, self.rcvbuf)
            for transceiver in pc.getTransceivers():
                self._count(transceiver.receiver)
        await self.subscriber.start(_jsep(pc.localDescription))

    def _count(self, receiver: Any) -> None:
        original = receiver._handle_rtp_packet
        counter = self.counter
        decode = self.mode == "decode"

        async def counting(packet: Any, arrival_time_ms: int) -> None:
            counter.on_rtp(_header_bytes(packet))
            if decode:
                await original(packet, arrival_time_ms)

        setattr(receiver, "_handle_rtp_packet", counting)  # noqa: B010

    def _on_track(self, track: MediaStreamTrack) -> None:
        async def drain() -> None:
            # aiortc queues every decoded frame on the track: consume them so memory stays flat.
            with contextlib.suppress(Exception):
                while True:
                    await track.recv()

        self._drains.append(asyncio.ensure_future(drain()))

    @property
    def packets(self) -> dict[str, int]:
        """Packets received so far per kind."""
        totals = {"audio": 0, "video": 0}
        for mid, n in self.counter.packets_by_mid().items():
            kind = self.mids.get(mid)
            if kind in totals:
                totals[kind] += n
        return totals

    def first_rtp_ms(self) -> float | None:
        """Request → first RTP packet of any stream, in ms."""
        first = self.counter.first_rtp()
        if first is None or self.requested_at is None:
            return None
        return (first - self.requested_at) * 1000

    def all_streams_ms(self) -> float | None:
        """Request → every subscribed stream has delivered a packet, in ms."""
        done = self.counter.first_rtp_all(list(self.mids))
        if done is None or self.requested_at is None:
            return None
        return (done - self.requested_at) * 1000

    async def close(self) -> None:
        """Hang up and leave."""
        for task in self._drains:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.subscriber is not None:
            with contextlib.suppress(Exception):
                await self.subscriber.handle.detach()


def _header_bytes(packet: Any) -> bytes:
    """The 12 header bytes the counter reads (ssrc, sequence number) of a parsed aiortc RtpPacket."""
    return bytes(2) + packet.sequence_number.to_bytes(2, "big") + bytes(4) + packet.ssrc.to_bytes(4, "big")
