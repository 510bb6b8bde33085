"""The live-meeting WebSocket (no media): handshake, authorization, floor, chat, errors, resume."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.meetings import scheduling as svc
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.meetings.models import MeetingRecord
from giaoban.org.models import Site, Unit, User
from tests.conftest import Demo, login


@pytest.fixture
def meeting(demo: Demo) -> dict[str, int]:
    """An open briefing: host TW, invited Hà Nội (01), Huế (46), Cần Thơ (92)."""
    with demo.ctx.db.session() as s:
        tx = Tx(s, demo.ctx.audit, Actor.system("test"))
        site = {
            c: s.execute(select(Site.id).where(Site.code == c)).scalar_one()
            for c in ("TW", "01", "46", "92", "79")
        }
        root = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        chair = s.execute(select(User.id).where(User.username == "chutri")).scalar_one()
        m = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Giao ban trực tuyến",
                kind="briefing",
                starts_at=datetime(2026, 1, 1, 8),
                ends_at=datetime(2026, 1, 1, 11),
                owner_unit_id=root,
                host_site_id=site["TW"],
                chair_user_id=chair,
                invite=svc.InviteSpec(site_ids=[site["01"], site["46"], site["92"]]),
            ),
        )
        svc.transition(tx, m.id, MeetingStatus.open)
        return {"id": m.id, **{f"site_{k}": v for k, v in site.items()}}


class Tab:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 1
        self.version = 0

    def send(self, **msg: Any) -> int:
        self.next_id += 1
        msg.setdefault("id", self.next_id)
        self.ws.send_text(json.dumps(msg))
        return int(msg["id"])

    def recv(self) -> dict[str, Any]:
        msg = json.loads(self.ws.receive_text())
        if msg["type"] == "delta":
            assert msg["version"] == self.version + 1, "deltas arrive in order, without gaps"
            self.version = msg["version"]
        return msg

    def reply(self, msg_id: int) -> dict[str, Any]:
        """Read until the ack/error for ``msg_id`` (deltas before it are checked and kept)."""
        while True:
            msg = self.recv()
            if msg["type"] in ("ack", "error") and msg.get("id") == msg_id:
                return msg

    def until(self, pred: Any) -> dict[str, Any]:
        while True:
            msg = self.recv()
            if pred(msg):
                return msg


def open_tab(client: TestClient, meeting_id: int, user: str, **hello: Any) -> Iterator[Tab]:
    headers = login(client, user)
    with client.websocket_connect(f"/ws/meetings/{meeting_id}", headers=headers) as ws:
        tab = Tab(ws)
        ws.send_text(json.dumps({"type": "hello", "id": 1, "protocol": 1, **hello}))
        welcome = json.loads(ws.receive_text())
        assert welcome["type"] == "welcome", welcome
        tab.version = welcome["version"]
        tab.welcome = welcome  # type: ignore[attr-defined]
        yield tab


def test_floor_round_trip_between_site_and_chair(client: TestClient, meeting: dict[str, int]) -> None:
    mid, hn, hue = meeting["id"], meeting["site_01"], meeting["site_46"]
    for chair in open_tab(client, mid, "chutri", **{"as": "console"}):
        assert chair.welcome["you"]["can_chair"] is True  # type: ignore[attr-defined]
        for site in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": hn}):
            chair.until(lambda m: m["type"] == "delta")  # Hà Nội connected
            rid = site.send(type="floor.request", kind="normal")
            assert site.reply(rid)["type"] == "ack"
            delta = chair.until(lambda m: m["type"] == "delta")
            assert delta["changes"][0]["value"]["queue"][0]["site_id"] == hn
            # A site cannot grant itself the floor.
            gid = site.send(type="floor.grant", site_id=hn)
            assert site.reply(gid)["code"] == "forbidden"
            gid = chair.send(type="floor.grant", seconds=120)
            assert chair.reply(gid)["type"] == "ack"
            floor = site.until(lambda m: m["type"] == "delta" and m["changes"][0]["path"] == "floor")
            value = floor["changes"][0]["value"]
            assert [h["site_id"] for h in value["holders"]] == [hn]
            assert value["audible"] == sorted([meeting["site_TW"], hn])
            # Huế is not invited to act as Hà Nội, and a second grant exceeds the one-speaker floor.
            bad = chair.send(type="floor.grant", site_id=hue)
            assert chair.reply(bad)["code"] == "floor_full"
            rv = chair.send(type="floor.revoke", site_id=hn)
            assert chair.reply(rv)["type"] == "ack"
    expected = ["site.connected", "floor.request", "floor.grant", "floor.revoke", "site.disconnected"]
    deadline = time.monotonic() + 5  # the server handles the tab's close after the client has left
    while True:
        with client.app.state.ctx.db.session() as s:  # type: ignore[attr-defined]
            kinds = list(
                s.execute(select(MeetingRecord.kind).where(MeetingRecord.meeting_id == mid)).scalars()
            )
        if kinds == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert kinds == expected


def test_who_may_connect_as_what(client: TestClient, meeting: dict[str, int]) -> None:
    mid = meeting["id"]
    cases = [
        ("dc-01", {"as": "site", "site_id": meeting["site_46"]}, 4403),  # another site's operator
        ("dc-79", {"as": "site", "site_id": meeting["site_79"]}, 4404),  # site not invited: not its meeting
        ("dc-01", {"as": "console"}, 4403),  # site operators have no console
        ("tochuc-01", {"as": "site", "site_id": meeting["site_01"]}, 4404),  # org staff: not their meeting
        ("chutri", {"as": "console", "protocol": 2}, 4400),
    ]
    for user, hello, code in cases:
        headers = login(client, user)
        with client.websocket_connect(f"/ws/meetings/{mid}", headers=headers) as ws:
            ws.send_text(json.dumps({"type": "hello", "id": 1, "protocol": 1, **hello}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == code, (user, hello)
    with client.websocket_connect(f"/ws/meetings/{mid}") as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()
    assert closed.value.code == 4401
    with client.websocket_connect(f"/ws/meetings/{mid + 999}", headers=login(client, "chutri")) as ws:
        ws.send_text(json.dumps({"type": "hello", "id": 1, "protocol": 1, "as": "console"}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4404


def test_bad_messages_get_errors_and_change_nothing(client: TestClient, meeting: dict[str, int]) -> None:
    for site in open_tab(client, meeting["id"], "dc-01", **{"as": "site", "site_id": meeting["site_01"]}):
        site.until(lambda m: m["type"] == "delta")
        version = site.version
        site.ws.send_text("not json")
        assert site.recv()["code"] == "bad_json"
        site.ws.send_text(json.dumps({"type": "floor.teleport", "id": 50}))
        assert site.recv()["code"] == "unknown_type"
        site.ws.send_text(json.dumps({"type": "checkin", "id": 51, "delegates": -3}))
        assert site.recv()["code"] == "invalid"
        ok = site.send(type="ping", id=60)
        assert site.reply(ok)["type"] == "ack"
        site.ws.send_text(json.dumps({"type": "floor.request", "id": 60}))  # replayed id
        assert site.recv()["code"] == "stale_id"
        site.ws.send_text(json.dumps({"type": "floor.request", "id": 59}))  # out of order
        assert site.recv()["code"] == "stale_id"
        site.ws.send_text(
            json.dumps(
                {
                    "type": "media.publish",
                    "id": 61,
                    "jsep": {"type": "offer", "sdp": "v=0\r\nm=audio 9 bogus\r\n"},
                }
            )
        )
        assert site.recv()["code"] == "media_unavailable"  # no media plane in this test
        assert site.version == version  # nothing changed


def test_resume_gets_missed_deltas_and_chat_privacy(client: TestClient, meeting: dict[str, int]) -> None:
    mid = meeting["id"]
    for hn in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": meeting["site_01"]}):
        hn.until(lambda m: m["type"] == "delta")
        seen = hn.version
        for hue in open_tab(client, mid, "dc-46", **{"as": "site", "site_id": meeting["site_46"]}):
            cid = hue.send(type="chat.send", text="Điểm cầu Huế đã sẵn sàng", to="all")
            assert hue.reply(cid)["type"] == "ack"
            pid = hue.send(type="chat.send", text="Xin hỗ trợ âm thanh", to="control")
            assert hue.reply(pid)["type"] == "ack"
        for again in open_tab(
            client, mid, "dc-01", **{"as": "site", "site_id": meeting["site_01"]}, resume_from=seen
        ):
            deltas = [json.loads(d) for d in again.welcome["deltas"]]  # type: ignore[attr-defined]
            assert "snapshot" not in again.welcome  # type: ignore[attr-defined]
            appended = [
                c["value"]["text"] for d in deltas for c in d["changes"] if c["path"] == "chat.append"
            ]
            assert appended == ["Điểm cầu Huế đã sẵn sàng"]  # the private message is not in anyone's deltas


def _records(client: TestClient, mid: int) -> list[str]:
    with client.app.state.ctx.db.session() as s:  # type: ignore[attr-defined]
        return list(s.execute(select(MeetingRecord.kind).where(MeetingRecord.meeting_id == mid)).scalars())


def test_site_operator_cannot_send_chair_commands(client: TestClient, meeting: dict[str, int]) -> None:
    mid, hn = meeting["id"], meeting["site_01"]
    for site in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": hn}):
        site.until(lambda m: m["type"] == "delta")
        rid = site.send(type="floor.request")
        assert site.reply(rid)["type"] == "ack"  # its delta came before the ack
        version, records = site.version, _records(client, mid)
        for msg in (
            {"type": "floor.grant", "site_id": hn},
            {"type": "floor.grant"},
            {"type": "floor.revoke", "site_id": hn},
            {"type": "floor.extend", "site_id": hn, "seconds": 60},
            {"type": "floor.config", "max_holders": 4},
            {"type": "media.wall", "page": 1},
            {"type": "chat.send", "text": "giả làm phòng điều hành", "to": meeting["site_46"]},
        ):
            reply = site.reply(site.send(**msg))
            assert reply["type"] == "error" and reply["code"] == "forbidden", (msg, reply)
        ok = site.send(type="ping")
        assert site.reply(ok)["type"] == "ack"  # no delta came in between: nothing changed
        assert site.version == version and _records(client, mid) == records
    for console in open_tab(client, mid, "chutri", **{"as": "console"}):
        # The console may not act as a site either.
        for msg in (
            {"type": "floor.request"},
            {"type": "checkin", "delegates": 3},
            {"type": "chat.send", "text": "x", "to": "control"},
        ):
            assert console.reply(console.send(**msg))["code"] == "forbidden", msg
        reply = console.reply(
            console.send(type="media.publish", jsep={"type": "offer", "sdp": "v=0\r\nm=audio 9 x\r\n"})
        )
        assert reply["code"] == "forbidden"


def test_messages_for_another_meeting_are_refused(client: TestClient, meeting: dict[str, int]) -> None:
    mid, hn, hcm = meeting["id"], meeting["site_01"], meeting["site_79"]
    # Hồ Chí Minh City is invited to another meeting, not to this one.
    with client.app.state.ctx.db.session() as s:  # type: ignore[attr-defined]
        tx = Tx(s, client.app.state.ctx.audit, Actor.system("test"))  # type: ignore[attr-defined]
        other = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Hội nghị khác",
                kind="thematic",
                starts_at=datetime(2026, 1, 2, 8),
                ends_at=datetime(2026, 1, 2, 9),
                owner_unit_id=s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one(),
                host_site_id=meeting["site_TW"],
                invite=svc.InviteSpec(site_ids=[hcm]),
            ),
        )
        svc.transition(tx, other.id, MeetingStatus.open)
        other_id = other.id
    # Its operator cannot reach this meeting, even by naming a site of it.
    for hello in ({"as": "site", "site_id": hcm}, {"as": "site", "site_id": hn}):
        with client.websocket_connect(f"/ws/meetings/{mid}", headers=login(client, "dc-79")) as ws:
            ws.send_text(json.dumps({"type": "hello", "id": 1, "protocol": 1, **hello}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 4404
    for chair in open_tab(client, mid, "chutri", **{"as": "console"}):
        version, records = chair.version, _records(client, mid)
        for msg, code in (
            ({"type": "floor.grant", "site_id": hcm}, "not_invited"),
            ({"type": "floor.revoke", "site_id": hcm}, "not_holding"),
            ({"type": "chat.send", "text": "nhầm hội nghị", "to": hcm}, "not_invited"),
            ({"type": "floor.grant", "site_id": hn, "meeting_id": other_id}, "invalid"),
            ({"type": "chat.send", "text": "x", "meeting": other_id}, "invalid"),
        ):
            reply = chair.reply(chair.send(**msg))
            assert reply["type"] == "error" and reply["code"] == code, (msg, reply)
        assert chair.reply(chair.send(type="ping"))["type"] == "ack"
        assert chair.version == version and _records(client, mid) == records


def test_malformed_media_messages(client: TestClient, meeting: dict[str, int]) -> None:
    for site in open_tab(client, meeting["id"], "dc-01", **{"as": "site", "site_id": meeting["site_01"]}):
        site.until(lambda m: m["type"] == "delta")
        version = site.version
        for msg, code in (
            ({"type": "media.publish", "jsep": {"type": "offer", "sdp": "v=0"}}, "invalid"),  # too short
            ({"type": "media.publish", "jsep": {"type": "pranswer", "sdp": "v=0\r\n" * 5}}, "invalid"),
            (
                {"type": "media.publish", "jsep": {"type": "offer", "sdp": "hello, this is not SDP"}},
                "invalid",
            ),
            (
                {"type": "media.publish", "jsep": {"type": "offer", "sdp": "v=0\r\ns=no media lines\r\n"}},
                "invalid",
            ),
            ({"type": "media.publish"}, "invalid"),
            (
                {"type": "media.start", "jsep": {"type": "answer", "sdp": "v=0\r\n" * 5}, "target": "all"},
                "invalid",
            ),
            ({"type": "media.trickle", "target": "publisher", "candidate": "candidate:1 1 udp"}, "invalid"),
            ({"type": "media.trickle", "target": "janus", "candidate": None}, "invalid"),
            ({"type": "media.trickle", "target": "publisher", "candidate": {"sdpMLineIndex": -1}}, "invalid"),
            ({"type": "media.wall", "page": 0}, "invalid"),
            # Well formed, but there is no media plane in this test: refused, nothing changes.
            (
                {
                    "type": "media.publish",
                    "jsep": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 x\r\n"},
                },
                "media_unavailable",
            ),
            ({"type": "media.subscribe"}, "media_unavailable"),
        ):
            reply = site.reply(site.send(**msg))
            assert reply["type"] == "error" and reply["code"] == code, (msg, reply)
        # Too large to be read at all: refused without an id.
        site.send(type="media.publish", jsep={"type": "offer", "sdp": "x" * 70_000})
        assert site.recv() == {
            "type": "error",
            "id": None,
            "code": "too_large",
            "message": "Thông điệp quá lớn.",
        }
        assert site.reply(site.send(type="ping"))["type"] == "ack"
        assert site.version == version


def test_snapshot_lists_sites_in_wall_order(client: TestClient, meeting: dict[str, int]) -> None:
    for chair in open_tab(client, meeting["id"], "chutri", **{"as": "console"}):
        snapshot = chair.welcome["snapshot"]  # type: ignore[attr-defined]
        order = snapshot["order"]
        assert order[0] == meeting["site_TW"]  # the host first
        assert sorted(order) == sorted(int(k) for k in snapshot["sites"])
        assert [snapshot["sites"][str(i)]["code"] for i in order] == ["TW", "01", "46", "92"]


def test_ending_the_meeting_closes_its_tabs(client: TestClient, meeting: dict[str, int]) -> None:
    mid = meeting["id"]
    for site in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": meeting["site_01"]}):
        site.until(lambda m: m["type"] == "delta")
        chair = {**login(client, "chutri"), "Accept": "text/html"}
        r = client.post(
            f"/meetings/{mid}/status", data={"status": "ended"}, headers=chair, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        status = site.until(lambda m: m["type"] == "delta" and m["changes"][0]["path"] == "meeting")
        assert status["changes"][0]["value"]["status"] == "ended"
        left = site.until(lambda m: m["type"] == "delta")
        assert left["changes"][0]["value"]["attendance"] == "left"  # the timeline is closed
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                site.recv()
        assert closed.value.code == 4409
    assert _records(client, mid)[-2:] == ["meeting.status", "site.disconnected"]
    # The meeting is over: nobody gets in any more.
    with client.websocket_connect(f"/ws/meetings/{mid}", headers=login(client, "dc-01")) as ws:
        ws.send_text(
            json.dumps({"type": "hello", "id": 1, "protocol": 1, "as": "site", "site_id": meeting["site_01"]})
        )
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4409


def test_chair_declines_a_request_and_the_site_is_told(client: TestClient, meeting: dict[str, int]) -> None:
    mid, hn, hue = meeting["id"], meeting["site_01"], meeting["site_46"]
    floor = lambda m: m["type"] == "delta" and any(c["path"] == "floor" for c in m["changes"])  # noqa: E731
    value = lambda m: next(c["value"] for c in m["changes"] if c["path"] == "floor")  # noqa: E731
    for chair in open_tab(client, mid, "chutri", **{"as": "console"}):
        for site in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": hn}):
            for other in open_tab(client, mid, "dc-46", **{"as": "site", "site_id": hue}):
                assert site.reply(site.send(type="floor.request"))["type"] == "ack"
                assert other.reply(other.send(type="floor.request"))["type"] == "ack"
                queued = value(chair.until(lambda m: floor(m) and len(value(m)["queue"]) == 2))
                # Each request says since when the site waits (the console shows "chờ …").
                assert all(datetime.fromisoformat(q["requested_at"]).tzinfo for q in queued["queue"])
                # Only the chair declines.
                assert site.reply(site.send(type="floor.decline", site_id=hue))["code"] == "forbidden"
                assert chair.reply(chair.send(type="floor.decline", site_id=hn))["type"] == "ack"
                told = value(site.until(lambda m: floor(m) and value(m)["declined"]))
                assert [d["site_id"] for d in told["declined"]] == [hn]
                assert [q["site_id"] for q in told["queue"]] == [hue]  # Huế moves up, nobody else moved
                assert [q["position"] for q in told["queue"]] == [1]
                # Declining a site that is not queued changes nothing.
                again = chair.reply(chair.send(type="floor.decline", site_id=hn))
                assert again["type"] == "error" and again["code"] == "not_queued"
                # The site may ask again: no longer "declined", at the end of the queue.
                assert site.reply(site.send(type="floor.request"))["type"] == "ack"
                back = value(chair.until(lambda m: floor(m) and not value(m)["declined"]))
                assert [q["site_id"] for q in back["queue"]] == [hue, hn]
    kinds = _records(client, mid)
    assert kinds.count("floor.decline") == 1


def test_chat_names_the_person_not_the_login(client: TestClient, meeting: dict[str, int]) -> None:
    mid = meeting["id"]
    for chair in open_tab(client, mid, "chutri", **{"as": "console"}):
        assert chair.reply(chair.send(type="chat.send", text="Bắt đầu sau 5 phút", to="all"))["type"] == "ack"
        for site in open_tab(client, mid, "dc-01", **{"as": "site", "site_id": meeting["site_01"]}):
            (line,) = site.welcome["snapshot"]["chat"]  # type: ignore[attr-defined]
            assert line["name"] == "Đồng chí Chủ trì" and line["user"] == "chutri"
            with client.app.state.ctx.db.session() as s:  # type: ignore[attr-defined]
                root = s.execute(select(Unit.name).where(Unit.code == "TW")).scalar_one()
            assert line["unit"] == root
