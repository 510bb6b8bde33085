"""The app with its media plane: a real Janus (in a lab namespace) started by the app's lifespan,
reported by /healthz, and posting its events back to /internal/janus/events."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from giaoban.context import AppContext
from giaoban.media.service import MediaService
from giaoban.web.app import create_app
from tests.lab.fixtures import JanusNamespace, lab_janus_settings


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_app(
    ctx: AppContext, janus_ns: JanusNamespace, tmp_path: Path
) -> Iterator[tuple[str, MediaService, uvicorn.Server, threading.Thread]]:
    # The app listens on the root side of the lab link, so Janus inside the namespace can post to it.
    host = janus_ns.host_address
    port = _free_port(host)
    media = MediaService(
        lab_janus_settings(janus_ns, tmp_path / "janus", stats_period=1),
        tmp_path / "janus",
        event_backend_url=f"http://{host}:{port}/internal/janus/events",
    )
    app = create_app(ctx, media=media)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "app did not start"
            time.sleep(0.05)
        yield base, media, server, thread
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.mark.janus
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_app_runs_janus_reports_it_and_receives_its_events(
    served_app: tuple[str, MediaService, uvicorn.Server, threading.Thread],
) -> None:
    base, media, server, thread = served_app
    with httpx.Client(base_url=base, timeout=5, trust_env=False) as http:
        deadline = time.monotonic() + 15
        while True:
            health = http.get("/healthz").json()
            if health.get("media", {}).get("status") == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert health["status"] == "ok" and health["database"] == "ok"
        node = health["media"]["nodes"][0]
        assert node["status"] == "ok" and node["pid"] and node["version"]

        # Janus's event handler reaches us: the service's own control session shows up.
        deadline = time.monotonic() + 15
        while media.events.ingested == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert media.events.ingested > 0

        # Nobody else may post events.
        wrong = "Basic " + base64.b64encode(b"janus:wrong").decode()
        assert (
            http.post("/internal/janus/events", json=[], headers={"Authorization": wrong}).status_code == 401
        )
        assert http.post("/internal/janus/events", json=[]).status_code == 401
    # Stopping the app stops its Janus.
    server.should_exit = True
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert not Path(f"/proc/{node['pid']}").exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_healthz_without_media_plane(ctx: AppContext) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(ctx)) as client:
        body = client.get("/healthz").json()
    assert body == {"status": "ok", "database": "ok", "media": None}
