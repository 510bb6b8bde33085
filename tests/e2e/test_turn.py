"""Fault test (issue 5): a site that reaches the server only through TURN still joins.

The site's Chromium runs in a namespace that can reach the app and coturn but has no route to Janus's
media address (see tests/e2e/turn_lab.py). It logs in through the real pages, joins the room, publishes,
and receives the host's video; getStats shows that both its PeerConnections selected a relayed local
candidate (coturn), talking to Janus's address. The host site's browser is an ordinary one (direct).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from giaoban.context import AppContext
from giaoban.lab.netns import NetLab
from tests.conftest import Demo
from tests.e2e.helpers import ARTIFACTS, join_room, launch_chromium, launch_in_site, live_meeting, unavailable
from tests.e2e.test_briefing import Tabs, growth, slots_of, wait_for
from tests.e2e.turn_lab import TurnServed, serve_with_turn
from tests.lab.fixtures import JanusNamespace, SiteNamespace

pytestmark = [pytest.mark.browser, pytest.mark.janus]

# The pair a PeerConnection selected: local and remote candidate types and addresses.
SELECTED_PAIR = """async (which) => {
  const app = window.giaobanRoom || window.giaobanConsole;
  const pc = which === "view" ? app.view && app.view.pc : app.pub;
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId);
  });
  if (!pair || pair.state !== "succeeded") return null;
  const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
  return {local: local.candidateType, local_address: local.address, relay_protocol: local.relayProtocol || null,
          remote: remote.candidateType, remote_address: remote.address};
}"""


@pytest.fixture
def site_ns(site_factory: Any) -> SiteNamespace:
    """The TURN-only site's namespace: a plain link to the app's root namespace, none to Janus."""
    site: SiteNamespace = site_factory("turnsite", impairable=False)
    return site


@pytest.fixture
def served(
    ctx: AppContext, demo: Demo, janus_ns: JanusNamespace, site_ns: SiteNamespace, tmp_path: Path
) -> Iterator[TurnServed]:
    if shutil.which("turnserver") is None:
        unavailable("coturn is not installed (apt-get install coturn)", "TURN test")
    with serve_with_turn(ctx, janus_ns, site_ns, tmp_path) as served:
        yield served


def test_site_reaching_janus_only_through_turn_joins(
    served: TurnServed,
    demo: Demo,
    janus_ns: JanusNamespace,
    site_ns: SiteNamespace,
    netlab: NetLab,
    tmp_path: Path,
    playwright: Any,
) -> None:
    # The fault: from the site's namespace, Janus's media address has no route at all.
    route = netlab.exec(site_ns.name, "ip", "route", "get", janus_ns.address, check=False)
    assert route.returncode != 0 and "unreachable" in route.stderr.lower(), route
    assert served.turn.health()["status"] == "ok", served.turn.health()

    mid, sites = live_meeting(demo)
    direct = launch_chromium(playwright)
    # A LAN origin over plain http: the camera needs it treated as secure (tests only).
    behind = launch_in_site(playwright, site_ns, served.site_base, tmp_path)
    host_tabs, site_tabs = Tabs(direct, served.local_base), Tabs(behind, served.site_base)
    try:
        host = host_tabs.open("dc-tw", f"/meetings/{mid}/room")
        join_room(host)
        site = site_tabs.open("dc-01", f"/meetings/{mid}/room")
        assert site.evaluate("() => window.isSecureContext")
        join_room(site)
        joined = time.monotonic()

        # The site receives the host's picture…
        wait_for(
            lambda: (
                growth(site, 0.5).get(f"video:{slots_of(site)['host']['video']}", 0) > 0
                if slots_of(site)
                else False
            ),
            "host video at the TURN-only site",
            timeout=40,
        )
        first_video = time.monotonic() - joined
        # …and its own media is published (Janus reports its PeerConnection up).
        wait_for(
            lambda: (
                served.app.state.hub.rooms[mid].live.snapshot(time.time())["sites"][  # type: ignore[attr-defined]
                    str(sites["01"])
                ]["publishing"]
                if mid in served.app.state.hub.rooms  # type: ignore[attr-defined]
                else False
            ),
            "the TURN-only site publishing",
            timeout=40,
        )
        view = wait_for(lambda: site.evaluate(SELECTED_PAIR, "view"), "selected pair (view)")
        pub = wait_for(lambda: site.evaluate(SELECTED_PAIR, "pub"), "selected pair (publish)")
        ARTIFACTS.mkdir(exist_ok=True)
        site.screenshot(path=str(ARTIFACTS / "turn-site-room.png"))
        host_pair = wait_for(lambda: host.evaluate(SELECTED_PAIR, "pub"), "selected pair (host)")
        # `?relay=1` forces relayed candidates even where a direct path exists (the chair's console).
        console = host_tabs.open("chutri", f"/meetings/{mid}/console?relay=1")
        forced = wait_for(lambda: console.evaluate(SELECTED_PAIR, "view"), "selected pair (console)")
        problems = host_tabs.problems + site_tabs.problems
    finally:
        host_tabs.close()
        site_tabs.close()
        behind.close()
        direct.close()
    print(f"TURN-only site: join click → host video {first_video:.1f} s; view {view}; publish {pub}")
    for pair in (view, pub):
        assert pair["local"] == "relay", pair
        assert pair["local_address"] == janus_ns.host_address, pair  # coturn's relay address
        assert pair["remote_address"] == janus_ns.address, pair  # Janus's media address
    # The host has a direct path and keeps it (TURN is offered, not forced).
    assert host_pair["local"] == "host", host_pair
    assert forced["local"] == "relay" and forced["remote_address"] == janus_ns.address, forced
    assert not problems, problems
