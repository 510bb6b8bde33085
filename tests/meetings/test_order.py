"""One order of a meeting's sites (giaoban.meetings.order) on every surface: the order function
itself, then the schedule form, the meeting page, the tech-check board, the meeting and readiness
APIs, the control room's API and the WebSocket roster — on SQLite and PostgreSQL.

The old order was the database id as text (the unit's materialized path): TW, 14, 15 … 27, 01, 30 … 02.
"""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.live.state import LiveMeeting
from giaoban.meetings import scheduling as svc
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.meetings.order import code_key, order_ids, site_order, wall_order
from giaoban.org.models import Site, Unit, User
from tests.conftest import Demo, login
from tests.web.test_pages import HTML, sign_in

# --- the order function ------------------------------------------------------------------------


def test_codes_sort_naturally_numbers_before_text() -> None:
    codes = ["TW", "14", "15", "27", "01", "30", "02", "10", "2", "96", "b", "A", "01.10", "01.9"]
    ordered = sorted(codes, key=code_key)
    assert ordered == ["01", "01.9", "01.10", "02", "2", "10", "14", "15", "27", "30", "96", "A", "b", "TW"]


def test_host_first_then_by_code_whatever_the_ids() -> None:
    codes = {7: "TW", 3: "14", 9: "01", 1: "02", 4: "10", 5: "46"}
    assert [codes[i] for i in order_ids(codes, host_site_id=7)] == ["TW", "01", "02", "10", "14", "46"]
    # Another host goes first; the rest keep their order.
    assert [codes[i] for i in order_ids(codes, host_site_id=5)] == ["46", "01", "02", "10", "14", "TW"]


@given(st.dictionaries(st.integers(1, 10_000), st.from_regex(r"[0-9]{1,3}|[A-Z]{1,3}", fullmatch=True)))
def test_order_is_total_and_numeric(codes: dict[int, str]) -> None:
    host = next(iter(codes), None)
    ids = order_ids(codes, host)
    assert sorted(ids) == sorted(codes)  # every site once
    if host is not None:
        assert ids[0] == host
    rest = [codes[i] for i in ids if i != host]
    numbers = [int(c) for c in rest if c.isdigit()]
    assert numbers == sorted(numbers)  # "9" before "10", "01" before "2"
    texts = [c for c in rest if not c.isdigit()]
    assert rest == [*rest[: len(rest) - len(texts)], *texts]  # numbers before codes in letters
    # The order does not depend on the order items come in.
    shuffled = list(codes.items())
    random.shuffle(shuffled)
    again = site_order(shuffled, code=lambda x: x[1], site_id=lambda x: x[0], host_site_id=host)
    assert [i for i, _c in again] == ids


def test_wall_puts_host_speakers_and_pictures_first() -> None:
    order = [1, 2, 3, 4, 5, 6, 7]  # already the meeting's order, host 1
    assert wall_order(order, host_site_id=1, speaking=[6], live=[1, 6, 3, 7]) == [1, 6, 3, 7, 2, 4, 5]
    assert wall_order(order, host_site_id=1) == order
    # The host leads even without a picture.
    assert wall_order(order, host_site_id=4, live=[5])[:2] == [4, 5]


def test_live_meeting_orders_its_roster() -> None:
    sites = {10: ("TW", ""), 11: ("14", ""), 12: ("01", ""), 13: ("02", ""), 14: ("30", "")}
    codes = {sid: name for sid, (name, _u) in sites.items()}
    live = LiveMeeting(1, "t", "open", 10, 0.0, sites, codes=codes)
    assert [codes[i] for i in live.order] == ["TW", "01", "02", "14", "30"]
    assert live.snapshot(0.0)["order"] == live.order


# --- every surface -------------------------------------------------------------------------------


def natural(codes: list[str], host: str = "TW") -> list[str]:
    return sorted(codes, key=lambda c: (c != host, code_key(c)))


@pytest.fixture
def whole_tree(demo: Demo) -> dict[str, int]:
    """An open briefing of every site, host TW."""
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        root = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        host = s.execute(select(Site.id).where(Site.code == "TW")).scalar_one()
        chair = s.execute(select(User.id).where(User.username == "chutri")).scalar_one()
        day = datetime.now() + timedelta(days=1)
        m = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Giao ban toàn quốc",
                kind="briefing",
                starts_at=day.replace(hour=8, minute=0),
                ends_at=day.replace(hour=11, minute=0),
                owner_unit_id=root,
                host_site_id=host,
                chair_user_id=chair,
                invite=svc.InviteSpec(under_unit_ids=[root]),
            ),
        )
        svc.transition(tx, m.id, MeetingStatus.open)
        return {"id": m.id, "host": host}


def site_codes(demo: Demo) -> dict[int, str]:
    with demo.ctx.db.session() as s:
        return dict(s.execute(select(Site.id, Site.code)).all())  # type: ignore[arg-type]


def test_every_surface_lists_sites_in_the_one_order(
    client: TestClient, demo: Demo, whole_tree: dict[str, int]
) -> None:
    mid = whole_tree["id"]
    codes = site_codes(demo)
    expected = natural(list(codes.values()))
    assert len(expected) == 71 and expected[:4] == ["TW", "01", "02", "04"]
    # The old order (the id path as text) was different: the test would have caught it.
    with demo.ctx.db.session() as s:
        by_path = list(
            s.execute(select(Site.code).join(Unit, Unit.id == Site.unit_id).order_by(Unit.path)).scalars()
        )
    assert by_path != expected

    sign_in(client, "dieuhanh")
    # The schedule form: the host choices and the site checkboxes.
    form = client.get("/meetings/new", headers=HTML).text
    picks = re.findall(r'name="site_ids" value="(\d+)"', form)
    assert [codes[int(i)] for i in picks] == expected
    host_select = re.search(r'<select id="f-host" name="host">(.*?)</select>', form, re.S)
    assert host_select is not None
    assert [codes[int(i)] for i in re.findall(r'value="(\d+)"', host_select.group(1))] == expected
    # The meeting page's site table.
    page = client.get(f"/meetings/{mid}", headers=HTML).text
    table = page[page.index('id="sites-table"') :]
    shown = re.findall(r'<span class="node-code">([^<]+)</span>', table)
    assert shown == expected
    # The tech-check board.
    board = client.get(f"/meetings/{mid}/techcheck", headers=HTML)
    assert board.status_code == 200
    rows = re.findall(r'name="site_id" value="(\d+)"', board.text)
    assert [codes[int(i)] for i in rows] == expected

    headers = login(client, "dieuhanh")
    # The meeting API.
    detail = client.get(f"/api/v1/meetings/{mid}", headers=headers).json()
    assert [s["code"] for s in detail["sites"]] == expected
    assert [codes[i] for i in detail["my_sites"]] == expected
    # The readiness and quality (control room) APIs.
    ready = client.get(f"/api/v1/meetings/{mid}/techcheck", headers=headers).json()
    assert [codes[r["site_id"]] for r in ready["items"]] == expected
    quality = client.get(f"/api/v1/meetings/{mid}/quality", headers=headers)
    assert quality.status_code == 200, quality.text
    assert [codes[s["site_id"]] for s in quality.json()["sites"]] == expected
    # The WebSocket roster (the snapshot's order: the console's wall, every tab's site list).
    with client.websocket_connect(f"/ws/meetings/{mid}", headers=headers) as ws:
        ws.send_text(json.dumps({"type": "hello", "id": 1, "protocol": 1, "as": "console"}))
        welcome = json.loads(ws.receive_text())
        assert welcome["type"] == "welcome", welcome
        assert [codes[i] for i in welcome["snapshot"]["order"]] == expected
