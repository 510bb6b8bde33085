"""A site that reaches the server only through TURN, built from the lab (for tests/e2e/test_turn.py).

Topology (every address is on a link the lab made; the root namespace does not forward):

    Janus ns  J.b ──── J.a  root: app (events), coturn relay-ip
    site ns   S.b ──── S.a  root: app (pages, WebSocket), coturn listening-ip
                            root: app on 127.0.0.1 (the host site's and the chair's browsers)

The site namespace has routes only to its own /24: Janus's media address J.b is unreachable from it,
so its media can only flow browser → coturn (S.a) → relay (J.a) → Janus (J.b). Chromium runs inside the
site namespace through a wrapper executable (`ip netns exec`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from giaoban.context import AppContext
from giaoban.media.netlab import Link, NetLab
from giaoban.media.service import MediaService
from giaoban.media.turn import TurnService, TurnSettings, load_turn_settings
from tests.lab.fixtures import JanusNamespace, lab_janus_settings

TURN_PORT = 34790


@dataclass(slots=True)
class SiteNamespace:
    """A site's namespace and its only link, to the server's root namespace."""

    name: str
    link: Link

    @property
    def address(self) -> str:
        """The site's own address (namespace end)."""
        return self.link.addr_b

    @property
    def server_address(self) -> str:
        """The server's address as the site sees it (root end)."""
        return self.link.addr_a


def site_namespace(lab: NetLab, role: str = "site") -> SiteNamespace:
    name = lab.netns(role)
    return SiteNamespace(name, lab.link(None, name))


def chromium_in_namespace(ns: str, directory: Path, chromium: Path) -> Path:
    """An executable that runs Chromium inside ``ns`` (for Playwright's executable_path)."""
    wrapper = directory / f"chromium-{ns}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _listen(host: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@dataclass
class TurnServed:
    local_base: str  # http://127.0.0.1:PORT (host site, console)
    site_base: str  # http://S.a:PORT (the TURN-only site)
    app: object
    turn: TurnService


@contextmanager
def serve_with_turn(
    ctx: AppContext, janus: JanusNamespace, site: SiteNamespace, data_dir: Path
) -> Iterator[TurnServed]:
    """The app (never on 0.0.0.0) with Janus in ``janus`` and a local coturn for ``site``."""
    import uvicorn

    from giaoban.web.app import create_app

    local, janus_side, site_side = (
        _listen("127.0.0.1"),
        _listen(janus.host_address),
        _listen(site.server_address),
    )
    events_url = f"http://{janus.host_address}:{janus_side.getsockname()[1]}/internal/janus/events"
    media = MediaService(
        lab_janus_settings(janus, data_dir / "janus", stats_period=1),
        data_dir / "janus",
        event_backend_url=events_url,
    )
    turn_settings = load_turn_settings(
        data_dir / "turn",
        TurnSettings(
            mode="local",
            listening_ip=site.server_address,
            relay_ip=janus.host_address,
            port=TURN_PORT,
            tls_port=TURN_PORT + 1,
            relay_port_min=52000,
            relay_port_max=52199,
            peer_addresses=[janus.address],
            credential_ttl=3600,
        ),
    )
    turn = TurnService(turn_settings, data_dir / "turn")
    app = create_app(ctx, media=media, turn=turn)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [local, janus_side, site_side]}, daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)
        yield TurnServed(
            f"http://127.0.0.1:{local.getsockname()[1]}",
            f"http://{site.server_address}:{site_side.getsockname()[1]}",
            app,
            turn,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for sock in (local, janus_side, site_side):
            sock.close()
