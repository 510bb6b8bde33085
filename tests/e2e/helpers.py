"""What the browser tests share: Chromium with a fake camera and microphone (in the root namespace, or
inside a lab site namespace), joining a meeting room, and the demo briefing they meet in.

The fixtures built on these (``browser``, ``media_browser``, ``playwright``, ``served``) are in
tests/e2e/conftest.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.meetings import scheduling as svc
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.org.models import Site, Unit, User
from tests.conftest import Demo, in_ci
from tests.lab.fixtures import CHROMIUM, SiteNamespace

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--lang=vi-VN",  # as a Vietnamese desktop (takes effect where chromium-l10n is installed)
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
# The briefing's sites: the host (Trung ương) and Hà Nội, Huế, Cần Thơ, with their site accounts.
SITES = {"TW": "dc-tw", "01": "dc-01", "46": "dc-46", "92": "dc-92"}
CONNECTED = "Đã kết nối"


def unavailable(reason: str, what: str = "browser test") -> NoReturn:
    """Skip (a developer's machine without Chromium or Playwright); in CI that is a failure."""
    if in_ci():
        pytest.fail(f"{what} cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_browser(what: str = "browser test") -> Any:
    """Playwright's ``sync_playwright``, once Debian's Chromium and the playwright package are known
    to be there (otherwise :func:`unavailable`)."""
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM}: apt-get install chromium", what)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[test]')", what)
    return sync_playwright


def launch_chromium(pw: Any, *, media: bool = True) -> Any:
    """Debian's Chromium in the root namespace (with a fake camera and microphone unless ``media=False``)."""
    return pw.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + (MEDIA_ARGS if media else [])
    )


def launch_in_site(pw: Any, site: SiteNamespace, origin: str, directory: Path) -> Any:
    """Chromium (fake camera and microphone) inside ``site``'s namespace, ``origin`` (the app as the site
    reaches it, plain http) treated as a secure context so getUserMedia works; the wrapper script that
    runs it in the namespace is written in ``directory``."""
    return pw.chromium.launch(
        executable_path=str(site.chromium_executable(directory, CHROMIUM)),
        args=[*CHROMIUM_ARGS, *MEDIA_ARGS, *site.chromium_args(origin)],
    )


def ready_to_join(page: Any, quality: str = "360") -> Any:
    """Wait for a room page to be connected, choose the sending ``quality``; the enabled join button."""
    from playwright.sync_api import expect

    expect(page.locator("#conn")).to_have_text(CONNECTED)
    page.get_by_label("Chất lượng hình gửi đi").select_option(quality)
    join = page.get_by_role("button", name="Vào phòng họp")
    expect(join).to_be_enabled()
    return join


def join_room(page: Any, quality: str = "360") -> None:
    """Join the meeting from a connected room page (camera and microphone on)."""
    ready_to_join(page, quality).click()


def briefing_meeting(demo: Demo) -> tuple[int, dict[str, int]]:
    """A scheduled briefing starting in two minutes (so joining now counts as on time): the host TW,
    invited 01, 46, 92; returns its id and ``{site code: site id}``."""
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        sites = {c: s.execute(select(Site.id).where(Site.code == c)).scalar_one() for c in SITES}
        root = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        chair = s.execute(select(User.id).where(User.username == "chutri")).scalar_one()
        now = datetime.now(svc.LOCAL_TZ).replace(second=0, microsecond=0, tzinfo=None)
        meeting = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Giao ban trực tuyến công tác tổ chức",
                kind="briefing",
                starts_at=now + timedelta(minutes=2),
                ends_at=now + timedelta(hours=2),
                owner_unit_id=root,
                host_site_id=sites["TW"],
                chair_user_id=chair,
                agenda=[svc.AgendaSpec("Khai mạc"), svc.AgendaSpec("Thảo luận")],
                invite=svc.InviteSpec(site_ids=[sites["01"], sites["46"], sites["92"]]),
            ),
        )
        return meeting.id, sites


def live_meeting(demo: Demo) -> tuple[int, dict[str, int]]:
    """:func:`briefing_meeting`, opened and live."""
    meeting_id, sites = briefing_meeting(demo)
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        svc.transition(tx, meeting_id, MeetingStatus.open)
        svc.transition(tx, meeting_id, MeetingStatus.live)
    return meeting_id, sites
