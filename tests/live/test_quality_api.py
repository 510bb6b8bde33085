"""The control room's API and /metrics on the real app and database (SQLite and PostgreSQL).

No Janus here (figures from media are in test_quality_janus.py): a site's tab over the real
WebSocket, the real hub and its meeting log, the monitor sampled by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from giaoban.meetings.models import MeetingRecord
from giaoban.web.app import create_app
from giaoban.web.metrics import scrape_allowed
from tests.conftest import Demo, login
from tests.live import test_ws
from tests.live.test_ws import open_tab


@pytest.fixture
def meeting(demo: Demo) -> dict[str, int]:
    """test_ws's open briefing: host TW, invited Hà Nội (01), Huế (46), Cần Thơ (92)."""
    return test_ws.meeting.__wrapped__(demo)  # type: ignore[no-any-return]


def _sample(client: TestClient, times: int = 1) -> None:
    monitor = client.app.state.quality  # type: ignore[attr-defined]
    for _ in range(times):
        client.portal.call(monitor.tick)  # type: ignore[union-attr]


def _stop_background(client: TestClient) -> None:
    """Sample only when the test says so (the app's own loop would sample every 2 s)."""
    client.portal.call(client.app.state.quality.stop)  # type: ignore[attr-defined,union-attr]


def _wait(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_only_the_meetings_control_room_reads_it(client: TestClient, meeting: dict[str, int]) -> None:
    mid = meeting["id"]
    url = f"/api/v1/meetings/{mid}/quality"
    for user in ("chutri", "thuky", "dieuhanh", "admin"):
        r = client.get(url, headers=login(client, user))
        assert r.status_code == 200, (user, r.text)
    body = r.json()
    assert body["sites"][0]["site_id"] == meeting["site_TW"]  # the host first
    assert body["counts"]["invited"] == 4 and body["counts"]["connected"] == 0
    # Open, not live yet: nobody has come, and that is not a problem yet ("Chưa vào").
    assert {s["level"] for s in body["sites"]} == {"waiting"} and body["sites"][1]["reasons"] == ["absent"]
    assert body["counts"]["waiting"] == 4 and body["counts"]["red"] == 0
    assert body["sites"][1]["techcheck"] is None and body["alerts"] == []
    # A site of the meeting sees the meeting, not its control room: 403; anyone else: 404.
    r = client.get(url, headers=login(client, "dc-01"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    for user in ("dc-79", "tochuc-01"):
        r = client.get(url, headers=login(client, user))
        assert r.status_code == 404 and r.json()["error"]["code"] == "meeting_not_found", user
    chair = login(client, "chutri")
    assert client.get("/api/v1/meetings/999999/quality", headers=chair).status_code == 404
    for bad in ("0", "-1", "abc", str(2**31), "1.5"):
        assert client.get(f"/api/v1/meetings/{bad}/quality", headers=chair).status_code == 422, bad
    hist = f"/api/v1/meetings/{mid}/quality"
    r = client.get(f"{hist}/{meeting['site_79']}/history", headers=chair)
    assert r.status_code == 404 and r.json()["error"]["code"] == "site_not_invited"
    assert client.get(f"{hist}/0/history", headers=chair).status_code == 422
    r = client.get(f"{hist}/{meeting['site_01']}/history", headers=chair)
    assert r.status_code == 200 and r.json()["fields"][0] == "t"
    r = client.post(f"/api/v1/meetings/{mid}/alerts/1/ack", headers=chair)
    assert r.status_code == 404 and r.json()["error"]["code"] == "alert_not_found"
    assert client.get(url).status_code == 401
    # The page: the control room only.
    assert client.get(f"/meetings/{mid}/control", headers=login(client, "dc-01")).status_code == 403


def test_a_dropped_site_raises_an_alert_that_is_acknowledged_and_logged(
    client: TestClient, meeting: dict[str, int]
) -> None:
    _stop_background(client)
    mid, hn = meeting["id"], meeting["site_01"]
    chair = login(client, "chutri")
    url = f"/api/v1/meetings/{mid}/quality"

    def site() -> dict[str, Any]:
        return next(s for s in client.get(url, headers=chair).json()["sites"] if s["site_id"] == hn)

    for tab in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": hn}):
        _sample(client)
        s = site()
        assert s["connected"] and s["tabs"] == 1 and s["last_seen"] is not None
        assert s["level"] == "amber" and s["reasons"] == ["not_publishing"]
        tab.send(type="ping")
    _wait(lambda: not site()["connected"], "the tab's departure")
    _sample(client)  # one sample disconnected: red, no alert yet (a reconnect takes a second or two)
    body = client.get(url, headers=chair).json()
    assert site()["reasons"] == ["dropped"] and body["alerts"] == []
    _sample(client)
    body = client.get(url, headers=chair).json()
    (alert,) = body["alerts"]
    assert (
        alert["rule"] == "dropped" and alert["site_id"] == hn and alert["open"] and alert["acked_at"] is None
    )
    assert site()["alerts"] == [alert["id"]]
    history = client.get(f"{url}/{hn}/history", headers=chair).json()
    assert [p[1] for p in history["points"]] == ["amber", "red", "red"]

    ack = f"/api/v1/meetings/{mid}/alerts/{alert['id']}/ack"
    r = client.post(ack, headers=login(client, "dc-01"))
    assert r.status_code == 403
    r = client.post(ack, headers=chair)
    assert r.status_code == 200 and r.json()["acked_by"] == "chutri" and r.json()["open"]
    r = client.post(ack, headers=login(client, "thuky"))  # again: nothing new, same answer
    assert r.status_code == 200 and r.json()["acked_by"] == "chutri"
    with client.app.state.ctx.db.session() as s:  # type: ignore[attr-defined]
        kinds = [
            (r.kind, r.user, r.data)
            for r in s.execute(
                select(MeetingRecord).where(MeetingRecord.meeting_id == mid).order_by(MeetingRecord.seq)
            ).scalars()
            if r.kind.startswith("alert")
        ]
    assert kinds == [
        ("alert", "", {"rule": "dropped", "action": "raise", "value": None}),
        ("alert.ack", "chutri", {"id": alert["id"]}),
    ]

    # The site comes back: the alert clears after two good samples and stays in the log.
    for _tab in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": hn}):
        _sample(client, 2)
        (alert,) = client.get(url, headers=chair).json()["alerts"]
        assert not alert["open"] and alert["cleared_at"] is not None

    # A restarted app rebuilds the alerts from the meeting log.
    again = create_app(client.app.state.ctx)  # type: ignore[attr-defined]
    with TestClient(again) as fresh:
        (replayed,) = fresh.get(url, headers=login(fresh, "chutri")).json()["alerts"]
        assert replayed == alert


def test_metrics_are_for_loopback_or_the_token_and_name_no_unit(
    client: TestClient, meeting: dict[str, int]
) -> None:
    mid = meeting["id"]
    client.get(f"/api/v1/meetings/{mid}/quality", headers=login(client, "chutri"))  # loads the room
    assert client.get("/metrics").status_code == 403  # TestClient's peer is "testclient"
    client.app.state.ctx.settings.metrics_token = "scrape-0123456789"  # type: ignore[attr-defined]
    assert client.get("/metrics", headers={"Authorization": "Bearer sai"}).status_code == 403
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-0123456789"})
    assert r.status_code == 200
    text = r.text
    assert "giaoban_live_meetings 1.0" in text
    assert f'giaoban_meeting_sites_invited{{meeting_id="{mid}"}} 4.0' in text
    assert f'giaoban_meeting_sites_connected{{meeting_id="{mid}"}} 0.0' in text
    assert f'giaoban_meeting_sites_level{{level="waiting",meeting_id="{mid}"}} 4.0' in text  # open, none came
    assert f'giaoban_meeting_sites_level{{level="red",meeting_id="{mid}"}} 0.0' in text
    assert "giaoban_media_configured 0.0" in text and "giaoban_quality_samples_total" in text
    for name in ("Hà Nội", "Ha Noi", "Điểm cầu", "Giao ban"):
        assert name not in text


class _Req:
    def __init__(self, host: str, headers: dict[str, str] | None = None) -> None:
        self.client = type("C", (), {"host": host})()
        self.headers = headers or {}


@pytest.mark.parametrize(
    ("host", "headers", "token", "ok"),
    [
        ("127.0.0.1", {}, None, True),
        ("::1", {}, None, True),
        ("127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, None, False),  # a proxy on this host
        ("127.0.0.1", {"forwarded": "for=203.0.113.9"}, None, False),
        ("10.1.2.3", {}, None, False),
        ("10.1.2.3", {"authorization": "Bearer t0ken"}, "t0ken", True),
        ("10.1.2.3", {"authorization": "Bearer wrong"}, "t0ken", False),
        ("10.1.2.3", {"authorization": "Bearer t0ken"}, None, False),
        ("testclient", {}, None, False),
    ],
)
def test_who_may_scrape(host: str, headers: dict[str, str], token: str | None, ok: bool) -> None:
    assert scrape_allowed(_Req(host, headers), token) is ok  # type: ignore[arg-type]


def test_the_control_room_uses_the_configured_thresholds(
    ctx: Any, demo: Demo, meeting: dict[str, int]
) -> None:
    ctx.settings.quality_thresholds = {"loss_alert": 12.0, "rtt_red": 650.0}
    with TestClient(create_app(ctx)) as client:
        _stop_background(client)
        r = client.get(f"/api/v1/meetings/{meeting['id']}/quality", headers=login(client, "chutri"))
        assert r.status_code == 200, r.text
        th = r.json()["thresholds"]
        assert (th["loss_alert"], th["rtt_red"], th["loss_clear"]) == (12.0, 650, 5.0)
        assert client.app.state.quality.thresholds.rtt_red == 650  # type: ignore[attr-defined]
