"""The "site behind a bad link" fixture: topology, isolation, shaping of both links, Chromium wrapper."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from giaoban.lab.netns import NetLab, _netns_list
from tests.lab.fixtures import JanusNamespace, SiteNamespace, lab_skip_reason

pytestmark = pytest.mark.skipif(lab_skip_reason() is not None, reason=str(lab_skip_reason()))

# Connect to (host, port) from inside the site namespace: prints the answer, or the error.
CONNECT = (
    "import socket,sys\n"
    "try:\n"
    " s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]));print(s.recv(9).decode())\n"
    "except OSError as e: print(type(e).__name__, e)\n"
)


def _serve_once(lab: NetLab, ns: str | None, addr: str, port: int) -> None:
    code = (
        f"import socket;s=socket.create_server(({addr!r},{port}));c,_=s.accept();c.sendall(b'hi');c.close()"
    )
    lab.spawn(ns, [sys.executable, "-c", code])
    time.sleep(0.3)


def _connect(lab: NetLab, site: SiteNamespace, addr: str, port: int, timeout: float = 2.0) -> str:
    out = lab.exec(site.name, sys.executable, "-c", CONNECT, addr, str(port), str(timeout))
    return out.stdout.strip()


def test_site_reaches_the_app_and_janus_only_on_its_links(
    netlab: NetLab, janus_ns: JanusNamespace, site_factory: Callable[..., SiteNamespace]
) -> None:
    forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    site = site_factory("site", janus=janus_ns)
    assert site.app_link.impairable and site.janus_link is not None and site.janus_link.impairable
    # The app listens on the root end of the site's link; Janus's namespace answers on its site address.
    _serve_once(netlab, None, site.app_address, 9301)
    assert _connect(netlab, site, site.app_address, 9301) == "hi"
    _serve_once(netlab, janus_ns.name, site.janus_address, 9302)
    assert _connect(netlab, site, site.janus_address, 9302) == "hi"
    # Nothing else is reachable: not Janus's root-facing address, not the root's end of Janus's link.
    for addr in (janus_ns.address, janus_ns.host_address):
        route = netlab.exec(site.name, "ip", "route", "get", addr, check=False)
        assert route.returncode != 0 and "unreachable" in route.stderr.lower(), (addr, route)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward_before  # root sysctls untouched
    # Shaping reaches both relays; an outage and its end too.
    site.shape(delay_ms=30, loss_pct=1)
    for link in site.links:
        assert link.relay is not None
        assert link.relay.command("stats")["profile"]["ba"] == {
            "loss_pct": 1,
            "delay_ms": 30,
            "jitter_ms": 0,
            "rate_kbit": None,
            "buffer_bytes": 262144,
            "outage": False,
        }
    site.outage()
    assert _connect(netlab, site, site.app_address, 9303, timeout=0.5).startswith("TimeoutError")
    site.end_outage()
    _serve_once(netlab, None, site.app_address, 9304)
    assert _connect(netlab, site, site.app_address, 9304) == "hi"


def test_site_without_janus_and_cleanup(netlab: NetLab, site_factory: Callable[..., SiteNamespace]) -> None:
    site = site_factory("turnonly")
    assert site.janus_link is None and len(site.links) == 1
    with pytest.raises(ValueError):
        _ = site.janus_address
    relay_ns = site.app_link.relay_ns
    site.close()
    assert site.name not in _netns_list() and relay_ns not in _netns_list()
    assert site.app_link not in netlab.links


def test_chromium_wrapper_runs_inside_the_namespace(
    netlab: NetLab, site_factory: Callable[..., SiteNamespace], tmp_path: Path
) -> None:
    site = site_factory("chrome")
    # The wrapper execs whatever it wraps inside the namespace: wrap `ip` to show where it runs.
    ip = shutil.which("ip")
    assert ip is not None
    exe = site.chromium_executable(tmp_path, chromium=Path(ip))
    out = subprocess.run(
        [str(exe), "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert f"inet {site.address}/" in out and f"inet {site.app_address}/" not in out
    assert site.chromium_args("http://10.1.2.3:8000") == [
        "--unsafely-treat-insecure-origin-as-secure=http://10.1.2.3:8000"
    ]
