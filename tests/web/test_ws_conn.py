"""The per-tab send queue of the meeting WebSocket: a slow tab never holds up the hub."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from giaoban.web.ws import _Conn

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeSocket:
    """Records what was sent; ``gate`` (when set) blocks every send until opened."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.gate = gate

    async def send_text(self, data: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def _conn(sock: FakeSocket) -> _Conn:
    return _Conn(cast(Any, sock))


async def _drain() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_messages_leave_in_order_and_close_comes_after_them() -> None:
    sock = FakeSocket()
    conn = _conn(sock)
    for i in range(5):
        await conn.send_text(f"m{i}")
    await conn.close(4409, "ended")
    await _drain()
    assert sock.sent == [f"m{i}" for i in range(5)]
    assert sock.closed == (4409, "ended")
    with pytest.raises(ConnectionError):
        await conn.send_text("late")
    conn.stop()


async def test_a_tab_that_stops_reading_is_closed_without_blocking_the_sender() -> None:
    gate = asyncio.Event()
    sock = FakeSocket(gate)
    conn = _conn(sock)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionError):
        for i in range(conn.QUEUE_LIMIT + 10):
            await conn.send_text(f"m{i}")  # never waits for the socket
    assert loop.time() - started < 1.0
    await _drain()
    assert sock.closed is not None and sock.closed[0] == 1013
    assert conn.failed
    with pytest.raises(ConnectionError):
        await conn.send_text("more")
    conn.stop()


async def test_a_send_that_hangs_closes_the_tab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Conn, "SEND_TIMEOUT", 0.05)
    sock = FakeSocket(asyncio.Event())  # never opened
    conn = _conn(sock)
    await conn.send_text("stuck")
    await asyncio.sleep(0.2)
    assert sock.closed is not None and sock.closed[0] == 1013
    with pytest.raises(ConnectionError):
        await conn.send_text("next")
    conn.stop()
