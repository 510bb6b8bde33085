"""A userspace layer-2 impairment relay: loss, delay, jitter, rate limit and outage between two interfaces.

Runs as its own process in a "middle" network namespace that holds two interfaces without IP addresses
(the inner ends of two veth pairs whose outer ends are the two sides of a lab link)::

    python -m giaoban.lab.impair --a IF_A --b IF_B [--buffer-bytes N] [--seed S]

(or ``python path/to/impair.py …``: this module imports only the standard library, so NetLab runs it by
path and skips the package's imports). Every Ethernet frame received on ``IF_A`` is sent out of ``IF_B``
(direction ``ab``) and vice versa (``ba``), through an AF_PACKET/ETH_P_ALL socket per interface. The
kernel of the middle namespace must not handle the frames itself: NetLab gives the interfaces no IPv4
address, disables IPv6 there and leaves ``ip_forward`` at 0, so the middle stack drops what it sees.

Per direction, in this order:

* **outage** — every frame is dropped silently and frames still queued are discarded (a cable cut far
  away: both interfaces keep their carrier, senders notice nothing locally);
* **loss** — each frame is dropped with probability ``loss_pct`` / 100 (independent, uniform);
* **rate** — ``rate_kbit`` serializes frames as a link of that speed would: a frame leaves the "wire"
  ``len*8/rate`` after the previous one. Frames wait in a FIFO bounded by ``buffer_bytes`` (the backlog
  the link has not yet sent); a frame that does not fit is dropped (tail drop);
* **delay / jitter** — a frame is delivered ``delay_ms`` + a uniform sample in ``[-jitter_ms,
  +jitter_ms]`` (never below 0) after it left the rate stage, but **never before the frame ahead of it**:
  no reordering, so jitter only ever stretches gaps (netem reorders instead; RTP and TCP cope with both).

Control: one JSON object per line on stdin, one JSON answer per line on stdout (after ``{"ready": true,
"pid": …}`` once the sockets are bound). Commands:

* ``{"cmd": "set", "dir": "ab"|"ba"|"both", "loss_pct": 10, "delay_ms": 200, "jitter_ms": 0,
  "rate_kbit": 2000 | null, "buffer_bytes": 262144, "outage": false}`` — fields given replace the
  current ones of that direction, the others stay (so ``{"cmd": "set", "outage": true}`` then
  ``…false`` cuts and restores a link and keeps its loss/delay);
* ``{"cmd": "clear", "dir": …}`` — back to a transparent link;
* ``{"cmd": "stats"}`` — counters per direction;
* ``{"cmd": "quit"}``.

Answers: ``{"ok": true, "profile": {"ab": {...}, "ba": {...}}}`` (``stats`` adds ``"stats"``), or
``{"ok": false, "error": "..."}`` for a bad command, which changes nothing. End of stdin (the owner went
away) ends the relay too.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import dataclasses
import errno
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_OUTGOING = 4
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23  # Linux ≥ 4.20; older kernels: outgoing copies are filtered by pkttype
PR_SET_PDEATHSIG = 1
MAX_FRAME = 65536
DEFAULT_BUFFER = 256 * 1024
DIRECTIONS = ("ab", "ba")


@dataclasses.dataclass(slots=True)
class Profile:
    """The impairment of one direction."""

    loss_pct: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbit: float | None = None
    buffer_bytes: int = DEFAULT_BUFFER
    outage: bool = False

    @property
    def transparent(self) -> bool:
        return not (self.loss_pct or self.delay_ms or self.jitter_ms or self.rate_kbit or self.outage)


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def apply_changes(profile: Profile, changes: dict[str, Any]) -> Profile:
    """A copy of ``profile`` with ``changes`` validated and applied (ValueError names the bad field)."""
    new = dataclasses.replace(profile)
    for key, value in changes.items():
        if key == "loss_pct":
            new.loss_pct = _number(key, value, 0, 100)
        elif key == "delay_ms":
            new.delay_ms = _number(key, value, 0, 60_000)
        elif key == "jitter_ms":
            new.jitter_ms = _number(key, value, 0, 60_000)
        elif key == "rate_kbit":
            new.rate_kbit = None if value is None else _number(key, value, 8, 100_000_000)
        elif key == "buffer_bytes":
            new.buffer_bytes = int(_number(key, value, 1600, 1 << 28))
        elif key == "outage":
            if not isinstance(value, bool):
                raise ValueError(f"outage must be true or false, got {value!r}")
            new.outage = value
        else:
            raise ValueError(f"unknown field {key!r}")
    return new


@dataclasses.dataclass(slots=True)
class Counters:
    rx: int = 0
    tx: int = 0
    lost: int = 0  # random loss
    cut: int = 0  # outage
    overflow: int = 0  # rate-limit buffer full
    errors: int = 0  # sendto failed
    kernel_drops: int = 0  # dropped by the kernel before the relay read them (socket buffer full)


class Direction:
    """One way through the relay: impairment profile, FIFO of frames waiting, counters."""

    def __init__(self, name: str, out: socket.socket, rng: random.Random) -> None:
        self.name = name
        self.out = out
        self.rng = rng
        self.profile = Profile()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.counters = Counters()
        self.wire_free = 0.0  # when the rate-limited "wire" finishes sending what it has accepted
        self.last_due = 0.0  # due time of the newest queued frame (keeps the FIFO in order)

    def set_profile(self, profile: Profile) -> None:
        if profile.outage and not self.profile.outage:
            self.counters.cut += len(self.queue)
            self.queue.clear()
        self.profile = profile

    def arrive(self, frame: memoryview, now: float) -> None:
        """Handle a frame received for this direction at ``now`` (monotonic seconds)."""
        c = self.counters
        c.rx += 1
        p = self.profile
        if p.transparent and not self.queue:
            self._send(frame)
            return
        if p.outage:
            c.cut += 1
            return
        if p.loss_pct and self.rng.random() * 100.0 < p.loss_pct:
            c.lost += 1
            return
        leave = now
        if p.rate_kbit:
            start = max(now, self.wire_free)
            if (start - now) * p.rate_kbit * 125.0 + len(frame) > p.buffer_bytes:
                c.overflow += 1
                return
            leave = start + len(frame) * 8 / (p.rate_kbit * 1000.0)
            self.wire_free = leave
        due = leave + p.delay_ms / 1000.0
        if p.jitter_ms:
            due += self.rng.uniform(-p.jitter_ms, p.jitter_ms) / 1000.0
        due = max(due, now, self.last_due)
        self.last_due = due
        if due <= now and not self.queue:
            self._send(frame)
        else:
            self.queue.append((due, bytes(frame)))

    def flush(self, now: float) -> None:
        """Send every queued frame that is due."""
        queue = self.queue
        while queue and queue[0][0] <= now:
            self._send(queue.popleft()[1])

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def _send(self, frame: bytes | memoryview) -> None:
        try:
            self.out.send(frame)
            self.counters.tx += 1
        except OSError:
            self.counters.errors += 1

    def stats(self) -> dict[str, int]:
        return {**dataclasses.asdict(self.counters), "queued": len(self.queue)}


def _packet_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with contextlib.suppress(OSError):
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    for opt, size in ((33, 8 << 20), (32, 4 << 20)):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE (we are root)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Relay:
    """The relay's event loop: two packet sockets, the control channel, the two directions."""

    def __init__(self, if_a: str, if_b: str, *, buffer_bytes: int = DEFAULT_BUFFER, seed: int | None = None):
        self.sock_a = _packet_socket(if_a)
        self.sock_b = _packet_socket(if_b)
        rng = random.Random(seed)
        self.dirs = {"ab": Direction("ab", self.sock_b, rng), "ba": Direction("ba", self.sock_a, rng)}
        for d in self.dirs.values():
            d.profile.buffer_bytes = buffer_bytes
        self.running = True
        self._control = b""

    def _kernel_drops(self) -> None:
        for sock, name in ((self.sock_a, "ab"), (self.sock_b, "ba")):
            with contextlib.suppress(OSError):  # struct tpacket_stats {packets, drops}; reading resets it
                _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                self.dirs[name].counters.kernel_drops += drops

    def profiles(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(d.profile) for name, d in self.dirs.items()}

    def command(self, line: str) -> dict[str, Any]:
        """Execute one control line; the answer to print."""
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("a command is a JSON object")
            msg = dict(msg)
            cmd = msg.pop("cmd", None)
            which = msg.pop("dir", "both")
            if which not in ("ab", "ba", "both"):
                raise ValueError(f"dir must be 'ab', 'ba' or 'both', got {which!r}")
            names = DIRECTIONS if which == "both" else (which,)
            if cmd == "set":
                new = {n: apply_changes(self.dirs[n].profile, msg) for n in names}  # all valid, or none
                for n, profile in new.items():
                    self.dirs[n].set_profile(profile)
            elif cmd == "clear":
                if msg:
                    raise ValueError(f"clear takes only 'dir', got {sorted(msg)}")
                for n in names:
                    buffer = self.dirs[n].profile.buffer_bytes
                    self.dirs[n].set_profile(Profile(buffer_bytes=buffer))
            elif cmd == "stats":
                self._kernel_drops()
                return {
                    "ok": True,
                    "profile": self.profiles(),
                    "stats": {n: d.stats() for n, d in self.dirs.items()},
                }
            elif cmd == "quit":
                self.running = False
            else:
                raise ValueError(f"unknown cmd {cmd!r} (set, clear, stats, quit)")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "profile": self.profiles()}

    def _reply(self, answer: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    def _read_control(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.running = False
            return
        self._control += chunk
        while b"\n" in self._control:
            line, self._control = self._control.split(b"\n", 1)
            if line.strip():
                self._reply(self.command(line.decode("utf-8", "replace")))

    def _drain(self, sock: socket.socket, direction: Direction, buf: bytearray, view: memoryview) -> None:
        """Read every frame waiting on ``sock`` (bounded, so the other side is not starved)."""
        for _ in range(256):
            try:
                n, addr = sock.recvfrom_into(buf)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.ENETDOWN):
                    return
                raise
            if addr[2] == PACKET_OUTGOING:
                continue
            direction.arrive(view[:n], time.monotonic())

    def run(self, control_fd: int | None = 0) -> None:
        poller = select.epoll()
        fa, fb = self.sock_a.fileno(), self.sock_b.fileno()
        poller.register(fa, select.EPOLLIN)
        poller.register(fb, select.EPOLLIN)
        if control_fd is not None:
            os.set_blocking(control_fd, False)
            poller.register(control_fd, select.EPOLLIN)
        buf = bytearray(MAX_FRAME)
        view = memoryview(buf)
        ab, ba = self.dirs["ab"], self.dirs["ba"]
        self._reply({"ready": True, "pid": os.getpid()})
        while self.running:
            dues = [d for d in (ab.next_due(), ba.next_due()) if d is not None]
            timeout = max(0.0, min(dues) - time.monotonic()) if dues else -1
            for fd, _events in poller.poll(timeout):
                if fd == fa:
                    self._drain(self.sock_a, ab, buf, view)
                elif fd == fb:
                    self._drain(self.sock_b, ba, buf, view)
                else:
                    self._read_control(fd)
            now = time.monotonic()
            ab.flush(now)
            ba.flush(now)
        poller.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Layer-2 impairment relay between two interfaces.")
    parser.add_argument("--a", required=True, help="interface of side a")
    parser.add_argument("--b", required=True, help="interface of side b")
    parser.add_argument(
        "--buffer-bytes", type=int, default=DEFAULT_BUFFER, help="rate-limit queue per direction"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the loss/jitter generator")
    args = parser.parse_args(argv)
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        relay = Relay(args.a, args.b, buffer_bytes=args.buffer_bytes, seed=args.seed)
    except OSError as exc:
        print(json.dumps({"ready": False, "error": f"cannot open {args.a}/{args.b}: {exc}"}), flush=True)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
