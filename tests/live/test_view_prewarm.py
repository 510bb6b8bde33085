"""A pre-warmed view on a real Janus: ``media.subscribe`` {active: false} sets the view's
PeerConnection up with nothing sent on it; ``media.view`` {on: true} (the "Vào phòng họp" click)
turns the host and the speakers on without a new offer."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from giaoban.lab.client import LiveClient as Tab
from giaoban.lab.serve import Served
from giaoban.live.stage import JanusStage, View
from tests.conftest import DEMO_PASSWORD, Demo
from tests.support import media_app

pytestmark = pytest.mark.janus

# The app with Janus, on SQLite (tests/support/media_app.py).
db_url = media_app.db_url
served = media_app.served

pytest.importorskip("aiortc")
from aiortc import RTCPeerConnection  # noqa: E402

from tests.live.test_media_janus import answer, close_pc, growth, open_meeting, publish, until  # noqa: E402


def test_prewarmed_view_sends_nothing_until_turned_on(served: Served, demo: Demo) -> None:
    mid, sites = open_meeting(demo)
    asyncio.run(asyncio.wait_for(scenario(served, mid, sites["TW"], sites["01"], sites["46"]), 90))


async def scenario(served: Served, mid: int, tw: int, hn: int, hue: int) -> None:
    base = served.base
    pcs: list[RTCPeerConnection] = []
    chair = await Tab.open(base, "chutri", mid, password=DEMO_PASSWORD, **{"as": "console"})
    host = await Tab.open(base, "dc-tw", mid, password=DEMO_PASSWORD, **{"as": "site", "site_id": tw})
    hanoi = await Tab.open(base, "dc-01", mid, password=DEMO_PASSWORD, **{"as": "site", "site_id": hn})
    hue_tab = await Tab.open(base, "dc-46", mid, password=DEMO_PASSWORD, **{"as": "site", "site_id": hue})
    try:
        # Bad input: refused, nothing changes.
        assert (await hanoi.call("media.view"))["code"] == "invalid"
        assert (await hanoi.call("media.view", on="yes please"))["code"] == "invalid"
        assert (await hanoi.call("media.subscribe", active="maybe"))["code"] == "invalid"
        assert (await hanoi.call("media.view", on=True))["code"] == "not_subscribed"

        for tab in (host, hue_tab):
            pcs.append(await publish(tab))
        for site_id in (tw, hue):
            await until(lambda s=site_id: chair.sites[str(s)]["publishing"], f"site {site_id} publishing")
        stage = served.app.state.hub.rooms[mid].stage
        await until(lambda: stage.publishers[tw].started, "the host's PeerConnection up")

        # Pre-warmed: the PeerConnection comes up (Janus reports webrtcup), no media flows.
        result = await hanoi.ok("media.subscribe", active=False)
        slots = result["slots"]
        assert slots["host"]["site_id"] == tw
        view = await answer(result["jsep"], lambda jsep: hanoi.ok("media.start", jsep=jsep))
        pcs.append(view)
        await until(lambda: view_of(stage, hn).media_up, "the view's PeerConnection up")
        assert view_of(stage, hn).active is False
        host_video, host_audio = slots["host"]["video"], slots["host"]["audio"]
        quiet = await growth(view, 1.5)
        assert sum(quiet.values()) == 0, quiet

        # The floor still picks what each slot shows while the view is off: nothing is sent.
        await hue_tab.ok("floor.request")
        await chair.ok("floor.grant", seconds=120)
        await until(
            lambda: (s := hanoi.slots()) and s["speakers"][0]["site_id"] == hue, "Huế in Hà Nội's slot"
        )
        await asyncio.sleep(0.5)
        quiet = await growth(view, 1.2)
        assert sum(quiet.values()) == 0, quiet

        # No step up while nothing flowed (more than ``first_up_after`` since the PeerConnection came
        # up): the media starts on the low layer, a small first keyframe.
        assert view_of(stage, hn).layer_state.layer == stage.layer_policy.start

        # The click: the host and the speaker come, on the same PeerConnection (no new offer).
        offers = sum(1 for m in hanoi.pushes if m["type"] == "media.offer")
        await hanoi.ok("media.view", on=True)
        speaker = slots["speakers"][0]
        for what in (host_video, host_audio, speaker["video"], speaker["audio"]):
            await until(lambda m=what: _grew(view, m), f"mid {what} at Hà Nội")
        assert sum(1 for m in hanoi.pushes if m["type"] == "media.offer") == offers
        # Again: nothing changes; off: nothing is sent any more.
        await hanoi.ok("media.view", on=True)
        await hanoi.ok("media.view", on=False)
        await asyncio.sleep(0.5)
        quiet = await growth(view, 1.2)
        assert sum(quiet.values()) == 0, quiet
    finally:
        for pc in pcs:
            with contextlib.suppress(Exception):
                await close_pc(pc)
        for tab in (chair, host, hanoi, hue_tab):
            with contextlib.suppress(Exception):
                await tab.close()


def view_of(stage: JanusStage, site_id: int) -> View:
    return next(v for v in stage.views.values() if v.site_id == site_id)


async def _grew(pc: RTCPeerConnection, mid: str) -> bool:
    return (await growth(pc, 0.5)).get(mid, 0) > 0
