"""The real app with its media plane, in the lab: for tests and benchmarks that need media end to end.

uvicorn serves one app on two sockets: loopback for the clients (browsers need a secure context for
getUserMedia, and 127.0.0.1 is one) and the root end of the lab link for Janus's event handler
(Janus runs in the lab namespace and can reach only that address).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from giaoban.context import AppContext
from giaoban.lab.janus_ns import JanusNamespace, lab_janus_settings
from giaoban.media.service import MediaService
from giaoban.media.turn import TurnService


def _listen(host: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@dataclass
class Served:
    base: str  # http://127.0.0.1:PORT
    app: Any
    janus_url: str
    api_secret: str
    site_bases: dict[str, str] = field(default_factory=dict)  # listen address → http://ADDR:PORT


@contextmanager
def serve_with_media(
    ctx: AppContext,
    ns: JanusNamespace,
    data_dir: Path,
    site_hosts: tuple[str, ...] = (),
    turn: TurnService | None = None,
    janus: dict[str, Any] | None = None,
) -> Iterator[Served]:
    """``site_hosts``: more addresses to listen on (a site namespace's root end), one socket each;
    ``turn``: the app's TURN service (started and stopped with the app); ``janus``: more Janus settings
    (e.g. ``{"extra_plugins": [...]}``)."""
    import uvicorn

    from giaoban.web.app import create_app

    clients = _listen("127.0.0.1")
    janus_side = _listen(ns.host_address)
    sites = {host: _listen(host) for host in site_hosts}
    events_url = f"http://{ns.host_address}:{janus_side.getsockname()[1]}/internal/janus/events"
    settings = lab_janus_settings(ns, data_dir, **{"stats_period": 1, **(janus or {})})
    media = MediaService(settings, data_dir, event_backend_url=events_url)
    app = create_app(ctx, media=media, turn=turn)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [clients, janus_side, *sites.values()]}, daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)
        assert settings.api_secret
        yield Served(
            f"http://127.0.0.1:{clients.getsockname()[1]}",
            app,
            settings.local_ws_url,
            settings.api_secret,
            {host: f"http://{host}:{sock.getsockname()[1]}" for host, sock in sites.items()},
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        clients.close()
        janus_side.close()
        for sock in sites.values():
            sock.close()
