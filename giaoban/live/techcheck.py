"""A site's tech check before a meeting ("kiểm tra kỹ thuật"): camera, microphone level, its media
looped back through Janus (echotest), a bandwidth estimate and TURN reachability.

The browser measures; the server relays the echo's signalling (``EchoSession``: the browser never
talks to the Janus API) and keeps the result as a ``techcheck`` record of the meeting (the live
state's site JSON carries the latest one, so the console and the wall see it live, and it is part
of the meeting log). The control room asks a site for a check with a ``techcheck.request`` record,
which reaches the site's tabs as a private message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from giaoban.errors import Conflict, DomainError
from giaoban.live.state import LiveError, Record
from giaoban.media.client import JanusClientError, JanusHandle, JanusSession, JsonDict
from giaoban.types import Line

log = logging.getLogger(__name__)

ECHO_PLUGIN = "janus.plugin.echotest"
ECHO_MAX_SECONDS = 120.0  # an echo session ends by itself after this long
REQUEST_TEXT = (
    "Phòng điều hành đề nghị điểm cầu kiểm tra kỹ thuật: bấm “Kiểm tra kỹ thuật” ở đầu trang phòng họp."
)

Reason = Annotated[str, Line(300, required=False)]


class TechCheckIn(BaseModel):
    """What a site's page reports. ``ready`` needs a working camera and a measured echo."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ready", "failed"]
    reason: Reason = ""
    camera: bool
    mic_level: Annotated[float, Field(ge=0, le=1, description="Peak microphone level seen, 0..1")]
    echo_rtt_ms: Annotated[float, Field(ge=0, le=60_000)] | None = Field(
        default=None, description="Round trip of the echo through Janus (RTCPeerConnection stats)"
    )
    bandwidth_kbps: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        default=None, description="Outgoing bitrate the echo reached (or the browser's estimate)"
    )
    turn: Literal["ok", "failed", "not_configured"] = "not_configured"

    def check(self) -> TechCheckIn:
        """The rules between fields (DomainError 400): a JSON schema cannot state them."""
        if self.status == "ready" and (not self.camera or self.echo_rtt_ms is None):
            raise DomainError(
                "Chỉ báo “sẵn sàng” khi camera hoạt động và đã đo được tín hiệu vọng.", code="invalid_result"
            )
        if self.status == "failed" and not self.reason:
            raise DomainError("Báo “chưa đạt” cần nêu lý do.", code="invalid_result")
        return self


class SiteReadiness(BaseModel):
    site_id: int
    name: str
    status: Literal["ready", "failed", "not_checked"]
    reason: str | None = None
    camera: bool | None = None
    mic_level: float | None = None
    echo_rtt_ms: float | None = None
    bandwidth_kbps: int | None = None
    turn: str | None = None
    at: str | None = Field(default=None, description="When the result came (UTC, ISO 8601)")
    requested_at: str | None = Field(default=None, description="When the control room last asked")


class Readiness(BaseModel):
    items: list[SiteReadiness]


def readiness(site_json: dict[str, Any]) -> SiteReadiness:
    """A site's readiness from its live JSON (``LiveMeeting.snapshot()['sites'][id]``)."""
    return SiteReadiness(site_id=site_json["site_id"], name=site_json["name"], **site_json["techcheck"])


def parse_result(data: Any) -> TechCheckIn:
    """Validate a result from a tab; DomainError (code ``invalid``) with the fields at fault."""
    try:
        result = TechCheckIn.model_validate(data)
    except ValidationError as exc:
        details = [{"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        raise DomainError(
            "Kết quả kiểm tra kỹ thuật không hợp lệ.", code="invalid", details=details
        ) from None
    return result.check()


Apply = Callable[[Record], Awaitable[Any]]


async def store(apply: Apply, at: float, site_id: int, user: str, result: TechCheckIn) -> None:
    """Keep ``result`` as the site's latest tech check (a ``techcheck`` record of the meeting)."""
    try:
        await apply(Record("techcheck", at, site_id, user, result.model_dump()))
    except LiveError as exc:
        raise Conflict(exc.message, code=exc.code) from None


async def ask(apply: Apply, at: float, site_id: int, user: str) -> None:
    """The control room asks ``site_id`` for a tech check (a private message to its tabs)."""
    try:
        await apply(Record("techcheck.request", at, site_id, user, {"text": REQUEST_TEXT}))
    except LiveError as exc:
        raise Conflict(exc.message, code=exc.code) from None


# --- the echo loop through Janus ------------------------------------------------------------------


class EchoError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_sdp(jsep: Any, kind: str) -> dict[str, str]:
    """An offer as the browser sends it; anything else never reaches Janus."""
    if not isinstance(jsep, dict) or jsep.get("type") != kind or set(jsep) - {"type", "sdp"}:
        raise EchoError("invalid", f"jsep must be {{type: '{kind}', sdp}}")
    sdp = jsep.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or "\nm=" not in sdp or len(sdp) > 60_000:
        raise EchoError("invalid", "SDP không hợp lệ.")
    return {"type": kind, "sdp": sdp}


def check_candidate(candidate: Any) -> JsonDict | None:
    if candidate is None:
        return None
    if not isinstance(candidate, dict):
        raise EchoError("invalid", "candidate must be an object or null")
    out: JsonDict = {}
    text = candidate.get("candidate")
    if not isinstance(text, str) or len(text) > 1000:
        raise EchoError("invalid", "candidate.candidate must be a string")
    out["candidate"] = text
    mid = candidate.get("sdpMid")
    if mid is not None:
        if not isinstance(mid, str) or len(mid) > 64:
            raise EchoError("invalid", "candidate.sdpMid must be a short string")
        out["sdpMid"] = mid
    index = candidate.get("sdpMLineIndex")
    if index is not None:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 64:
            raise EchoError("invalid", "candidate.sdpMLineIndex must be a small integer")
        out["sdpMLineIndex"] = index
    return out


Push = Callable[[dict[str, Any]], Awaitable[None]]


class EchoSession:
    """One tab's echo: a Janus session with an echotest handle, torn down by ``close``."""

    def __init__(self, session: JanusSession, push: Push) -> None:
        self.session = session
        self.push = push
        self.handle: JanusHandle | None = None
        self.up = False

    @classmethod
    async def open(cls, media: Any, site_id: int, push: Push) -> EchoSession:
        """``media``: the app's MediaService (pick_node, client)."""
        if media is None:
            raise EchoError("media_unavailable", "Máy chủ media chưa sẵn sàng.")
        try:
            session = await media.client(media.pick_node()).create_session()
        except JanusClientError as exc:
            raise EchoError("media_unavailable", "Máy chủ media chưa sẵn sàng.") from exc
        echo = cls(session, push)
        try:
            echo.handle = await session.attach(ECHO_PLUGIN, opaque_id=f"techcheck-{site_id}")
        except JanusClientError as exc:
            await echo.close()
            raise EchoError("media_unavailable", "Máy chủ media không có chức năng kiểm tra vọng.") from exc
        echo.handle.add_callback(echo._event)
        return echo

    async def _event(self, msg: JsonDict) -> None:
        kind = msg.get("janus")
        if kind == "webrtcup":
            self.up = True
            await self.push({"type": "webrtcup"})
        elif kind == "media":
            await self.push(
                {"type": "media", "kind": msg.get("type"), "receiving": bool(msg.get("receiving"))}
            )
        elif kind in ("hangup", "detached", "session_lost"):
            await self.push({"type": "hangup", "reason": str(msg.get("reason", kind))})

    async def offer(self, jsep: Any) -> dict[str, Any]:
        assert self.handle is not None
        offer = check_sdp(jsep, "offer")
        try:
            response = await self.handle.message({"audio": True, "video": True}, offer)
        except JanusClientError as exc:
            raise EchoError("echo_failed", "Máy chủ media từ chối kết nối vọng.") from exc
        if response.jsep is None:
            raise EchoError("echo_failed", "Máy chủ media không trả lời kết nối vọng.")
        return {"type": response.jsep.get("type"), "sdp": response.jsep.get("sdp")}

    async def trickle(self, candidate: Any) -> None:
        assert self.handle is not None
        checked = check_candidate(candidate)
        try:
            if checked is None:
                await self.handle.trickle(completed=True)
            else:
                await self.handle.trickle(checked)
        except JanusClientError as exc:
            raise EchoError("trickle_failed", "Không chuyển được ứng viên ICE.") from exc

    async def close(self) -> None:
        with contextlib.suppress(JanusClientError, asyncio.TimeoutError):
            if self.handle is not None:
                await self.handle.detach()
        with contextlib.suppress(JanusClientError, asyncio.TimeoutError):
            await self.session.destroy()
