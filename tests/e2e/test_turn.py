"""Fault test (issue 5): a site that reaches the server only through TURN still joins.

The site's Chromium runs in a namespace that can reach the app and coturn but has no route to Janus's
media address (see tests/e2e/turn_lab.py). It logs in through the real pages, joins the room, publishes,
and receives the host's video; getStats shows that both its PeerConnections selected a relayed local
candidate (coturn), talking to Janus's address. The host site's browser is an ordinary one (direct).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.conference import meetings as svc
from giaoban.conference.lifecycle import MeetingStatus
from giaoban.context import AppContext, Tx
from giaoban.media.netlab import NetLab
from giaoban.org.models import Site, Unit, User
from tests.conftest import Demo, in_ci
from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_briefing import MEDIA_ARGS, Tabs, growth, slots_of, wait_for
from tests.e2e.turn_lab import (
    SiteNamespace,
    TurnServed,
    chromium_in_namespace,
    serve_with_turn,
    site_namespace,
)
from tests.lab.fixtures import JanusNamespace

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


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"TURN test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def db_url(_sqlite_url: str) -> str:
    return _sqlite_url


@pytest.fixture
def site_ns(netlab: NetLab) -> SiteNamespace:
    """The TURN-only site's namespace (removed with the session's lab)."""
    return site_namespace(netlab, "turnsite")


@pytest.fixture
def served(
    ctx: AppContext, demo: Demo, janus_ns: JanusNamespace, site_ns: SiteNamespace, tmp_path: Path
) -> Iterator[TurnServed]:
    import shutil

    if shutil.which("turnserver") is None:
        _unavailable("coturn is not installed (apt-get install coturn)")
    with serve_with_turn(ctx, janus_ns, site_ns, tmp_path) as served:
        yield served


def _live_meeting(demo: Demo) -> int:
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        site = {c: s.execute(select(Site.id).where(Site.code == c)).scalar_one() for c in ("TW", "01")}
        root = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        chair = s.execute(select(User.id).where(User.username == "chutri")).scalar_one()
        now = datetime.now(svc.LOCAL_TZ).replace(second=0, microsecond=0, tzinfo=None)
        meeting = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Giao ban qua TURN",
                kind="briefing",
                starts_at=now + timedelta(minutes=2),
                ends_at=now + timedelta(hours=2),
                owner_unit_id=root,
                host_site_id=site["TW"],
                chair_user_id=chair,
                invite=svc.InviteSpec(site_ids=[site["01"]]),
            ),
        )
        svc.transition(tx, meeting.id, MeetingStatus.open)
        svc.transition(tx, meeting.id, MeetingStatus.live)
        return meeting.id


def _join(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#conn")).to_have_text("Đã kết nối")
    page.get_by_label("Chất lượng hình gửi đi").select_option("360")
    join = page.get_by_role("button", name="Vào phòng họp")
    expect(join).to_be_enabled()
    join.click()


def test_site_reaching_janus_only_through_turn_joins(
    served: TurnServed,
    demo: Demo,
    janus_ns: JanusNamespace,
    site_ns: SiteNamespace,
    netlab: NetLab,
    tmp_path: Path,
) -> None:
    if not CHROMIUM.exists():
        _unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")

    # The fault: from the site's namespace, Janus's media address has no route at all.
    route = netlab.exec(site_ns.name, "ip", "route", "get", janus_ns.address, check=False)
    assert route.returncode != 0 and "unreachable" in route.stderr.lower(), route
    assert served.turn.health()["status"] == "ok", served.turn.health()

    expect.set_options(timeout=30_000)
    mid = _live_meeting(demo)
    wrapper = chromium_in_namespace(site_ns.name, tmp_path, CHROMIUM)
    with sync_playwright() as pw:
        direct = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + MEDIA_ARGS)
        behind = pw.chromium.launch(
            executable_path=str(wrapper),
            args=[
                *CHROMIUM_ARGS,
                *MEDIA_ARGS,
                # A LAN origin over plain http: the camera needs it treated as secure (tests only).
                f"--unsafely-treat-insecure-origin-as-secure={served.site_base}",
            ],
        )
        host_tabs, site_tabs = Tabs(direct, served.local_base), Tabs(behind, served.site_base)
        try:
            host = host_tabs.open("dc-tw", f"/meetings/{mid}/room")
            _join(host)
            site = site_tabs.open("dc-01", f"/meetings/{mid}/room")
            assert site.evaluate("() => window.isSecureContext")
            _join(site)
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
                        str(_site_id(demo, "01"))
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


def _site_id(demo: Demo, code: str) -> int:
    with demo.ctx.db.session() as s:
        return int(s.execute(select(Site.id).where(Site.code == code)).scalar_one())
