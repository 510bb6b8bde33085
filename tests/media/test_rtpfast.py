"""The packet-level RTP helpers of the bots (no Janus, no network)."""

from __future__ import annotations

import asyncio
import struct

from giaoban.lab.rtpfast import (
    MID_URI,
    PacketizedTrack,
    PacketPump,
    RawStream,
    RtpCounter,
    header_extension,
    munge_simulcast,
    parse_sections,
    vp8_payloads,
    window_loss,
)

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=sendonly",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=rtpmap:111 opus/48000/2",
        "a=ssrc:1111 cname:bot",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=sendonly",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=ssrc-group:FID 2222 3333",
        "a=ssrc:2222 cname:bot",
        "a=ssrc:3333 cname:bot",
        "",
    ]
)


def test_parse_sections() -> None:
    audio, video = parse_sections(OFFER)
    assert (audio.kind, audio.mid, audio.payload_types["opus"], audio.ssrcs) == ("audio", "0", 111, [1111])
    assert video.payload_types == {"vp8": 96, "rtx": 97} and video.ssrcs == [2222, 3333]
    assert video.extmap[MID_URI] == 1 and video.direction == "sendonly"


def test_munge_simulcast_declares_a_sim_group_low_first() -> None:
    sdp, layers = munge_simulcast(OFFER, [4444])
    assert layers == [4444, 2222]
    assert "a=ssrc-group:SIM 4444 2222" in sdp
    assert "FID" not in sdp and "a=ssrc:3333" not in sdp and "a=ssrc:1111 cname:bot" in sdp
    video = parse_sections(sdp)[1]
    assert video.ssrcs == [4444, 2222]
    assert sdp.endswith("\r\n")


def test_header_extension_is_rfc8285_one_byte() -> None:
    block = header_extension([(1, b"1"), (3, b"\x80")])
    assert block[:2] == b"\xbe\xde" and len(block) % 4 == 0
    assert struct.unpack("!H", block[2:4])[0] == (len(block) - 4) // 4
    assert block[4:8] == bytes([0x10, ord("1"), 0x30, 0x80])


def _track(frames: list[list[tuple[bytes, bytes]]], keys: list[bool], kind: str = "video") -> PacketizedTrack:
    return PacketizedTrack(kind, 90_000, 1 / 30, frames, keys)


def test_raw_stream_writes_headers_marker_and_picture_ids() -> None:
    frames = [vp8_payloads(b"k" * 2500), vp8_payloads(b"d" * 100), vp8_payloads(b"d" * 100)]
    assert len(frames[0]) == 3 and frames[0][0][0][0] & 0x10 and not frames[0][1][0][0] & 0x10
    stream = RawStream(_track(frames, [True, False, False]), ssrc=42, payload_type=96, start_index=0)
    sent: list[bytes] = []
    stream.send = sent.append
    stream.send_frame()
    stream.send_frame()
    assert len(sent) == 4
    seqs = [struct.unpack("!H", p[2:4])[0] for p in sent]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3]
    assert [p[1] & 0x80 for p in sent] == [0, 0, 0x80, 0x80]  # marker on each frame's last packet
    ts = [struct.unpack("!I", p[4:8])[0] for p in sent]
    assert ts[0] == ts[1] == ts[2] and (ts[3] - ts[0]) & 0xFFFFFFFF == 3000
    assert all(struct.unpack("!I", p[8:12])[0] == 42 for p in sent)
    pids = [struct.unpack("!H", p[14:16])[0] & 0x7FFF for p in sent]
    assert pids[0] == pids[2] and (pids[3] - pids[0]) & 0x7FFF == 1
    # A PLI makes the next frame the clip's next keyframe (here: wrap around to frame 0).
    stream.request_keyframe()
    assert stream.index == 0 and stream.keyframe_requests == 1


def test_rtp_counter_sequence_wrap_loss_and_mids() -> None:
    counter = RtpCounter(ssrc_mid={7: "1"})

    def rtp(seq: int, ssrc: int = 7) -> bytes:
        return struct.pack("!BBHII", 0x80, 96, seq, 0, ssrc)

    before = counter.snapshot()
    for seq in [65533, 65534, 65535, 0, 2, 3, 1]:  # 1 arrives late (reordered), nothing lost
        counter.on_rtp(rtp(seq))
    counter.on_rtp(rtp(10))  # 4..9 lost
    counter.on_rtp(rtp(5, ssrc=8))
    after = counter.snapshot()
    received, lost = window_loss(before, after)
    assert received == 9 and lost == 6
    assert counter.packets_by_mid() == {"1": 8, "?": 1}
    assert counter.first_rtp() is not None and counter.first_rtp_all(["1"]) is not None
    assert counter.first_rtp_all(["1", "2"]) is None


def test_packet_pump_paces_frames() -> None:
    async def scenario() -> tuple[int, int]:
        pump = PacketPump()
        video = RawStream(
            _track([[(b"\x90\x80", b"x")]] * 30, [True] + [False] * 29), ssrc=1, payload_type=96
        )
        audio = RawStream(
            PacketizedTrack("audio", 48_000, 0.02, [[(b"", b"o")]] * 50, [False] * 50),
            ssrc=2,
            payload_type=111,
        )
        counts = {1: 0, 2: 0}
        video.send = lambda p: counts.__setitem__(1, counts[1] + 1)
        audio.send = lambda p: counts.__setitem__(2, counts[2] + 1)
        pump.add(video)
        pump.add(audio)
        await asyncio.sleep(1.0)
        await pump.close()
        return counts[1], counts[2]

    video, audio = asyncio.run(scenario())
    assert 25 <= video <= 33 and 42 <= audio <= 53, (video, audio)
