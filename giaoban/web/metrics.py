"""GET /metrics: Prometheus text format, read from the live state at scrape time.

Who may scrape (docs/operations.md): a caller presenting ``Authorization: Bearer <GIAOBAN_METRICS_TOKEN>``
when that setting is set, or a direct caller on the loopback interface (no ``Forwarded`` /
``X-Forwarded-For`` / ``X-Real-IP`` header, so a reverse proxy on the same host does not make the
whole world local). Anyone else gets 403. The labels carry meeting ids, alert rules and Janus
node names only — never a unit's or a site's name.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

from giaoban.live.quality import LEVELS, OPEN_STATUSES

router = APIRouter(include_in_schema=False)

FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def scrape_allowed(request: Request, token: str | None) -> bool:
    """Bearer token (when configured), or a direct loopback caller."""
    header = request.headers.get("authorization", "")
    if token and header.lower().startswith("bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    if any(h in request.headers for h in FORWARDING_HEADERS):
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Snapshot:
    """What one scrape reports, gathered first (Janus health needs a round trip) then collected."""

    rooms: list[Any] = field(default_factory=list)
    levels: dict[int, dict[str, int]] = field(default_factory=dict)
    quality_samples: int = 0
    media: dict[str, Any] | None = None
    events_ingested: int = 0
    events_ignored: int = 0
    handles: int = 0


class LiveCollector:
    """A custom collector over one ``Snapshot`` (a fresh registry per scrape)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        live = GaugeMetricFamily(
            "giaoban_live_meetings", "Meetings whose room is open (technical check or live)"
        )
        live.add_metric([], len(snap.rooms))
        yield live
        invited = GaugeMetricFamily("giaoban_meeting_sites_invited", "Invited sites", labels=["meeting_id"])
        connected = GaugeMetricFamily(
            "giaoban_meeting_sites_connected", "Sites with at least one tab connected", labels=["meeting_id"]
        )
        publishing = GaugeMetricFamily(
            "giaoban_meeting_sites_publishing", "Sites whose media reaches Janus", labels=["meeting_id"]
        )
        tabs = GaugeMetricFamily("giaoban_meeting_tabs", "Open WebSocket tabs", labels=["meeting_id", "role"])
        levels = GaugeMetricFamily(
            "giaoban_meeting_sites_level",
            "Sites per colour of the control room's wall",
            labels=["meeting_id", "level"],
        )
        alerts = GaugeMetricFamily(
            "giaoban_meeting_alerts_open", "Open alerts", labels=["meeting_id", "rule"]
        )
        unacked = GaugeMetricFamily(
            "giaoban_meeting_alerts_unacknowledged", "Alerts nobody acknowledged yet", labels=["meeting_id"]
        )
        total_connected = 0
        for room in snap.rooms:
            mid = str(room.meeting_id)
            sites = room.live.sites.values()
            n_connected = sum(1 for s in sites if s.connected)
            total_connected += n_connected
            invited.add_metric([mid], len(room.live.sites))
            connected.add_metric([mid], n_connected)
            publishing.add_metric([mid], sum(1 for s in sites if s.publishing))
            roles: dict[str, int] = {"site": 0, "console": 0}
            for peer in list(room.peers):
                roles[peer.role or "site"] = roles.get(peer.role or "site", 0) + 1
            for role, n in sorted(roles.items()):
                tabs.add_metric([mid, role], n)
            counts = snap.levels.get(room.meeting_id)
            if counts is not None:
                for level in LEVELS:
                    levels.add_metric([mid, level], counts.get(level, 0))
            open_rules: dict[str, int] = {}
            for a in room.live.alerts.open_alerts():
                open_rules[a.rule] = open_rules.get(a.rule, 0) + 1
            for rule, n in sorted(open_rules.items()):
                alerts.add_metric([mid, rule], n)
            unacked.add_metric([mid], sum(1 for a in room.live.alerts.items if a.acked_at is None))
        total = GaugeMetricFamily("giaoban_sites_connected", "Sites connected over every open meeting")
        total.add_metric([], total_connected)
        yield total
        yield from (invited, connected, publishing, tabs, levels, alerts, unacked)
        samples = CounterMetricFamily("giaoban_quality_samples", "Samples taken by the quality monitor")
        samples.add_metric([], snap.quality_samples)
        yield samples
        yield from self._media()

    def _media(self) -> Iterator[Metric]:
        snap = self.snap
        configured = GaugeMetricFamily("giaoban_media_configured", "1 when the app runs a media plane")
        configured.add_metric([], 0 if snap.media is None else 1)
        yield configured
        if snap.media is None:
            return
        status = GaugeMetricFamily(
            "giaoban_janus_status", "Media plane: 1 for the current status", labels=["status"]
        )
        for name in ("ok", "degraded", "down"):
            status.add_metric([name], 1 if snap.media.get("status") == name else 0)
        yield status
        up = GaugeMetricFamily("giaoban_janus_node_up", "Janus node answers its API", labels=["node"])
        latency = GaugeMetricFamily(
            "giaoban_janus_node_latency_seconds", "Round trip of an info request", labels=["node"]
        )
        rooms = GaugeMetricFamily("giaoban_janus_node_rooms", "Rooms placed on the node", labels=["node"])
        restarts = CounterMetricFamily(
            "giaoban_janus_restarts", "Restarts of the supervised local Janus", labels=["node"]
        )
        for node in snap.media.get("nodes", []):
            name = str(node.get("name", ""))
            up.add_metric([name], 1 if node.get("status") == "ok" else 0)
            rooms.add_metric([name], float(node.get("rooms") or 0))
            if node.get("latency_ms") is not None:
                latency.add_metric([name], float(node["latency_ms"]) / 1000)
            if node.get("restarts") is not None:
                restarts.add_metric([name], float(node["restarts"]))
        yield from (up, latency, rooms, restarts)
        ingested = CounterMetricFamily("giaoban_janus_events_ingested", "Event-handler events used")
        ingested.add_metric([], snap.events_ingested)
        ignored = CounterMetricFamily("giaoban_janus_events_ignored", "Event-handler events ignored")
        ignored.add_metric([], snap.events_ignored)
        handles = GaugeMetricFamily("giaoban_janus_handles", "Janus handles known from events")
        handles.add_metric([], snap.handles)
        yield from (ingested, ignored, handles)


async def gather(app: Any) -> Snapshot:
    hub = app.state.hub
    monitor = getattr(app.state, "quality", None)
    snap = Snapshot(
        rooms=[r for r in list(hub.rooms.values()) if not r.closed and r.live.status in OPEN_STATUSES]
    )
    if monitor is not None:
        snap.levels = monitor.summary()
        snap.quality_samples = monitor.samples
    media = app.state.media
    if media is not None:
        snap.media = await media.health()
        snap.events_ingested = media.events.ingested
        snap.events_ignored = media.events.ignored
        snap.handles = sum(1 for h in media.events.handles.values() if h.gone_at is None)
    return snap


def render(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(snap))
    return generate_latest(registry)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    token = request.app.state.ctx.settings.metrics_token
    if not scrape_allowed(request, token):
        return PlainTextResponse(
            "metrics: scrape from loopback or with the bearer token (GIAOBAN_METRICS_TOKEN)\n",
            status_code=403,
        )
    return Response(render(await gather(request.app)), media_type=CONTENT_TYPE_LATEST)
