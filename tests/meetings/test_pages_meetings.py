"""The meetings pages on SQLite and PostgreSQL: list, schedule form, detail with lifecycle buttons,
.ics and XLSX downloads, the site room and the console (their HTML; the live parts are tested in
test_ws.py and tests/e2e/test_briefing.py)."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from giaoban.meetings.models import Meeting
from giaoban.org.models import Site, Unit, User
from giaoban.text import search_key
from giaoban.web import i18n, pagekit
from tests.conftest import Demo, login
from tests.web.test_pages import HTML, csrf_of, sign_in, text_of


def ids(demo: Demo) -> dict[str, int]:
    with demo.ctx.db.session() as s:
        out = {
            f"site_{c}": s.execute(select(Site.id).where(Site.code == c)).scalar_one()
            for c in ("TW", "01", "46", "92", "79")
        }
        out["unit_TW"] = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        out["chutri"] = s.execute(select(User.id).where(User.username == "chutri")).scalar_one()
        out["thuky"] = s.execute(select(User.id).where(User.username == "thuky")).scalar_one()
        return out


def schedule(client: TestClient, demo: Demo, **overrides: object) -> int:
    """Schedule through the form as the central operator; return the new meeting's id."""
    k = ids(demo)
    csrf = sign_in(client, "dieuhanh")
    form = client.get("/meetings/new", headers=HTML)
    assert form.status_code == 200, form.text
    day = (datetime.now() + timedelta(days=1)).date().isoformat()
    data: dict[str, object] = {
        "csrf": csrf,
        "title": "Giao ban công tác tổ chức quý I",
        "kind": "briefing",
        "day": day,
        "start": "08:00",
        "end": "11:00",
        "owner": str(k["unit_TW"]),
        "host": str(k["site_TW"]),
        "chair": str(k["chutri"]),
        "secretary": str(k["thuky"]),
        "agenda": "Khai mạc | Đồng chí Chủ trì | 10\nBáo cáo tình hình | Vụ Tổng hợp | 30\nThảo luận",
        "site_ids": [str(k["site_01"]), str(k["site_46"]), str(k["site_92"])],
        **overrides,
    }
    r = client.post("/meetings/new", data=data, headers=HTML, follow_redirects=False)
    assert r.status_code == 303, text_of(r.text)[:2000]
    match = re.match(r"/meetings/(\d+)\?done=created", r.headers["location"])
    assert match, r.headers["location"]
    return int(match.group(1))


def test_schedule_form_creates_the_meeting(client: TestClient, demo: Demo) -> None:
    mid = schedule(client, demo)
    page = client.get(f"/meetings/{mid}?done=created", headers=HTML)
    text = text_of(page.text)
    assert "Đã lên lịch hội nghị." in text
    assert "Giao ban công tác tổ chức quý I" in text and "08:00–11:00" in text
    assert "Đồng chí Chủ trì" in text and "Thư ký hội nghị" in text
    assert "Báo cáo tình hình" in text and "30 phút" in text
    assert "Mở kiểm tra kỹ thuật" in text and "Bắt đầu hội nghị" not in text
    with demo.ctx.db.session() as s:
        meeting = s.get(Meeting, mid)
        assert meeting is not None
        assert meeting.starts_at.hour == 1  # 08:00 in Vietnam is 01:00 UTC
        assert len(meeting.invitations) == 4  # three sites and the host
        assert [a.minutes for a in meeting.agenda] == [10, 30, None]
    ics = client.get(f"/meetings/{mid}/meeting.ics", headers=HTML)
    assert ics.status_code == 200 and ics.headers["content-type"].startswith("text/calendar")
    assert "SUMMARY:Giao ban công tác tổ chức quý I" in ics.text


def test_schedule_form_errors_keep_the_input(client: TestClient, demo: Demo) -> None:
    k = ids(demo)
    csrf = sign_in(client, "dieuhanh")
    day = (datetime.now() + timedelta(days=1)).date().isoformat()
    base = {
        "csrf": csrf,
        "title": "Hội nghị thử",
        "day": day,
        "owner": str(k["unit_TW"]),
        "host": str(k["site_TW"]),
    }
    r = client.post("/meetings/new", data={**base, "start": "11:00", "end": "08:00"}, headers=HTML)
    assert r.status_code == 400 and "Giờ kết thúc phải sau giờ bắt đầu." in r.text
    assert 'value="Hội nghị thử"' in r.text
    r = client.post(
        "/meetings/new",
        data={**base, "start": "08:00", "end": "09:00", "agenda": "Báo cáo | A | mười"},
        headers=HTML,
    )
    assert r.status_code == 400 and "phải là số phút" in r.text
    r = client.post(
        "/meetings/new", data={**base, "start": "08:00", "end": "09:00", "csrf": "wrong"}, headers=HTML
    )
    assert r.status_code == 403
    with demo.ctx.db.session() as s:
        assert s.execute(select(Meeting.id)).first() is None
    # A site operator may not schedule.
    client.cookies.clear()
    sign_in(client, "dc-01")
    assert client.get("/meetings/new", headers=HTML).status_code == 403


def test_lifecycle_buttons_and_who_sees_what(client: TestClient, demo: Demo) -> None:
    mid = schedule(client, demo)
    k = ids(demo)
    # A site operator sees it in the list, without lifecycle buttons; the room waits until open.
    client.cookies.clear()
    sign_in(client, "dc-01")
    listing = text_of(client.get("/meetings", headers=HTML).text)
    assert (
        "Giao ban công tác tổ chức quý I" in listing
        and "Phòng họp mở khi bắt đầu kiểm tra kỹ thuật" in listing
    )
    detail = client.get(f"/meetings/{mid}", headers=HTML).text
    assert "Mở kiểm tra kỹ thuật</button>" not in detail
    assert client.get(f"/meetings/{mid}/console", headers=HTML).status_code == 403
    assert client.get(f"/meetings/{mid}/attendance.xlsx", headers=HTML).status_code == 403
    # Someone else's site: redirected to the detail page; a site not invited: no such meeting.
    r = client.get(f"/meetings/{mid}/room?site={k['site_46']}", headers=HTML, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    sign_in(client, "dc-79")
    assert client.get(f"/meetings/{mid}", headers=HTML).status_code == 404
    assert mid not in [m for m in re.findall(r"/meetings/(\d+)", client.get("/meetings", headers=HTML).text)]

    # The chair opens the technical check, starts and ends the meeting.
    client.cookies.clear()
    csrf = sign_in(client, "chutri")
    for target, shown in (("open", "Bắt đầu hội nghị"), ("live", "Kết thúc hội nghị")):
        r = client.post(
            f"/meetings/{mid}/status",
            data={"csrf": csrf, "status": target},
            headers=HTML,
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == f"/meetings/{mid}?done={target}"
        assert shown in client.get(r.headers["location"], headers=HTML).text
    # Wrong moves and a missing CSRF token change nothing.
    r = client.post(f"/meetings/{mid}/status", data={"csrf": csrf, "status": "open"}, headers=HTML)
    assert r.status_code == 409
    r = client.post(f"/meetings/{mid}/status", data={"status": "ended"}, headers=HTML)
    assert r.status_code == 403
    console = client.get(f"/meetings/{mid}/console", headers=HTML)
    assert console.status_code == 200 and "Danh sách đăng ký phát biểu" in console.text
    config = json.loads(re.search(r'id="gb-config">(.*?)</script>', console.text, re.S).group(1))  # type: ignore[union-attr]
    assert config["canChair"] is True and config["meetingId"] == mid
    assert "script-src 'self'" in console.headers["content-security-policy"]
    xlsx = client.get(f"/meetings/{mid}/attendance.xlsx", headers=HTML)
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    cells = [[c for c in row if c is not None] for row in sheet.iter_rows(values_only=True)]
    assert str(cells[0][0]).startswith("Điểm danh hội nghị: ") and "(giờ Việt Nam)" in str(cells[1][0])
    header = cells.index(
        [
            "STT",
            "Mã điểm cầu",
            "Điểm cầu",
            "Đơn vị",
            "Điểm danh",
            "Vào lúc",
            "Số đại biểu",
            "Đại biểu",
            "Diễn biến kết nối",
        ]
    )
    sites = cells[header + 1 : header + 5]
    assert [row[0] for row in sites] == [1, 2, 3, 4] and all(
        row[4] == "Vắng" for row in sites
    )  # none joined yet
    assert ["Tổng số điểm cầu được mời", 4] in cells and ["Vắng", 4] in cells and ["Đến muộn", 0] in cells

    # The host's operator and a site's operator get their rooms.
    client.cookies.clear()
    sign_in(client, "dc-tw")
    room = client.get(f"/meetings/{mid}/room", headers=HTML)  # one site: no need to name it
    assert room.status_code == 200 and "Kiểm tra camera và micrô" in room.text
    config = json.loads(re.search(r'id="gb-config">(.*?)</script>', room.text, re.S).group(1))  # type: ignore[union-attr]
    assert config["isHost"] is True and config["siteId"] == k["site_TW"]
    client.cookies.clear()
    sign_in(client, "dc-46")
    room = client.get(f"/meetings/{mid}/room?site={k['site_46']}", headers=HTML)
    assert room.status_code == 200 and "Xin phát biểu" in room.text

    client.cookies.clear()
    csrf = sign_in(client, "chutri")
    r = client.post(
        f"/meetings/{mid}/status",
        data={"csrf": csrf, "status": "ended"},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303
    # After the end the room and console lead back to the detail page.
    assert client.get(f"/meetings/{mid}/console", headers=HTML, follow_redirects=False).status_code == 303


def test_nav_has_meetings_link(client: TestClient, demo: Demo) -> None:
    sign_in(client, "dc-01")
    html = client.get("/", headers=HTML).text
    assert '<a href="/meetings">Hội nghị</a>' in html
    assert 'href="/meetings" aria-current="page"' in client.get("/meetings", headers=HTML).text
    csrf_of(client, "/meetings")


def test_english_catalog_covers_the_meetings_pages() -> None:
    """Every string of these pages (templates and pages_meetings.py) has an English translation."""
    web = i18n.LOCALE_DIR.parent
    with i18n.catalog_path("en").open("rb") as po:
        catalog = read_po(po, locale="en")
    method_map = [
        ("pages_meetings.py", "python"),
        ("templates/meeting.html", "jinja2"),
        ("templates/meeting_*.html", "jinja2"),
        ("templates/meetings.html", "jinja2"),
        ("templates/base.html", "jinja2"),
    ]
    extracted = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(str(web), method_map)
    }
    assert len(extracted) > 100
    missing = sorted(
        m for m in extracted if m and (m not in catalog or not catalog[m].string or catalog[m].fuzzy)
    )
    assert not missing, f"untranslated: {missing}"
    assert pagekit.PAGE_HEADERS  # the page machinery the meetings pages build on


def _section(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end, html.index(start))]


def test_operator_meeting_page_scales_to_71_sites(client: TestClient, demo: Demo) -> None:
    """The whole tree invited: the main actions come first, the 71 sites in one compact, searchable
    table (its rows keyed by giaoban.text.search_key), the list row holds a count, not 71 buttons."""
    k = ids(demo)
    mid = schedule(client, demo, site_ids=[], under=str(k["unit_TW"]))
    csrf = csrf_of(client)  # still dieuhanh
    client.post(f"/meetings/{mid}/status", data={"csrf": csrf, "status": "open"}, headers=HTML)
    html = client.get(f"/meetings/{mid}", headers=HTML).text
    assert "Điểm cầu Điểm cầu" not in text_of(html)
    table = _section(html, 'id="sites-table"', "</table>")
    before = html[: html.index('id="sites-table"')]
    assert "Bắt đầu hội nghị" in before and "Mở phòng điều hành" in before
    # Before the table: at most the host's room (the host step), never one button per site.
    assert len(re.findall(r"/room\?site=", before)) <= 1
    assert len(re.findall(r"/techcheck\?site=", before)) == 0
    assert "Điểm cầu chính chưa vào phòng — hội nghị chưa có tín hiệu." in text_of(before)
    rows = re.findall(r'<tr data-key="([^"]*)"', table)
    assert len(rows) == 71
    with demo.ctx.db.session() as s:
        hue = s.execute(select(Site).where(Site.code == "46")).scalar_one()
        unit = s.get(Unit, hue.unit_id)
        assert unit is not None
        assert search_key(f"46 {hue.name} {unit.name}") in rows
    assert 'data-filter="sites-table"' in html
    assert len(re.findall(r"/room\?site=", table)) == 71  # per-site actions in the rows
    # The list: one row, a count instead of 71 buttons.
    listing = client.get("/meetings", headers=HTML).text
    row = _section(listing, f'href="/meetings/{mid}"', "</tr>")
    assert "/room?site=" not in row and "Chọn trong 71 điểm cầu" in text_of(row)
    assert "Điểm cầu Điểm cầu" not in text_of(listing)


def test_the_host_is_an_explicit_step(client: TestClient, demo: Demo) -> None:
    """Who the host is, whether it is in the room, and what to do — on the meeting page, the host's
    own room (which waits for nobody) and another site's room."""
    mid = schedule(client, demo)
    k = ids(demo)
    client.cookies.clear()
    csrf = sign_in(client, "chutri")
    client.post(f"/meetings/{mid}/status", data={"csrf": csrf, "status": "open"}, headers=HTML)
    page = text_of(client.get(f"/meetings/{mid}", headers=HTML).text)
    assert "Điểm cầu chính chưa vào phòng — hội nghị chưa có tín hiệu." in page
    # The chair's desk runs the host's room: its button is in the host step.
    assert f"/meetings/{mid}/room?site={k['site_TW']}" in client.get(f"/meetings/{mid}", headers=HTML).text

    client.cookies.clear()
    sign_in(client, "dc-tw")
    host_room = client.get(f"/meetings/{mid}/room", headers=HTML).text
    assert "Đây là điểm cầu chính — hình của điểm cầu này được phát tới mọi điểm cầu." in host_room
    body = host_room[host_room.index("<main") :]
    assert "chờ điểm cầu chính" not in body.lower() and 'id="host-state"' not in body

    client.cookies.clear()
    sign_in(client, "dc-01")
    site_page = client.get(f"/meetings/{mid}", headers=HTML).text
    assert "Vào phòng họp tại Điểm cầu Thành ủy Hà Nội" in text_of(site_page)
    site_room = client.get(f"/meetings/{mid}/room", headers=HTML).text
    assert 'id="host-state"' in site_room and "Đây là điểm cầu chính" not in site_room
    strings = json.loads(re.search(r'id="gb-strings">(.*?)</script>', site_room, re.S).group(1))  # type: ignore[union-attr]
    assert strings["hostAbsent"] == "Điểm cầu chính chưa vào phòng — hội nghị chưa có tín hiệu."

    # The host's technician connects: the meeting page says so.
    headers = login(client, "dc-tw")
    with client.websocket_connect(f"/ws/meetings/{mid}", headers=headers) as ws:
        hello = {"type": "hello", "id": 1, "protocol": 1, "as": "site", "site_id": k["site_TW"]}
        ws.send_text(json.dumps(hello))
        assert json.loads(ws.receive_text())["type"] == "welcome"
        client.cookies.clear()
        sign_in(client, "chutri")
        page = text_of(client.get(f"/meetings/{mid}", headers=HTML).text)
        assert "Điểm cầu chính đã kết nối nhưng chưa phát hình." in page
        assert "1/4 điểm cầu" in page
