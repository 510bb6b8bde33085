"""/ws/meetings/{id}: the one WebSocket per tab of a live meeting (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import cast
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect

from giaoban.conference import protocol as p
from giaoban.conference.hub import CloseConnection, Hub, Peer
from giaoban.web.deps import get_ctx, resolve_caller

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_tab_ids = itertools.count(1)
IDLE_TIMEOUT = 60.0


class _Conn:
    """Sends to one tab; a failed send ends that tab only."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_text(self, data: str) -> None:
        await self.ws.send_text(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


def _same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc == ws.headers.get("host", "")


@router.websocket("/ws/meetings/{meeting_id}")
async def meeting_socket(ws: WebSocket, meeting_id: int) -> None:
    ctx = get_ctx(cast(Request, ws))
    hub: Hub = ws.app.state.hub
    caller = resolve_caller(cast(Request, ws), ctx)
    await ws.accept()
    if caller is None:
        await ws.close(4401, "not authenticated")
        return
    if caller.via_cookie and not _same_origin(ws):
        await ws.close(4403, "cross-site connection refused")
        return
    peer = Peer(conn=_Conn(ws), principal=caller.principal, key=f"tab-{next(_tab_ids)}")
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
    except Exception:
        log.exception("tab %s failed", peer.key)
    finally:
        # Shielded: the tab's departure must be recorded even when this handler is being cancelled.
        await asyncio.shield(hub.bye(room, peer, dropped=dropped))
