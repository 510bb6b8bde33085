"""Floor enforcement under trouble, on a fake Janus handle layer (giaoban.live.stage).

Safety: ``enforce`` returns only once Janus has applied the moderation. Liveness: every live view
ends up carrying the current holders even when one subscription's request gets no answer, fails
with 428, is hung up, or its tab does not read its WebSocket — and none of that holds up the other
views or a later floor change. Failures are logged with their reason.

The fake Janus keeps, per subscription, which feed each mid carries and whether it is sent, and per
publisher whether its audio is muted: the assertions are on that state, not on our model of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from giaoban.live import stage as stage_mod
from giaoban.live.stage import JanusStage, Publisher, Slot, Stream, View
from giaoban.media.client import JanusPluginError, PluginResponse

pytestmark = pytest.mark.anyio

HOST = 1
SITES = [2, 3, 4, 5, 6]
NO_SUCH_MID = JanusPluginError(428, "No such mid '2' in subscription")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_mod, "JANUS_TIMEOUT", 0.2)
    monkeypatch.setattr(stage_mod, "PUSH_TIMEOUT", 0.2)
    monkeypatch.setattr(stage_mod, "SETTLE_TIMEOUT", 0.3)
    monkeypatch.setattr(stage_mod, "RETRY_DELAYS", (0.05, 0.1, 0.1, 0.1))


class FakeHandle:
    _ids = iter(range(1000, 100000))

    def __init__(self) -> None:
        self.id = next(self._ids)
        self.callbacks: list[Callable[[dict[str, Any]], None]] = []

    def add_callback(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self.callbacks.append(cb)

    async def detach(self) -> None:
        pass


class FakeSubscriber:
    """A subscription on the fake Janus. ``trouble`` is consumed one item per request:
    "hang" (never answers), an exception to raise, or None (works)."""

    def __init__(self, mids: dict[str, int]) -> None:
        self.handle = FakeHandle()
        self.feed = dict(mids)  # sub mid -> publisher site
        self.send = dict.fromkeys(mids, True)
        self.gone = False  # Janus hung it up: its streams are gone
        self.trouble: list[Any] = []
        self.requests = 0

    async def _trouble(self) -> None:
        self.requests += 1
        what = self.trouble.pop(0) if self.trouble else None
        if what == "hang":
            await asyncio.Event().wait()
        elif isinstance(what, Exception):
            raise what
        await asyncio.sleep(0)

    async def switch(self, streams: list[dict[str, Any]]) -> PluginResponse:
        await self._trouble()
        summary = []
        for s in streams:
            if not self.gone and s["sub_mid"] in self.feed:
                self.feed[s["sub_mid"]] = s["feed"]
                self.send[s["sub_mid"]] = True
                summary.append({"mid": s["sub_mid"], "active": True, "feed_id": s["feed"]})
        return PluginResponse({"streams": summary}, None, {})

    async def configure(self, streams: list[dict[str, Any]]) -> PluginResponse:
        await self._trouble()
        if self.gone:
            raise JanusPluginError(428, f"No such mid '{streams[0]['mid']}' in subscription")
        for s in streams:
            self.send[s["mid"]] = s["send"]
        return PluginResponse({}, None, {})

    def hears(self, site: int) -> bool:
        """Janus sends this subscription ``site``'s audio (the fake's mids: v*/a* per slot)."""
        return any(self.feed[m] == site and self.send[m] for m in self.feed if m.startswith("a"))


class FakeControl:
    def __init__(self) -> None:
        self.muted: dict[int, bool] = {}
        self.trouble: list[Any] = []

    async def moderate(self, room: int, secret: str | None, site: int, mid: str, mute: bool) -> None:
        what = self.trouble.pop(0) if self.trouble else None
        if what == "hang":
            await asyncio.Event().wait()
        elif isinstance(what, Exception):
            raise what
        await asyncio.sleep(0.01)  # an answer takes a while: enforce must wait for it
        self.muted[site] = mute


class FakeMedia:
    def __init__(self) -> None:
        self.ctl = FakeControl()

    def control(self, node: str) -> FakeControl:
        return self.ctl


class Rig:
    def __init__(self) -> None:
        self.media = FakeMedia()
        self.stage = JanusStage(self.media, "node", 7, "secret", session=None)  # type: ignore[arg-type]
        self.stage.host_site_id = HOST
        self.pushes: list[tuple[str, dict[str, Any]]] = []
        self.stuck_tabs: set[str] = set()
        self.subs: dict[str, FakeSubscriber] = {}
        self.stage.bind(lambda event: None, self._send)
        for site in [HOST, *SITES]:
            pub = Publisher(site, f"pub-{site}", None, ["a0"], ["v0"], started=True)  # type: ignore[arg-type]
            self.stage.publishers[site] = pub
            self.media.ctl.muted[site] = False
        for site in SITES:
            self.add_view(f"tab-{site}", site)

    async def _send(self, peer: str, message: dict[str, Any]) -> None:
        if peer in self.stuck_tabs:
            await asyncio.Event().wait()  # a tab that never reads: its socket buffer is full
        self.pushes.append((peer, message))

    def add_view(self, peer: str, site: int) -> None:
        slots = [Slot(Stream(f"v{i}", "video", HOST), Stream(f"a{i}", "audio", HOST)) for i in range(5)]
        fake = FakeSubscriber({m: HOST for s in slots for m in (s.video.mid, s.audio.mid)})
        self.subs[peer] = fake
        view = View(peer, site, fake, slots[0], slots[1:], started=True)  # type: ignore[arg-type]
        self.stage.views[peer] = view
        handle_id = fake.handle.id
        fake.handle.add_callback(lambda msg: self.stage._subscriber_event(peer, "view", handle_id, msg))

    def event(self, peer: str, kind: str, reason: str = "") -> None:
        for cb in self.subs[peer].handle.callbacks:
            cb({"janus": kind, "sender": self.subs[peer].handle.id, "reason": reason})

    def hearing(self, site: int) -> set[str]:
        """The tabs Janus sends ``site``'s audio on a speaker slot (the host slot is a0)."""
        return {
            peer
            for peer, fake in self.subs.items()
            if any(fake.feed[f"a{i}"] == site and fake.send[f"a{i}"] for i in range(1, 5))
        }

    async def grant(self, holder: int | None) -> None:
        holders = [] if holder is None else [holder]
        await self.stage.enforce(frozenset({HOST, *holders}), holders)


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.01)


def listeners(holder: int) -> set[str]:
    return {f"tab-{s}" for s in SITES if s != holder}


async def test_moderation_is_in_force_when_enforce_returns() -> None:
    rig = Rig()
    await rig.grant(None)
    assert rig.media.ctl.muted == {HOST: False, **dict.fromkeys(SITES, True)}
    await rig.grant(3)
    assert rig.media.ctl.muted == {HOST: False, 2: True, 3: False, 4: True, 5: True, 6: True}
    await rig.grant(None)
    assert rig.media.ctl.muted[3] is True
    await rig.stage._stop_keepers()


async def test_a_hung_switch_delays_only_its_own_view(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    await rig.grant(None)
    await until(lambda: not rig.hearing(HOST) and not rig.hearing(2), "quiet slots")
    rig.subs["tab-4"].trouble = ["hang"]  # Janus never answers its next request
    with caplog.at_level(logging.WARNING, logger="giaoban.live.stage"):
        await rig.grant(2)
        # Everyone else has the holder while tab-4's request is still waiting.
        await until(lambda: rig.hearing(2) >= listeners(2) - {"tab-4"}, "the others hear the holder")
        # A later grant is not held up by it either.
        await rig.grant(5)
        await until(lambda: rig.hearing(5) >= listeners(5) - {"tab-4"}, "the others hear the next holder")
        # And tab-4 gets there once its request timed out (retried, everything resent).
        await until(lambda: "tab-4" in rig.hearing(5), "tab-4 hears the holder")
    assert not rig.hearing(2)
    assert any("tab-4" in r.getMessage() and "no answer from Janus" in r.getMessage() for r in caplog.records)
    await rig.stage._stop_keepers()


async def test_a_tab_that_does_not_read_holds_up_nobody(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    await rig.grant(None)
    rig.stuck_tabs.add("tab-3")
    with caplog.at_level(logging.WARNING, logger="giaoban.live.stage"):
        for holder in (2, 4, 6, 5):
            await rig.grant(holder)
            # Janus switches every view, tab-3's included; the other tabs are told their slots.
            await until(lambda h=holder: rig.hearing(h) == listeners(h), f"every view carries {holder}")  # type: ignore[misc]
            await until(
                lambda h=holder: all(  # type: ignore[misc]
                    any(
                        m.get("type") == "media.slots" and h in [s["site_id"] for s in m["speakers"]]
                        for p, m in rig.pushes
                        if p == peer
                    )
                    for peer in listeners(h) - {"tab-3"}
                ),
                f"tabs told about {holder}",
            )
        # Settling (a publisher or a tab changes) is bounded even with tab-3's push pending.
        await asyncio.wait_for(rig.stage.settle(), 2.0)
    assert any("tab-3" in r.getMessage() and "not sent within" in r.getMessage() for r in caplog.records)
    rig.stuck_tabs.clear()
    await until(
        lambda: any(p == "tab-3" and m.get("type") == "media.slots" for p, m in rig.pushes),
        "tab-3 told at last",
    )
    await rig.stage._stop_keepers()


async def test_an_error_428_is_retried_not_taken_as_gone(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    await rig.grant(None)
    await until(lambda: not rig.hearing(HOST), "parked")
    rig.subs["tab-2"].trouble = [NO_SUCH_MID, NO_SUCH_MID]
    with caplog.at_level(logging.WARNING, logger="giaoban.live.stage"):
        await rig.grant(6)
        await until(lambda: rig.hearing(6) == listeners(6), "every view, tab-2's too, carries the holder")
    assert not rig.stage.views["tab-2"].down
    assert any("tab-2" in r.getMessage() and "No such mid" in r.getMessage() for r in caplog.records)
    await rig.stage._stop_keepers()


async def test_a_hung_up_view_is_skipped_until_it_is_up_again(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    await rig.grant(None)
    await until(lambda: not rig.hearing(HOST), "parked")
    with caplog.at_level(logging.INFO, logger="giaoban.live.stage"):
        rig.event("tab-5", "hangup", "DTLS alert")
        assert rig.stage.views["tab-5"].down
        before = rig.subs["tab-5"].requests
        await rig.grant(2)
        await until(lambda: rig.hearing(2) == listeners(2) - {"tab-5"}, "the live views carry the holder")
        await rig.stage.settle()
        assert rig.subs["tab-5"].requests == before  # not pestered while down
        # Its PeerConnection comes up again: it is brought to the current floor in full.
        rig.subs["tab-5"].send = dict.fromkeys(rig.subs["tab-5"].send, True)  # Janus's state unknown
        rig.event("tab-5", "webrtcup")
        await until(lambda: rig.hearing(2) == listeners(2), "tab-5 carries the holder")
        assert all(not rig.subs["tab-5"].send[f"a{i}"] for i in range(2, 5))  # empty slots paused
    messages = [r.getMessage() for r in caplog.records]
    assert any("tab-5" in m and "down" in m and "DTLS alert" in m for m in messages)
    await rig.stage._stop_keepers()


async def test_a_failed_mute_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    await rig.grant(3)
    rig.media.ctl.trouble = ["hang", "hang"]  # the mute of 3 gets no answer, twice
    with caplog.at_level(logging.WARNING, logger="giaoban.live.stage"):
        await asyncio.wait_for(rig.grant(None), 2.0)
        assert rig.stage.publishers[3].muted is False  # not pretended
        await until(lambda: rig.media.ctl.muted[3] is True, "3 muted by the retry")
        await until(lambda: rig.stage.publishers[3].muted, "and known to be")
    assert any(r.levelno == logging.ERROR and "muting site 3" in r.getMessage() for r in caplog.records)
    await rig.stage._stop_keepers()


async def test_settle_waits_for_running_updates_but_not_for_ever() -> None:
    rig = Rig()
    await rig.grant(None)
    await until(lambda: not rig.hearing(HOST), "parked")
    rig.subs["tab-6"].trouble = ["hang"]
    await rig.grant(4)
    await asyncio.wait_for(rig.stage.settle(), 2.0)
    # Everything but the hung one finished before settle returned; the hung one catches up later.
    assert rig.hearing(4) >= listeners(4) - {"tab-6"}
    await until(lambda: rig.hearing(4) == listeners(4), "tab-6 carries the holder")
    await rig.stage._stop_keepers()


async def test_a_floor_change_unmutes_first_then_switches_every_view_then_tells_the_tabs() -> None:
    """The order that keeps a grant fast with 70 views: the holder's ``moderate`` goes to Janus
    before any switch, every view's switch is in flight at once (none waits for another's answer),
    and the tabs' ``media.slots`` only go out once the switches are done."""
    rig = Rig()
    for i in range(7, 40):  # 38 views in all
        rig.add_view(f"tab-{i}", i)
    await rig.grant(None)
    await until(lambda: not rig.hearing(HOST), "quiet slots")
    log: list[tuple[str, str]] = []
    in_flight = 0
    peak = 0
    answer = asyncio.Event()
    ctl = rig.media.ctl
    real_moderate = ctl.moderate

    async def moderate(room: int, secret: str | None, site: int, mid: str, mute: bool) -> None:
        log.append(("moderate", f"{site}:{mute}"))
        await real_moderate(room, secret, site, mid, mute)

    ctl.moderate = moderate  # type: ignore[method-assign]
    for peer, fake in rig.subs.items():
        real_switch = fake.switch

        async def switch(streams: list[dict[str, Any]], _real: Any = real_switch, _peer: str = peer) -> Any:
            nonlocal in_flight, peak
            log.append(("switch", _peer))
            in_flight += 1
            peak = max(peak, in_flight)
            await answer.wait()  # Janus answers once every view has asked
            in_flight -= 1
            result = await _real(streams)
            told = [m for _, m in rig.pushes if m["type"] == "media.slots"]
            log.append(("switched", f"{_peer} after {len(told)} media.slots"))
            return result

        fake.switch = switch  # type: ignore[method-assign]
    rig.pushes.clear()
    granting = asyncio.ensure_future(rig.grant(3))
    await until(lambda: in_flight == len(rig.subs), "every view's switch in flight")
    assert log[0] == ("moderate", "3:False"), log[:3]
    assert not [m for _, m in rig.pushes if m["type"] == "media.slots"]
    answer.set()
    await granting
    await until(lambda: rig.hearing(3) == listeners(3) | {f"tab-{i}" for i in range(7, 40)}, "all hear")
    await until(lambda: len([m for _, m in rig.pushes if m["type"] == "media.slots"]) >= 37, "tabs told")
    assert peak == len(rig.subs)
    switched = [what for kind, what in log if kind == "switched"]
    assert len(switched) == len(rig.subs)
    assert all(what.endswith(" after 0 media.slots") for what in switched), switched
    await rig.stage._stop_keepers()
