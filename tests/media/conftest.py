"""Media tests: the lab fixtures, and a way to run coroutines from plain (sync) tests."""

from __future__ import annotations

import sys
from pathlib import Path

# The suite may be started without the repo on sys.path (e.g. `.venv/bin/pytest` with rootdir imports);
# `tests.lab` and `giaoban` must import either way.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.lab.fixtures import (  # noqa: E402,F401
    janus_ns,
    janus_server,
    loop_thread,
    netem,
    netlab,
)
