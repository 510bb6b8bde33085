"""Hostile text through every way in, then every export out (issue 10, defects 2 and 4).

Each hostile string goes through every route that stores text a person typed: the JSON API, the
page forms, CSV and XLSX imports and the live-meeting WebSocket (chat, check-in names). For each,
the verdict must be the one text policy's (``giaoban.text``): a refused input gets a 4xx with a
message and changes nothing; an accepted one is stored in its clean form (NFC, no control
characters, nothing invisible-only). Then every export (units and sites in every format, the
attendance sheet) must open, hold no live formula, and no request may answer 5xx.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from openpyxl.utils.exceptions import IllegalCharacterError
from sqlalchemy import select

from giaoban.meetings.models import Meeting
from giaoban.org.models import RosterEntry, Site, Unit, User
from giaoban.tabular import FORMULA_START
from giaoban.text import TextError, clean_line, clean_text
from tests.conftest import login
from tests.security.conftest import OWN, World, changed_tables

HOSTILE = {
    "c0": "Tỉnh\x01ủy",
    "bell-first": "\x07Chuông",
    "del": "Hà Nội\x7f",
    "c1-nel": "Tên\x85mới",
    "c1-csi": "\x9b31mĐỏ",
    "nul": "a\x00b",
    "zwsp-only": "\u200b\u200b",
    "bom-only": "\ufeff",
    "invisible-mix": "\u200b\u2060\u00ad \u3164",
    "rtl-override": "\u202egnp.exe",
    "noncharacter": "Huế\uffff",
    "line-separator": "Dòng\u2028hai",
    "hyperlink": '=HYPERLINK("http://x")',
    "dde": "+cmd|' /C calc'!A0",
    "at-sum": "@SUM(1)",
    "minus": "-2+3",
    "tab-first": "\t=1+1",
    "cr-first": "\r=1+1",
    "newline": "Tên\nhai dòng",
    "long": "x" * 10_000,
    "nfd": unicodedata.normalize("NFD", "Tỉnh ủy Cà Mau"),
    "spaces": "  Đà   Nẵng\u00a0 ",
}
# Lone surrogates reach the server only as JSON escapes (raw JSON bytes); no form or file holds one.
SURROGATES = {"lone-high": "\ud800", "lone-low": "Hà\udfffNội"}
# What a refused or stored text must never contain.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Field:
    max_length: int
    required: bool = True
    multiline: bool = False

    def verdict(self, value: str) -> str | None:
        """The policy's stored form of ``value``, or None if it is refused."""
        try:
            if self.multiline:
                return clean_text(value, max_length=self.max_length, required=self.required)
            return clean_line(value, max_length=self.max_length, required=self.required)
        except TextError:
            return None


class Seq:
    n = 0

    @classmethod
    def code(cls, prefix: str) -> str:
        cls.n += 1
        return f"{prefix}{cls.n}"


def _json(client: TestClient, method: str, url: str, body: dict[str, Any], h: dict[str, str]) -> Any:
    """A JSON request sent as raw bytes: lone surrogates go as ``\\ud800`` escapes."""
    return client.request(
        method, url, content=json.dumps(body).encode(), headers={**h, "content-type": "application/json"}
    )


def _no_5xx(r: Any) -> Any:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    return r


def _message(r: Any) -> str:
    body = r.json()
    if "detail" in body:
        return " ".join(str(d.get("msg", "")) for d in body["detail"])
    return str(body["error"]["message"])


def assert_clean(stored: str, multiline: bool = False) -> None:
    assert unicodedata.is_normalized("NFC", stored), stored
    assert not CONTROL.search(stored.replace("\n", "").replace("\t", "") if multiline else stored), stored


# --- the routes ------------------------------------------------------------------------------

# Each route: (field policy, send(value) -> response, stored() -> the value now stored).
Send = Callable[[str], Any]


@dataclass
class Route:
    name: str
    field: Field
    send: Send
    stored: Callable[[Any], str | list[str] | None]  # from the accepted response
    json_body: bool = True


def api_routes(w: World) -> list[Route]:
    client, h = w.client, w.headers["admin@TW"]
    own, own_site = w.unit_id(OWN), w.site_id(OWN)
    tw_site = w.site_id("TW")
    unit_to_rename = w.new_unit(OWN)
    site_to_edit = w.new_site(OWN)
    user_to_edit = w.new_user()

    def db(model: Any, id_: int, column: str) -> str:
        with w.ctx.db.session() as s:
            return str(getattr(s.get(model, id_), column))

    def meeting(**over: Any) -> dict[str, Any]:
        body = {
            "title": "Giao ban",
            "starts_at": "2030-01-02T08:00:00+07:00",
            "ends_at": "2030-01-02T10:00:00+07:00",
            "owner_unit_id": w.unit_id("TW"),
            "host_site_id": tw_site,
            "invite": {"site_ids": [own_site]},
        }
        return {**body, **over}

    return [
        Route(
            "units.create name",
            Field(300),
            lambda v: _json(
                client,
                "POST",
                "/api/v1/units",
                {"code": Seq.code("HN"), "name": v, "kind": "district", "parent_id": own},
                h,
            ),
            lambda r: db(Unit, r.json()["id"], "name"),
        ),
        Route(
            "units.create code",
            Field(32),
            lambda v: _json(
                client,
                "POST",
                "/api/v1/units",
                {"code": v, "name": Seq.code("Huyện "), "kind": "district", "parent_id": own},
                h,
            ),
            lambda r: db(Unit, r.json()["id"], "code"),
        ),
        Route(
            "units.update name",
            Field(300),
            lambda v: _json(client, "PATCH", f"/api/v1/units/{unit_to_rename}", {"name": v}, h),
            lambda r: db(Unit, unit_to_rename, "name"),
        ),
        Route(
            "sites.create name",
            Field(300),
            lambda v: _json(
                client, "POST", "/api/v1/sites", {"code": Seq.code("S"), "unit_id": own, "name": v}, h
            ),
            lambda r: db(Site, r.json()["id"], "name"),
        ),
        Route(
            "sites.create location",
            Field(300, required=False),
            lambda v: _json(
                client,
                "POST",
                "/api/v1/sites",
                {"code": Seq.code("S"), "unit_id": own, "name": "Phòng họp", "location": v},
                h,
            ),
            lambda r: db(Site, r.json()["id"], "location"),
        ),
        Route(
            "sites.update contact_name",
            Field(200, required=False),
            lambda v: _json(client, "PATCH", f"/api/v1/sites/{site_to_edit}", {"contact_name": v}, h),
            lambda r: db(Site, site_to_edit, "contact_name"),
        ),
        Route(
            "users.create full_name",
            Field(200, required=False),
            lambda v: _json(
                client,
                "POST",
                "/api/v1/users",
                {"username": Seq.code("nguoi-"), "password": "Mat-khau-dai-1234", "full_name": v},
                h,
            ),
            lambda r: db(User, r.json()["id"], "full_name"),
        ),
        Route(
            "users.update phone",
            Field(50, required=False),
            lambda v: _json(client, "PATCH", f"/api/v1/users/{user_to_edit}", {"phone": v}, h),
            lambda r: db(User, user_to_edit, "phone"),
        ),
        Route(
            "roster.add full_name",
            Field(200),
            lambda v: _json(client, "POST", f"/api/v1/units/{own}/roster", {"full_name": v}, h),
            lambda r: db(RosterEntry, r.json()["id"], "full_name"),
        ),
        Route(
            "meetings.create title",
            Field(300),
            lambda v: _json(client, "POST", "/api/v1/meetings", meeting(title=v), h),
            lambda r: db(Meeting, r.json()["id"], "title"),
        ),
        Route(
            "meetings.create description",
            Field(5000, required=False, multiline=True),
            lambda v: _json(client, "POST", "/api/v1/meetings", meeting(description=v), h),
            lambda r: db(Meeting, r.json()["id"], "description"),
        ),
        Route(
            "meetings.create agenda",
            Field(300),
            lambda v: _json(client, "POST", "/api/v1/meetings", meeting(agenda=[{"title": v}]), h),
            lambda r: r.json()["agenda"][0]["title"],
        ),
    ]


def run(w: World, routes: list[Route], values: dict[str, str]) -> None:
    """Refused values first (the database must not change at all), then the accepted ones."""
    for route in routes:
        verdicts = {key: route.field.verdict(v) for key, v in values.items()}
        before = w.snapshot()
        for key, value in values.items():
            if verdicts[key] is None:
                r = _no_5xx(route.send(value))
                assert 400 <= r.status_code < 500, (route.name, key, r.status_code, r.text[:300])
                assert _message(r) if route.json_body else r.text, (route.name, key)
        assert changed_tables(before, w.snapshot()) == [], route.name
        for key, value in values.items():
            if verdicts[key] is not None:
                r = _no_5xx(route.send(value))
                assert r.status_code < 400, (route.name, key, r.status_code, r.text[:300])
                stored = route.stored(r)
                assert stored == verdicts[key], (route.name, key, stored)
                assert isinstance(stored, str)
                assert_clean(stored, route.field.multiline)


# --- exports ---------------------------------------------------------------------------------


def _cells_of(data: bytes, fmt: str) -> list[list[Any]]:
    """Every cell of an export, opened as a spreadsheet program or a script would."""
    if fmt == "xlsx":
        wb = load_workbook(io.BytesIO(data))  # raises on a broken file
        rows: list[list[Any]] = []
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for c in row:
                    assert c.data_type != "f", ("live formula", c.coordinate, c.value)
                rows.append([c.value for c in row])
        return rows
    text = data.decode("utf-8-sig")
    return [
        list(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    ]


def check_exports(w: World, meeting_id: int | None = None) -> dict[str, list[list[Any]]]:
    client, h = w.client, w.headers["admin@TW"]
    out: dict[str, list[list[Any]]] = {}
    for kind in ("units", "sites"):
        for fmt in ("tsv", "csv", "xlsx"):
            r = _no_5xx(client.get(f"/api/v1/{kind}/export", params={"format": fmt}, headers=h))
            assert r.status_code == 200, (kind, fmt, r.text[:300])
            cells = _cells_of(r.content, fmt)
            if fmt != "xlsx":
                for row in cells:
                    for cell in row:
                        assert not cell.startswith(FORMULA_START), (kind, fmt, cell)
            out[f"{kind}.{fmt}"] = cells
    if meeting_id is not None:
        r = _no_5xx(
            client.get(f"/api/v1/meetings/{meeting_id}/attendance.xlsx", headers=w.headers["chair@TW"])
        )
        assert r.status_code == 200, r.text[:300]
        out["attendance.xlsx"] = _cells_of(r.content, "xlsx")
    return out


# --- the tests -------------------------------------------------------------------------------


def test_hostile_text_through_the_api_then_every_export(world: World) -> None:
    run(world, api_routes(world), HOSTILE)
    exports = check_exports(world)
    flat = {str(c) for cells in exports.values() for row in cells for c in row if c is not None}
    # The accepted formula-looking names are in every export, as text.
    for fmt in ("tsv", "csv"):
        rows = exports[f"units.{fmt}"]
        assert ["'" + HOSTILE["hyperlink"]] in [row[1:2] for row in rows]
    assert HOSTILE["hyperlink"] in flat and HOSTILE["dde"] in flat


def test_lone_surrogates_are_refused_everywhere(world: World) -> None:
    run(world, api_routes(world), SURROGATES)


def test_search_parameters_follow_the_policy(world: World) -> None:
    client, h = world.client, world.headers["admin@TW"]
    for url in (
        "/api/v1/units",
        "/api/v1/sites",
        "/api/v1/users",
        f"/api/v1/units/{world.unit_id(OWN)}/roster",
    ):
        for key, value in {**HOSTILE, **SURROGATES}.items():
            r = _no_5xx(client.get(url, params={"q": value}, headers=h)) if key not in SURROGATES else None
            if r is None:
                continue  # a lone surrogate cannot be percent-encoded in a URL at all
            ok = Field(100, required=False).verdict(value) is not None
            assert (r.status_code == 200) == ok, (url, key, r.status_code, r.text[:200])


def _csrf(client: TestClient, path: str = "/account") -> str:
    html = client.get(path, headers={"accept": "text/html"}).text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match
    return match.group(1)


def _sign_in(client: TestClient, username: str) -> str:
    from tests.web.test_pages import sign_in

    return sign_in(client, username)


def test_hostile_text_through_the_page_forms(world: World) -> None:
    client = world.client
    csrf = _sign_in(client, "admin")
    html = {"accept": "text/html"}
    site = world.new_site(OWN)
    tw = world.unit_id("TW")
    tw_site = world.site_id("TW")

    def site_form(field: str) -> Send:
        def send(v: str) -> Any:
            form = {"csrf": csrf, "name": "Phòng họp", "status": "active", field: v}
            return client.post(f"/sites/{site}", data=form, headers=html, follow_redirects=False)

        return send

    def site_value(field: str) -> Callable[[Any], str]:
        def stored(_r: Any) -> str:
            with world.ctx.db.session() as s:
                return str(getattr(s.get(Site, site), field))

        return stored

    def user_form(v: str) -> Any:
        form = {"csrf": csrf, "username": Seq.code("trang-"), "password": "Mat-khau-dai-1234", "full_name": v}
        return client.post("/users", data=form, headers=html, follow_redirects=False)

    def user_value(r: Any) -> str:
        user_id = int(r.headers["location"].split("/")[2].split("?")[0])
        with world.ctx.db.session() as s:
            return str(s.get(User, user_id).full_name)  # type: ignore[union-attr]

    def meeting_form(field: str) -> Send:
        def send(v: str) -> Any:
            form = {
                "csrf": csrf,
                "title": "Giao ban",
                "day": "2030-01-03",
                "start": "08:00",
                "end": "10:00",
                "owner": str(tw),
                "host": str(tw_site),
                field: v,
            }
            return client.post("/meetings/new", data=form, headers=html, follow_redirects=False)

        return send

    def meeting_value(field: str) -> Callable[[Any], str]:
        def stored(r: Any) -> str:
            meeting_id = int(r.headers["location"].split("/")[2].split("?")[0])
            with world.ctx.db.session() as s:
                return str(getattr(s.get(Meeting, meeting_id), field))

        return stored

    routes = [
        Route("page site name", Field(300), site_form("name"), site_value("name"), json_body=False),
        Route(
            "page site location",
            Field(300, required=False),
            site_form("location"),
            site_value("location"),
            json_body=False,
        ),
        Route("page user full_name", Field(200, required=False), user_form, user_value, json_body=False),
        Route(
            "page meeting title", Field(300), meeting_form("title"), meeting_value("title"), json_body=False
        ),
        Route(
            "page meeting description",
            Field(5000, required=False, multiline=True),
            meeting_form("description"),
            meeting_value("description"),
            json_body=False,
        ),
    ]
    run(world, routes, HOSTILE)
    # A refused field is named on the form, with the policy's reason.
    r = site_form("name")("Tỉnh\x01ủy")
    assert r.status_code == 400 and "Tên điểm cầu: có ký tự điều khiển (U+0001)" in r.text
    r = meeting_form("title")("\u200b")
    assert r.status_code == 400 and "không được để trống" in r.text
    check_exports(world)


def _xlsx(rows: list[list[Any]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for row in rows:
        ws.append(row)
    for cells in ws.iter_rows():
        for c in cells:
            if isinstance(c.value, str):
                c.data_type = "s"  # text as typed ("=..." too), not a formula
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)  # "\r\n" rows: a cell holding "\r" is quoted
    return buf.getvalue().encode("utf-8", "surrogatepass")


def test_hostile_text_through_imports(world: World) -> None:
    """A bad cell refuses the whole file (row and column named, nothing written); good files store
    the cleaned text; every export opens."""
    client, h = world.client, world.headers["admin@TW"]

    def upload(kind: str, fmt: str, data: bytes) -> Any:
        return client.post(f"/api/v1/{kind}/import", files={"file": (f"f.{fmt}", data)}, headers=h)

    for fmt in ("csv", "xlsx"):
        for key, value in HOSTILE.items():
            unit_code, site_code = Seq.code("IU"), Seq.code("IS")
            unit_rows = [["code", "name", "kind", "parent"], [unit_code, value, "district", OWN]]
            site_rows = [["code", "unit", "name", "location"], [site_code, OWN, "Phòng họp", value]]
            for kind, rows, field, column in (
                ("units", unit_rows, Field(300), "name"),
                ("sites", site_rows, Field(300, required=False), "location"),
            ):
                try:
                    data = _xlsx(rows) if fmt == "xlsx" else _csv(rows)
                except IllegalCharacterError:  # no spreadsheet program writes such a cell either
                    assert fmt == "xlsx"
                    continue
                expected = field.verdict(value)
                before = world.snapshot() if expected is None else None
                r = _no_5xx(upload(kind, fmt, data))
                if expected is None:
                    assert r.status_code == 422, (kind, fmt, key, r.text[:300])
                    error = r.json()["error"]
                    assert error["code"] == "import_rejected"
                    if fmt == "xlsx" and error["details"][0]["code"] == "unreadable_file":
                        # openpyxl wrote XML that no reader parses (U+FFFF): refused as a whole.
                        assert key == "noncharacter" and changed_tables(before, world.snapshot()) == []
                        continue
                    assert error["details"][0]["row"] == 2, error
                    if key != "nul":  # a NUL makes the whole text file unreadable (at its line)
                        assert error["details"][0].get("column") == column, (key, fmt, error)
                        assert f"Cột “{column}”" in error["details"][0]["message"], error
                    assert before is not None and changed_tables(before, world.snapshot()) == []
                    continue
                assert r.status_code == 200, (kind, fmt, key, r.text[:300])
                with world.ctx.db.session() as s:
                    if kind == "units":
                        stored = s.execute(select(Unit.name).where(Unit.code == unit_code)).scalar_one()
                    else:
                        stored = s.execute(select(Site.location).where(Site.code == site_code)).scalar_one()
                assert stored == expected, (kind, fmt, key, stored)
                assert_clean(stored)
    check_exports(world)


def test_exports_read_back_by_the_imports(world: World) -> None:
    """What an export writes (formula-looking names neutralised) an import reads back unchanged."""
    client, h = world.client, world.headers["admin@TW"]
    own = world.unit_id(OWN)
    names = [HOSTILE[k] for k in ("hyperlink", "dde", "at-sum", "minus")] + ["'=quoted", "Bình thường"]
    made = []
    for name in names:
        r = _json(
            client,
            "POST",
            "/api/v1/sites",
            {"code": Seq.code("RT"), "unit_id": own, "name": name, "location": name},
            h,
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    wanted = {m["code"]: (m["name"], m["location"]) for m in made}
    for fmt in ("tsv", "csv", "xlsx"):
        r = client.get("/api/v1/sites/export", params={"format": fmt, "under": own}, headers=h)
        assert r.status_code == 200
        # The same file with new codes, edited as a person would: only the code column changes.
        renamed = {code: Seq.code("RB") for code in wanted}
        if fmt == "xlsx":
            wb = load_workbook(io.BytesIO(r.content))
            ws = wb.worksheets[0]
            for row in ws.iter_rows(min_row=2):
                if row[0].value in renamed:
                    row[0].value = renamed[row[0].value]
                else:
                    for c in row:
                        c.value = None
            out = io.BytesIO()
            wb.save(out)
            data = out.getvalue()
        else:
            delimiter = "\t" if fmt == "tsv" else ","
            rows = list(
                csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=delimiter)
            )
            rows = [rows[0]] + [[renamed[row[0]], *row[1:]] for row in rows[1:] if row[0] in renamed]
            buf = io.StringIO()
            csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
            data = buf.getvalue().encode()
        imported = client.post("/api/v1/sites/import", files={"file": (f"back.{fmt}", data)}, headers=h)
        assert imported.status_code == 200, (fmt, imported.text[:500])
        with world.ctx.db.session() as s:
            for code, new in renamed.items():
                site = s.execute(select(Site).where(Site.code == new)).scalar_one()
                assert (site.name, site.location) == wanted[code], (fmt, code)


def test_duplicate_import_columns_are_refused(world: World) -> None:
    client, h = world.client, world.headers["admin@TW"]
    before = world.snapshot()
    for header in (["code", "name", "Tên", "kind", "parent"], ["Mã", "name", "kind", "code", "parent"]):
        data = _csv([header, ["DUP1", "A", "B", "district", OWN]])
        r = _no_5xx(client.post("/api/v1/units/import", files={"file": ("dup.csv", data)}, headers=h))
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["details"][0]["code"] == "duplicate_column" and error["details"][0]["row"] == 1
        assert "chỉ được có một cột" in error["details"][0]["message"]
    assert changed_tables(before, world.snapshot()) == []


# --- the live meeting: chat and check-in names, then the attendance sheet ----------------------


@pytest.fixture
def live_meeting(world: World) -> Iterator[int]:
    h = world.headers["admin@TW"]
    body = {
        "title": HOSTILE["hyperlink"],
        "starts_at": "2030-01-02T08:00:00+07:00",
        "ends_at": "2030-01-02T10:00:00+07:00",
        "owner_unit_id": world.unit_id("TW"),
        "host_site_id": world.site_id("TW"),
        "chair_user_id": world.user_id("chutri"),
        "invite": {"site_ids": [world.site_id(OWN)]},
    }
    r = _json(world.client, "POST", "/api/v1/meetings", body, h)
    assert r.status_code == 201, r.text
    mid = int(r.json()["id"])
    r = _json(world.client, "POST", f"/api/v1/meetings/{mid}/status", {"status": "open"}, h)
    assert r.status_code == 200, r.text
    yield mid


def test_hostile_text_through_the_websocket_then_attendance(world: World, live_meeting: int) -> None:
    client = world.client
    headers = login(client, "dc-01")
    chat, names = Field(2000, multiline=True), Field(200, required=False)
    with client.websocket_connect(f"/ws/meetings/{live_meeting}", headers=headers) as ws:
        ws.send_text(
            json.dumps({"type": "hello", "id": 1, "protocol": 1, "as": "site", "site_id": world.site_id(OWN)})
        )
        assert json.loads(ws.receive_text())["type"] == "welcome"
        next_id = 1

        def send(msg: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            """Send raw JSON (surrogates escaped); the reply and the deltas before it."""
            nonlocal next_id
            next_id += 1
            ws.send_text(json.dumps({**msg, "id": next_id}))
            deltas = []
            while True:
                reply = json.loads(ws.receive_text())
                if reply["type"] == "delta":
                    deltas.append(reply)
                elif reply.get("id") == next_id:
                    return reply, deltas

        for key, value in {**HOSTILE, **SURROGATES}.items():
            expected = chat.verdict(value)
            reply, deltas = send({"type": "chat.send", "text": value, "to": "all"})
            if expected is None:
                assert reply["type"] == "error" and reply["code"] == "invalid" and reply["message"], (
                    key,
                    reply,
                )
                continue
            assert reply["type"] == "ack", (key, reply)
            while not deltas:
                deltas.append(json.loads(ws.receive_text()))
            texts = [c["value"]["text"] for d in deltas for c in d["changes"] if c["path"] == "chat.append"]
            assert texts == [expected], key
        accepted = []
        for key, value in {**HOSTILE, **SURROGATES}.items():
            expected = names.verdict(value)
            reply, _ = send({"type": "checkin", "delegates": 2, "names": [value, "Nguyễn Văn A"]})
            if expected is None:
                assert reply["type"] == "error" and reply["code"] == "invalid", (key, reply)
                continue
            assert reply["type"] == "ack", (key, reply)
            accepted.append(expected)
        # The last accepted check-in named a formula-looking delegate: it must stay text.
        reply, _ = send({"type": "checkin", "delegates": 3, "names": [HOSTILE["dde"], HOSTILE["hyperlink"]]})
        assert reply["type"] == "ack"
    exports = check_exports(world, live_meeting)
    sheet = exports["attendance.xlsx"]
    assert sheet[0][0] == f"Điểm danh hội nghị: {HOSTILE['hyperlink']}"
    row = next(r for r in sheet if r[1] == OWN)
    assert row[7] == f"{HOSTILE['dde']}, {HOSTILE['hyperlink']}"


def test_hostile_text_through_the_cli(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``giaoban user create --full-name``: the command line is one more way in."""
    from giaoban import cli

    monkeypatch.setattr(cli, "_ctx", lambda: world.ctx)
    field = Field(200, required=False)
    for key, value in HOSTILE.items():
        username = Seq.code("cli-")
        before = world.snapshot()
        code = cli.main(["user", "create", username, f"--full-name={value}", "--password=Mat-khau-dai-1234"])
        out = capsys.readouterr()
        expected = field.verdict(value)
        if expected is None:
            assert code == 2 and out.err.startswith("Lỗi: Họ tên: "), (key, out)
            assert changed_tables(before, world.snapshot()) == [], key
            continue
        assert code == 0, (key, out)
        with world.ctx.db.session() as s:
            stored = s.execute(select(User.full_name).where(User.username == username)).scalar_one()
        assert stored == expected, key


def test_text_check_finds_what_an_older_version_stored(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``giaoban text check``: a database written before the policy may hold bad names (written
    here behind the policy's back); the check lists each, exports still open."""
    from giaoban import cli

    monkeypatch.setattr(cli, "_ctx", lambda: world.ctx)
    assert cli.main(["text", "check"]) == 0
    assert "đều đúng" in capsys.readouterr().out
    site, unit = world.new_site(OWN), world.new_unit(OWN)
    with world.ctx.db.session() as s:
        s.get(Site, site).name = "Phòng\x01họp"  # type: ignore[union-attr]
        s.get(Unit, unit).name = "\u200b"  # type: ignore[union-attr]
    assert cli.main(["text", "check"]) == 1
    err = capsys.readouterr().err
    assert f"sites.name (id {site}): Có ký tự điều khiển (U+0001)" in err
    assert f"units.name (id {unit}): chưa ở dạng chuẩn" in err
    check_exports(world)  # the old bad name does not break an export (U+FFFD in the XLSX)
