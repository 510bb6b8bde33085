"""MediaService readiness after a reconnect (no Janus: a fake client). A room's recovery waits for
``ready`` (giaoban/live/hub.py ``_recover``), so it must be false while the losses are being
reported and true only once the control session is rebuilt — also when rebuilding it failed at first."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from giaoban.media.client import ClientEvent, JanusConnectionError
from giaoban.media.config import JanusNode, JanusSettings
from giaoban.media.service import MediaEvent, MediaService, NodeRuntime


class Session:
    def __init__(self) -> None:
        self.id = 1
        self.lost = False


class Client:
    connected = True


def test_ready_only_once_the_control_session_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        node = JanusNode(name="n", ws_url="ws://127.0.0.1:9")  # nobody listens: nothing connects to it
        svc = MediaService(JanusSettings(mode="external", nodes=[node]), tmp_path)
        rt = NodeRuntime(node=node, client=Client(), admin=None)  # type: ignore[arg-type]
        svc.nodes["n"] = rt
        failures = 2

        async def setup(runtime: NodeRuntime) -> None:
            nonlocal failures
            if failures:
                failures -= 1
                raise JanusConnectionError("connection closed")
            runtime.control_session = Session()  # type: ignore[assignment]
            runtime.control = object()  # type: ignore[assignment]

        svc._setup_control = setup  # type: ignore[method-assign]
        seen: list[tuple[str, bool]] = []

        def listener(event: MediaEvent) -> None:
            seen.append((event.kind, svc.ready("n")))

        svc.add_listener(listener)
        await svc._on_client_event(rt, ClientEvent("disconnected", reason="closed"))
        assert not svc.ready("n") and not await svc.wait_ready("n", 0.05)
        await svc._on_client_event(rt, ClientEvent("reconnected", lost=[1]))
        assert not svc.ready("n")  # the first rebuild failed: retried in the background
        assert await svc.wait_ready("n", 5.0)
        assert seen == [("node_down", False), ("sessions_lost", False), ("node_up", True)], seen
        warnings = [r for r in caplog.records if "recovery after reconnect failed" in r.getMessage()]
        assert len(warnings) == 2 and not any(r.exc_info for r in warnings)
        rt.control_session.lost = True  # type: ignore[union-attr]
        assert not svc.ready("n")

    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
