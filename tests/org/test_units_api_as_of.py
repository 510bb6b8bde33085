"""GET /api/v1/units?under=X&as_of=D answers with X's subtree as it stood on D, even if X moved since."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.org import units as svc
from tests.conftest import Demo, login


def test_subtree_as_of_a_date_before_a_move(client: TestClient, demo: Demo) -> None:
    hanoi, hcm = demo.unit_id("01"), demo.unit_id("79")
    with demo.ctx.db.session() as session:
        tx = Tx(session, demo.ctx.audit, Actor.system("test"))
        x = svc.create_unit(
            tx, code="X1", name="Huyện X", kind="district", parent_id=hanoi, effective=date(2020, 1, 1)
        )
        svc.create_unit(
            tx, code="Y1", name="Xã Y", kind="commune", parent_id=x.id, effective=date(2020, 1, 1)
        )
        svc.move_unit(tx, x.id, new_parent_id=hcm, effective=date(2024, 1, 1))
        x_id = x.id
    h = login(client, "admin")
    for day in ("2022-06-01", "2025-06-01"):
        r = client.get("/api/v1/units", params={"under": x_id, "as_of": day}, headers=h)
        assert r.status_code == 200
        assert sorted(u["code"] for u in r.json()["items"]) == ["X1", "Y1"], day


@pytest.fixture
def server_clock_a_day_behind_vietnam() -> Iterator[None]:
    """The process's local zone 17 hours behind UTC, so its calendar day is always the day before
    Vietnam's (UTC+7): what a UTC server shows for seven hours every morning in Vietnam."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ+17"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_today_is_vietnams_calendar_day(
    client: TestClient, demo: Demo, server_clock_a_day_behind_vietnam: None
) -> None:
    vn_today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    assert date.today() < vn_today  # the fixture holds
    h = login(client, "admin")
    r = client.post(
        "/api/v1/units",
        json={
            "code": "VN1",
            "name": "Đơn vị lập hôm nay",
            "kind": "central-committee",
            "parent_id": demo.unit_id("TW"),
            "effective": vn_today.isoformat(),
        },
        headers=h,
    )
    assert r.status_code == 201, r.text  # not "effective_in_future"
    listed = client.get("/api/v1/units", params={"q": "VN1"}, headers=h)
    assert [u["code"] for u in listed.json()["items"]] == ["VN1"]  # "as of today" sees it
    export = client.get("/api/v1/units/export", params={"format": "tsv"}, headers=h)
    assert f"units-{vn_today.isoformat()}.tsv" in export.headers["content-disposition"]
