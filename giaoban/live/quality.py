"""Connection health of every invited site of a live meeting: the control room's wall (docs/operations.md).

Every ``PERIOD`` seconds the monitor looks at each open room of the hub and, per invited site, puts
together what the signalling knows (connected tabs, publishing, last seen) and what Janus's event
handler reported (``giaoban.media.events.EventStore``):

- upstream, the site's publisher handle (``opaque_id`` ``site-<id>``): what Janus receives from the
  site — kbit/s in (audio, video), packets, loss (Δlost / Δ(lost + received)), jitter, RTT,
  simulcast layers arriving, ICE state, slowlink events;
- downstream, the site's view subscriptions (``view-<id>-<tab>``): what Janus sends to it — kbit/s
  out, loss the site reported (Δlost-by-remote / Δsent), RTT, the site's jitter.

The pure functions (``measure``, ``assess``, ``verdicts``, ``step``) make the figures, the colour
(green / amber / red with reasons) and the alert decisions; ``QualityMonitor`` keeps per site the
last figures, a 30-minute history (a bounded ring) and the alert rules' run counters, and writes
alert raises and clears into the meeting log through ``Hub.record`` (acknowledgements come from
the control room through the API). Alerts have hysteresis: a rule raises after ``raise_after``
bad samples in a row and clears after ``clear_after`` good ones, with a gap between the raise and
clear thresholds, so a site hovering at a threshold does not flap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from giaoban.live.alerts import RULES
from giaoban.live.state import LiveError, LiveMeeting, Record
from giaoban.thresholds import DEFAULT_THRESHOLDS, Thresholds

if TYPE_CHECKING:
    from giaoban.live.hub import Hub, Room
    from giaoban.media.events import EventStore, HandleState

log = logging.getLogger(__name__)

PERIOD = 2.0  # seconds between samples
HISTORY_SECONDS = 30 * 60
HISTORY_POINTS = int(HISTORY_SECONDS / PERIOD) + 1
# "waiting": not joined yet before the meeting is live ("Chưa vào") — not a problem (yet).
LEVELS = ("green", "amber", "red", "waiting")
OPEN_STATUSES = ("open", "live")


# --- figures from Janus's stats ------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """Cumulative packet counters at the last sample where they moved (for loss over a window)."""

    packets_in: int = 0
    lost_in: int = 0
    packets_out: int = 0
    lost_out: int = 0
    slowlink: int = 0
    loss_in_pct: float | None = None
    loss_out_pct: float | None = None


@dataclass(frozen=True)
class Figures:
    publisher: bool = False  # Janus has a publisher handle for the site
    webrtc_up: bool = False
    ice: str | None = None
    audio_kbps: float | None = None
    video_kbps: float | None = None
    in_kbps: float | None = None
    out_kbps: float | None = None
    layers: int = 0  # simulcast layers arriving at Janus now
    layers_total: int = 0  # layers the site has sent in this publication
    rtt_ms: int | None = None
    jitter_ms: int | None = None
    loss_pct: float | None = None
    down_rtt_ms: int | None = None
    down_jitter_ms: int | None = None
    down_loss_pct: float | None = None
    packets_in: int = 0
    packets_out: int = 0
    stats_age: float | None = None  # seconds since the newest upstream stats
    slowlinks: int = 0  # new slowlink events since the previous sample
    viewers: int = 0  # the site's view subscriptions


def _loss(lost: int, got: int, prev_lost: int, prev_got: int) -> tuple[float | None, bool]:
    """Loss % over the window since the previous counters; (None, False) when nothing moved.
    A counter that went backwards (a new PeerConnection) restarts from zero."""
    d_lost, d_got = lost - prev_lost, got - prev_got
    if d_lost < 0 or d_got < 0:
        d_lost, d_got = max(lost, 0), max(got, 0)
    total = d_lost + d_got
    if total <= 0:
        return None, False
    return round(100.0 * max(d_lost, 0) / total, 2), True


def _kbps(value: int | None) -> float:
    return (value or 0) * 8 / 1000


def measure(
    publishers: Sequence[HandleState],
    viewers: Sequence[HandleState],
    prev: Counters | None,
    now: float,
    stale_after: float = DEFAULT_THRESHOLDS.stale_after,
) -> tuple[Figures, Counters]:
    """The site's figures from its handles' newest stats, and the counters for the next window.

    Only streams whose stats are fresher than ``stale_after`` count towards bitrates and layers."""
    prev = prev or Counters()
    audio = video = 0.0
    layers = layers_total = 0
    rtts: list[int] = []
    jitters: list[int] = []
    audio_jitters: list[int] = []
    packets_in = lost_in = 0
    newest: float | None = None
    webrtc_up = False
    ice: str | None = None
    slowlink = 0
    for h in publishers:
        webrtc_up = webrtc_up or h.webrtc_up
        ice = h.ice or ice
        slowlink += h.slowlink_count
        for s in h.stats.values():
            fresh = now - s.updated_at <= stale_after
            newest = s.updated_at if newest is None else max(newest, s.updated_at)
            packets_in += s.packets_received or 0
            lost_in += max(s.lost or 0, 0)
            if s.media.startswith("video"):
                layers_total += 1
                if fresh and (s.bytes_received_lastsec or 0) > 0:
                    layers += 1
            if not fresh:
                continue
            if s.media == "audio":
                audio += _kbps(s.bytes_received_lastsec)
            else:
                video += _kbps(s.bytes_received_lastsec)
            if s.rtt:
                rtts.append(s.rtt)
            if s.jitter_local is not None and (s.bytes_received_lastsec or 0) > 0:
                (audio_jitters if s.media == "audio" else jitters).append(s.jitter_local)
    out = 0.0
    down_rtts: list[int] = []
    down_jitters: list[int] = []
    packets_out = lost_out = 0
    for h in viewers:
        slowlink += h.slowlink_count
        for s in h.stats.values():
            packets_out += s.packets_sent or 0
            lost_out += max(s.lost_by_remote or 0, 0)
            if now - s.updated_at > stale_after:
                continue
            out += _kbps(s.bytes_sent_lastsec)
            if s.rtt:
                down_rtts.append(s.rtt)
            if s.jitter_remote is not None:
                down_jitters.append(s.jitter_remote)
    loss_in, moved_in = _loss(lost_in, packets_in, prev.lost_in, prev.packets_in)
    loss_out, moved_out = _loss(lost_out, packets_out, prev.lost_out, prev.packets_out)
    counters = Counters(
        packets_in=packets_in if moved_in else prev.packets_in,
        lost_in=lost_in if moved_in else prev.lost_in,
        packets_out=packets_out if moved_out else prev.packets_out,
        lost_out=lost_out if moved_out else prev.lost_out,
        slowlink=slowlink,
        loss_in_pct=loss_in if moved_in else (prev.loss_in_pct if publishers else None),
        loss_out_pct=loss_out if moved_out else (prev.loss_out_pct if viewers else None),
    )
    publishing = bool(publishers)
    figures = Figures(
        publisher=publishing,
        webrtc_up=webrtc_up,
        ice=ice,
        audio_kbps=round(audio, 1) if publishing else None,
        video_kbps=round(video, 1) if publishing else None,
        in_kbps=round(audio + video, 1) if publishing else None,
        out_kbps=round(out, 1) if viewers else None,
        layers=layers,
        layers_total=layers_total,
        rtt_ms=max(rtts) if rtts else None,
        jitter_ms=max(audio_jitters) if audio_jitters else max(jitters) if jitters else None,
        loss_pct=counters.loss_in_pct,
        down_rtt_ms=max(down_rtts) if down_rtts else None,
        down_jitter_ms=max(down_jitters) if down_jitters else None,
        down_loss_pct=counters.loss_out_pct,
        packets_in=packets_in,
        packets_out=packets_out,
        stats_age=None if newest is None else round(max(0.0, now - newest), 1),
        slowlinks=max(0, slowlink - prev.slowlink),
        viewers=len(viewers),
    )
    return figures, counters


# --- colour ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteFacts:
    """Everything the colour and the alerts of one site are decided from, at one sample."""

    connected: bool
    ever_connected: bool  # has joined this meeting at some time
    publishing: bool  # Janus reported the site's PeerConnection up (live state)
    ever_published: bool  # has published in this meeting (seen by the monitor)
    figures: Figures
    # The meeting is live, so every invited site is expected in it: one that never came is a
    # problem (red "absent"); before that it is only "waiting" ("Chưa vào").
    expected: bool = True


def _worst(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def assess(f: SiteFacts, th: Thresholds = DEFAULT_THRESHOLDS) -> tuple[str, list[str]]:
    """``(level, reasons)``: red / amber / green (or waiting, before the meeting is live) and why,
    worst first."""
    red: list[str] = []
    amber: list[str] = []
    g = f.figures
    if not f.connected:
        if not f.ever_connected and not f.expected:
            return "waiting", ["absent"]
        red.append("dropped" if f.ever_connected else "absent")
        return "red", red
    if g.ice == "failed":
        red.append("ice_failed")
    if not f.publishing:
        (red if f.ever_published else amber).append("not_publishing")
    else:
        fresh = g.stats_age is not None and g.stats_age <= th.stale_after
        if not fresh:
            amber.append("no_stats")
        else:
            if not g.video_kbps:
                red.append("no_video")
            # No audio is normal: a site's microphone stays off until it has the floor.
    for value, amber_at, red_at, name in (
        (_worst(g.loss_pct, g.down_loss_pct), th.loss_amber, th.loss_red, "loss"),
        (_worst(g.rtt_ms, g.down_rtt_ms), th.rtt_amber, th.rtt_red, "rtt"),
        (_worst(g.jitter_ms, g.down_jitter_ms), th.jitter_amber, th.jitter_red, "jitter"),
    ):
        if value is None:
            continue
        if value >= red_at:
            red.append(name)
        elif value >= amber_at:
            amber.append(name)
    if g.slowlinks:
        amber.append("slowlink")
    if red:
        return "red", red + amber
    if amber:
        return "amber", amber
    return "green", []


# --- alerts ----------------------------------------------------------------------------------------


class Verdict(Enum):
    BAD = "bad"  # counts towards raising
    GOOD = "good"  # counts towards clearing
    MID = "mid"  # between the thresholds: breaks either run
    UNKNOWN = "unknown"  # no figures: changes nothing


@dataclass(frozen=True)
class RuleState:
    open: bool = False
    run: int = 0  # BADs in a row while closed, GOODs in a row while open


def step(
    state: RuleState, verdict: Verdict, raise_after: int, clear_after: int
) -> tuple[RuleState, str | None]:
    """One sample of one rule: the new state and ``"raise"`` / ``"clear"`` / None."""
    if verdict is Verdict.UNKNOWN:
        return state, None
    if not state.open:
        run = state.run + 1 if verdict is Verdict.BAD else 0
        if run >= raise_after:
            return RuleState(open=True, run=0), "raise"
        return RuleState(open=False, run=run), None
    run = state.run + 1 if verdict is Verdict.GOOD else 0
    if run >= clear_after:
        return RuleState(open=False, run=0), "clear"
    return RuleState(open=True, run=run), None


def _band(value: float | None, bad_at: float, good_below: float) -> Verdict:
    if value is None:
        return Verdict.UNKNOWN
    if value >= bad_at:
        return Verdict.BAD
    return Verdict.GOOD if value < good_below else Verdict.MID


def verdicts(f: SiteFacts, th: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, tuple[Verdict, float | None]]:
    """Per alert rule, what this sample says (and the value shown with a raised alert)."""
    g = f.figures
    # Never came: not an alert (the wall shows it red, as absent).
    dropped = Verdict.MID if not f.ever_connected else Verdict.GOOD if f.connected else Verdict.BAD
    fresh = g.stats_age is not None and g.stats_age <= th.stale_after
    if not f.connected:
        video = Verdict.UNKNOWN  # "dropped" says it
    elif f.publishing and fresh:
        video = Verdict.GOOD if g.video_kbps else Verdict.BAD
    elif not f.publishing and f.ever_published:
        video = Verdict.BAD
    else:
        video = Verdict.UNKNOWN
    loss = _worst(g.loss_pct, g.down_loss_pct) if f.connected else None
    rtt = _worst(g.rtt_ms, g.down_rtt_ms) if f.connected else None
    return {
        "dropped": (dropped, None),
        "video_stopped": (video, g.video_kbps),
        "loss_high": (_band(loss, th.loss_alert, th.loss_clear), loss),
        "rtt_high": (_band(rtt, th.rtt_alert, th.rtt_clear), rtt),
    }


def rule_runs(rule: str, th: Thresholds) -> tuple[int, int]:
    raise_after = th.drop_after if rule == "dropped" else th.raise_after
    clear_after = 2 if rule in ("dropped", "video_stopped") else th.clear_after
    return raise_after, clear_after


# --- the monitor -----------------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


HISTORY_FIELDS = ("t", "level", "rtt_ms", "loss_pct", "jitter_ms", "in_kbps", "out_kbps")


@dataclass
class SiteQuality:
    site_id: int
    counters: Counters | None = None
    figures: Figures = field(default_factory=Figures)
    level: str = "red"
    reasons: list[str] = field(default_factory=list)
    last_seen: float | None = None
    tabs: int = 0
    ever_published: bool = False
    rules: dict[str, RuleState] = field(default_factory=dict)
    history: deque[tuple[Any, ...]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))


@dataclass
class MeetingQuality:
    meeting_id: int
    sites: dict[int, SiteQuality] = field(default_factory=dict)
    sampled_at: float | None = None


@dataclass(frozen=True)
class Transition:
    site_id: int
    rule: str
    action: str  # raise | clear
    value: float | None


def _handles_by_site(
    events: EventStore | None, janus_room: object
) -> tuple[dict[int, list[HandleState]], dict[int, list[HandleState]]]:
    """Live handles of this meeting's Janus room, by site: publishers and view subscriptions."""
    pubs: dict[int, list[HandleState]] = {}
    views: dict[int, list[HandleState]] = {}
    if events is None:
        return pubs, views
    for opaque, handles in events.by_opaque_id().items():
        target: dict[int, list[HandleState]] | None = None
        if opaque.startswith("site-"):
            key, target = opaque[5:], pubs
        elif opaque.startswith("view-"):
            key, target = opaque[5:].split("-", 1)[0], views
        else:
            continue
        if not key.isdigit():
            continue
        mine = [h for h in handles if janus_room is None or h.room is None or h.room == janus_room]
        if mine:
            target.setdefault(int(key), []).extend(mine)
    return pubs, views


def _unsampled_level(live: LiveMeeting, site_id: int) -> str:
    site = live.sites[site_id]
    if site.connected:
        return "green"
    return "red" if site.timeline or live.status == "live" else "waiting"


def _techcheck(live: LiveMeeting, site_id: int) -> Any:
    site = live.sites[site_id]
    value = getattr(site, "techcheck", None)
    if value is None:
        return None
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


class QualityMonitor:
    """Samples every open room of the hub each ``period`` seconds (``start``/``stop``), or on demand."""

    def __init__(
        self,
        hub: Hub,
        events: Callable[[], EventStore | None],
        *,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        period: float = PERIOD,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.hub = hub
        self.events = events
        self.thresholds = thresholds
        self.period = period
        self.clock = clock or hub.clock or time.time
        self.meetings: dict[int, MeetingQuality] = {}
        self.samples = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="quality-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("quality monitor sample failed")
            await asyncio.sleep(self.period)

    async def tick(self) -> None:
        """Sample every open room now (and forget meetings whose room is gone)."""
        rooms = [r for r in list(self.hub.rooms.values()) if not r.closed]
        for meeting_id in set(self.meetings) - {r.meeting_id for r in rooms}:
            del self.meetings[meeting_id]
        for room in rooms:
            if room.live.status in OPEN_STATUSES:
                await self.sample(room)

    async def sample(self, room: Room) -> MeetingQuality:
        """One sample of one room: figures, colours, history, and alert records."""
        async with self._lock:
            mq, transitions = self._measure_room(room, self.clock())
        for t in transitions:
            data = {"rule": t.rule, "action": t.action, "value": t.value}
            try:
                await self.hub.record(room.meeting_id, Record("alert", self.clock(), t.site_id, "", data))
            except LiveError as exc:  # the log disagrees (e.g. cleared meanwhile): follow the log
                log.info("alert %s for site %s not recorded: %s", t.rule, t.site_id, exc.code)
                state = mq.sites[t.site_id].rules
                open_now = room.live.alerts.open_for(t.site_id, t.rule) is not None
                state[t.rule] = RuleState(open=open_now)
        return mq

    def _measure_room(self, room: Room, now: float) -> tuple[MeetingQuality, list[Transition]]:
        live = room.live
        th = self.thresholds
        mq = self.meetings.get(room.meeting_id)
        if mq is None:
            mq = self.meetings[room.meeting_id] = MeetingQuality(room.meeting_id)
        janus_room = getattr(room.stage, "room", None) if room.stage is not None else None
        pubs, views = _handles_by_site(self.events(), janus_room)
        tabs: dict[int, int] = {}
        for peer in list(room.peers):
            if peer.role == "site" and peer.site_id is not None:
                tabs[peer.site_id] = tabs.get(peer.site_id, 0) + 1
        transitions: list[Transition] = []
        down_loss: dict[int, float] = {}  # fresh downstream loss figures, for the views' layers
        for site_id, site in live.sites.items():
            sq = mq.sites.get(site_id)
            if sq is None:
                sq = mq.sites[site_id] = SiteQuality(site_id)
                # After a restart the log says which alerts are open: continue from there.
                for rule in RULES:
                    if live.alerts.open_for(site_id, rule) is not None:
                        sq.rules[rule] = RuleState(open=True)
            sent_before = sq.counters.packets_out if sq.counters is not None else None
            figures, sq.counters = measure(
                pubs.get(site_id, []), views.get(site_id, []), sq.counters, now, th.stale_after
            )
            sq.figures = figures
            if figures.down_loss_pct is not None and sq.counters.packets_out != sent_before:
                down_loss[site_id] = figures.down_loss_pct
            sq.tabs = tabs.get(site_id, 0)
            if site.connected:
                sq.last_seen = now
            elif site.timeline:
                sq.last_seen = max(sq.last_seen or 0.0, site.timeline[-1].at)
            sq.ever_published = sq.ever_published or site.publishing
            facts = SiteFacts(
                connected=site.connected,
                ever_connected=bool(site.timeline),
                publishing=site.publishing,
                ever_published=sq.ever_published,
                figures=figures,
                expected=live.status == "live",
            )
            sq.level, sq.reasons = assess(facts, th)
            sq.history.append(
                (
                    round(now, 1),
                    sq.level,
                    _worst(figures.rtt_ms, figures.down_rtt_ms),
                    _worst(figures.loss_pct, figures.down_loss_pct),
                    _worst(figures.jitter_ms, figures.down_jitter_ms),
                    figures.in_kbps,
                    figures.out_kbps,
                )
            )
            for rule, (verdict, value) in verdicts(facts, th).items():
                raise_after, clear_after = rule_runs(rule, th)
                new, action = step(sq.rules.get(rule, RuleState()), verdict, raise_after, clear_after)
                sq.rules[rule] = new
                if action is not None:
                    transitions.append(Transition(site_id, rule, action, value))
        mq.sampled_at = now
        self.samples += 1
        hook = getattr(room.stage, "downstream_loss", None)  # JanusStage: per-view simulcast layers
        if down_loss and callable(hook):
            try:
                hook(down_loss)
            except Exception:
                log.exception("room %s: downstream loss hook failed", room.meeting_id)
        return mq, transitions

    # -- reading ---------------------------------------------------------------------------

    async def view(self, room: Room) -> dict[str, Any]:
        """The wall: every invited site (in the meeting's order) with figures, colour and reasons,
        the counts per colour, and the alerts worth showing (open or not yet acknowledged, and the
        latest 50)."""
        mq = self.meetings.get(room.meeting_id)
        if mq is None and room.live.status in OPEN_STATUSES and not room.closed:
            mq = await self.sample(room)
        live = room.live
        sites = []
        counts = dict.fromkeys(LEVELS, 0)
        connected = 0
        for site_id in live.order:
            site = live.sites[site_id]
            sq = mq.sites.get(site_id) if mq else None
            entry = self._site_json(live, site_id, sq)
            if sq is not None:
                counts[sq.level] += 1
            connected += site.connected
            sites.append(entry)
        alerts = live.alerts.items
        shown = [a for a in alerts if a.open or a.acked_at is None]
        shown_ids = {a.id for a in shown}
        shown += [a for a in alerts[-50:] if a.id not in shown_ids]
        shown.sort(key=lambda a: a.id, reverse=True)
        return {
            "meeting_id": live.meeting_id,
            "status": live.status,
            "sampled_at": _iso(mq.sampled_at) if mq else None,
            "period": self.period,
            "thresholds": self.thresholds.to_json(),
            "counts": {**counts, "connected": connected, "invited": len(live.sites)},
            "sites": sites,
            "alerts": [a.to_json() for a in shown],
        }

    def _site_json(self, live: LiveMeeting, site_id: int, sq: SiteQuality | None) -> dict[str, Any]:
        site = live.sites[site_id]
        g = sq.figures if sq else Figures()
        open_alerts = [a.id for a in live.alerts.open_alerts() if a.site_id == site_id]
        return {
            "site_id": site_id,
            "name": site.name,
            "unit_name": site.unit_name,
            "code": site.code,
            "host": site_id == live.host_site_id,
            "level": sq.level if sq else _unsampled_level(live, site_id),
            "reasons": list(sq.reasons) if sq else [],
            "connected": site.connected,
            "attendance": site.attendance(),
            "tabs": sq.tabs if sq else 0,
            "publishing": site.publishing,
            "audio": bool(g.audio_kbps),
            "video": bool(g.video_kbps),
            "last_seen": _iso(sq.last_seen) if sq else None,
            "rtt_ms": g.rtt_ms,
            "loss_pct": g.loss_pct,
            "jitter_ms": g.jitter_ms,
            "in_kbps": g.in_kbps,
            "audio_kbps": g.audio_kbps,
            "video_kbps": g.video_kbps,
            "out_kbps": g.out_kbps,
            "down_rtt_ms": g.down_rtt_ms,
            "down_loss_pct": g.down_loss_pct,
            "down_jitter_ms": g.down_jitter_ms,
            "layers": g.layers,
            "layers_total": g.layers_total,
            "packets_in": g.packets_in,
            "packets_out": g.packets_out,
            "ice": g.ice,
            "stats_age": g.stats_age,
            "viewers": g.viewers,
            "techcheck": _techcheck(live, site_id),
            "alerts": open_alerts,
        }

    def history(self, meeting_id: int, site_id: int) -> dict[str, Any]:
        """The last 30 minutes of one site: one point per sample, as rows of ``fields``."""
        mq = self.meetings.get(meeting_id)
        sq = mq.sites.get(site_id) if mq else None
        points = list(sq.history) if sq else []
        return {"site_id": site_id, "period": self.period, "fields": list(HISTORY_FIELDS), "points": points}

    # -- metrics -----------------------------------------------------------------------------

    def summary(self) -> dict[int, dict[str, int]]:
        """Per sampled meeting: sites per colour."""
        out: dict[int, dict[str, int]] = {}
        for meeting_id, mq in self.meetings.items():
            counts = dict.fromkeys(LEVELS, 0)
            for sq in mq.sites.values():
                counts[sq.level] += 1
            out[meeting_id] = counts
        return out
