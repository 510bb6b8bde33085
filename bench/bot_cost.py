"""CPU cost of one synthetic site, per approach (run on demand as root; prints a table).

    .venv/bin/python bench/bot_cost.py [--bots 10] [--window 8] [--nice -10]

A lab Janus is pinned to CPU 0 and this process (the generator) to CPU 1. For each approach, ``--bots``
bots run for ``--window`` seconds and the generator's CPU time is divided by the number of bots:

* publish ``aiortc``: aiortc's RTCRtpSender packetizes the pre-encoded clip (no encoding);
* publish ``raw``: pre-packetized clip sent by one PacketPump (header + SRTP protect + sendto);
* subscribe ``decode`` / ``rtp`` / ``header``: each bot subscribes to one raw publisher's audio+video
  (~112 packets/s); decode = plain aiortc (VP8 + Opus decoded), rtp = aiortc unprotects and parses, a
  counter replaces the jitter buffer and decoder, header = counted from the datagram header before aiortc
  (no SRTP unprotect). The publisher's own cost (measured alone first) is subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import time
from pathlib import Path

from giaoban.lab.bots import ClipSet, PublisherBot, SubscriberBot
from giaoban.lab.loadrun import LoadConfig, MediaLab
from giaoban.lab.rtpfast import PacketPump
from giaoban.media.client import JanusClient
from giaoban.media.videoroom import RoomOptions, VideoRoom


async def window_cpu(seconds: float) -> tuple[float, float]:
    """(CPU % of one core used by this process, packets) over ``seconds``."""
    gc.collect()
    c0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (time.process_time() - c0) / (time.monotonic() - t0), 0.0


async def run(bots: int, window: float) -> list[tuple[str, float, float, str]]:
    clips = ClipSet.ensure()
    rows: list[tuple[str, float, float, str]] = []
    async with MediaLab(LoadConfig()) as lab, JanusClient(lab.url, api_secret=lab.api_secret) as client:
        session = await client.create_session()
        vr = await VideoRoom.attach(session)
        room = await vr.create(options=RoomOptions(secret="s", publishers=bots + 5))
        pump = PacketPump()
        idle, _ = await window_cpu(window / 2)
        rows.append(("idle (signalling, keepalives)", idle, 0.0, ""))

        for mode in ("aiortc", "raw"):
            pubs = [
                PublisherBot(
                    await client.create_session(),
                    clip=clips.high,
                    opaque_id=f"{mode}-{i}",
                    local_address=lab.local_address,
                    mode=mode,  # type: ignore[arg-type]
                    clips=clips,
                    pump=pump,
                )
                for i in range(bots)
            ]
            for p in pubs:
                await p.join_and_publish(room)
            await asyncio.sleep(1)
            cpu, _ = await window_cpu(window)
            per = (cpu - idle) / bots
            rows.append((f"publish {mode} (audio+video, ~110 pkt/s)", cpu, per, f"{bots} bots"))
            for p in pubs:
                await p.close()

        source = PublisherBot(
            await client.create_session(),
            opaque_id="source",
            local_address=lab.local_address,
            clips=clips,
            pump=pump,
        )
        await source.join_and_publish(room)
        await asyncio.sleep(1)
        base, _ = await window_cpu(window)
        rows.append(("one raw publisher (baseline for subscribers)", base, 0.0, ""))
        for mode in ("decode", "rtp", "header"):
            subs = [
                SubscriberBot(
                    await client.create_session(),
                    opaque_id=f"{mode}-{i}",
                    local_address=lab.local_address,
                    mode=mode,  # type: ignore[arg-type]
                )
                for i in range(bots)
            ]
            for s in subs:
                await s.subscribe(room, [{"feed": source.id}])
            await asyncio.sleep(1.5)
            before = sum(sum(s.packets.values()) for s in subs)
            cpu, _ = await window_cpu(window)
            rate = (sum(sum(s.packets.values()) for s in subs) - before) / window / bots
            per = (cpu - base) / bots
            rows.append((f"subscribe {mode}", cpu, per, f"{bots} bots, {rate:.0f} pkt/s each"))
            for s in subs:
                await s.close()
        await source.close()
        await pump.close()
        with contextlib.suppress(Exception):
            await vr.destroy(room, "s")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--nice", type=int, default=0, help="nice value (and session autogroup) for the run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespace lab)", file=sys.stderr)
        return 2
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(args.nice))
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    rows = asyncio.run(run(args.bots, args.window))
    print("| approach | generator CPU (% of one core) | per bot (% of one core) | notes |")
    print("|---|---|---|---|")
    for name, cpu, per, note in rows:
        print(f"| {name} | {cpu:.1f} | {per:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
