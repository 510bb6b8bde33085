"""The control room's wall on a real Janus: live figures from its event handler for bot sites, and an
alert when a bot leaves.

The app runs with its media plane (Janus in the lab namespace, event handler posting stats every
second to the app); the sites are aiortc bots speaking our protocol (tests/live/test_media_janus.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from giaoban.lab.serve import Served
from tests.conftest import DEMO_PASSWORD, Demo
from tests.live.test_media_janus import Tab, answer, open_meeting, publish, until
from tests.support import media_app

pytestmark = pytest.mark.janus

# The app with Janus, on SQLite (tests/support/media_app.py).
db_url = media_app.db_url
served = media_app.served

pytest.importorskip("aiortc")


def test_wall_shows_live_figures_and_alerts_when_a_bot_leaves(served: Served, demo: Demo) -> None:
    mid, sites = open_meeting(demo)
    asyncio.run(asyncio.wait_for(scenario(served, mid, sites), 120))


async def scenario(served: Served, mid: int, sites: dict[str, int]) -> None:
    base = served.base
    tw, hn, hue = sites["TW"], sites["01"], sites["46"]
    pcs: list[Any] = []
    tabs: list[Tab] = []
    async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
        r = await http.post("/api/v1/auth/login", json={"username": "chutri", "password": DEMO_PASSWORD})
        http.headers["Authorization"] = f"Bearer {r.json()['token']}"

        async def wall() -> dict[str, Any]:
            r = await http.get(f"/api/v1/meetings/{mid}/quality")
            assert r.status_code == 200, r.text
            return r.json()

        def site(body: dict[str, Any], site_id: int) -> dict[str, Any]:
            return next(s for s in body["sites"] if s["site_id"] == site_id)

        try:
            for code, user in (("TW", "dc-tw"), ("01", "dc-01"), ("46", "dc-46")):
                tab = await Tab.open(
                    base, user, mid, password=DEMO_PASSWORD, **{"as": "site", "site_id": sites[code]}
                )
                tabs.append(tab)
                pcs.append(await publish(tab))
            host, hanoi, hue_tab = tabs
            for s in (tw, hn, hue):
                await until(lambda s=s: host.sites[str(s)]["publishing"], f"site {s} publishing")
            # Hà Nội watches the host: downstream figures too.
            result = await hanoi.ok("media.subscribe")
            pcs.append(await answer(result["jsep"], lambda jsep: hanoi.ok("media.start", jsep=jsep)))

            async def live_figures() -> dict[str, Any] | None:
                body = await wall()
                ok = all(
                    (x := site(body, s))["in_kbps"] and x["packets_in"] > 0 and x["video"] and x["audio"]
                    for s in (tw, hn, hue)
                )
                return body if ok and site(body, hn)["out_kbps"] else None

            body = await until(live_figures, "live figures on the wall", timeout=30)
            hn_fig = site(body, hn)
            print(
                "wall figures for Hà Nội:",
                {
                    k: hn_fig[k]
                    for k in (
                        "level",
                        "reasons",
                        "in_kbps",
                        "video_kbps",
                        "audio_kbps",
                        "out_kbps",
                        "rtt_ms",
                        "loss_pct",
                        "jitter_ms",
                        "packets_in",
                        "packets_out",
                        "layers",
                        "layers_total",
                        "stats_age",
                    )
                },
            )
            for s in (tw, hn, hue):
                x = site(body, s)
                assert x["connected"] and x["tabs"] == 1 and x["publishing"]
                assert x["video_kbps"] > 5 and x["audio_kbps"] > 5, x
                assert x["layers"] == 1 and x["layers_total"] == 1
                assert "no_video" not in x["reasons"] and "dropped" not in x["reasons"]
            assert hn_fig["packets_out"] > 0 and hn_fig["viewers"] == 1
            assert body["counts"]["connected"] == 3 and body["alerts"] == []
            absent = site(body, sites["92"])
            # The meeting is open, not live: a site that has not come is waiting, not a problem.
            assert absent["level"] == "waiting" and absent["reasons"] == ["absent"]

            # History of a publishing site holds the figures sampled so far.
            r = await http.get(f"/api/v1/meetings/{mid}/quality/{hn}/history")
            points = r.json()["points"]
            assert points and any(p[5] for p in points)

            # Huế's bot leaves without a word: red at once, then the "dropped" alert in the log.
            await pcs[2].close()
            await hue_tab.ws.close()

            async def dropped() -> dict[str, Any] | None:
                body = await wall()
                alerts = [a for a in body["alerts"] if a["site_id"] == hue and a["rule"] == "dropped"]
                return body if alerts and alerts[0]["open"] else None

            body = await until(dropped, "the drop alert", timeout=20)
            assert site(body, hue)["level"] == "red" and site(body, hue)["reasons"] == ["dropped"]
            assert site(body, hn)["level"] != "red"
            r = await http.post(f"/api/v1/meetings/{mid}/alerts/{body['alerts'][0]['id']}/ack")
            assert r.status_code == 200 and r.json()["acked_by"] == "chutri"

            # Janus health and the figures in /metrics (scraped from loopback).
            r = await http.get("/metrics")
            assert r.status_code == 200
            assert 'giaoban_janus_node_up{node="local"} 1.0' in r.text
            assert f'giaoban_meeting_sites_connected{{meeting_id="{mid}"}} 2.0' in r.text
            assert "giaoban_janus_events_ingested_total" in r.text
        finally:
            for pc in pcs:
                await pc.close()
            for tab in tabs:
                await tab.close()
