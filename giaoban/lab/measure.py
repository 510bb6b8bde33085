"""What both load tests share (``giaoban loadtest media`` and ``briefing``): percentiles, readings
from /proc, and running a load's coroutine to print its report.

Standard library only, so the command modules that import it stay light (aiortc is imported when a
load runs, not when its options are parsed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-len(ordered) * pct // 100)) - 1))
    return ordered[rank]


def log_warnings(fmt: str | None = None) -> None:
    """A load test's logging: warnings and errors on stderr; aioice's and aiortc's errors only."""
    if fmt:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=fmt)
    else:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("aioice").setLevel(logging.ERROR)
    logging.getLogger("aiortc").setLevel(logging.ERROR)


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, all threads) of a process, from /proc/<pid>/stat (None: no such pid)."""
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_times(cpu: int) -> tuple[int, int, int] | None:
    """(busy, softirq+irq, total) jiffies of one CPU from /proc/stat."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                total = sum(v[:8])
                return total - idle, v[5] + v[6], total
    except (OSError, ValueError, IndexError):
        return None
    return None


def udp_rcvbuf_errors(netns: str | None = None) -> int | None:
    """UDP datagrams dropped for a full receive buffer (RcvbufErrors) in a network namespace."""
    try:
        if netns is None:
            text = Path("/proc/net/snmp").read_text()
        else:
            proc = subprocess.run(
                ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            text = proc.stdout
        rows = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def udp_socket_drops(ports: set[int]) -> int:
    """Datagrams dropped by the kernel on our own UDP sockets (``drops`` of /proc/net/udp by local port)."""
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            with contextlib.suppress(IndexError, ValueError):
                if int(cols[1].rsplit(":", 1)[1], 16) in ports:
                    total += int(cols[-1])
    return total


def local_ports(pc: Any) -> set[int]:
    """Local UDP ports of a PeerConnection's ICE sockets."""
    ports: set[int] = set()
    with contextlib.suppress(Exception):
        for transceiver in pc.getTransceivers():
            transport = transceiver.receiver.transport
            if transport is None:
                continue
            for protocol in transport.transport._connection._protocols:
                sock = protocol.transport.get_extra_info("socket")
                if sock is not None:
                    ports.add(sock.getsockname()[1])
            break
    return ports


class Report(Protocol):
    """What a load run returns: its error count and its figures as JSON."""

    errors: int

    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Report)


def run_and_report(
    main: Callable[[], Awaitable[R]],
    *,
    budget: float,
    nice: int,
    generator_cpu: int,
    as_json: bool,
    table: Callable[[R], str],
) -> int:
    """Run a load test's coroutine within ``budget`` seconds and print its result (a table, or one JSON
    object); the exit code of ``giaoban loadtest …``: 0 without errors, 1 with errors or out of time,
    2 when it could not run, 130 when interrupted.

    ``nice`` (when not 0) is applied to this process and its session, so the lab processes it starts
    inherit it; the generator (this process) runs on ``generator_cpu`` when the machine has several."""
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        # With sched_autogroup, nice only ranks processes inside one session: set the session's too.
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(nice))
    previous = None
    if (os.cpu_count() or 1) > 1:
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {generator_cpu})

    async def bounded() -> R:
        return await asyncio.wait_for(main(), budget)

    try:
        result = asyncio.run(bounded())
    except TimeoutError:
        print(f"load test did not finish within {budget:.0f} s", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("load test interrupted; its lab was torn down", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as exc:
        print(f"load test failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print(table(result))
    return 0 if result.errors == 0 else 1
