"""The lab itself: unique short names, private subnets, shaping, and complete teardown."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time

import pytest

from giaoban.media.netlab import IFNAMSIZ, NetLab, NetLabUnsupported, _netns_list, _pid_alive, sweep_stale
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


def test_loss_and_delay_need_netem() -> None:
    with NetLab() as lab:
        if not lab.qdisc_supported("netem"):
            with pytest.raises(NetLabUnsupported):
                lab.shape(lab.link(None, lab.netns("x")), loss_pct=10)
            pytest.skip("kernel without sch_netem: loss/delay shaping unavailable (outage/rate still work)")
        ns = lab.netns("site")
        link = lab.link(None, ns)
        lab.shape(link, loss_pct=5, delay_ms=50)
        assert "netem" in lab.exec(ns, "tc", "qdisc", "show", "dev", link.name_b).stdout


def test_lab_pid_prefix_matches_process() -> None:
    with NetLab() as lab:
        assert lab.prefix == f"gb{os.getpid():x}x"
