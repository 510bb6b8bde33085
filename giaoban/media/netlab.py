"""A throwaway network lab: namespaces, veth links, `tc netem` shaping, processes inside namespaces.

Used by the media test fixtures and by load tests that run Janus and synthetic sites on one machine.
Janus 1.1.2 never offers loopback ICE candidates, so media between two processes of one machine needs a
real interface: a veth pair into a namespace gives one, and it also lets us shape a "site" link.

Everything created carries the owner's pid in its name (``gb<pid hex>x…``) so that :func:`sweep_stale`
can remove what a killed run left behind, without touching a concurrent run. Names of interfaces stay
within Linux's 15 characters. Subnets are ``10.x.y.0/24`` chosen to overlap no existing route.
Traffic stays on the links we create: nothing here ever targets another address.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

IFNAMSIZ = 15
_COUNTER = 0
_COUNTER_LOCK = threading.Lock()
_NAME_RE = re.compile(r"^gb([0-9a-f]{1,6})x")


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
    """A veth pair: end ``a`` in namespace ``ns_a`` (None = root), end ``b`` in ``ns_b``."""

    name_a: str
    name_b: str
    ns_a: str | None
    ns_b: str | None
    addr_a: str
    addr_b: str
    network: str
    shaped: set[str] = field(default_factory=set)
    down: bool = False


class NetLab:
    """Creates and always removes namespaces, links and processes (close(), atexit, or sweep_stale)."""

    def __init__(self, tag: str = "") -> None:
        reason = missing_requirements()
        if reason:
            raise NetLabError(reason)
        self.pid = os.getpid()
        self.prefix = f"gb{self.pid:x}x"
        if len(self.prefix) + 5 > IFNAMSIZ:  # room for "<idx>a" with idx < 10000
            raise NetLabError("pid too large for interface names")
        self.tag = tag
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

    def link(self, ns_a: str | None, ns_b: str | None) -> Link:
        """Connect two namespaces (None = root) with a veth pair in a fresh /24; ``.1`` is on the b side."""
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
            self.exec(ns, "ip", "link", "set", name, "up")
        return link

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
        """Shape the link (both directions unless ``both=False``: then a→b only).

        Loss and delay need ``tc netem`` (NetLabUnsupported when the kernel lacks sch_netem); a pure rate
        limit uses ``tbf``, which every kernel with tc has.
        """
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
        """Cut the link both ways until :meth:`unshape`: netem 100 % loss, or links down without netem.

        With netem, packets vanish silently (like a cut cable far away); without it, both ends lose carrier
        and local sends fail at once. Either way no packet crosses and TCP must recover afterwards.
        """
        try:
            self.shape(link, loss_pct=100.0)
        except NetLabUnsupported:
            for dev, ns in ((link.name_a, link.ns_a), (link.name_b, link.ns_b)):
                self.exec(ns, "ip", "link", "set", dev, "down")
            link.down = True

    def unshape(self, link: Link) -> None:
        """Remove shaping and outages from both ends of the link."""
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
