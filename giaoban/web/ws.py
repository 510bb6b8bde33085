"""/ws/meetings/{id}: the one WebSocket per tab of a live meeting (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import cast

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect

from giaoban.live import protocol as p
from giaoban.live.hub import CloseConnection, Hub, Peer
from giaoban.web.api.common import PathId
from giaoban.web.deps import get_ctx, resolve_caller
from giaoban.web.origin import same_origin

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_tab_ids = itertools.count(1)
IDLE_TIMEOUT = 60.0


class _Conn:
    """Sends to one tab through its own queue, so the hub never waits for a slow tab.

    Messages leave in order from a writer task. A tab that stops reading (its queue reaches
    ``QUEUE_LIMIT`` or one send takes longer than ``SEND_TIMEOUT``) is closed with 1013: its page
    reconnects and resumes from the last state version it holds, which costs it nothing, while
    every other tab and every command's ack go on at full speed.
    """

    QUEUE_LIMIT = 256
    SEND_TIMEOUT = 10.0

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue()
        self.failed = False
        self.writer = asyncio.ensure_future(self._write())

    async def send_text(self, data: str) -> None:
        if self.failed:
            raise ConnectionError("tab closed")
        if self.queue.qsize() >= self.QUEUE_LIMIT:
            self._give_up("too slow")
            raise ConnectionError("tab too slow")
        self.queue.put_nowait(data)

    async def close(self, code: int, reason: str) -> None:
        """Close after what is already queued has gone out."""
        if not self.failed:
            self.queue.put_nowait((code, reason))

    def _give_up(self, why: str) -> None:
        self.failed = True
        self.writer.cancel()
        log.info("closing a tab that does not keep up (%s)", why)
        task = asyncio.ensure_future(self._close_now(1013, why))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _close_now(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, tuple):
                self.failed = True
                await self._close_now(*item)
                return
            try:
                await asyncio.wait_for(self.ws.send_text(item), self.SEND_TIMEOUT)
            except TimeoutError:
                self._give_up("send timed out")
                return
            except Exception:  # the socket is gone: its receive loop ends the tab
                self.failed = True
                return

    def stop(self) -> None:
        self.writer.cancel()


@router.websocket("/ws/meetings/{meeting_id}")
async def meeting_socket(ws: WebSocket, meeting_id: PathId) -> None:
    ctx = get_ctx(cast(Request, ws))
    hub: Hub = ws.app.state.hub
    caller = resolve_caller(cast(Request, ws), ctx)
    await ws.accept()
    if caller is None:
        await ws.close(4401, "not authenticated")
        return
    if caller.via_cookie and not same_origin(ws):
        await ws.close(4403, "cross-site connection refused")
        return
    conn = _Conn(ws)
    try:
        await _serve_tab(
            ws, hub, Peer(conn=conn, principal=caller.principal, key=f"tab-{next(_tab_ids)}"), meeting_id
        )
    finally:
        conn.stop()


async def _serve_tab(ws: WebSocket, hub: Hub, peer: Peer, meeting_id: int) -> None:
    try:
        raw = await asyncio.wait_for(ws.receive_text(), timeout=10.0)
    except TimeoutError:
        await ws.close(4408, "no hello")
        return
    except WebSocketDisconnect:
        return
    try:
        hello = p.parse(raw)
    except p.ProtocolError as exc:
        await ws.close(4400, exc.message[:120])
        return
    if not isinstance(hello, p.Hello):
        await ws.close(4400, "first message must be hello")
        return
    try:
        room, _ = await hub.hello(peer, meeting_id, hello)
    except CloseConnection as exc:
        await ws.close(exc.code, exc.reason)
        return
    dropped = True
    try:
        while True:
            raw = await asyncio.wait_for(ws.receive_text(), timeout=IDLE_TIMEOUT)
            await hub.message(room, peer, raw)
    except WebSocketDisconnect as exc:
        log.debug("tab %s closed (%s)", peer.key, exc.code)
    except TimeoutError:
        await ws.close(1001, "idle")
    except ConnectionError as exc:  # its socket went away (or it stopped reading) mid-reply
        log.debug("tab %s gone: %s", peer.key, exc)
    except Exception:
        log.exception("tab %s failed", peer.key)
    finally:
        # Shielded: the tab's departure must be recorded even when this handler is being cancelled.
        await asyncio.shield(hub.bye(room, peer, dropped=dropped))
