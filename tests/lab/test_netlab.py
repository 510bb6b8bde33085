"""The lab itself: unique short names, private subnets, shaping (netem/tbf and the userspace relay), and
complete teardown. Relay tests measure behaviour with UDP echo probes and TCP transfers."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from giaoban.lab.netns import (
    IFNAMSIZ,
    Link,
    NetLab,
    NetLabError,
    NetLabUnsupported,
    _netns_list,
    _pid_alive,
    sweep_stale,
)
from tests.lab.fixtures import lab_skip_reason

pytestmark = pytest.mark.skipif(lab_skip_reason() is not None, reason=str(lab_skip_reason()))


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _tcp_roundtrip(lab: NetLab, ns: str, addr: str, port: int, wait: float = 5.0) -> bytes:
    code = (
        f"import socket;s=socket.create_server(({addr!r},{port}));c,_=s.accept();c.sendall(c.recv(5).upper())"
    )
    server = lab.spawn(ns, [sys.executable, "-c", code])
    deadline = time.monotonic() + wait
    while True:
        try:
            with socket.create_connection((addr, port), timeout=1) as sock:
                sock.sendall(b"hello")
                return sock.recv(5)
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.05)


def test_lab_builds_and_always_cleans_up() -> None:
    lab = NetLab()
    ns = lab.netns("site")
    link = lab.link(None, ns)
    sleeper = lab.spawn(ns, ["sleep", "300"])
    try:
        assert len(link.name_a) <= IFNAMSIZ and len(link.name_b) <= IFNAMSIZ
        net = ipaddress.IPv4Network(link.network)
        assert net.prefixlen == 24 and net.subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))
        assert ns in _netns_list() and link.name_a in _links()
        assert _tcp_roundtrip(lab, ns, link.addr_b, 9999) == b"HELLO"
    finally:
        lab.close()
    assert sleeper.poll() is not None
    assert ns not in _netns_list()
    assert link.name_a not in _links()
    lab.close()  # idempotent


def test_two_links_get_distinct_subnets_and_names() -> None:
    with NetLab() as lab:
        a, b = lab.netns("a"), lab.netns("b")
        l1, l2 = lab.link(None, a), lab.link(a, b)
        assert l1.network != l2.network and l1.name_a != l2.name_a
        assert a != b
        # A namespace-to-namespace link works without touching the root namespace's routing.
        assert lab.exec(a, "ip", "-4", "addr", "show", "dev", l2.name_a).stdout.count(l2.addr_a) == 1


def test_sweep_removes_leftovers_of_dead_runs() -> None:
    dead = next(pid for pid in range(0x3FFFF0, 0x3FFF00, -1) if not _pid_alive(pid))
    ns = f"gb{dead:x}x1-old"
    veth = f"gb{dead:x}x2a"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", veth[:-1] + "b"], check=True)
    removed = sweep_stale()
    assert ns in removed and veth in removed
    assert ns not in _netns_list() and veth not in _links()


def test_outage_and_rate_shaping() -> None:
    with NetLab() as lab:
        ns = lab.netns("site")
        link = lab.link(None, ns)
        lab.shape(link, rate_kbit=2000)
        assert "tbf" in lab.exec(None, "tc", "qdisc", "show", "dev", link.name_a).stdout
        lab.unshape(link)
        lab.outage(link)
        with pytest.raises(OSError):
            _tcp_roundtrip(lab, ns, link.addr_b, 9998, wait=1.0)
        lab.unshape(link)
        assert _tcp_roundtrip(lab, ns, link.addr_b, 9997) == b"HELLO"


def test_plain_links_shape_loss_with_netem_only() -> None:
    """A plain (non-impairable) link keeps the qdisc path: netem where the kernel has it, else a clear error."""
    with NetLab() as lab:
        ns = lab.netns("site")
        link = lab.link(None, ns)
        if lab.netem_available:
            lab.shape(link, loss_pct=5, delay_ms=50)
            assert "netem" in lab.exec(ns, "tc", "qdisc", "show", "dev", link.name_b).stdout
        else:
            with pytest.raises(NetLabUnsupported):
                lab.shape(link, loss_pct=10)
        # An impairable link on the same lab is shaped either way (relay here when netem is missing).
        relayed = lab.link(None, ns, impairable=True)
        lab.shape(relayed, loss_pct=5, delay_ms=50)
        if not lab.netem_available:
            assert relayed.relay is not None
            assert relayed.relay.command("stats")["profile"]["ab"]["delay_ms"] == 50


def test_lab_pid_prefix_matches_process() -> None:
    with NetLab() as lab:
        assert lab.prefix == f"gb{os.getpid():x}x"


# --- impairable links (the userspace relay, giaoban/lab/impair.py) ---------------------------------

ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((sys.argv[1],int(sys.argv[2])))\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,1<<22)\n"
    "while True:\n d,a=s.recvfrom(2048);s.sendto(d,a)\n"
)


@dataclass
class Relayed:
    lab: NetLab
    ns: str
    link: Link
    echo_port: int


@pytest.fixture(scope="module")
def relayed() -> Iterator[Relayed]:
    """Root (a) ─ relay ─ a namespace (b) with a UDP echo server on b; shaping is cleared per test."""
    lab = NetLab(impair="relay")
    try:
        ns = lab.netns("site")
        link = lab.link(None, ns, impairable=True)
        lab.spawn(ns, [sys.executable, "-c", ECHO, link.addr_b, "7007"])
        yield Relayed(lab, ns, link, 7007)
    finally:
        lab.close()


@pytest.fixture
def rl(relayed: Relayed) -> Iterator[Relayed]:
    try:
        yield relayed
    finally:
        relayed.lab.unshape(relayed.link)


def _probe(r: Relayed, count: int, gap: float = 0.0005, wait: float = 1.0) -> dict[int, float]:
    """Send ``count`` numbered UDP probes a→b; {sequence: round-trip seconds} of the echoes that came back."""
    rtts: dict[int, float] = {}
    order: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.bind((r.link.addr_a, 0))
        sock.setblocking(False)
        sent: dict[int, float] = {}

        def drain() -> None:
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    return
                seq = struct.unpack("!I", data[:4])[0]
                if seq in sent and seq not in rtts:
                    rtts[seq] = time.monotonic() - sent[seq]
                    order.append(seq)

        for seq in range(count):
            sent[seq] = time.monotonic()
            sock.sendto(struct.pack("!I", seq) + b"p" * 60, (r.link.addr_b, r.echo_port))
            drain()
            if gap:
                time.sleep(gap)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            drain()
            time.sleep(0.005)
    assert order == sorted(order), "the relay reordered frames"
    return rtts


def _wait_echo(r: Relayed) -> None:
    """The echo server answers (it starts with the module fixture)."""
    deadline = time.monotonic() + 5
    while not _probe(r, 3, wait=0.2):
        assert time.monotonic() < deadline, "no UDP echo through the relay"


def test_impairable_link_is_a_plain_l2_link(rl: Relayed) -> None:
    _wait_echo(rl)
    assert len(_probe(rl, 200)) == 200  # transparent: nothing lost
    # The relay namespace has no IPv4 address and no IPv6: its kernel cannot answer or route anything.
    inner = rl.lab.exec(rl.link.relay_ns, "ip", "-j", "addr", "show").stdout
    assert all(not a.get("addr_info") for a in json.loads(inner) if a["ifname"] != "lo"), inner
    assert rl.lab.exec(rl.link.relay_ns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    # TCP through it, bulk: segmentation/checksum offloads are off, so 1 MB crosses intact.
    assert _tcp_roundtrip(rl.lab, rl.ns, rl.link.addr_b, 9101) == b"HELLO"
    before = rl.link.relay.stats() if rl.link.relay else {}
    got = _tcp_bulk(rl, 9102, 1_000_000)
    assert got == 1_000_000
    after = rl.link.relay.stats() if rl.link.relay else {}
    assert after["ab"]["tx"] - before["ab"]["tx"] >= 1_000_000 // 1514  # MTU-sized frames, not super-frames


def _tcp_bulk(r: Relayed, port: int, size: int) -> int:
    code = (
        f"import socket;s=socket.create_server(({r.link.addr_b!r},{port}));c,_=s.accept();n=0\n"
        "while True:\n d=c.recv(65536)\n if not d: break\n n+=len(d)\n"
        "c.sendall(str(n).encode());c.close()"
    )
    r.lab.spawn(r.ns, [sys.executable, "-c", code])
    deadline = time.monotonic() + 5
    while True:
        try:
            sock = socket.create_connection((r.link.addr_b, port), timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with sock:
        sock.settimeout(20)
        sock.sendall(b"x" * size)
        sock.shutdown(socket.SHUT_WR)
        return int(sock.recv(64))


def test_loss_is_measured_per_direction(rl: Relayed) -> None:
    """10 % loss each way: 2000 echo probes lose ≈ 1 − 0.9² = 19 %; the relay dropped ≈ 10 % each way."""
    _wait_echo(rl)
    assert rl.link.relay is not None
    rl.lab.shape(rl.link, loss_pct=10)
    before = rl.link.relay.stats()
    rtts = _probe(rl, 2000)
    after = rl.link.relay.stats()
    lost = 100 * (1 - len(rtts) / 2000)
    assert 14 <= lost <= 24, lost
    for way in ("ab", "ba"):
        rx = after[way]["rx"] - before[way]["rx"]
        dropped = after[way]["lost"] - before[way]["lost"]
        assert rx > 1000 and 5 <= 100 * dropped / rx <= 15, (way, rx, dropped)
    # One direction only (a→b): ≈ 10 % round-trip loss.
    rl.lab.shape(rl.link, loss_pct=10, both=False)
    lost = 100 * (1 - len(_probe(rl, 2000)) / 2000)
    assert 5 <= lost <= 15, lost


def test_delay_and_jitter_show_in_rtt(rl: Relayed) -> None:
    _wait_echo(rl)
    base = statistics.median(_probe(rl, 20, gap=0.01).values())
    rl.lab.shape(rl.link, delay_ms=100)
    rtts = list(_probe(rl, 20, gap=0.01, wait=0.6).values())
    assert len(rtts) == 20
    assert 0.195 <= statistics.median(rtts) <= 0.26 + base, rtts  # 100 ms each way
    assert min(rtts) >= 0.199
    # Jitter ±40 ms each way around 60 ms: spread out, never below 2 × 20 ms, never reordered.
    rl.lab.shape(rl.link, delay_ms=60, jitter_ms=40)
    rtts = list(_probe(rl, 60, gap=0.01, wait=0.6).values())
    assert len(rtts) == 60
    assert min(rtts) >= 0.039 and max(rtts) <= 0.3, (min(rtts), max(rtts))
    assert max(rtts) - min(rtts) > 0.03, rtts  # it does vary


def test_rate_limit_serializes_and_tail_drops(rl: Relayed) -> None:
    _wait_echo(rl)
    assert rl.link.relay is not None
    rl.lab.shape(rl.link, rate_kbit=2000, both=False)
    started = time.monotonic()
    assert _tcp_bulk(rl, 9103, 300_000) == 300_000
    kbit = 300_000 * 8 / 1000 / (time.monotonic() - started)
    assert 1000 <= kbit <= 2100, kbit  # ≈ 2000 kbit/s plus headers: never faster than the link
    # A burst larger than the buffer (256 KB): the tail is dropped, the relay says so.
    time.sleep(0.3)  # let the TCP test's last frames drain
    before = rl.link.relay.stats()["ab"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(400):
            sock.sendto(b"z" * 1400, (rl.link.addr_b, 9))
    time.sleep(0.1)
    after = rl.link.relay.stats()["ab"]
    moved = {k: after[k] - before[k] for k in ("rx", "overflow", "kernel_drops")}
    assert moved["rx"] + moved["kernel_drops"] >= 400, moved
    # 400 frames of 1442 bytes; 256 KB fit in the buffer (≈ 180 frames) plus what left meanwhile.
    assert 150 <= moved["overflow"] <= 240, moved


def test_outage_drops_everything_and_tcp_comes_back(rl: Relayed) -> None:
    """A silent cut: TCP stalls (carrier stays up), a new connect times out; after the restore the same
    connection delivers again and loss/delay set before the cut are still there."""
    _wait_echo(rl)
    assert rl.link.relay is not None
    code = (
        f"import socket;s=socket.create_server(({rl.link.addr_b!r},9104));c,_=s.accept()\n"
        "while True:\n d=c.recv(100)\n if not d: break\n c.sendall(d.upper())"
    )
    rl.lab.spawn(rl.ns, [sys.executable, "-c", code])
    deadline = time.monotonic() + 5
    while True:
        try:
            conn = socket.create_connection((rl.link.addr_b, 9104), timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with conn:
        conn.settimeout(5)
        conn.sendall(b"one")
        assert conn.recv(100) == b"ONE"
        rl.lab.shape(rl.link, delay_ms=30)
        rl.lab.outage(rl.link)
        shown = json.loads(rl.lab.exec(None, "ip", "-j", "link", "show", rl.link.name_a).stdout)
        assert shown[0]["operstate"] == "UP"  # no carrier loss: the cut is far away
        assert not _probe(rl, 50, wait=0.3)
        with pytest.raises(OSError):
            socket.create_connection((rl.link.addr_b, 9104), timeout=0.5)
        conn.sendall(b"two")
        conn.settimeout(0.8)
        with pytest.raises(TimeoutError):
            conn.recv(100)
        assert rl.link.relay.stats()["ab"]["cut"] > 0
        rl.lab.end_outage(rl.link)
        conn.settimeout(8)
        assert conn.recv(100) == b"TWO"  # retransmitted once the link is back
        rtts = list(_probe(rl, 10, gap=0.01, wait=0.3).values())
        assert len(rtts) == 10 and min(rtts) >= 0.059  # the 30 ms each way is back too


def test_runtime_changes_and_bad_commands(rl: Relayed) -> None:
    """Settings change while traffic flows; a bad command is refused with a reason and changes nothing."""
    _wait_echo(rl)
    relay = rl.link.relay
    assert relay is not None
    assert len(_probe(rl, 300)) == 300
    relay.command("set", dir="ab", loss_pct=50)
    lost = 100 * (1 - len(_probe(rl, 1000)) / 1000)
    assert 40 <= lost <= 60, lost
    profile = relay.command("stats")["profile"]
    for bad in ({"loss_pct": 150}, {"delay_ms": -1}, {"outage": "yes"}, {"bogus": 1}, {"rate_kbit": "fast"}):
        with pytest.raises(NetLabError, match="refused set"):
            relay.command("set", **bad)
    with pytest.raises(NetLabError, match="dir must be"):
        relay.command("set", dir="sideways", loss_pct=1)
    with pytest.raises(NetLabError, match="unknown cmd"):
        relay.command("explode")
    with pytest.raises(NetLabError, match="bad shaping"):
        rl.lab.shape(rl.link, loss_pct=101)
    assert relay.command("stats")["profile"] == profile
    relay.command("clear")
    assert len(_probe(rl, 300)) == 300


def test_relay_dies_with_the_lab() -> None:
    lab = NetLab(impair="relay")
    ns = lab.netns("site")
    link = lab.link(ns, None, impairable=True)
    assert link.relay is not None and _pid_alive(link.relay.pid)
    relay_ns = link.relay_ns
    lab.close()
    deadline = time.monotonic() + 2
    while _pid_alive(link.relay.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _pid_alive(link.relay.pid)
    assert relay_ns not in _netns_list() and ns not in _netns_list()
    assert link.name_b not in _links()


def test_unlink_and_remove_netns() -> None:
    with NetLab(impair="relay") as lab:
        a, b = lab.netns("a"), lab.netns("b")
        plain = lab.link(a, b)
        relayed = lab.link(None, a, impairable=True)
        assert relayed.relay is not None
        pid = relayed.relay.pid
        lab.unlink(relayed)
        assert relayed.relay_ns not in _netns_list() and relayed.name_a not in _links()
        assert not _pid_alive(pid)
        lab.remove_netns(b)
        assert b not in _netns_list() and plain not in lab.links
        with pytest.raises(NetLabError):
            lab.remove_netns(b)
