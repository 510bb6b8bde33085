"""A throwaway network lab: namespaces, veth links, link shaping, processes inside namespaces.

Used by the media test fixtures and by load tests that run Janus and synthetic sites on one machine.
Janus 1.1.2 never offers loopback ICE candidates, so media between two processes of one machine needs a
real interface: a veth pair into a namespace gives one, and it also lets us shape a "site" link.

Everything created carries the owner's pid in its name (``gb<pid hex>x…``) so that :func:`sweep_stale`
can remove what a killed run left behind, without touching a concurrent run. Names of interfaces stay
within Linux's 15 characters. Subnets are ``10.x.y.0/24`` chosen to overlap no existing route.
Traffic stays on the links we create: nothing here ever targets another address.

Shaping uses ``tc netem`` where the kernel has it. Where it has not (this project's VMs), an *impairable*
link (``link(a, b, impairable=True)``) runs through a relay namespace in the middle, where
:mod:`giaoban.lab.impair` forwards every frame between two veth pairs and applies loss, delay, jitter,
rate limit and outage in userspace.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import ipaddress
import json
import logging
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

IFNAMSIZ = 15
_COUNTER = 0
_COUNTER_LOCK = threading.Lock()
_NAME_RE = re.compile(r"^gb([0-9a-f]{1,6})x")
IMPAIR_SCRIPT = Path(__file__).with_name("impair.py")  # run by path: stdlib only, no package imports

# ethtool ioctls (linux/ethtool.h, legacy single-feature commands): no `ethtool` binary needed.
_SIOCETHTOOL = 0x8946
_ETHTOOL_SET = {"tx-checksum": 0x17, "sg": 0x19, "tso": 0x1F, "gso": 0x24}


class NetLabError(RuntimeError):
    """A lab command failed."""


class NetLabUnsupported(NetLabError):
    """The kernel lacks a feature (e.g. the netem qdisc) the request needs."""


def missing_requirements() -> str | None:
    """Why the lab cannot run here (not root, no `ip`/`tc`), or None when it can."""
    if os.geteuid() != 0:
        return "network lab needs root (netns/veth/tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"network lab needs `{tool}` (iproute2)"
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetLabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _ethtool_off(dev: str) -> None:
    """Switch off checksum offload, scatter-gather, TSO and GSO on ``dev`` (in our own namespace).

    The relay copies frames through packet sockets: it must see finished, MTU-sized frames with real
    checksums, not 64 KB TSO/GSO super-frames whose checksum the "hardware" was to fill in.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for what, cmd in _ETHTOOL_SET.items():
            data = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
            ifreq = struct.pack("16sP16x", dev.encode(), ctypes.addressof(data))
            try:
                fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
            except OSError as exc:
                raise NetLabError(f"cannot switch {what} offload off on {dev}: {exc}") from exc


class ImpairRelay:
    """The control channel of one :mod:`giaoban.lab.impair` process (JSON lines on its stdin/stdout)."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        self.proc = proc
        self._buf = b""
        self._lock = threading.Lock()
        ready = self._read_line(timeout)
        if not ready.get("ready"):
            raise NetLabError(f"impairment relay did not start: {ready.get('error', ready)}")
        self.pid = int(ready["pid"])

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise NetLabError("impairment relay did not answer in time")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise NetLabError(f"impairment relay exited ({self.proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command; its answer (NetLabError when the relay refuses it or is gone)."""
        assert self.proc.stdin is not None
        with self._lock:
            try:
                self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
                self.proc.stdin.flush()
            except OSError as exc:
                raise NetLabError(f"impairment relay is gone: {exc}") from exc
            answer = self._read_line(5.0)
        if not answer.get("ok"):
            raise NetLabError(f"impairment relay refused {cmd}: {answer.get('error')}")
        return answer

    def stats(self) -> dict[str, dict[str, int]]:
        """Frame counters per direction (``ab``, ``ba``): rx, tx, lost, cut, overflow, errors, queued."""
        stats: dict[str, dict[str, int]] = self.command("stats")["stats"]
        return stats


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_list() -> list[str]:
    out = _run("ip", "-j", "netns", "list", check=False).stdout.strip()
    if not out:
        return []
    return [str(entry["name"]) for entry in json.loads(out)]


def _kill_netns_pids(ns: str) -> None:
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 2
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _pid_alive(int(p))]
        time.sleep(0.02)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (CI timeouts, `kill`) into KeyboardInterrupt so finalizers and atexit hooks run.

    KeyboardInterrupt rather than SystemExit: pytest stops the whole run on it instead of failing only
    the test that happened to be running.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def _raise(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _raise)


def sweep_stale() -> list[str]:
    """Delete namespaces and links left by lab owners that no longer run; return what was removed."""
    removed: list[str] = []
    for ns in _netns_list():
        m = _NAME_RE.match(ns)
        if m and not _pid_alive(int(m.group(1), 16)):
            _kill_netns_pids(ns)
            _run("ip", "netns", "delete", ns, check=False)
            removed.append(ns)
    links = json.loads(_run("ip", "-j", "link", "show", check=False).stdout or "[]")
    for link in links:
        name = str(link.get("ifname", ""))
        m = _NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1), 16)):
            _run("ip", "link", "delete", name, check=False)
            removed.append(name)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets: list[ipaddress.IPv4Network] = []
    routes = json.loads(_run("ip", "-j", "-4", "route", "show", "table", "all", check=False).stdout or "[]")
    for route in routes:
        dst = str(route.get("dst", ""))
        if dst in ("", "default"):
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    addrs = json.loads(_run("ip", "-j", "-4", "addr", "show", check=False).stdout or "[]")
    for link in addrs:
        for info in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                nets.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return nets


@dataclass(slots=True)
class Link:
    """A link: end ``a`` (interface ``name_a``) in namespace ``ns_a`` (None = root), end ``b`` in ``ns_b``.

    A plain link is one veth pair. An impairable one is two veth pairs through ``relay_ns``, where
    ``relay`` forwards frames between them; its two ends look the same to callers (one /24, ``.1`` on b).
    """

    name_a: str
    name_b: str
    ns_a: str | None
    ns_b: str | None
    addr_a: str
    addr_b: str
    network: str
    shaped: set[str] = field(default_factory=set)
    down: bool = False
    relay_ns: str | None = None
    relay: ImpairRelay | None = None
    last_shape: dict[str, Any] | None = None  # what shape() was last asked for (re-applied after an outage)
    cut: bool = False  # outage() in force

    @property
    def impairable(self) -> bool:
        return self.relay is not None


class NetLab:
    """Creates and always removes namespaces, links and processes (close(), atexit, or sweep_stale)."""

    def __init__(self, tag: str = "", *, impair: Literal["auto", "relay"] = "auto") -> None:
        """``impair``: how impairable links are shaped — ``auto``: netem when the kernel has it, else the
        relay; ``relay``: always the relay (to test it on kernels that have netem)."""
        if impair not in ("auto", "relay"):
            raise NetLabError(f"impair must be 'auto' or 'relay', got {impair!r}")
        reason = missing_requirements()
        if reason:
            raise NetLabError(reason)
        self.pid = os.getpid()
        self.prefix = f"gb{self.pid:x}x"
        if len(self.prefix) + 5 > IFNAMSIZ:  # room for "<idx>a" with idx < 10000
            raise NetLabError("pid too large for interface names")
        self.tag = tag
        self.impair = impair
        self._netem: bool | None = None
        self.namespaces: list[str] = []
        self.links: list[Link] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._closed = False
        sweep_stale()
        atexit.register(self.close)
        _exit_on_sigterm()

    def _next(self) -> int:
        # Process-wide: several labs of one process share the pid prefix, so numbers must not repeat.
        global _COUNTER
        with _COUNTER_LOCK:
            _COUNTER += 1
            return _COUNTER

    def netns(self, role: str = "n") -> str:
        """Create a namespace with loopback up; its name is unique to this lab."""
        role = re.sub(r"[^a-z0-9]", "", role.lower())[:8] or "n"
        name = f"{self.prefix}{self._next()}-{role}"
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.exec(name, "ip", "link", "set", "lo", "up")
        return name

    def exec(self, ns: str | None, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command to completion in ``ns`` (root namespace when None)."""
        if ns is None:
            return _run(*argv, check=check)
        return _run("ip", "netns", "exec", ns, *argv, check=check)

    def _free_network(self) -> ipaddress.IPv4Network:
        used = _used_networks() + [ipaddress.IPv4Network(link.network) for link in self.links]
        rng = random.Random()
        for _ in range(500):
            net = ipaddress.IPv4Network(f"10.{rng.randint(64, 254)}.{rng.randint(0, 254)}.0/24")
            if not any(net.overlaps(u) for u in used):
                return net
        raise NetLabError("no free 10.x.y.0/24 network found")

    def link(self, ns_a: str | None, ns_b: str | None, *, impairable: bool = False) -> Link:
        """Connect two namespaces (None = root) in a fresh /24; ``.1`` is on the b side.

        ``impairable``: through a relay namespace (see :meth:`_impairable_link`), so that loss, delay,
        jitter and outage work without netem. Otherwise one veth pair.
        """
        if impairable:
            return self._impairable_link(ns_a, ns_b)
        idx = self._next()
        name_a, name_b = f"{self.prefix}{idx}a", f"{self.prefix}{idx}b"
        assert len(name_a) <= IFNAMSIZ
        net = self._free_network()
        hosts = list(net.hosts())
        addr_b, addr_a = str(hosts[0]), str(hosts[1])
        _run("ip", "link", "add", name_a, "type", "veth", "peer", "name", name_b)
        link = Link(name_a, name_b, ns_a, ns_b, addr_a, addr_b, str(net))
        self.links.append(link)
        for name, ns, addr in ((name_a, ns_a, addr_a), (name_b, ns_b, addr_b)):
            if ns is not None:
                _run("ip", "link", "set", name, "netns", ns)
            self.exec(ns, "ip", "addr", "add", f"{addr}/{net.prefixlen}", "dev", name)
            self._no_ipv6_address(ns, name)
            self.exec(ns, "ip", "link", "set", name, "up")
        return link

    def _no_ipv6_address(self, ns: str | None, dev: str) -> None:
        """No IPv6 link-local address on ``dev``: the lab speaks IPv4 only, and an address finishing
        duplicate-address detection a second after the link comes up is a network change to every
        Chromium that can see it (a page loading then fails with ERR_NETWORK_CHANGED)."""
        self.exec(ns, "ip", "link", "set", dev, "addrgenmode", "none")

    def _impairable_link(self, ns_a: str | None, ns_b: str | None) -> Link:
        """``ns_a`` ─veth─ relay namespace ─veth─ ``ns_b``, the relay process forwarding in between.

        The relay namespace's two interfaces (``…c`` peer of a, ``…d`` peer of b) have no IPv4 address,
        IPv6 is disabled there, ARP is off on them and ``ip_forward`` is 0: its kernel drops every frame it
        sees, and only the relay's packet sockets pass them on. Offloads are off on all four ends so the
        relay sees real frames (see :func:`_ethtool_off`). The relay dies with its namespace (close(),
        unlink(), sweep_stale()) and when its stdin closes (this process gone).
        """
        idx = self._next()
        name_a, name_b = f"{self.prefix}{idx}a", f"{self.prefix}{idx}b"
        inner_a, inner_b = f"{self.prefix}{idx}c", f"{self.prefix}{idx}d"
        net = self._free_network()
        hosts = list(net.hosts())
        addr_b, addr_a = str(hosts[0]), str(hosts[1])
        relay_ns = self.netns("relay")
        self.exec(
            relay_ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv4.ip_forward=0",
        )
        link = Link(name_a, name_b, ns_a, ns_b, addr_a, addr_b, str(net), relay_ns=relay_ns)
        self.links.append(link)
        for outer, inner, ns, addr in ((name_a, inner_a, ns_a, addr_a), (name_b, inner_b, ns_b, addr_b)):
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            _ethtool_off(outer)
            _ethtool_off(inner)
            _run("ip", "link", "set", inner, "netns", relay_ns)
            self.exec(relay_ns, "ip", "link", "set", inner, "arp", "off", "promisc", "on", "up")
            if ns is not None:
                _run("ip", "link", "set", outer, "netns", ns)
            self.exec(ns, "ip", "addr", "add", f"{addr}/{net.prefixlen}", "dev", outer)
            self._no_ipv6_address(ns, outer)
            self.exec(ns, "ip", "link", "set", outer, "up")
        proc = self.spawn(
            relay_ns,
            [sys.executable, str(IMPAIR_SCRIPT), "--a", inner_a, "--b", inner_b],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        link.relay = ImpairRelay(proc)
        return link

    def unlink(self, link: Link) -> None:
        """Remove one link now (its relay namespace and process too)."""
        if link.relay is not None and link.relay.proc.poll() is None:
            link.relay.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                link.relay.proc.wait(2)
        if link.relay_ns is not None and link.relay_ns in self.namespaces:
            self.remove_netns(link.relay_ns)
        for dev, ns in ((link.name_a, link.ns_a), (link.name_b, link.ns_b)):
            self.exec(ns, "ip", "link", "delete", dev, check=False)
        if link in self.links:
            self.links.remove(link)

    def remove_netns(self, ns: str) -> None:
        """Delete one of our namespaces now: its processes are killed, and the links into it removed."""
        if ns not in self.namespaces:
            raise NetLabError(f"{ns} is not a namespace of this lab")
        self.namespaces.remove(ns)
        for link in [lk for lk in self.links if ns in (lk.ns_a, lk.ns_b)]:
            self.unlink(link)
        _kill_netns_pids(ns)
        _run("ip", "netns", "delete", ns, check=False)

    @property
    def netem_available(self) -> bool:
        """Whether this kernel has the netem qdisc (probed once)."""
        if self._netem is None:
            self._netem = self.qdisc_supported("netem")
        return self._netem

    def _relayed(self, link: Link) -> bool:
        """Whether ``link`` is shaped by its relay rather than by qdiscs."""
        return link.relay is not None and (self.impair == "relay" or not self.netem_available)

    def shape(
        self,
        link: Link,
        *,
        loss_pct: float = 0.0,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        rate_kbit: int | None = None,
        both: bool = True,
    ) -> None:
        """Shape the link (both directions unless ``both=False``: then a→b only), replacing earlier shaping.

        Values apply to each direction: ``delay_ms=200`` both ways is a 400 ms round trip. An impairable
        link without netem (or with ``impair="relay"``) is shaped by its relay: loss, delay, jitter (no
        reordering) and rate. Otherwise loss and delay need ``tc netem`` (NetLabUnsupported when the
        kernel lacks sch_netem); a pure rate limit uses ``tbf``, which every kernel with tc has.
        """
        if (
            loss_pct < 0
            or loss_pct > 100
            or delay_ms < 0
            or jitter_ms < 0
            or (rate_kbit is not None and rate_kbit <= 0)
        ):
            raise NetLabError(
                f"bad shaping: loss {loss_pct} %, delay {delay_ms} ms, jitter {jitter_ms} ms, rate {rate_kbit}"
            )
        link.last_shape = {
            "loss_pct": loss_pct,
            "delay_ms": delay_ms,
            "jitter_ms": jitter_ms,
            "rate_kbit": rate_kbit,
            "both": both,
        }
        if self._relayed(link):
            assert link.relay is not None
            profile = {
                "loss_pct": loss_pct,
                "delay_ms": delay_ms,
                "jitter_ms": jitter_ms,
                "rate_kbit": rate_kbit,
            }
            link.relay.command("clear")
            link.relay.command("set", dir="both" if both else "ab", **profile, outage=link.cut)
            return
        if loss_pct or delay_ms or jitter_ms:
            args = ["netem"]
            if delay_ms or jitter_ms:
                args += ["delay", f"{delay_ms}ms"] + ([f"{jitter_ms}ms"] if jitter_ms else [])
            if loss_pct:
                args += ["loss", f"{loss_pct}%"]
            if rate_kbit:
                args += ["rate", f"{rate_kbit}kbit"]
        elif rate_kbit:
            args = ["tbf", "rate", f"{rate_kbit}kbit", "burst", "32kbit", "latency", "400ms"]
        else:
            self.unshape(link)
            return
        ends = [(link.name_a, link.ns_a)] + ([(link.name_b, link.ns_b)] if both else [])
        for dev, ns in ends:
            proc = self.exec(ns, "tc", "qdisc", "replace", "dev", dev, "root", *args, check=False)
            if proc.returncode != 0:
                if "unknown" in proc.stderr.lower():
                    raise NetLabUnsupported(f"this kernel has no `{args[0]}` qdisc: {proc.stderr.strip()}")
                raise NetLabError(f"tc qdisc on {dev} failed: {proc.stderr.strip()}")
            link.shaped.add(dev)

    def outage(self, link: Link) -> None:
        """Cut the link both ways until :meth:`end_outage` (shaping comes back) or :meth:`unshape`.

        Relay or netem (100 % loss): packets vanish silently, like a cable cut far away, and both ends keep
        their carrier. A plain link without netem: both ends go down, so local sends fail at once. Either
        way no packet crosses and TCP must recover afterwards.
        """
        if self._relayed(link):
            assert link.relay is not None
            link.relay.command("set", outage=True)
            link.cut = True
            return
        last = link.last_shape
        try:
            self.shape(link, loss_pct=100.0)
        except NetLabUnsupported:
            for dev, ns in ((link.name_a, link.ns_a), (link.name_b, link.ns_b)):
                self.exec(ns, "ip", "link", "set", dev, "down")
            link.down = True
        link.last_shape = last
        link.cut = True

    def end_outage(self, link: Link) -> None:
        """End an :meth:`outage`; the shaping asked for before it (if any) is in force again."""
        if self._relayed(link):
            assert link.relay is not None
            link.relay.command("set", outage=False)
            link.cut = False
            return
        last = link.last_shape
        self.unshape(link)
        if last is not None:
            self.shape(link, **last)

    def unshape(self, link: Link) -> None:
        """Remove shaping and outages from both ends of the link."""
        link.last_shape = None
        link.cut = False
        if link.relay is not None and link.relay.proc.poll() is None:
            link.relay.command("clear")
        for dev, ns in ((link.name_a, link.ns_a), (link.name_b, link.ns_b)):
            if dev in link.shaped:
                self.exec(ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)
            if link.down:
                self.exec(ns, "ip", "link", "set", dev, "up")
        link.shaped.clear()
        link.down = False

    def qdisc_supported(self, kind: str) -> bool:
        """Whether the kernel knows a qdisc (e.g. ``netem``), probed on a throwaway veth pair."""
        probe = f"{self.prefix}{self._next()}a"
        peer = probe[:-1] + "b"
        _run("ip", "link", "add", probe, "type", "veth", "peer", "name", peer)
        try:
            args = {
                "netem": ["netem", "delay", "1ms"],
                "tbf": ["tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms"],
            }
            argv = args.get(kind, [kind])
            return _run("tc", "qdisc", "add", "dev", probe, "root", *argv, check=False).returncode == 0
        finally:
            _run("ip", "link", "delete", probe, check=False)

    def spawn(self, ns: str | None, argv: list[str], **popen: object) -> subprocess.Popen[bytes]:
        """Start a process in ``ns``; it is killed at close()."""
        full = argv if ns is None else ["ip", "netns", "exec", ns, *argv]
        proc: subprocess.Popen[bytes] = subprocess.Popen(full, **popen)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        """Kill our processes, delete our links and namespaces; safe to call more than once."""
        if self._closed or os.getpid() != self.pid:
            return
        self._closed = True
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(2)
        for ns in self.namespaces:
            _kill_netns_pids(ns)
        for link in self.links:
            if link.ns_a is None:
                _run("ip", "link", "delete", link.name_a, check=False)
            elif link.ns_b is None:
                _run("ip", "link", "delete", link.name_b, check=False)
        for ns in self.namespaces:
            _run("ip", "netns", "delete", ns, check=False)
        # Deleting a namespace deletes the veth ends inside it (and so their peers).
        self.namespaces.clear()
        self.links.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
