"""The control room's rules: figures from Janus stats, colours, alert hysteresis, the alert log (no I/O).

The monitor runs against fakes of the hub and of Janus's event store; the real hub, database, Janus
and browsers are in test_quality_api.py, test_quality_janus.py and tests/e2e/test_control_room.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from giaoban.live.alerts import AlertBook, AlertError
from giaoban.live.quality import (
    Counters,
    Figures,
    QualityMonitor,
    RuleState,
    SiteFacts,
    Verdict,
    assess,
    measure,
    step,
    verdicts,
)
from giaoban.live.state import LiveError, LiveMeeting, Record
from giaoban.media.events import EventStore, HandleState, StreamStats
from giaoban.thresholds import Thresholds

TH = Thresholds()
NOW = 1_000_000.0


def stream(mid: str, media: str, at: float = NOW, **values: Any) -> StreamStats:
    return StreamStats(
        key=mid if media in ("audio", "video") else f"{mid}/{media[6:]}",
        mid=mid,
        media=media,
        updated_at=at,
        **values,
    )


def handle(opaque: str, *streams: StreamStats, up: bool = True, hid: int = 1, **extra: Any) -> HandleState:
    h = HandleState(emitter="", handle_id=hid, opaque_id=opaque, webrtc_up=up, **extra)
    h.stats = {s.key: s for s in streams}
    return h


def publisher(**kw: Any) -> HandleState:
    a = dict(packets_received=1000, lost=0, bytes_received_lastsec=4000, rtt=40, jitter_local=5)
    v = dict(packets_received=5000, lost=0, bytes_received_lastsec=62_500, rtt=42, jitter_local=7)
    a.update(kw.pop("audio", {}))
    v.update(kw.pop("video", {}))
    return handle("site-7", stream("0", "audio", **a), stream("1", "video", **v), **kw)


# --- measure -------------------------------------------------------------------------------------


def test_measure_sums_bitrates_and_takes_the_worst_rtt_and_jitter() -> None:
    viewer = handle(
        "view-7-tab-1",
        stream("0", "video", bytes_sent_lastsec=10_000, packets_sent=900, rtt=60, jitter_remote=9),
        hid=2,
    )
    f, c = measure([publisher()], [viewer], None, NOW)
    assert f.audio_kbps == 32.0 and f.video_kbps == 500.0 and f.in_kbps == 532.0
    assert f.out_kbps == 80.0 and f.down_rtt_ms == 60 and f.down_jitter_ms == 9
    assert (
        f.rtt_ms == 42 and f.jitter_ms == 5 and f.layers == 1
    )  # jitter: audio's when it flows and f.layers_total == 1
    assert f.packets_in == 6000 and f.packets_out == 900 and f.loss_pct == 0.0 and f.viewers == 1
    assert c.packets_in == 6000 and f.stats_age == 0.0


def test_loss_is_over_the_window_since_the_counters_last_moved() -> None:
    _, c1 = measure([publisher()], [], None, NOW)
    # 1000 more packets, 100 of them lost → 100 / (900 + 100)
    f2, c2 = measure([publisher(video={"packets_received": 5900, "lost": 100})], [], c1, NOW + 2)
    assert f2.loss_pct == 10.0
    # Stats not refreshed yet (Janus sends them every stats_period): the last window's value holds.
    f3, c3 = measure([publisher(video={"packets_received": 5900, "lost": 100})], [], c2, NOW + 4)
    assert f3.loss_pct == 10.0 and c3 == c2
    # A new PeerConnection restarts the counters: no negative loss.
    f4, _ = measure(
        [publisher(audio={"packets_received": 10}, video={"packets_received": 90, "lost": 0})],
        [],
        c3,
        NOW + 6,
    )
    assert f4.loss_pct == 0.0


def test_stale_streams_do_not_count_and_simulcast_layers_are_counted() -> None:
    pub = handle(
        "site-7",
        stream("0", "audio", bytes_received_lastsec=4000, at=NOW - 60),
        stream("1", "video", bytes_received_lastsec=20_000),
        stream("1", "video-sim1", bytes_received_lastsec=60_000),
        stream("1", "video-sim2", bytes_received_lastsec=0),
    )
    f, _ = measure([pub], [], None, NOW)
    assert f.audio_kbps == 0.0 and f.video_kbps == 640.0
    assert (f.layers, f.layers_total) == (2, 3)
    assert f.stats_age == 0.0


def test_no_handles_no_figures() -> None:
    f, c = measure([], [], None, NOW)
    assert f.in_kbps is None and f.out_kbps is None and f.loss_pct is None and f.stats_age is None
    assert c == Counters()


def test_slowlinks_count_since_the_previous_sample() -> None:
    _, c = measure([publisher(slowlink_count=2)], [], None, NOW)
    f, _ = measure([publisher(slowlink_count=3)], [], c, NOW + 2)
    assert f.slowlinks == 1


# --- colours ------------------------------------------------------------------------------------


def facts(
    connected: bool = True,
    publishing: bool = True,
    ever_connected: bool = True,
    ever_published: bool = False,
    **figures: Any,
) -> SiteFacts:
    base: dict[str, Any] = {
        "publisher": True,
        "webrtc_up": True,
        "audio_kbps": 32.0,
        "video_kbps": 500.0,
        "in_kbps": 532.0,
        "stats_age": 1.0,
        "rtt_ms": 40,
        "jitter_ms": 5,
        "loss_pct": 0.0,
    }
    base.update(figures)
    return SiteFacts(connected, ever_connected, publishing, publishing or ever_published, Figures(**base))


def test_a_site_not_joined_yet_is_a_problem_only_once_the_meeting_is_live() -> None:
    """Before the start ("open") a site that has not come is "Chưa vào", not "Có sự cố"."""
    waiting = dataclasses.replace(facts(connected=False, ever_connected=False), expected=False)
    assert assess(waiting) == ("waiting", ["absent"])
    assert assess(dataclasses.replace(waiting, expected=True)) == ("red", ["absent"])
    # A site that came and dropped is a problem whether the meeting is live or not.
    dropped = dataclasses.replace(facts(connected=False), expected=False)
    assert assess(dropped) == ("red", ["dropped"])


def test_a_healthy_site_is_green() -> None:
    assert assess(facts()) == ("green", [])
    assert assess(facts(audio_kbps=0.0)) == ("green", [])  # a microphone off until the floor is given


@pytest.mark.parametrize(
    ("f", "level", "reason"),
    [
        (facts(connected=False), "red", "dropped"),
        (facts(connected=False, ever_connected=False), "red", "absent"),
        (facts(publishing=False), "amber", "not_publishing"),
        (facts(publishing=False, ever_published=True), "red", "not_publishing"),
        (facts(video_kbps=0.0), "red", "no_video"),
        (facts(stats_age=30.0), "amber", "no_stats"),
        (facts(stats_age=None), "amber", "no_stats"),
        (facts(loss_pct=3.0), "amber", "loss"),
        (facts(down_loss_pct=9.0), "red", "loss"),
        (facts(rtt_ms=300), "amber", "rtt"),
        (facts(down_rtt_ms=700), "red", "rtt"),
        (facts(jitter_ms=60), "amber", "jitter"),
        (facts(jitter_ms=200), "red", "jitter"),
        (facts(slowlinks=1), "amber", "slowlink"),
        (facts(ice="failed"), "red", "ice_failed"),
    ],
)
def test_colour_and_reason(f: SiteFacts, level: str, reason: str) -> None:
    got_level, reasons = assess(f)
    assert got_level == level and reason in reasons, (got_level, reasons)


def test_red_reasons_come_before_amber_ones() -> None:
    level, reasons = assess(facts(loss_pct=20.0, rtt_ms=300))
    assert level == "red" and reasons == ["loss", "rtt"]


@given(
    loss=st.none() | st.floats(0, 100),
    rtt=st.none() | st.integers(0, 5000),
    jitter=st.none() | st.integers(0, 1000),
)
def test_worse_figures_never_give_a_better_colour(
    loss: float | None, rtt: int | None, jitter: int | None
) -> None:
    rank = {"green": 0, "amber": 1, "red": 2}
    level, _ = assess(facts(loss_pct=loss, rtt_ms=rtt, jitter_ms=jitter))
    worse, _ = assess(
        facts(
            loss_pct=None if loss is None else loss + 5,
            rtt_ms=None if rtt is None else rtt + 200,
            jitter_ms=None if jitter is None else jitter + 50,
        )
    )
    assert rank[worse] >= rank[level]


# --- alert hysteresis ---------------------------------------------------------------------------

VERDICTS = st.lists(st.sampled_from(list(Verdict)), max_size=80)


def run(seq: list[Verdict], raise_after: int = 3, clear_after: int = 5) -> list[tuple[int, str]]:
    state, out = RuleState(), []
    for i, v in enumerate(seq):
        state, action = step(state, v, raise_after, clear_after)
        if action:
            out.append((i, action))
    return out


def test_raise_after_a_run_of_bad_samples_and_clear_after_a_run_of_good_ones() -> None:
    B, G, M, U = Verdict.BAD, Verdict.GOOD, Verdict.MID, Verdict.UNKNOWN
    assert run([B, B, G, B, B, M, B, B]) == []
    assert run([B, U, B, U, B]) == [(4, "raise")]  # no figures: holds the run
    assert run([B, B, B, G, G, G, G, M, G, G, G, G, G]) == [(2, "raise"), (12, "clear")]


@given(VERDICTS, st.integers(1, 5), st.integers(1, 6))
def test_alerts_do_not_flap(seq: list[Verdict], raise_after: int, clear_after: int) -> None:
    events = run(seq, raise_after, clear_after)
    # raise, clear, raise, …: never two of a kind in a row
    assert [a for _, a in events] == ["raise", "clear"] * (len(events) // 2) + ["raise"] * (len(events) % 2)
    prev = -1
    for i, action in events:
        window = [v for v in seq[prev + 1 : i + 1] if v is not Verdict.UNKNOWN]
        want = Verdict.BAD if action == "raise" else Verdict.GOOD
        needed = raise_after if action == "raise" else clear_after
        # the last `needed` known samples before a transition are all bad (raise) / good (clear)
        assert len(window) >= needed and all(v is want for v in window[-needed:])
        prev = i
    if Verdict.BAD not in seq:
        assert events == []


def test_verdicts_per_rule() -> None:
    v = verdicts(facts(loss_pct=12.0, rtt_ms=600))
    assert v["loss_high"][0] is Verdict.BAD and v["loss_high"][1] == 12.0
    assert v["rtt_high"][0] is Verdict.MID  # between clear (500) and alert (800)
    assert v["dropped"][0] is Verdict.GOOD and v["video_stopped"][0] is Verdict.GOOD
    assert verdicts(facts(connected=False))["dropped"][0] is Verdict.BAD
    assert verdicts(facts(connected=False, ever_connected=False))["dropped"][0] is Verdict.MID
    assert verdicts(facts(video_kbps=0.0))["video_stopped"][0] is Verdict.BAD
    assert verdicts(facts(publishing=False, ever_published=True))["video_stopped"][0] is Verdict.BAD
    assert verdicts(facts(stats_age=None))["video_stopped"][0] is Verdict.UNKNOWN
    assert verdicts(facts(loss_pct=None))["loss_high"][0] is Verdict.UNKNOWN


# --- the alert book -----------------------------------------------------------------------------


def test_alert_book_raise_clear_ack() -> None:
    book = AlertBook()
    a = book.apply(7, 1.0, {"rule": "dropped", "action": "raise"})
    assert a.id == 1 and a.open
    with pytest.raises(AlertError):
        book.apply(7, 2.0, {"rule": "dropped", "action": "raise"})  # already open
    book.apply(8, 2.0, {"rule": "dropped", "action": "raise", "value": 3})
    book.apply(7, 3.0, {"rule": "dropped", "action": "clear"})
    assert not a.open and a.cleared_at == 3.0
    with pytest.raises(AlertError):
        book.apply(7, 4.0, {"rule": "dropped", "action": "clear"})
    for bad in ({"rule": "nope", "action": "raise"}, {"rule": "dropped", "action": "maybe"}):
        with pytest.raises(AlertError):
            book.apply(9, 4.0, bad)
    assert book.ack(1, 5.0, "chutri") is True and book.ack(1, 6.0, "thuky") is False
    assert a.acked_by == "chutri"
    for bad_id in (0, 3, "1", True, None):
        with pytest.raises(AlertError):
            book.ack(bad_id, 7.0, "x")
    assert [x.id for x in book.items] == [1, 2]


def live_meeting() -> LiveMeeting:
    return LiveMeeting(
        1, "Giao ban", "live", 7, NOW - 60, {7: ("Điểm cầu 7", "Tỉnh A"), 8: ("Điểm cầu 8", "Tỉnh B")}
    )


def test_alert_records_replay_to_the_same_state() -> None:
    records = [
        Record("site.connected", NOW, 7),
        Record("alert", NOW + 1, 7, data={"rule": "loss_high", "action": "raise", "value": 12.5}),
        Record("alert.ack", NOW + 2, 7, "chutri", {"id": 1}),
        Record("alert", NOW + 3, 7, data={"rule": "loss_high", "action": "clear"}),
    ]
    one, two = live_meeting(), live_meeting()
    for r in records:
        applied = one.apply(r)
        if r.kind.startswith("alert"):
            assert applied.persist and applied.delta is None  # logged, not pushed to the tabs
    for r in records:
        two.apply(r)
    assert [a.to_json() for a in one.alerts.items] == [a.to_json() for a in two.alerts.items]
    assert one.alerts.items[0].acked_by == "chutri" and not one.alerts.items[0].open
    # An acknowledgement again changes nothing and is not logged; bad records are refused.
    assert not one.apply(Record("alert.ack", NOW + 4, 7, "thuky", {"id": 1})).persist
    version = one.version
    for bad in (
        Record("alert.ack", NOW, 7, "x", {"id": 9}),
        Record("alert", NOW, 99, data={"rule": "dropped", "action": "raise"}),
        Record("alert", NOW, 8, data={"rule": "dropped", "action": "clear"}),
    ):
        with pytest.raises(LiveError):
            one.apply(bad)
    assert one.version == version and len(one.alerts.items) == 1


# --- the monitor over fakes --------------------------------------------------------------------


@dataclass(eq=False)
class FakePeer:
    role: str
    site_id: int | None


@dataclass
class FakeRoom:
    meeting_id: int
    live: LiveMeeting
    peers: set[Any] = field(default_factory=set)
    stage: Any = None
    closed: bool = False


class FakeHub:
    def __init__(self, room: FakeRoom, clock: list[float]) -> None:
        self.rooms = {room.meeting_id: room}
        self._clock = clock
        self.logged: list[Record] = []

    def clock(self) -> float:
        return self._clock[0]

    async def record(self, meeting_id: int, record: Record) -> Any:
        applied = self.rooms[meeting_id].live.apply(record)
        self.logged.append(record)
        return applied


def test_monitor_colours_sites_and_raises_and_clears_a_drop_alert() -> None:
    now = [NOW]
    live = live_meeting()
    room = FakeRoom(1, live)
    hub = FakeHub(room, now)
    store = EventStore(clock=lambda: now[0])
    monitor = QualityMonitor(hub, lambda: store, clock=lambda: now[0])  # type: ignore[arg-type]

    def janus_stats(lost: int, packets: int) -> None:
        store.ingest(
            [
                {
                    "type": 2,
                    "handle_id": 70,
                    "session_id": 1,
                    "opaque_id": "site-7",
                    "event": {"name": "attached"},
                },
                {"type": 16, "subtype": 6, "handle_id": 70, "event": {"connection": "webrtcup"}},
                {
                    "type": 32,
                    "subtype": 3,
                    "handle_id": 70,
                    "event": {
                        "mid": "0",
                        "media": "audio",
                        "packets-received": packets // 6,
                        "lost": 0,
                        "bytes-received-lastsec": 4000,
                        "rtt": 30,
                        "jitter-local": 3,
                    },
                },
                {
                    "type": 32,
                    "subtype": 3,
                    "handle_id": 70,
                    "event": {
                        "mid": "1",
                        "media": "video",
                        "packets-received": packets,
                        "lost": lost,
                        "bytes-received-lastsec": 60000,
                        "rtt": 31,
                        "jitter-local": 4,
                    },
                },
            ]
        )

    async def scenario() -> None:
        live.apply(Record("site.connected", now[0], 7))
        live.apply(Record("site.publishing", now[0], 7, data={"publishing": True}))
        room.peers.add(FakePeer("site", 7))
        janus_stats(0, 1000)
        view = await monitor.view(room)  # (samples on first use)
        s7, s8 = view["sites"]
        assert s7["level"] == "green" and s7["in_kbps"] == 512.0 and s7["rtt_ms"] == 31 and s7["tabs"] == 1
        assert s7["video"] and s7["audio"] and s7["techcheck"] is None
        assert s8["level"] == "red" and s8["reasons"] == ["absent"]
        assert view["counts"] == {
            "green": 1,
            "amber": 0,
            "red": 1,
            "waiting": 0,
            "connected": 1,
            "invited": 2,
        }
        # Heavy loss: red at once, the alert after three samples in a row.
        for i in range(3):
            now[0] += 2
            janus_stats(200 * (i + 1), 1000 + 1000 * (i + 1))
            await monitor.tick()
        view = await monitor.view(room)
        assert view["sites"][0]["level"] == "red" and "loss" in view["sites"][0]["reasons"]
        assert [(a["rule"], a["open"]) for a in view["alerts"]] == [("loss_high", True)]
        assert view["alerts"][0]["value"] == pytest.approx(100 * 200 / (200 + 1166), abs=0.01)  # video+audio
        # The site drops: the drop alert after two samples.
        live.apply(Record("site.disconnected", now[0], 7, data={"dropped": True}))
        room.peers.clear()
        for _ in range(2):
            now[0] += 2
            await monitor.tick()
        rules = {(a.rule, a.open) for a in live.alerts.items}
        assert ("dropped", True) in rules
        history = monitor.history(1, 7)
        assert len(history["points"]) == 6 and history["points"][-1][1] == "red"
        # It comes back, clean: both alerts clear.
        live.apply(Record("site.connected", now[0], 7))
        live.apply(Record("site.publishing", now[0], 7, data={"publishing": True}))
        room.peers.add(FakePeer("site", 7))
        for i in range(6):
            now[0] += 2
            janus_stats(600, 5000 + 1000 * (i + 1))
            await monitor.tick()
        assert all(not a.open for a in live.alerts.items)
        assert [(r.kind, r.data["rule"], r.data["action"]) for r in hub.logged] == [
            ("alert", "loss_high", "raise"),
            ("alert", "dropped", "raise"),
            ("alert", "dropped", "clear"),
            ("alert", "loss_high", "clear"),
        ]
        # A restarted monitor continues from the log: nothing raised twice.
        fresh = QualityMonitor(hub, lambda: store, clock=lambda: now[0])  # type: ignore[arg-type]
        live.apply(Record("alert", now[0], 8, data={"rule": "dropped", "action": "raise"}))
        await fresh.tick()
        assert fresh.meetings[1].sites[8].rules["dropped"].open

    asyncio.run(scenario())


def test_monitor_forgets_rooms_that_are_gone() -> None:
    now = [NOW]
    room = FakeRoom(1, live_meeting())
    hub = FakeHub(room, now)
    monitor = QualityMonitor(hub, lambda: None, clock=lambda: now[0])  # type: ignore[arg-type]

    async def scenario() -> None:
        await monitor.tick()
        assert 1 in monitor.meetings and monitor.summary() == {
            1: {"green": 0, "amber": 0, "red": 2, "waiting": 0}
        }
        hub.rooms.clear()
        await monitor.tick()
        assert monitor.meetings == {}
        assert monitor.history(1, 7)["points"] == []

    asyncio.run(scenario())


# -- thresholds from settings (GIAOBAN_QUALITY_THRESHOLDS) ------------------------------------


def test_thresholds_take_overrides_and_refuse_nonsense() -> None:
    from giaoban.thresholds import DEFAULT_THRESHOLDS

    th = Thresholds.with_overrides({"loss_alert": "12", "rtt_alert": 900.0, "raise_after": "4"})
    assert (th.loss_alert, th.rtt_alert, th.raise_after) == (12.0, 900, 4)
    assert isinstance(th.rtt_alert, int) and isinstance(th.raise_after, int)
    assert th.loss_clear == DEFAULT_THRESHOLDS.loss_clear  # the rest stays
    assert Thresholds.with_overrides({}) == DEFAULT_THRESHOLDS
    bad = [
        ({"loss_alarm": 3}, "unknown quality threshold 'loss_alarm'"),
        ({"loss_red": "lots"}, "is not a number"),
        ({"rtt_red": -1}, "must be a whole number >= 0"),
        ({"raise_after": 2.5}, "must be a whole number >= 0"),
        ({"loss_red": float("nan")}, "must be a number >= 0"),
        ({"clear_after": 0}, "clear_after must be at least 1"),
        ({"loss_amber": 9}, "loss_amber (9.0) above loss_red (8.0)"),  # amber above red
        ({"rtt_clear": 1000}, "rtt_clear (1000) above rtt_alert (800)"),  # clear above raise
    ]
    for overrides, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            Thresholds.with_overrides(overrides)


def test_settings_read_thresholds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from giaoban.settings import Settings

    monkeypatch.setenv("GIAOBAN_QUALITY_THRESHOLDS", "loss_alert=12, rtt_alert = 900")
    assert Settings().quality_thresholds == {"loss_alert": 12.0, "rtt_alert": 900.0}
    monkeypatch.setenv("GIAOBAN_QUALITY_THRESHOLDS", '{"jitter_red": 200}')
    assert Settings().quality_thresholds == {"jitter_red": 200.0}
    for wrong in ("loss_alert", "loss_alert=x", "nope=1", '{"loss_amber": 50}'):
        monkeypatch.setenv("GIAOBAN_QUALITY_THRESHOLDS", wrong)
        with pytest.raises(ValidationError, match="quality_thresholds"):
            Settings()
