"""The real app with its media plane (giaoban/lab/serve.py), as fixtures for tests that need media end
to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from giaoban.context import AppContext
from giaoban.lab.janus_ns import JanusNamespace
from giaoban.lab.serve import Served, serve_with_media
from tests.conftest import Demo

# Fixtures for a module whose tests each need the app with Janus: bind both in the module
# (``db_url = media_app.db_url``, ``served = media_app.served``). One database is enough there
# (SQLite): the database paths are covered elsewhere on both.


@pytest.fixture
def db_url(_sqlite_url: str) -> str:
    return _sqlite_url


@pytest.fixture
def served(ctx: AppContext, demo: Demo, janus_ns: JanusNamespace, tmp_path: Path) -> Iterator[Served]:
    with serve_with_media(ctx, janus_ns, tmp_path / "janus") as s:
        yield s
