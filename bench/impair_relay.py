"""Capacity of the userspace impairment relay (giaoban/lab/impair.py): frames/s and CPU (as root).

    .venv/bin/python bench/impair_relay.py [--seconds 4] [--rates 300,1000,3000,10000,30000]

One impairable lab link (root ─ relay namespace ─ a namespace). For each profile and offered rate, this
process sends UDP datagrams of ``--size`` bytes a→b, paced in 1 ms bursts, to a sink in the namespace
(one more "site-like" row also sends b→a from inside the namespace). Figures per row: frames/s the relay
received and sent (its own counters), frames it dropped by profile (loss) and by the kernel (its socket
buffer overflowing), and the relay's CPU (Δ utime+stime of /proc/<pid>/stat) as % of one core and µs
per frame received. Profiles: ``transparent`` (frames forwarded at once) and ``loss10+delay200``
(every frame through the random draw and the delay queue).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from giaoban.lab.netns import Link, NetLab, missing_requirements

SINK = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((sys.argv[1],int(sys.argv[2])))\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,1<<23)\n"
    "while True: s.recv(4096)\n"
)
BLAST = (
    "import socket,sys,time\n"
    "dst=(sys.argv[1],int(sys.argv[2]));rate=float(sys.argv[3]);size=int(sys.argv[4]);end=time.monotonic()+float(sys.argv[5])\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);data=b'x'*size;sent=0;t0=time.monotonic()\n"
    "while True:\n"
    " now=time.monotonic()\n"
    " if now>=end: break\n"
    " due=int((now-t0)*rate)\n"
    " while sent<due: s.sendto(data,dst);sent+=1\n"
    " time.sleep(0.001)\n"
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    lab: NetLab, ns: str, link: Link, rate: float, size: int, seconds: float, both: bool
) -> dict[str, float]:
    relay = link.relay
    assert relay is not None
    before, cpu0, t0 = relay.stats(), cpu_seconds(relay.pid), time.monotonic()
    blasters = [
        subprocess.Popen(
            [sys.executable, "-c", BLAST, link.addr_b, "9000", str(rate), str(size), str(seconds)]
        )
    ]
    if both:
        blasters.append(
            lab.spawn(
                ns, [sys.executable, "-c", BLAST, link.addr_a, "9001", str(rate), str(size), str(seconds)]
            )
        )
    for proc in blasters:
        proc.wait(seconds + 30)
    time.sleep(0.5)  # let the delay queue drain
    after, cpu1, t1 = relay.stats(), cpu_seconds(relay.pid), time.monotonic()
    delta = {k: sum(after[d][k] - before[d][k] for d in ("ab", "ba")) for k in after["ab"] if k != "queued"}
    wall = t1 - t0
    return {
        "rx_pps": delta["rx"] / seconds,
        "tx_pps": delta["tx"] / seconds,
        "lost": delta["lost"],
        "kernel_drops": delta["kernel_drops"],
        "cpu_pct": 100 * (cpu1 - cpu0) / wall,
        "us_per_frame": 1e6 * (cpu1 - cpu0) / max(1, delta["rx"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=1200, help="UDP payload bytes")
    parser.add_argument("--rates", default="300,1000,3000,10000,30000", help="offered frames/s, a→b")
    args = parser.parse_args()
    reason = missing_requirements()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    rates = [float(r) for r in args.rates.split(",")]
    with NetLab(impair="relay") as lab:
        ns = lab.netns("bench")
        link = lab.link(None, ns, impairable=True)
        lab.spawn(ns, [sys.executable, "-c", SINK, link.addr_b, "9000"])
        lab.spawn(None, [sys.executable, "-c", SINK, link.addr_a, "9001"])
        time.sleep(0.5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as warm:  # resolve ARP before measuring
            warm.sendto(b"warm", (link.addr_b, 9000))
        time.sleep(0.2)
        print(
            f"load average before: {os.getloadavg()[0]:.1f}; {args.size}-byte payloads, {args.seconds:g} s per row"
        )
        print()
        print(
            "| profile | offered frames/s | received/s | sent/s | lost (profile) | kernel drops | relay CPU % of a core | µs per frame |"
        )
        print("|---|---|---|---|---|---|---|---|")
        rows: list[tuple[str, float, bool]] = [("transparent", r, False) for r in rates]
        rows += [("loss10+delay200", r, False) for r in rates]
        rows += [("site-like both ways, loss10+delay200", 300.0, True)]
        for profile, rate, both in rows:
            if profile == "transparent":
                lab.unshape(link)
            else:
                lab.shape(link, loss_pct=10, delay_ms=200)
            m = measure(lab, ns, link, rate, args.size, args.seconds, both)
            offered = f"{rate:g}" + (" each way" if both else "")
            print(
                f"| {profile} | {offered} | {m['rx_pps']:.0f} | {m['tx_pps']:.0f} | {m['lost']:.0f} |"
                f" {m['kernel_drops']:.0f} | {m['cpu_pct']:.1f} | {m['us_per_frame']:.1f} |",
                flush=True,
            )
        print()
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
