"""Tech checks: the result's validation, the live state's ``techcheck`` records (and their replay),
the REST routes' refusals (nothing changes), and who may open the echo WebSocket."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.websockets import WebSocketDisconnect

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.errors import DomainError
from giaoban.live.state import LiveError, LiveMeeting, Record
from giaoban.live.techcheck import EchoError, TechCheckIn, check_candidate, check_sdp, parse_result
from giaoban.meetings import scheduling as svc
from giaoban.meetings.models import MeetingRecord
from giaoban.org.models import Site, Unit
from tests.conftest import Demo, login

READY = {"status": "ready", "camera": True, "mic_level": 0.5, "echo_rtt_ms": 3.2, "bandwidth_kbps": 1500}


def _live() -> LiveMeeting:
    return LiveMeeting(1, "Giao ban", "open", 10, 0.0, {10: ("Trung ương", "TW"), 11: ("Hà Nội", "01")})


def test_a_ready_result_needs_camera_and_echo() -> None:
    assert parse_result(READY).status == "ready"
    for bad in ({**READY, "camera": False}, {**READY, "echo_rtt_ms": None}, {**READY, "status": "failed"}):
        with pytest.raises(DomainError) as err:
            parse_result(bad)
        assert err.value.status == 400
    failed = parse_result({**READY, "status": "failed", "reason": "Mạng yếu"})
    assert failed.reason == "Mạng yếu"


@pytest.mark.parametrize(
    "change",
    [
        {"status": "ok"},
        {"mic_level": 1.5},
        {"echo_rtt_ms": -1},
        {"bandwidth_kbps": 2.5},
        {"turn": "maybe"},
        {"extra": 1},
        {"reason": "x" * 301},
    ],
)
def test_bad_results_are_refused_with_the_field(change: dict[str, Any]) -> None:
    with pytest.raises(DomainError) as err:
        parse_result({**READY, **change})
    assert err.value.code == "invalid" and err.value.details


def test_records_keep_the_latest_check_per_site_and_replay() -> None:
    live = _live()
    assert live.sites[11].to_json()["techcheck"] == {"status": "not_checked", "requested_at": None}
    asked = live.apply(Record("techcheck.request", 100.0, 11, "dieuhanh", {"text": "Đề nghị kiểm tra"}))
    assert asked.delta is not None and asked.private is not None and asked.private.to == 11
    first = TechCheckIn.model_validate({**READY, "status": "failed", "reason": "Không có micrô"})
    live.apply(Record("techcheck", 110.0, 11, "dc-01", first.model_dump()))
    live.apply(Record("techcheck", 120.0, 11, "dc-01", TechCheckIn.model_validate(READY).model_dump()))
    state = live.snapshot(130.0)["sites"]["11"]["techcheck"]
    assert state["status"] == "ready" and state["echo_rtt_ms"] == 3.2 and state["bandwidth_kbps"] == 1500
    assert state["at"].endswith("00:02:00+00:00") and state["requested_at"].endswith("00:01:40+00:00")
    version = live.version
    with pytest.raises(LiveError):
        live.apply(Record("techcheck", 140.0, 99, "x", READY))  # not invited
    with pytest.raises(LiveError):
        live.apply(Record("techcheck", 140.0, 11, "x", {**READY, "status": "great"}))
    assert live.version == version and live.sites[11].techcheck_json()["status"] == "ready"


def test_echo_signalling_is_checked_before_janus() -> None:
    assert check_sdp({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP 0\r\n"}, "offer")["type"] == "offer"
    for bad in (
        None,
        {"type": "answer", "sdp": "v=0\nm=x"},
        {"type": "offer", "sdp": "hello"},
        {"type": "offer"},
    ):
        with pytest.raises(EchoError):
            check_sdp(bad, "offer")
    assert check_candidate(None) is None
    assert check_candidate({"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host", "sdpMLineIndex": 0})
    for bad in (
        "x",
        {"candidate": 5},
        {"candidate": "c", "sdpMLineIndex": True},
        {"candidate": "c", "sdpMid": 7},
    ):
        with pytest.raises(EchoError):
            check_candidate(bad)


def _meeting(demo: Demo, status: str = "scheduled") -> tuple[int, int, int]:
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        ids = {c: s.execute(select(Site.id).where(Site.code == c)).scalar_one() for c in ("TW", "01", "79")}
        now = datetime(2030, 1, 1, 8, 0)
        m = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Giao ban",
                kind="briefing",
                starts_at=now,
                ends_at=now + timedelta(hours=2),
                owner_unit_id=s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one(),
                host_site_id=ids["TW"],
                invite=svc.InviteSpec(site_ids=[ids["01"]]),
            ),
        )
        m.status = status
        return m.id, ids["01"], ids["79"]


def _records(demo: Demo) -> int:
    with demo.ctx.db.session() as s:
        return int(s.execute(select(func.count()).select_from(MeetingRecord)).scalar_one())


def test_rest_refusals_change_nothing(client: TestClient, demo: Demo) -> None:
    mid, hanoi, hcm = _meeting(demo)
    site = login(client, "dc-01")
    url = f"/api/v1/meetings/{mid}/sites/{hanoi}/techcheck"
    cases = [
        (site, url, {**READY, "mic_level": 7}, 422),
        (site, url, {**READY, "camera": False}, 400),
        (site, f"/api/v1/meetings/{mid}/sites/{hcm}/techcheck", READY, 404),  # not invited
        (login(client, "dc-79"), url, READY, 404),  # cannot see the meeting
        (site, f"{url}/request", None, 403),  # a site does not ask for checks
    ]
    for headers, target, body, status in cases:
        r = client.post(target, json=body, headers=headers)
        assert r.status_code == status, (target, r.text)
    assert _records(demo) == 0
    r = client.post(url, json=READY, headers=site)
    assert r.status_code == 200 and r.json()["status"] == "ready"
    board = client.get(f"/api/v1/meetings/{mid}/techcheck", headers=login(client, "dieuhanh")).json()["items"]
    assert [i["status"] for i in board] == ["not_checked", "ready"]
    assert [
        i["site_id"] for i in client.get(f"/api/v1/meetings/{mid}/techcheck", headers=site).json()["items"]
    ] == [hanoi]


def test_a_closed_meeting_takes_no_results(client: TestClient, demo: Demo) -> None:
    mid, hanoi, _ = _meeting(demo, status="ended")
    r = client.post(
        f"/api/v1/meetings/{mid}/sites/{hanoi}/techcheck", json=READY, headers=login(client, "dc-01")
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "meeting_closed"
    assert _records(demo) == 0


@pytest.mark.parametrize(
    ("user", "site", "code"),
    [
        (None, "01", 4401),
        ("dc-79", "01", 4404),
        ("dc-01", "79", 4403),
        ("dc-01", "", 4403),
        ("thuky", "01", 4403),
    ],
)
def test_who_may_open_the_echo(
    client: TestClient, demo: Demo, user: str | None, site: str, code: int
) -> None:
    mid, hanoi, hcm = _meeting(demo, status="open")
    site_id = {"01": hanoi, "79": hcm, "": ""}[site]
    headers = login(client, user) if user else {}
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(f"/ws/meetings/{mid}/techcheck?site_id={site_id}", headers=headers) as ws,
    ):
        ws.receive_text()
    assert closed.value.code == code


def test_the_echo_needs_the_media_plane(client: TestClient, demo: Demo) -> None:
    """Authorized, but the app has no Janus: a clear error, then the socket closes."""
    mid, hanoi, _ = _meeting(demo, status="open")
    with client.websocket_connect(
        f"/ws/meetings/{mid}/techcheck?site_id={hanoi}", headers=login(client, "dc-01")
    ) as ws:
        assert ws.receive_json() == {
            "type": "error",
            "code": "media_unavailable",
            "message": "Máy chủ media chưa sẵn sàng.",
        }
