"""Janus event-handler events → the latest connection state per handle, mapped to sites by ``opaque_id``.

The sample event handler POSTs JSON (one event or an array of them). We keep only the newest values per
handle and stream, in memory, bounded: a handle is dropped some time after it is detached or its session
goes, and the oldest handles are evicted past ``max_handles``.

Event types (Janus ``eventhandler.h``): 1 session, 2 handle, 8 jsep, 16 webrtc (subtypes 1 ICE,
4 selected pair, 5 DTLS, 6 PeerConnection up/hangup), 32 media (1 receiving state, 2 slowlink, 3 stats),
64 plugin (VideoRoom ``talking``/``stopped-talking``, ``joined``…), 128 transport, 256 core (1 started,
2 shutdown).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

TYPE_SESSION = 1
TYPE_HANDLE = 2
TYPE_WEBRTC = 16
TYPE_MEDIA = 32
TYPE_PLUGIN = 64
TYPE_CORE = 256
SUBTYPE_WEBRTC_ICE = 1
SUBTYPE_WEBRTC_PAIR = 4
SUBTYPE_WEBRTC_DTLS = 5
SUBTYPE_WEBRTC_STATE = 6
SUBTYPE_MEDIA_STATE = 1
SUBTYPE_MEDIA_SLOWLINK = 2
SUBTYPE_MEDIA_STATS = 3

# Stats fields copied from a type-32/3 event, as (Janus key, attribute).
_STATS_FIELDS = (
    ("rtt", "rtt"),
    ("lost", "lost"),
    ("lost-by-remote", "lost_by_remote"),
    ("jitter-local", "jitter_local"),
    ("jitter-remote", "jitter_remote"),
    ("in-link-quality", "in_link_quality"),
    ("in-media-link-quality", "in_media_link_quality"),
    ("out-link-quality", "out_link_quality"),
    ("out-media-link-quality", "out_media_link_quality"),
    ("packets-received", "packets_received"),
    ("packets-sent", "packets_sent"),
    ("bytes-received", "bytes_received"),
    ("bytes-sent", "bytes_sent"),
    ("bytes-received-lastsec", "bytes_received_lastsec"),
    ("bytes-sent-lastsec", "bytes_sent_lastsec"),
    ("nacks-received", "nacks_received"),
    ("nacks-sent", "nacks_sent"),
    ("remb-bitrate", "remb_bitrate"),
)


@dataclass(slots=True)
class StreamStats:
    """Newest stats of one stream (``key`` is ``mid`` plus ``/sim1``/``/sim2`` for simulcast layers)."""

    key: str
    mid: str
    media: str
    codec: str | None = None
    rtt: int | None = None
    lost: int | None = None
    lost_by_remote: int | None = None
    jitter_local: int | None = None
    jitter_remote: int | None = None
    in_link_quality: int | None = None
    in_media_link_quality: int | None = None
    out_link_quality: int | None = None
    out_media_link_quality: int | None = None
    packets_received: int | None = None
    packets_sent: int | None = None
    bytes_received: int | None = None
    bytes_sent: int | None = None
    bytes_received_lastsec: int | None = None
    bytes_sent_lastsec: int | None = None
    nacks_received: int | None = None
    nacks_sent: int | None = None
    remb_bitrate: int | None = None
    updated_at: float = 0.0


@dataclass(slots=True)
class HandleState:
    """What we know of one Janus handle (one site's publisher or subscriber PeerConnection)."""

    emitter: str
    handle_id: int
    session_id: int | None = None
    opaque_id: str | None = None
    plugin: str | None = None
    attached: bool = True
    ice: str | None = None
    dtls: str | None = None
    webrtc_up: bool = False
    hangup_reason: str | None = None
    selected_pair: str | None = None
    room: int | str | None = None
    participant_id: int | str | None = None
    talking: dict[str, bool] = field(default_factory=dict)
    audio_level_dbov: dict[str, float] = field(default_factory=dict)
    receiving: dict[str, bool] = field(default_factory=dict)
    slowlink_count: int = 0
    stats: dict[str, StreamStats] = field(default_factory=dict)
    updated_at: float = 0.0
    gone_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the control room and debugging)."""
        return asdict(self)


@dataclass(slots=True)
class EmitterState:
    """Per Janus instance: when it last (re)started, as told by its core events."""

    name: str
    started_at: float | None = None
    shutdown_at: float | None = None
    events: int = 0


class EventStore:
    """Ingests event-handler payloads and answers "what is the state of site X's handles"."""

    def __init__(
        self,
        *,
        max_handles: int = 20_000,
        forget_after: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_handles = max_handles
        self.forget_after = forget_after
        self.clock = clock
        self.handles: dict[tuple[str, int], HandleState] = {}
        self.emitters: dict[str, EmitterState] = {}
        self.ingested = 0
        self.ignored = 0
        self._pruned_at = 0.0

    def ingest(self, events: Iterable[dict[str, Any]] | dict[str, Any]) -> int:
        """Apply one event or a list of them; return how many were used (malformed ones are skipped)."""
        batch = [events] if isinstance(events, dict) else list(events)
        now = self.clock()
        used = 0
        for event in batch:
            if isinstance(event, dict) and self._apply(event, now):
                used += 1
            else:
                self.ignored += 1
        self.ingested += used
        self._prune(now)
        return used

    def for_opaque_id(self, opaque_id: str) -> list[HandleState]:
        """Live handles whose ``opaque_id`` is the given one (e.g. every handle of one site)."""
        return [h for h in self.handles.values() if h.opaque_id == opaque_id and h.gone_at is None]

    def get(self, handle_id: int, emitter: str = "") -> HandleState | None:
        """State of one handle."""
        return self.handles.get((emitter, handle_id))

    def by_opaque_id(self) -> dict[str, list[HandleState]]:
        """Live handles grouped by ``opaque_id`` (handles without one are left out)."""
        out: dict[str, list[HandleState]] = {}
        for h in self.handles.values():
            if h.opaque_id is not None and h.gone_at is None:
                out.setdefault(h.opaque_id, []).append(h)
        return out

    def _handle(self, emitter: str, event: dict[str, Any], now: float) -> HandleState | None:
        handle_id = event.get("handle_id")
        if not isinstance(handle_id, int):
            return None
        key = (emitter, handle_id)
        state = self.handles.get(key)
        if state is None:
            state = HandleState(emitter=emitter, handle_id=handle_id)
            self.handles[key] = state
        if isinstance(event.get("session_id"), int):
            state.session_id = event["session_id"]
        if isinstance(event.get("opaque_id"), str):
            state.opaque_id = event["opaque_id"]
        state.updated_at = now
        return state

    def _apply(self, event: dict[str, Any], now: float) -> bool:
        etype = event.get("type")
        sub = event.get("subtype")
        body = event.get("event")
        emitter = str(event.get("emitter") or "")
        em = self.emitters.setdefault(emitter, EmitterState(emitter))
        em.events += 1
        if etype == TYPE_CORE and isinstance(body, dict):
            if sub == 1:
                em.started_at = now
            elif sub == 2:
                em.shutdown_at = now
            return True
        if etype == TYPE_SESSION and isinstance(body, dict):
            if body.get("name") == "destroyed" and isinstance(event.get("session_id"), int):
                for h in self.handles.values():
                    if h.emitter == emitter and h.session_id == event["session_id"] and h.gone_at is None:
                        h.attached, h.gone_at = False, now
            return True
        state = self._handle(emitter, event, now)
        if state is None:
            return False
        if etype == TYPE_HANDLE and isinstance(body, dict):
            state.plugin = body.get("plugin", state.plugin)
            if body.get("name") == "detached":
                state.attached, state.gone_at = False, now
            return True
        if etype == TYPE_WEBRTC and isinstance(body, dict):
            self._webrtc(state, sub, body)
            return True
        if etype == TYPE_MEDIA:
            self._media(state, sub, body, now)
            return True
        if etype == TYPE_PLUGIN and isinstance(body, dict):
            self._plugin(state, body.get("data"))
            return True
        return True

    @staticmethod
    def _webrtc(state: HandleState, sub: object, body: dict[str, Any]) -> None:
        if sub == SUBTYPE_WEBRTC_ICE and "ice" in body:
            state.ice = str(body["ice"])
        elif sub == SUBTYPE_WEBRTC_DTLS and "dtls" in body:
            state.dtls = str(body["dtls"])
        elif sub == SUBTYPE_WEBRTC_PAIR and "selected-pair" in body:
            state.selected_pair = str(body["selected-pair"])
        elif sub == SUBTYPE_WEBRTC_STATE:
            if body.get("connection") == "webrtcup":
                state.webrtc_up, state.hangup_reason = True, None
            elif body.get("connection") == "hangup":
                state.webrtc_up = False
                state.hangup_reason = str(body.get("reason") or "hangup")

    @staticmethod
    def _media(state: HandleState, sub: object, body: object, now: float) -> None:
        items = body if isinstance(body, list) else [body]  # combine_media_stats sends an array
        for info in items:
            if not isinstance(info, dict):
                continue
            mid = str(info.get("mid", ""))
            if sub == SUBTYPE_MEDIA_STATE and "receiving" in info:
                key = mid if "substream" not in info else f"{mid}/sim{info['substream']}"
                state.receiving[key] = bool(info["receiving"])
            elif sub == SUBTYPE_MEDIA_SLOWLINK:
                state.slowlink_count += 1
            elif sub == SUBTYPE_MEDIA_STATS:
                media = str(info.get("media", ""))
                key = f"{mid}/{media.removeprefix('video-')}" if media.startswith("video-sim") else mid
                stats = state.stats.get(key)
                if stats is None:
                    stats = state.stats[key] = StreamStats(key=key, mid=mid, media=media)
                if isinstance(info.get("codec"), str):
                    stats.codec = info["codec"]
                for janus_key, attr in _STATS_FIELDS:
                    value = info.get(janus_key)
                    if isinstance(value, int):
                        setattr(stats, attr, value)
                stats.updated_at = now

    @staticmethod
    def _plugin(state: HandleState, data: object) -> None:
        if not isinstance(data, dict):
            return
        if "room" in data:
            state.room = data["room"]
        what = data.get("videoroom") or data.get("event")
        if what in ("talking", "stopped-talking"):
            mid = str(data.get("mid", ""))
            state.talking[mid] = what == "talking"
            level = data.get("audio-level-dBov-avg")
            if isinstance(level, int | float):
                state.audio_level_dbov[mid] = float(level)
            if "id" in data:
                state.participant_id = data["id"]
        elif what in ("joined", "published") and "id" in data:
            state.participant_id = data["id"]

    def _prune(self, now: float) -> None:
        # A full scan per POST would cost O(handles) at every stats burst; once a second is plenty.
        if now - self._pruned_at < 1.0 and len(self.handles) <= self.max_handles:
            return
        self._pruned_at = now
        expired = [
            k
            for k, h in self.handles.items()
            if h.gone_at is not None and now - h.gone_at > self.forget_after
        ]
        for key in expired:
            del self.handles[key]
        overflow = len(self.handles) - self.max_handles
        if overflow > 0:
            oldest = sorted(self.handles.items(), key=lambda kv: (kv[1].gone_at is None, kv[1].updated_at))
            for key, _ in oldest[:overflow]:
                del self.handles[key]
