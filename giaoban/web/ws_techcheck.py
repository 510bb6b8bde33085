"""/ws/meetings/{id}/techcheck?site_id=N: a site's echo loop through Janus for its tech check
(docs/protocol.md, "Tech check"). Authorized like the meeting WebSocket: the caller must be able to
act as that invited site (its site operator, or a central operator / admin covering it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, cast

import anyio
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect

from giaoban.live.techcheck import ECHO_MAX_SECONDS, EchoError, EchoSession
from giaoban.meetings.access import meeting_access
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.web.api.common import PathId
from giaoban.web.deps import get_ctx, resolve_caller
from giaoban.web.origin import same_origin

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
MAX_MESSAGE = 64 * 1024
CLOSED = (MeetingStatus.ended.value, MeetingStatus.cancelled.value)


def ice_fields(ws: WebSocket, site_id: int, user_id: int) -> dict[str, Any]:
    """ICE servers for this tab (giaoban.media.turn), or none when TURN is off or not set up."""
    turn = getattr(ws.app.state, "turn", None)
    if turn is None or not getattr(turn, "enabled", False):
        return {"ice_servers": [], "ice_transport_policy": "all"}
    fields: dict[str, Any] = turn.ice_config(site_id, user_id)
    return {"ice_servers": [], "ice_transport_policy": "all", **fields}


@router.websocket("/ws/meetings/{meeting_id}/techcheck")
async def techcheck_socket(ws: WebSocket, meeting_id: PathId) -> None:
    ctx = get_ctx(cast(Request, ws))
    caller = await anyio.to_thread.run_sync(resolve_caller, cast(Request, ws), ctx)
    await ws.accept()
    if caller is None:
        await ws.close(4401, "not authenticated")
        return
    if caller.via_cookie and not same_origin(ws):
        await ws.close(4403, "cross-site connection refused")
        return
    raw_site = ws.query_params.get("site_id", "")
    site_id = int(raw_site) if raw_site.isdigit() and len(raw_site) < 10 else 0
    access = await anyio.to_thread.run_sync(meeting_access, ctx, caller.principal, meeting_id)
    if access is None:
        await ws.close(4404, "no such meeting")
        return
    if site_id not in access.sites_as_site:
        await ws.close(4403, "you cannot act as this site in this meeting")
        return
    if access.status in CLOSED:
        await ws.close(4409, "meeting closed")
        return

    async def push(message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps(message))

    try:
        echo = await EchoSession.open(ws.app.state.media, site_id, push)
    except EchoError as exc:
        await push({"type": "error", "code": exc.code, "message": exc.message})
        await ws.close(1011, exc.code)
        return
    try:
        await push({"type": "welcome", "site_id": site_id, **ice_fields(ws, site_id, caller.user.id)})
        with anyio.move_on_after(ECHO_MAX_SECONDS):
            while True:
                raw = await ws.receive_text()
                await _handle(echo, raw, push)
        await ws.close(1000, "echo time is over")
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("tech check of site %s failed", site_id)
    finally:
        await asyncio.shield(echo.close())


async def _handle(echo: EchoSession, raw: str, push: Any) -> None:
    """One client message: ``offer`` {jsep} → ``answer`` {jsep}; ``trickle`` {candidate|null}."""
    try:
        if len(raw) > MAX_MESSAGE:
            raise EchoError("too_large", "Thông điệp quá lớn.")
        try:
            msg = json.loads(raw)
        except ValueError:
            raise EchoError("bad_json", "Thông điệp không phải JSON.") from None
        if not isinstance(msg, dict):
            raise EchoError("bad_message", "Thông điệp phải là một đối tượng JSON.")
        kind = msg.get("type")
        if kind == "offer":
            await push({"type": "answer", "jsep": await echo.offer(msg.get("jsep"))})
        elif kind == "trickle":
            if "candidate" not in msg:
                raise EchoError("invalid", "trickle needs a candidate (or null)")
            await echo.trickle(msg["candidate"])
        else:
            raise EchoError("unknown_type", "Loại thông điệp không được hỗ trợ.")
    except EchoError as exc:
        await push({"type": "error", "code": exc.code, "message": exc.message})
