"""One recovery path after Janus loses a meeting's media (giaoban/live/hub.py ``_recover``,
stage.py ``recover``), on a fake media service (tests/support/fake_janus.py).

Janus is killed; the events that say so (``node_down``, ``node_restarted``, ``sessions_lost``,
``rooms_lost``) arrive in every order, some twice, and the media service is back (its control
session rebuilt) before, between or after them. Whatever the order: the room is rebuilt exactly
once, every tab gets exactly one ``media.reset``, no traceback is logged, and the floor is applied
to the sites that publish again (the holder heard, the others muted on Janus).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from typing import Any

import pytest

from giaoban.live import hub as hub_mod
from giaoban.live.hub import Hub, Peer, Room
from giaoban.live.stage import JanusStage, Publisher
from giaoban.live.state import LiveMeeting, Record
from giaoban.media.videoroom import RoomOptions, VideoRoomPublisher
from tests.support.fake_janus import FakeHandle, FakeJanus, FakeSession, offer

HOST, HOLDER, OTHER = 1, 2, 3
ROOM = 4242
LOSS_EVENTS = ("node_down", "node_restarted", "sessions_lost", "rooms_lost")


class Tab:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def close(self, code: int, reason: str) -> None:
        pass

    def resets(self) -> int:
        return sum(1 for m in self.sent if m["type"] == "media.reset")


class QuietHub(Hub):
    def _persist(self, meeting_id: int, seq: int, record: Record) -> None:
        pass  # the meeting log is not what this is about


class Briefing:
    """A live meeting with the host, a floor holder and a third site, all publishing on Janus."""

    def __init__(self) -> None:
        self.janus = FakeJanus()
        self.hub = QuietHub(ctx=None)  # type: ignore[arg-type]
        names = {s: (f"Điểm cầu {s}", "Tỉnh") for s in (HOST, HOLDER, OTHER)}
        self.live = LiveMeeting(1, "Giao ban", "live", HOST, 0.0, names)
        for record in [
            *(Record("site.connected", 1.0, s, "u") for s in (HOST, HOLDER, OTHER)),
            *(Record("site.publishing", 1.0, s, data={"publishing": True}) for s in (HOST, HOLDER, OTHER)),
            Record("floor.request", 2.0, HOLDER, "u"),
            Record("floor.grant", 3.0, None, "chair", {"site_id": HOLDER, "seconds": 600}),
        ]:
            self.live.apply(record)
        self.room = Room(1, self.live)
        self.tab = Tab()
        self.room.peers.add(Peer(self.tab, None, "tab-1", role="site", site_id=OTHER))  # type: ignore[arg-type]
        self.janus.rooms.add(ROOM)
        self.stage = JanusStage(self.janus, "local", ROOM, "s", FakeSession(self.janus))  # type: ignore[arg-type]
        self.stage.options = RoomOptions(secret="s")
        self.stage.host_site_id = HOST
        self.stage.audible = self.live.floor.audible()
        self.stage.holders = self.live.floor.holder_ids()
        for site in (HOST, HOLDER, OTHER):
            handle = VideoRoomPublisher(FakeHandle(self.stage.session, self.janus))  # type: ignore[arg-type]
            self.stage.publishers[site] = Publisher(site, f"tab-{site}", handle, ["0"], ["1"], started=True)
        self.enforced: list[tuple[frozenset[int], list[int]]] = []
        real_enforce = self.stage.enforce

        async def enforce(audible: frozenset[int], holders: list[int]) -> None:
            self.enforced.append((audible, list(holders)))
            await real_enforce(audible, holders)

        self.stage.enforce = enforce  # type: ignore[method-assign]

    async def open(self) -> None:
        async def factory(meeting_id: int, live: LiveMeeting) -> JanusStage:
            return self.stage

        self.hub.stage_factory = factory
        self.hub.rooms[1] = self.room
        await self.hub._open_stage(self.room)
        self.stage.watch_media()

    async def recovered(self, timeout: float = 5.0) -> None:
        """Until the room's recovery task (and any event still queued) is over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await asyncio.sleep(0.01)
            busy = self.room.recovery is not None and not self.room.recovery.done()
            if not busy and not self.room.tasks:
                return
            assert loop.time() < deadline, "the recovery never ended"


async def kill_and_report(b: Briefing, events: list[str], back_at: int) -> None:
    """Janus dies; ``events`` are delivered in that order with the service back after ``back_at``
    of them (0: before any)."""
    old = b.stage.session
    b.janus.kill(old)
    for i, kind in enumerate([*events, None]):
        if i == back_at:
            b.janus.restore()
        if kind is None:
            break
        fields: dict[str, Any] = {}
        if kind == "sessions_lost":
            fields["sessions"] = [old.id]
        elif kind == "rooms_lost":
            fields["rooms"] = [ROOM]
        b.janus.emit(kind, **fields)
        for _ in range(random.randint(0, 3)):
            await asyncio.sleep(0)
        if random.random() < 0.3:
            await asyncio.sleep(0.005)


async def check_one_rebuild(events: list[str], back_at: int, caplog: pytest.LogCaptureFixture) -> None:
    b = Briefing()
    await b.open()
    caplog.clear()
    await kill_and_report(b, events, back_at)
    await b.recovered()
    case = f"events {events}, service back after {back_at}"
    assert b.janus.rooms == {ROOM}, case
    assert (b.janus.rooms_created, b.janus.sessions_made, b.tab.resets()) == (1, 1, 1), case
    assert not b.stage.publishers and not any(s.publishing for s in b.live.sites.values()), case
    assert b.enforced == [(frozenset({HOST, HOLDER}), [HOLDER])], case  # the floor applied again
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], case
    # The sites publish again: Janus hears the host and the holder, and nobody else.
    for site in (HOST, HOLDER, OTHER):
        await b.stage.publish(
            f"tab-{site}", site, {"type": "offer", "sdp": offer(("audio", "0"), ("video", "1"))}
        )
    assert b.janus.muted == {HOST: {"0": False}, HOLDER: {"0": False}, OTHER: {"0": True}}, case
    await b.hub.close_room(1)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_mod, "RECOVERY_WAIT", 0.05)
    monkeypatch.setattr(hub_mod, "RECOVERY_DELAYS", (0.01, 0.02))


def test_every_order_of_the_loss_events_rebuilds_once(caplog: pytest.LogCaptureFixture) -> None:
    random.seed(10)
    caplog.set_level(logging.INFO)

    async def every_order() -> None:
        for events in itertools.permutations(LOSS_EVENTS):
            for back_at in range(len(events) + 1):
                await check_one_rebuild(list(events), back_at, caplog)

    asyncio.run(every_order())


def test_repeated_and_partial_loss_events_rebuild_once(caplog: pytest.LogCaptureFixture) -> None:
    random.seed(11)
    caplog.set_level(logging.INFO)

    async def shuffled() -> None:
        cases = [["sessions_lost"], ["rooms_lost"], ["node_down"], ["node_restarted"]]
        for _ in range(40):
            events = [random.choice(LOSS_EVENTS) for _ in range(random.randint(2, 8))]
            cases.append(events)
        for events in cases:
            await check_one_rebuild(events, random.randint(0, len(events)), caplog)

    asyncio.run(shuffled())


def test_a_failed_attempt_is_one_line_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        b = Briefing()
        await b.open()
        b.janus.fail_sessions = 2  # the new session fails twice after the room is back
        await kill_and_report(b, ["sessions_lost", "rooms_lost"], 0)
        await b.recovered()
        assert (b.janus.rooms_created, b.janus.sessions_made, b.tab.resets()) == (1, 1, 1)
        attempts = [r.getMessage() for r in caplog.records if "media recovery after" in r.getMessage()]
        assert len(attempts) == 2 and all("connection closed; again in" in m for m in attempts), attempts
        assert not [r for r in caplog.records if r.exc_info], "expected failures carry no traceback"
        assert any(
            "media recovered after sessions_lost (attempt 3)" in r.getMessage() for r in caplog.records
        )
        await b.hub.close_room(1)

    asyncio.run(scenario())


def test_a_dropped_connection_whose_session_is_claimed_changes_nothing() -> None:
    async def scenario() -> None:
        b = Briefing()
        await b.open()
        b.janus.up = False  # the WebSocket drops; Janus keeps our session and the room
        b.janus.emit("node_down")
        await asyncio.sleep(0.02)
        b.janus.up = True
        await b.recovered()
        assert (b.janus.rooms_created, b.janus.sessions_made, b.tab.resets()) == (0, 0, 0)
        assert set(b.stage.publishers) == {HOST, HOLDER, OTHER}
        await b.hub.close_room(1)

    asyncio.run(scenario())


def test_the_recovery_stops_when_the_meeting_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        b = Briefing()
        await b.open()
        b.janus.kill(b.stage.session)  # and it never comes back
        b.janus.emit("node_down")
        await asyncio.sleep(0.2)
        assert b.room.recovery is not None and not b.room.recovery.done()
        recovery = b.room.recovery
        await b.hub.close_room(1)
        await asyncio.sleep(0.05)
        assert recovery.done() and b.tab.resets() == 0
        waits = [r for r in caplog.records if "not back after" in r.getMessage()]
        assert waits and all(r.levelno == logging.WARNING and not r.exc_info for r in waits)

    asyncio.run(scenario())
