"""Browser tests: the real app under uvicorn on a free port, driven by Debian's Chromium via Playwright.

They run on SQLite only (the pages and the API are tested on both databases elsewhere).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from giaoban.context import AppContext
from giaoban.lab.serve import Served, serve_with_media
from tests.conftest import Demo
from tests.e2e.helpers import ARTIFACTS as ARTIFACTS
from tests.e2e.helpers import CHROMIUM as CHROMIUM
from tests.e2e.helpers import CHROMIUM_ARGS as CHROMIUM_ARGS
from tests.e2e.helpers import launch_chromium, require_browser
from tests.lab.fixtures import JanusNamespace


@pytest.fixture
def db_url(_sqlite_url: str) -> str:
    """SQLite only for browser tests (overrides the two-database parameter of tests/conftest.py)."""
    return _sqlite_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(ctx: AppContext, demo: Demo) -> Iterator[str]:
    """The app with the demo loaded, served by uvicorn in a thread; yields its base URL."""
    import uvicorn

    from giaoban.web.app import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-e2e", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start under uvicorn")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _chromium(*, media: bool) -> Iterator[Any]:
    with require_browser()() as playwright:
        chromium = launch_chromium(playwright, media=media)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (Playwright's own browser download is not used).

    Module-scoped: Playwright's sync API keeps an event loop marked running while it is open, and
    later tests that call asyncio.run() must not see it.
    """
    yield from _chromium(media=False)


@pytest.fixture(scope="module")
def media_browser() -> Iterator[Any]:
    """Chromium with a fake camera and microphone (module-scoped, as ``browser``)."""
    yield from _chromium(media=True)


@pytest.fixture
def playwright() -> Iterator[Any]:
    """Playwright for one test that launches its own browsers (e.g. one inside a site namespace), with
    a 30 s default for ``expect``. Not together with ``browser``/``media_browser`` in one module."""
    sync_playwright = require_browser()
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def served(ctx: AppContext, demo: Demo, janus_ns: JanusNamespace, tmp_path: Path) -> Iterator[Served]:
    """The app with its media plane (Janus in the lab namespace), the demo loaded."""
    with serve_with_media(ctx, janus_ns, tmp_path / "janus") as s:
        yield s


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
