"""Live meeting state: attendance timeline, floor through records, deltas, resume, replay."""

from __future__ import annotations

import json

import pytest

from giaoban.live.state import LATE_AFTER_SECONDS, LiveError, LiveMeeting, Record

HOST, A, B, C = 1, 2, 3, 4
START = 1_000_000.0


def meeting() -> LiveMeeting:
    sites = {HOST: ("Điểm cầu Trung ương", "TW"), A: ("Hà Nội", ""), B: ("Huế", ""), C: ("Cần Thơ", "")}
    return LiveMeeting(7, "Giao ban", "open", HOST, START, sites)


def run(live: LiveMeeting, records: list[Record]) -> None:
    for r in records:
        live.apply(r)


SCRIPT = [
    Record("site.connected", START - 60, HOST),
    Record("site.connected", START - 30, A),
    Record("site.connected", START + LATE_AFTER_SECONDS + 1, B),
    Record("floor.request", START + 400, A, data={"kind": "normal"}),
    Record("floor.request", START + 401, B, data={"kind": "point_of_order"}),
    Record("floor.grant", START + 402, user="chutri", data={"site_id": None, "seconds": 60}),
    Record("site.disconnected", START + 410, A, data={"dropped": True}),
    Record("site.connected", START + 415, A),
    Record("checkin", START + 420, A, data={"delegates": 12, "names": ["Nguyễn Văn A"]}),
    Record("chat", START + 430, A, user="dc-01", data={"to": "all", "text": "Xin chào"}),
    Record("chat", START + 431, A, user="dc-01", data={"to": "control", "text": "Tiếng nhỏ"}),
]


def test_attendance_floor_chat_through_records() -> None:
    live = meeting()
    run(live, SCRIPT)
    snap = live.snapshot(START + 432)
    sites = snap["sites"]
    assert sites[str(HOST)]["attendance"] == "present"
    assert sites[str(B)]["attendance"] == "late"
    assert [m["kind"] for m in sites[str(A)]["timeline"]] == ["joined", "left", "rejoined"]
    assert sites[str(C)]["attendance"] == "absent"
    assert sites[str(A)]["checkin"]["delegates"] == 12
    # Point of order came second but is served first.
    assert snap["floor"]["holders"][0]["site_id"] == B
    assert snap["floor"]["audible"] == [HOST, B]
    assert [q["site_id"] for q in snap["floor"]["queue"]] == [A]
    assert [m["text"] for m in snap["chat"]] == ["Xin chào"]  # the private one is not broadcast
    assert live.private_chat[0].to == "control"
    assert live.roll_call() == {"present": 2, "late": 1, "left": 0, "absent": 1}


def test_replaying_the_records_rebuilds_the_same_state() -> None:
    first, second = meeting(), meeting()
    run(first, SCRIPT)
    run(second, [Record(**json.loads(json.dumps(r.to_json()))) for r in SCRIPT])
    assert first.snapshot(START + 500) == second.snapshot(START + 500)
    assert first.version == second.version


def test_refused_records_change_nothing() -> None:
    live = meeting()
    run(live, SCRIPT[:6])
    before, version = live.snapshot(START + 500), live.version
    for bad in (
        Record("floor.request", START + 450, B),  # already holding
        Record("floor.grant", START + 450, data={"site_id": 99}),  # not invited
        Record("floor.revoke", START + 450, data={"site_id": C}),  # not holding
        Record("checkin", START + 450, 99, data={"delegates": 1}),
    ):
        with pytest.raises(LiveError):
            live.apply(bad)
    assert live.snapshot(START + 500) == before and live.version == version


def test_deltas_resume_and_gaps() -> None:
    live = meeting()
    run(live, SCRIPT[:3])
    v = live.version
    run(live, SCRIPT[3:6])
    deltas = live.deltas_since(v)
    assert deltas is not None and [json.loads(d)["version"] for d in deltas] == [v + 1, v + 2, v + 3]
    assert live.deltas_since(live.version) == []
    assert live.deltas_since(live.version + 5) is None


def test_dropped_holder_loses_floor_after_grace() -> None:
    live = meeting()
    run(live, SCRIPT[:6])
    live.apply(Record("site.disconnected", START + 500, B, data={"dropped": True}))
    assert live.floor.holder_ids() == [B]
    applied = live.apply(Record("floor.expire", START + 500 + live.floor.drop_grace))
    assert applied.floor_changed and live.floor.holder_ids() == []
