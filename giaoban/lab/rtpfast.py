"""RTP at the packet level on top of aiortc's ICE + DTLS-SRTP, for synthetic sites that must be cheap.

aiortc negotiates and runs ICE/DTLS; this module then

* **sends** a pre-packetized clip itself (:class:`PacketPump`, :class:`RawStream`): per packet only a
  12-byte header and a constant header-extension block are written, the packet is SRTP-protected by
  aiortc's libsrtp session and handed to the nominated pair's socket. No encoder, no aiortc sender loop,
  one scheduler task for every stream of the process. It can send several SSRCs on one m-line, which
  is how a bot publishes **simulcast** (``a=ssrc-group:SIM``, Janus's SSRC-based simulcast): aiortc
  itself cannot send simulcast.
* **counts** received RTP (:class:`RtpCounter`) straight from the datagram, before aiortc sees it:
  sequence numbers and SSRC are in the clear in SRTP, so counting, first-packet time and loss (sequence
  gaps) need neither SRTP unprotect nor parsing nor a decoder. DTLS, STUN and RTCP still go to aiortc.

Everything here relies on aiortc/aioice internals (pinned: aiortc 1.16, aioice 0.10): the nominated
candidate pair of the ICE connection, the DTLS transport's SRTP sessions and its RTCP handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
VP8_MAX_PAYLOAD = 1200
_HDR = struct.Struct("!BBHII")


# ---------------------------------------------------------------------------------------------- SDP


@dataclass(slots=True)
class MediaSection:
    """What we need of one m-line: kind, mid, payload types by codec name, header extensions, SSRCs."""

    kind: str
    mid: str | None
    direction: str
    payload_types: dict[str, int]  # lower-case codec name -> first payload type
    extmap: dict[str, int]  # uri -> id
    ssrcs: list[int]
    port: int


_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/]+)/")
_SSRC = re.compile(r"^a=ssrc:(\d+) ")


def parse_sections(sdp: str) -> list[MediaSection]:
    """The audio/video m-lines of an SDP, in order."""
    sections: list[MediaSection] = []
    current: MediaSection | None = None
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            current = MediaSection(parts[0], None, "sendrecv", {}, {}, [], int(parts[1]))
            sections.append(current)
            continue
        if current is None:
            continue
        if line.startswith("a=mid:"):
            current.mid = line[6:]
        elif line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"):
            current.direction = line[2:]
        elif m := _RTPMAP.match(line):
            current.payload_types.setdefault(m.group(2).lower(), int(m.group(1)))
        elif m := _EXTMAP.match(line):
            current.extmap[m.group(2)] = int(m.group(1))
        elif m := _SSRC.match(line):
            ssrc = int(m.group(1))
            if ssrc not in current.ssrcs:
                current.ssrcs.append(ssrc)
    return [s for s in sections if s.kind in ("audio", "video")]


def munge_simulcast(sdp: str, extra_ssrcs: list[int]) -> tuple[str, list[int]]:
    """Declare SSRC simulcast on the first video m-line: ``a=ssrc-group:SIM low … high``.

    aiortc's own video SSRC becomes the highest layer; ``extra_ssrcs`` are the lower ones (lowest first).
    The RTX SSRC and its FID group are dropped (the bots never retransmit). Returns the SDP and the layer
    SSRCs lowest first.
    """
    out: list[str] = []
    in_video = done = False
    cname = "giaoban-bot"
    own: int | None = None
    rtx: set[int] = set()
    lines = sdp.split("\r\n")
    for line in lines:
        if line.startswith("a=ssrc-group:FID "):
            parts = line.split()
            rtx.add(int(parts[2]))
    for line in lines:
        if line.startswith("m="):
            if in_video and not done and own is not None:
                out.extend(_sim_lines(own, extra_ssrcs, cname))
                done = True
            in_video = line.startswith("m=video") and not done
        if in_video and not done:
            if line.startswith("a=ssrc-group:FID "):
                continue
            if m := _SSRC.match(line):
                ssrc = int(m.group(1))
                if ssrc in rtx:
                    continue
                own = ssrc
                if " cname:" in line:
                    cname = line.split(" cname:", 1)[1]
                continue
        out.append(line)
    if in_video and not done and own is not None:
        # the video m-line was the last one: insert before the trailing empty string
        tail = out.pop() if out and out[-1] == "" else None
        out.extend(_sim_lines(own, extra_ssrcs, cname))
        if tail is not None:
            out.append(tail)
        done = True
    if not done or own is None:
        raise ValueError("no video m-line with an SSRC to munge")
    return "\r\n".join(out), [*extra_ssrcs, own]


def _sim_lines(own: int, extra: list[int], cname: str) -> list[str]:
    layers = [*extra, own]
    return [f"a=ssrc:{s} cname:{cname}" for s in layers] + [
        "a=ssrc-group:SIM " + " ".join(str(s) for s in layers)
    ]


# ---------------------------------------------------------------------------------------- packets


def vp8_payloads(frame: bytes) -> list[tuple[bytes, bytes]]:
    """Split an encoded VP8 frame into RTP payloads: ``(descriptor head, data)`` per packet.

    The descriptor is 4 bytes: X/S/PID, the extension octet announcing a picture id, and a 15-bit picture
    id that the sender writes per frame; the head returned here is the constant first 2 bytes.
    """
    out: list[tuple[bytes, bytes]] = []
    for pos in range(0, len(frame), VP8_MAX_PAYLOAD):
        head = bytes((0x90 if pos == 0 else 0x80, 0x80))
        out.append((head, frame[pos : pos + VP8_MAX_PAYLOAD]))
    return out


@dataclass(slots=True)
class PacketizedTrack:
    """A clip track ready to send: per frame its payload pieces, keyframe flag, and interval."""

    kind: str
    clock: int
    interval: float  # seconds between frames
    frames: list[list[tuple[bytes, bytes]]]  # video: (descriptor head, data); audio: (b"", packet)
    keyframes: list[bool]

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError(f"empty {self.kind} track")

    @property
    def packets_per_second(self) -> float:
        return sum(len(f) for f in self.frames) / (len(self.frames) * self.interval)


def header_extension(values: list[tuple[int, bytes]]) -> bytes:
    """A one-byte-header RTP extension block (RFC 8285) with the given (id, value) elements."""
    body = b"".join(bytes(((ext_id << 4) | (len(value) - 1),)) + value for ext_id, value in values)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


class RawStream:
    """One outgoing RTP stream (one SSRC) of a clip track, sent through a connected aiortc transport."""

    def __init__(
        self,
        track: PacketizedTrack,
        *,
        ssrc: int,
        payload_type: int,
        extensions: bytes = b"",
        start_index: int | None = None,
    ) -> None:
        self.track = track
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.extensions = extensions
        self.byte0 = 0x90 if extensions else 0x80
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.picture_id = random.getrandbits(15)
        n = len(track.frames)
        self.index = random.randrange(n) if start_index is None else start_index % n
        self.step = round(track.interval * track.clock)
        self.packets = 0
        self.bytes = 0
        self.keyframe_requests = 0
        self._last_forced = 0.0
        self.send: Callable[[bytes], None] | None = None
        self.closed = False

    def request_keyframe(self) -> None:
        """Answer a PLI/FIR: the next frame sent is the clip's next keyframe (at most every 0.3 s)."""
        now = time.monotonic()
        if self.track.kind != "video" or now - self._last_forced < 0.3:
            return
        self._last_forced = now
        self.keyframe_requests += 1
        keys = self.track.keyframes
        n = len(keys)
        for k in range(n):
            i = (self.index + k) % n
            if keys[i]:
                self.index = i
                return

    def send_frame(self) -> None:
        """Send the current frame's packets and advance."""
        send = self.send
        if send is None or self.closed:
            return
        pieces = self.track.frames[self.index]
        self.index = (self.index + 1) % len(self.track.frames)
        last = len(pieces) - 1
        video = self.track.kind == "video"
        pid = b""
        if video:
            pid = struct.pack("!H", 0x8000 | self.picture_id)
            self.picture_id = (self.picture_id + 1) & 0x7FFF
        for i, (head, data) in enumerate(pieces):
            second = self.payload_type | (0x80 if (video and i == last) else 0)
            header = _HDR.pack(self.byte0, second, self.seq, self.ts, self.ssrc)
            packet = (
                b"".join((header, self.extensions, head, pid, data))
                if video
                else header + (self.extensions + data)
            )
            self.seq = (self.seq + 1) & 0xFFFF
            try:
                send(packet)
            except Exception:  # transport gone: stop this stream, keep the pump alive
                self.closed = True
                return
            self.packets += 1
            self.bytes += len(packet)
        self.ts = (self.ts + self.step) & 0xFFFFFFFF


def transport_sender(pc: Any) -> Callable[[bytes], None]:
    """A function that SRTP-protects an RTP packet and sends it on the PC's nominated ICE pair.

    Needs the PC connected (DTLS done). Bypasses aiortc's async send path: one protect + one sendto.
    """
    transceivers = pc.getTransceivers()
    if not transceivers:
        raise RuntimeError("peer connection has no transceivers")
    dtls = transceivers[0].sender.transport
    if dtls is None or dtls.state != "connected":
        raise RuntimeError("DTLS is not connected yet")
    protect = dtls._tx_srtp.protect
    connection = dtls.transport._connection
    pair = connection._nominated.get(1)
    if pair is None:
        raise RuntimeError("no nominated ICE pair")
    sendto = pair.protocol.transport.sendto
    addr = pair.remote_addr

    def send(packet: bytes) -> None:
        sendto(protect(packet), addr)

    return send


def watch_keyframe_requests(pc: Any, on_request: Callable[[int], None]) -> None:
    """Call ``on_request(media_ssrc)`` for every PLI (and ``0`` for a FIR) Janus sends on this PC."""
    from aiortc.rtp import RtcpPacket, RtcpPsfbPacket

    dtls = pc.getTransceivers()[0].sender.transport
    original = dtls._handle_rtcp_data

    async def hooked(data: bytes) -> None:
        with contextlib.suppress(ValueError):
            for packet in RtcpPacket.parse(data):
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (1, 4):
                    on_request(packet.media_ssrc if packet.fmt == 1 else 0)
        await original(data)

    setattr(dtls, "_handle_rtcp_data", hooked)  # noqa: B010 (instance override of a method)


class PacketPump:
    """Sends every registered stream's frames on time from one task (a heap of due times)."""

    def __init__(self, *, tick: float = 0.004) -> None:
        self.tick = tick
        self._heap: list[tuple[float, int, RawStream]] = []
        self._counter = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.late_max = 0.0  # worst lateness seen (s): the generator falling behind shows here

    def add(self, stream: RawStream, *, start: float | None = None) -> None:
        """Start sending ``stream`` (first frame at ``start``, default now + a random fraction of a frame)."""
        loop_now = time.monotonic()
        first = start if start is not None else loop_now + random.random() * stream.track.interval
        self._counter += 1
        heapq.heappush(self._heap, (first, self._counter, stream))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="packet-pump")

    def remove(self, stream: RawStream) -> None:
        """Stop sending ``stream`` (dropped lazily from the heap)."""
        stream.closed = True

    @property
    def streams(self) -> int:
        return len(self._heap)

    async def _run(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            due = heap[0][0]
            if due > now:
                await asyncio.sleep(max(due - now, self.tick))
                continue
            horizon = now + self.tick / 2
            while heap and heap[0][0] <= horizon:
                due, n, stream = heapq.heappop(heap)
                if stream.closed:
                    continue
                late = now - due
                if late > self.late_max:
                    self.late_max = late
                stream.send_frame()
                nxt = due + stream.track.interval
                if nxt < now - 1.0:  # hopelessly behind (e.g. paused): resynchronize
                    nxt = now
                heapq.heappush(heap, (nxt, n, stream))
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Stop the pump."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._heap.clear()


# ---------------------------------------------------------------------------------------- receiving


@dataclass(slots=True)
class SsrcCount:
    """Packets of one SSRC: count, first arrival, highest extended sequence number."""

    mid: str | None
    first_at: float
    first_seq: int
    packets: int = 0
    last_seq: int = 0
    cycles: int = 0

    @property
    def highest(self) -> int:
        return self.cycles + self.last_seq

    @property
    def expected(self) -> int:
        return self.highest - self.first_seq + 1


@dataclass(slots=True)
class CountSnapshot:
    """Totals at one instant, to difference over a window."""

    at: float
    packets: int
    expected: int
    by_mid: dict[str, int]


@dataclass
class RtpCounter:
    """Counts the RTP packets a PeerConnection receives, by SSRC and mid, without decrypting them."""

    ssrc_mid: dict[int, str] = field(default_factory=dict)
    by_ssrc: dict[int, SsrcCount] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)

    def on_rtp(self, data: bytes) -> None:
        """Account one RTP packet (SRTP or plain: the header is the same)."""
        ssrc = int.from_bytes(data[8:12], "big")
        seq = (data[2] << 8) | data[3]
        c = self.by_ssrc.get(ssrc)
        if c is None:
            c = self.by_ssrc[ssrc] = SsrcCount(self.ssrc_mid.get(ssrc), time.monotonic(), seq, 0, seq)
        elif ((seq - c.last_seq) & 0xFFFF) < 0x8000:
            if seq < c.last_seq:
                c.cycles += 0x10000
            c.last_seq = seq
        c.packets += 1

    def hook(self, pc: Any, *, rcvbuf: int | None = 2 << 20, burst: int = 64) -> None:
        """Take RTP off the PC's ICE sockets before aiortc sees it (DTLS/STUN/RTCP still go through).

        asyncio reads one datagram per socket per loop iteration, which caps a busy socket (the host's
        wall: thousands of packets/s) at the loop's iteration rate; so after each datagram the hook
        drains up to ``burst`` more from the non-blocking socket itself. ``rcvbuf`` enlarges the
        receive buffers so that a generator that stalls for a moment (a shared machine) does not drop
        what Janus sent: that would be counted as loss.
        """
        if rcvbuf:
            enlarge_receive_buffers(pc, rcvbuf)
        on_rtp = self.on_rtp
        for protocol in _ice_connection(pc)._protocols:
            original = protocol.datagram_received
            # The transport's own socket (get_extra_info gives a wrapper without recvfrom).
            sock = getattr(protocol.transport, "_sock", None)
            recvfrom = getattr(sock, "recvfrom", None)

            def datagram_received(
                data: bytes, addr: Any, _original: Any = original, _recvfrom: Any = recvfrom
            ) -> None:
                for _ in range(burst + 1):
                    if len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224:
                        on_rtp(data)
                    else:
                        _original(data, addr)
                    if _recvfrom is None:
                        return
                    try:
                        data, addr = _recvfrom(65536)
                    except OSError:  # BlockingIOError: drained; anything else: let asyncio see it
                        return

            setattr(protocol, "datagram_received", datagram_received)  # noqa: B010

    def map_mids(self, sdp: str) -> None:
        """Learn which SSRC is which mid from the remote offer."""
        for section in parse_sections(sdp):
            for ssrc in section.ssrcs:
                if section.mid is not None:
                    self.ssrc_mid[ssrc] = section.mid
        for ssrc, c in self.by_ssrc.items():
            c.mid = self.ssrc_mid.get(ssrc, c.mid)

    @property
    def packets(self) -> int:
        return sum(c.packets for c in self.by_ssrc.values())

    def packets_by_mid(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.by_ssrc.values():
            key = c.mid or "?"
            out[key] = out.get(key, 0) + c.packets
        return out

    def first_rtp(self) -> float | None:
        """Monotonic time of the first RTP packet, if any came."""
        return min((c.first_at for c in self.by_ssrc.values()), default=None)

    def first_rtp_all(self, mids: list[str]) -> float | None:
        """Monotonic time by which every one of ``mids`` had received a packet (None if one has not)."""
        firsts: dict[str, float] = {}
        for c in self.by_ssrc.values():
            if c.mid is not None:
                firsts[c.mid] = min(firsts.get(c.mid, c.first_at), c.first_at)
        if not mids or any(m not in firsts for m in mids):
            return None
        return max(firsts[m] for m in mids)

    def snapshot(self) -> CountSnapshot:
        return CountSnapshot(
            time.monotonic(),
            sum(c.packets for c in self.by_ssrc.values()),
            sum(c.expected for c in self.by_ssrc.values()),
            self.packets_by_mid(),
        )


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def set_receive_buffer(sock: Any, size: int) -> None:
    """Set a socket's receive buffer to ``size`` (past net.core.rmem_max when root)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def enlarge_receive_buffers(pc: Any, size: int) -> None:
    """Enlarge the receive buffers of every ICE socket of a PeerConnection."""
    for protocol in _ice_connection(pc)._protocols:
        set_receive_buffer(protocol.transport.get_extra_info("socket"), size)


def _ice_connection(pc: Any) -> Any:
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is not None:
            return transport.transport._connection
    raise RuntimeError("peer connection has no transport yet")


def window_loss(before: CountSnapshot, after: CountSnapshot) -> tuple[int, int]:
    """(received, lost) between two snapshots of one counter."""
    received = after.packets - before.packets
    expected = after.expected - before.expected
    return received, max(0, expected - received)
