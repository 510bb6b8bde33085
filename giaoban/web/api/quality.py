"""/api/v1/meetings/{id}/quality: the control room's live wall of connection health, and its alerts.

Only the meeting's control room (chair, secretary, central operator, admin over the organizing unit)
reads it; a meeting outside the caller's scope is 404, a meeting they see only as a site is 403.
The figures are the quality monitor's (``giaoban.live.quality``); see docs/operations.md.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from giaoban.errors import Conflict, Forbidden, NotFound
from giaoban.live.quality import OPEN_STATUSES, QualityMonitor
from giaoban.live.state import LiveError, Record
from giaoban.meetings.access import MeetingAccess, meeting_access
from giaoban.types import UtcDateTime
from giaoban.web.api.common import ERRORS, ApiRoute, PathId
from giaoban.web.deps import Web, web

router = APIRouter(prefix="/meetings", tags=["control room"], responses=ERRORS, route_class=ApiRoute)

Level = Annotated[str, Field(description="green | amber | red")]


class SiteQualityOut(BaseModel):
    site_id: int
    name: str
    unit_name: str
    code: str
    host: bool
    level: Level
    reasons: list[str] = Field(description="Why not green, worst first (codes: docs/operations.md)")
    connected: bool
    attendance: str
    tabs: int
    publishing: bool
    audio: bool
    video: bool
    last_seen: UtcDateTime | None
    rtt_ms: int | None
    loss_pct: float | None
    jitter_ms: int | None
    in_kbps: float | None
    audio_kbps: float | None
    video_kbps: float | None
    out_kbps: float | None
    down_rtt_ms: int | None
    down_loss_pct: float | None
    down_jitter_ms: int | None
    layers: int
    layers_total: int
    packets_in: int
    packets_out: int
    ice: str | None
    stats_age: float | None
    viewers: int
    techcheck: dict[str, Any] | None
    alerts: list[int] = Field(description="Ids of the site's open alerts")


class AlertOut(BaseModel):
    id: int
    site_id: int
    rule: str = Field(description="dropped | video_stopped | loss_high | rtt_high")
    value: float | None
    raised_at: UtcDateTime | None
    cleared_at: UtcDateTime | None
    acked_at: UtcDateTime | None
    acked_by: str
    open: bool


class QualityOut(BaseModel):
    meeting_id: int
    status: str
    sampled_at: UtcDateTime | None
    period: float
    thresholds: dict[str, float]
    counts: dict[str, int]
    sites: list[SiteQualityOut]
    alerts: list[AlertOut]


class HistoryOut(BaseModel):
    site_id: int
    period: float
    fields: list[str]
    points: list[list[float | str | None]] = Field(description="One row per sample, the last 30 minutes")


def _console(w: Web, meeting_id: int) -> MeetingAccess:
    access = meeting_access(w.ctx, w.principal, meeting_id)
    if access is None:
        raise NotFound(f"Không có hội nghị mã số {meeting_id}.", code="meeting_not_found")
    if not access.console:
        raise Forbidden("Chỉ phòng điều hành (chủ trì, thư ký, điều hành Trung ương) xem được trang này.")
    return access


def _monitor(request: Request) -> QualityMonitor:
    monitor: QualityMonitor = request.app.state.quality
    return monitor


@router.get("/{meeting_id}/quality", response_model=QualityOut, summary="Connection health of every site")
async def meeting_quality(request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId) -> Any:
    await anyio.to_thread.run_sync(_console, w, meeting_id)
    room = await request.app.state.hub.room(meeting_id)
    return await _monitor(request).view(room)


@router.get(
    "/{meeting_id}/quality/{site_id}/history",
    response_model=HistoryOut,
    summary="One site's figures over the last 30 minutes",
)
async def site_history(
    request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId, site_id: PathId
) -> Any:
    await anyio.to_thread.run_sync(_console, w, meeting_id)
    room = await request.app.state.hub.room(meeting_id)
    if site_id not in room.live.sites:
        raise NotFound(f"Điểm cầu {site_id} không được mời dự hội nghị này.", code="site_not_invited")
    return _monitor(request).history(meeting_id, site_id)


@router.post(
    "/{meeting_id}/alerts/{alert_id}/ack",
    response_model=AlertOut,
    summary="Acknowledge an alert (recorded in the meeting log)",
)
async def ack_alert(
    request: Request, w: Annotated[Web, Depends(web)], meeting_id: PathId, alert_id: PathId
) -> Any:
    await anyio.to_thread.run_sync(_console, w, meeting_id)
    hub = request.app.state.hub
    room = await hub.room(meeting_id)
    if room.live.status not in OPEN_STATUSES:
        raise Conflict("Hội nghị không còn diễn ra: không ghi nhận thêm.", code="meeting_closed")
    alert = room.live.alerts.get(alert_id)
    if alert is None:
        raise NotFound(f"Không có cảnh báo mã số {alert_id}.", code="alert_not_found")
    if alert.acked_at is not None:
        return alert.to_json()
    record = Record("alert.ack", hub.clock(), alert.site_id, w.principal.username, {"id": alert_id})
    try:
        applied = await hub.record(meeting_id, record)
    except LiveError as exc:
        raise NotFound(exc.message, code="alert_not_found") from exc
    if applied is None:
        raise Conflict("Hội nghị đã kết thúc: không ghi nhận thêm.", code="meeting_closed")
    return alert.to_json()
