"""The one time policy (giaoban.types), on SQLite and PostgreSQL: what a meeting's times may be on
the way in (ISO strings only, naive = Vietnam's time, 2000..2100, at most a day long), through the
API, the schedule form and the domain, and how every time comes out (UTC with ``Z``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.errors import DomainError
from giaoban.meetings import scheduling as svc
from giaoban.meetings.models import Meeting
from giaoban.org.models import Site, Unit
from giaoban.types import DATETIME_PATTERN, LOCAL_TZ
from tests.conftest import Demo, login
from tests.web.test_pages import HTML, sign_in, text_of

# RFC 3339 date-time, as OpenAPI's "format: date-time" means it (an offset is required).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _ids(demo: Demo) -> tuple[int, int]:
    with demo.ctx.db.session() as s:
        unit = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        site = s.execute(select(Site.id).where(Site.code == "TW")).scalar_one()
    return unit, site


def _count(demo: Demo) -> int:
    with demo.ctx.db.session() as s:
        return len(s.execute(select(Meeting.id)).all())


@pytest.fixture
def api(client: TestClient, demo: Demo) -> Any:
    headers = login(client, "dieuhanh")
    unit, site = _ids(demo)

    def post(starts: Any, ends: Any) -> Any:
        body = {
            "title": "Giao ban",
            "owner_unit_id": unit,
            "host_site_id": site,
            "starts_at": starts,
            "ends_at": ends,
        }
        return client.post("/api/v1/meetings", json=body, headers=headers)

    return post


@pytest.mark.parametrize(
    ("starts", "ends"),
    [
        ("0001-01-01T00:00:00", "0001-01-01T01:00:00"),  # was an OverflowError (500)
        ("9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59-12:00"),
        ("2026-12-08T08:00:00", "9999-12-31T23:59:59-12:00"),
        (0, 3600),  # a number is not a time (it was read as a Unix time)
        ("0", "3600"),
        (True, False),
        (1.5e9, 1.6e9),
        ("1999-12-31T23:59:59", "2000-01-01T01:00:00"),
        ("2100-12-31T23:00:00", "2101-01-01T00:00:00"),
        ("2026-02-29T08:00", "2026-02-29T09:00"),  # not a day
        ("2026-12-08 08:00", "2026-12-08 09:00"),  # RFC 3339 separates with T
        ("2026-12-08T08:00+25:00", "2026-12-08T09:00"),
        ("2026-12-08T08:00:00\n", "2026-12-08T09:00"),
        ("2026-12-08", "2026-12-09"),
        (None, None),
        ({"at": "2026-12-08T08:00"}, ["2026-12-08T09:00"]),
    ],
)
def test_bad_times_are_a_clear_422(api: Any, demo: Demo, starts: Any, ends: Any) -> None:
    before = _count(demo)
    r = api(starts, ends)
    assert r.status_code == 422, r.text
    issue = r.json()["detail"][0]
    assert issue["loc"][:2] == ["body", "starts_at"] or issue["loc"][:2] == ["body", "ends_at"], issue
    assert "Thời điểm" in issue["msg"] or "Thiếu" in issue["msg"], issue
    assert _count(demo) == before


@pytest.mark.parametrize(
    ("starts", "ends", "hours_utc"),
    [
        ("2026-12-08T08:00", "2026-12-08T11:00", 1),  # naive: Vietnam's time
        ("2026-12-08T08:00:00+07:00", "2026-12-08T11:00:00+07:00", 1),
        ("2026-12-08T01:00:00Z", "2026-12-08T04:00:00Z", 1),
        ("2026-12-08T08:00:00.250-05:00", "2026-12-08T09:00:00-05:00", 13),
        ("2000-01-01T00:00", "2000-01-01T01:00", 17),  # the first moment accepted
        ("2100-12-31T23:00:00-14:00", "2100-12-31T23:59:59-14:00", 13),  # the last day, anywhere
    ],
)
def test_good_times_come_back_in_utc_with_an_offset(
    api: Any, client: TestClient, starts: str, ends: str, hours_utc: int
) -> None:
    r = api(starts, ends)
    assert r.status_code == 201, r.text
    out = r.json()
    for key in ("starts_at", "ends_at"):
        assert RFC3339.fullmatch(out[key]) and out[key].endswith("Z"), out[key]
    given = datetime.fromisoformat(starts)
    given = given if given.tzinfo else given.replace(tzinfo=LOCAL_TZ)
    assert datetime.fromisoformat(out["starts_at"]) == given
    assert datetime.fromisoformat(out["starts_at"]).hour == hours_utc
    listed = client.get("/api/v1/meetings", headers=login(client, "dieuhanh")).json()["items"]
    assert all(RFC3339.fullmatch(m["starts_at"]) and m["ends_at"].endswith("Z") for m in listed)


def test_a_meeting_ends_after_it_starts_within_a_day(api: Any, demo: Demo) -> None:
    before = _count(demo)
    for starts, ends in [
        ("2026-12-08T08:00", "2026-12-08T08:00"),
        ("2026-12-08T08:00", "2026-12-08T07:59"),
        ("2026-12-08T08:00", "2026-12-09T08:00:01"),
        ("2026-12-08T08:00+07:00", "2026-12-08T00:59Z"),  # 07:59 in Vietnam, written in UTC
    ]:
        r = api(starts, ends)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_times", (starts, ends, r.text)
    assert _count(demo) == before
    assert api("2026-12-08T08:00", "2026-12-09T08:00").status_code == 201  # exactly a day


def test_the_domain_refuses_out_of_range_times_too(demo: Demo) -> None:
    unit, site = _ids(demo)
    with demo.ctx.db.session() as session:
        tx = Tx(session, demo.ctx.audit, Actor.system("test"))
        for starts in (datetime.min, datetime.max, datetime(9999, 12, 31, 23, 59, tzinfo=UTC)):
            spec = svc.MeetingSpec("Giao ban", "briefing", starts, starts, unit, site)
            with pytest.raises(DomainError) as err:
                svc.create_meeting(tx, spec)
            assert err.value.code == "invalid_times"


def test_the_document_says_what_is_accepted_and_sent(client: TestClient) -> None:
    doc = client.app.openapi()
    schemas = doc["components"]["schemas"]
    for key in ("starts_at", "ends_at"):
        accepted = schemas["MeetingIn"]["properties"][key]
        assert accepted["type"] == "string" and accepted["pattern"] == DATETIME_PATTERN
        assert "format" not in accepted  # naive times are accepted, which RFC 3339 is not
        assert schemas["MeetingOut"]["properties"][key]["format"] == "date-time"
    pattern = re.compile(DATETIME_PATTERN)
    assert pattern.search("2026-12-08T08:00") and pattern.search("2100-12-31T23:59:59.5-14:00")
    for bad in ("0001-01-01T00:00:00", "2100-02-29T00:00", "2026-12-08T08:00\n", "1999-12-31T23:59"):
        assert not pattern.search(bad), bad
    for name in ("AlertOut", "QualityOut"):
        for prop, spec in schemas[name]["properties"].items():
            if prop.endswith("_at"):
                assert spec["anyOf"][0]["format"] == "date-time", (name, prop)


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1999-12-31", "2101-01-01"])
def test_the_schedule_form_refuses_days_out_of_range(client: TestClient, demo: Demo, day: str) -> None:
    unit, site = _ids(demo)
    csrf = sign_in(client, "dieuhanh")
    before = _count(demo)
    data = {
        "csrf": csrf,
        "title": "Giao ban",
        "day": day,
        "start": "23:30" if day.startswith("9999") else "00:00",
        "end": "23:59",
        "owner": str(unit),
        "host": str(site),
    }
    r = client.post("/meetings/new", data=data, headers=HTML, follow_redirects=False)
    assert r.status_code == 400, r.text[:500]
    assert "2000" in text_of(r.text) and "2100" in text_of(r.text)
    assert _count(demo) == before


def test_the_schedule_form_takes_vietnam_time(client: TestClient, demo: Demo) -> None:
    unit, site = _ids(demo)
    csrf = sign_in(client, "dieuhanh")
    day = (datetime.now(LOCAL_TZ) + timedelta(days=2)).date().isoformat()
    data = {"csrf": csrf, "title": "Giao ban", "day": day, "start": "08:00", "end": "09:00"}
    data |= {"owner": str(unit), "host": str(site)}
    r = client.post("/meetings/new", data=data, headers=HTML, follow_redirects=False)
    assert r.status_code == 303, text_of(r.text)[:500]
    with demo.ctx.db.session() as s:
        meeting = s.execute(select(Meeting).order_by(Meeting.id.desc())).scalars().first()
        assert meeting is not None and meeting.starts_at.hour == 1
