"""Event-handler ingestion and error mapping (no Janus needed)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from giaoban.media.client import JanusPluginError, _plugin_error
from giaoban.media.config import JanusSettings, load_janus_settings
from giaoban.media.events import EventStore
from giaoban.media.service import MediaService

EMITTER = "giaoban-media"


def _ev(
    etype: int, body: Any, *, sub: int | None = None, handle: int | None = 7, **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "emitter": EMITTER,
        "type": etype,
        "timestamp": 1,
        "session_id": 100,
        "event": body,
    }
    if sub is not None:
        event["subtype"] = sub
    if handle is not None:
        event["handle_id"] = handle
    event.update(extra)
    return event


def _site_events() -> list[dict[str, Any]]:
    return [
        _ev(256, {"status": "started"}, sub=1, handle=None),
        _ev(
            2,
            {"name": "attached", "plugin": "janus.plugin.videoroom", "opaque_id": "site-42"},
            opaque_id="site-42",
        ),
        _ev(16, {"ice": "connected", "stream_id": 1, "component_id": 1}, sub=1, opaque_id="site-42"),
        _ev(16, {"dtls": "connected"}, sub=5, opaque_id="site-42"),
        _ev(16, {"connection": "webrtcup"}, sub=6, opaque_id="site-42"),
        _ev(
            32,
            {
                "mid": "0",
                "mindex": 0,
                "media": "audio",
                "codec": "opus",
                "base": 48000,
                "rtt": 12,
                "lost": 3,
                "lost-by-remote": 1,
                "jitter-local": 2,
                "jitter-remote": 4,
                "in-link-quality": 99,
                "out-link-quality": 100,
                "packets-received": 500,
                "packets-sent": 0,
                "bytes-received-lastsec": 4000,
            },
            sub=3,
            opaque_id="site-42",
        ),
        _ev(32, {"mid": "1", "media": "video-sim1", "packets-received": 42}, sub=3, opaque_id="site-42"),
        _ev(
            64,
            {
                "plugin": "janus.plugin.videoroom",
                "data": {
                    "videoroom": "talking",
                    "room": 5,
                    "id": 9,
                    "mid": "0",
                    "audio-level-dBov-avg": -22.5,
                },
            },
            opaque_id="site-42",
        ),
    ]


def test_ingest_maps_handles_to_sites() -> None:
    store = EventStore(clock=lambda: 1000.0)
    assert store.ingest(_site_events()) == 8
    [state] = store.for_opaque_id("site-42")
    assert state.plugin == "janus.plugin.videoroom" and state.session_id == 100
    assert (state.ice, state.dtls, state.webrtc_up) == ("connected", "connected", True)
    audio = state.stats["0"]
    assert (audio.codec, audio.rtt, audio.lost, audio.in_link_quality, audio.packets_received) == (
        "opus",
        12,
        3,
        99,
        500,
    )
    assert state.stats["1/sim1"].packets_received == 42
    assert state.talking == {"0": True} and state.audio_level_dbov == {"0": -22.5}
    assert state.room == 5 and state.participant_id == 9
    assert store.emitters[EMITTER].started_at == 1000.0


def test_latest_values_win_and_hangup() -> None:
    store = EventStore()
    store.ingest(_site_events())
    store.ingest(
        [
            _ev(32, {"mid": "0", "media": "audio", "rtt": 80, "lost": 9}, sub=3),
            _ev(
                64, {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "stopped-talking", "mid": "0"}}
            ),
            _ev(16, {"connection": "hangup", "reason": "DTLS alert"}, sub=6),
            _ev(32, {"mid": "0", "media": "audio", "receiving": False, "seconds": 3}, sub=1),
        ]
    )
    state = store.get(7, EMITTER)
    assert state is not None
    assert state.stats["0"].rtt == 80 and state.stats["0"].in_link_quality == 99
    assert state.talking == {"0": False}
    assert state.webrtc_up is False and state.hangup_reason == "DTLS alert"
    assert state.receiving == {"0": False}


def test_combined_media_stats_array() -> None:
    store = EventStore()
    store.ingest(
        _ev(32, [{"mid": "0", "media": "audio", "rtt": 5}, {"mid": "1", "media": "video", "rtt": 6}], sub=3)
    )
    state = store.get(7, EMITTER)
    assert state is not None and sorted(state.stats) == ["0", "1"]


def test_detach_and_session_destroy_forget_handles() -> None:
    now = [0.0]
    store = EventStore(forget_after=10, clock=lambda: now[0])
    store.ingest(_site_events())
    store.ingest(_ev(2, {"name": "attached", "plugin": "p"}, handle=8, opaque_id="site-43"))
    store.ingest(_ev(2, {"name": "detached", "plugin": "p"}, handle=8))
    assert store.for_opaque_id("site-43") == []
    store.ingest(_ev(1, {"name": "destroyed"}, handle=None))
    assert store.for_opaque_id("site-42") == []
    now[0] = 20.0
    store.ingest(_ev(256, {"status": "started"}, sub=1, handle=None))
    assert store.handles == {}


def test_bounded_memory() -> None:
    store = EventStore(max_handles=50)
    store.ingest([_ev(2, {"name": "attached"}, handle=i, opaque_id=f"s{i}") for i in range(200)])
    assert len(store.handles) == 50


def test_malformed_events_are_skipped() -> None:
    store = EventStore()
    junk: list[Any] = [
        {"type": 32},
        "junk",
        {"type": 16, "handle_id": "x"},
        _ev(16, {"ice": "failed"}, sub=1),
    ]
    used = store.ingest(junk)
    assert used == 1 and store.ignored == 3


def test_event_auth(tmp_path: Path) -> None:
    settings = load_janus_settings(tmp_path, JanusSettings(events_secret="s3cret"))
    svc = MediaService(settings, tmp_path)
    good = "Basic " + base64.b64encode(b"janus:s3cret").decode()
    assert svc.check_event_auth(good)
    assert not svc.check_event_auth(None)
    assert not svc.check_event_auth("Basic " + base64.b64encode(b"janus:nope").decode())
    assert svc.ingest_events(_site_events()) == 8
    assert svc.site_state("site-42")[0].webrtc_up


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        (
            {
                "janus": "success",
                "plugindata": {
                    "plugin": "janus.plugin.videoroom",
                    "data": {"error_code": 426, "error": "No such room"},
                },
            },
            426,
        ),
        (
            {
                "janus": "event",
                "plugindata": {"plugin": "p", "data": {"error_code": 428, "error": "No such feed"}},
            },
            428,
        ),
        ({"janus": "success", "response": {"error_code": 433, "error": "Unauthorized"}}, 433),
    ],
)
def test_plugin_error_mapping(msg: dict[str, Any], code: int) -> None:
    err = _plugin_error(msg)
    assert isinstance(err, JanusPluginError) and err.code == code and err.reason


def test_plugin_success_is_not_an_error() -> None:
    assert (
        _plugin_error({"janus": "success", "plugindata": {"data": {"videoroom": "created", "room": 1}}})
        is None
    )
