"""Issue 10, on a real Janus through our WebSocket protocol (aiortc tabs, a spy subscribed straight
to Janus): the floor holds on two layers when a site renegotiates, and a Janus SIGKILL mid-briefing
is recovered on the first attempt, with nothing but one line per step in the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import pytest

from giaoban.lab.client import LiveClient as Tab
from giaoban.lab.serve import Served
from giaoban.live import muting
from tests.conftest import DEMO_PASSWORD, Demo
from tests.live.test_media_janus import (
    _grew,
    answer,
    close_pc,
    growth,
    open_meeting,
    publish,
    until,
)
from tests.support import media_app

pytestmark = pytest.mark.janus

db_url = media_app.db_url
served = media_app.served

aiortc = pytest.importorskip("aiortc")
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack  # noqa: E402

from giaoban.media.client import JanusClient, JanusPluginError  # noqa: E402
from giaoban.media.videoroom import VideoRoomSubscriber  # noqa: E402


async def open_tabs(served: Served, mid: int, sites: dict[str, int]) -> dict[str, Tab]:
    tabs = {"chair": await Tab.open(served.base, "chutri", mid, password=DEMO_PASSWORD, **{"as": "console"})}
    for code in ("TW", "01", "46"):
        tabs[code] = await Tab.open(
            served.base,
            f"dc-{code.lower()}",
            mid,
            password=DEMO_PASSWORD,
            **{"as": "site", "site_id": sites[code]},
        )
    return tabs


async def spy_on(
    client: JanusClient, room: int, streams: list[dict[str, Any]]
) -> tuple[RTCPeerConnection, list[str]]:
    """A subscription straight to Janus (our slots bypassed): the mids it got, in the order asked."""
    session = await client.create_session()
    handle = await VideoRoomSubscriber.attach(session, opaque_id="test-spy")
    joined = await handle.join(room, streams)
    assert joined.jsep is not None
    pc = await answer(joined.jsep, handle.start)
    return pc, [str(s["mid"]) for s in joined.data["streams"]]


def test_a_restart_cannot_bring_unmoderated_audio(
    served: Served, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Huế (no floor) renegotiates its publisher through ``media.restart`` with a second audio
    m-line. Layer one: the offer is refused, and Janus never has the stream. Layer two (the check
    switched off, as if an offer slipped through): Janus has the stream, and it is moderated before
    the answer leaves — a spy receives no packet of it until the chair gives Huế the floor."""
    mid, sites = open_meeting(demo)
    tw, hue = sites["TW"], sites["46"]

    async def scenario() -> None:
        tabs = await open_tabs(served, mid, sites)
        client = JanusClient(served.janus_url, api_secret=served.api_secret)
        await client.connect()
        pcs: list[RTCPeerConnection] = []
        try:
            pcs += [await publish(tabs["TW"]), await publish(tabs["46"])]
            for site in (tw, hue):
                await until(
                    lambda s=site: tabs["chair"].sites[str(s)]["publishing"], f"site {site} publishing"
                )
            stage = served.app.state.hub.rooms[mid].stage
            assert stage.publishers[hue].audio_mids == ["0"] and stage.publishers[hue].muted
            hue_pc = pcs[1]
            hue_pc.addTrack(AudioStreamTrack())  # the "forced microphone": a second audio m-line
            sneaky = await hue_pc.createOffer()
            assert sneaky.sdp.count("m=audio") == 2

            # Layer one: refused, nothing reaches Janus.
            reply = await tabs["46"].call(
                "media.restart", target="publisher", jsep={"type": "offer", "sdp": sneaky.sdp}
            )
            assert reply["type"] == "error" and reply["code"] == "restart_refused", reply
            assert "thêm, bớt hay đổi" in reply["message"]
            with pytest.raises(JanusPluginError) as no_such:
                await spy_on(client, stage.room, [{"feed": hue, "mid": "2"}])
            assert no_such.value.code == 428
            assert tabs["chair"].sites[str(hue)]["publishing"]  # the site keeps publishing

            # Layer two: as if it had gone through.
            monkeypatch.setattr(muting, "restart_refusal", lambda previous, new: None)
            await hue_pc.setLocalDescription(await hue_pc.createOffer())
            result = await tabs["46"].ok(
                "media.restart",
                target="publisher",
                jsep={"type": "offer", "sdp": hue_pc.localDescription.sdp},
            )
            await hue_pc.setRemoteDescription(RTCSessionDescription(**result["jsep"]))
            assert stage.publishers[hue].audio_mids == ["0", "2"]
            assert stage.publishers[hue].moderated == {"0": True, "2": True}
            host_audio = stage.publishers[tw].audio_mids[0]
            spy, (spy_host, spy_hue0, spy_hue2) = await spy_on(
                client,
                stage.room,
                [{"feed": tw, "mid": host_audio}, {"feed": hue, "mid": "0"}, {"feed": hue, "mid": "2"}],
            )
            pcs.append(spy)
            await until(lambda: _grew(spy, spy_host), "the spy hears the host")
            heard = await growth(spy)
            assert heard.get(spy_hue0, 0) == 0 and heard.get(spy_hue2, 0) == 0, heard

            # The stream is real: with the floor Janus forwards it; after the turn, muted again.
            await tabs["46"].ok("floor.request")
            await tabs["chair"].ok("floor.grant", seconds=120)
            await until(lambda: _grew(spy, spy_hue2), "the spy hears Huế's second audio with the floor")
            await tabs["chair"].ok("floor.revoke", site_id=hue)
            await asyncio.sleep(0.3)  # packets already on their way
            heard = await growth(spy)
            assert heard.get(spy_hue0, 0) == 0 and heard.get(spy_hue2, 0) == 0, heard
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await close_pc(pc)
            for tab in tabs.values():
                with contextlib.suppress(Exception):
                    await tab.close()
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_janus_killed_mid_briefing_is_recovered_on_the_first_attempt(
    served: Served, demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL of Janus while Huế holds the floor: the meeting's room is rebuilt once (same id), on
    the first attempt, every tab gets one ``media.reset``, no traceback and no failed attempt is
    logged; the sites publish again and the floor holds on Janus (Hà Nội muted, Huế heard)."""
    caplog.set_level(logging.INFO, logger="giaoban")
    mid, sites = open_meeting(demo)
    tw, hn, hue = sites["TW"], sites["01"], sites["46"]

    async def scenario() -> None:
        tabs = await open_tabs(served, mid, sites)
        client = JanusClient(served.janus_url, api_secret=served.api_secret)  # the spy's, after the kill
        pcs: list[RTCPeerConnection] = []
        try:
            for code in ("TW", "01", "46"):
                pcs.append(await publish(tabs[code]))
            for site in (tw, hn, hue):
                await until(
                    lambda s=site: tabs["chair"].sites[str(s)]["publishing"], f"site {site} publishing"
                )
            await tabs["46"].ok("floor.request")
            await tabs["chair"].ok("floor.grant", seconds=300)
            hub_room = served.app.state.hub.rooms[mid]
            janus_room = hub_room.stage.room
            supervisor = served.app.state.media.supervisor
            old_pid = supervisor.pid
            caplog.clear()

            os.kill(old_pid, signal.SIGKILL)
            await until(
                lambda: all(any(m["type"] == "media.reset" for m in t.pushes) for t in tabs.values()),
                "media.reset at every tab",
                timeout=30,
            )
            await until(lambda: hub_room.recovery is not None and hub_room.recovery.done(), "recovery over")
            await asyncio.sleep(1.0)  # late events (rooms_lost after sessions_lost…) change nothing
            assert all(sum(m["type"] == "media.reset" for m in t.pushes) == 1 for t in tabs.values())
            assert supervisor.pid != old_pid and hub_room.stage.room == janus_room
            messages = [r.getMessage() for r in caplog.records]
            recovered = [m for m in messages if "media recovered after" in m]
            assert len(recovered) == 1 and recovered[0].endswith("(attempt 1)"), messages
            assert not [m for m in messages if "media recovery after" in m], messages  # no failed attempt
            assert not [r for r in caplog.records if r.exc_info], messages  # no traceback at all
            # (the supervisor's ERROR line about Janus's exit is the only error: the crash itself)
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert [r.name for r in errors] == ["giaoban.media.supervisor"], messages
            assert not [m for m in messages if "MediaFailure" in m or "is lost" in m], messages
            for t in ("TW", "01", "46"):
                assert not tabs["chair"].sites[str(sites[t])]["publishing"]

            # Every page publishes again (as room.js does on media.reset): the floor is in force.
            for i, code in enumerate(("TW", "01", "46")):
                await close_pc(pcs[i])
                pcs[i] = await publish(tabs[code])
            stage = hub_room.stage
            await until(
                lambda: all(stage.publishers.get(s) and stage.publishers[s].started for s in (tw, hn, hue)),
                "republished",
            )
            assert {s: stage.publishers[s].muted for s in (tw, hn, hue)} == {tw: False, hn: True, hue: False}
            await client.connect()
            spy, (spy_host, spy_hn, spy_hue) = await spy_on(
                client,
                stage.room,
                [{"feed": s, "mid": stage.publishers[s].audio_mids[0]} for s in (tw, hn, hue)],
            )
            pcs.append(spy)
            await until(lambda: _grew(spy, spy_hue), "the spy hears Huế (the holder)")
            heard = await growth(spy)
            assert heard.get(spy_host, 0) > 0 and heard.get(spy_hn, 0) == 0, heard
        finally:
            for pc in pcs:
                with contextlib.suppress(Exception):
                    await close_pc(pc)
            for tab in tabs.values():
                with contextlib.suppress(Exception):
                    await tab.close()
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
