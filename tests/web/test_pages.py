"""The server-rendered pages, on SQLite and PostgreSQL: login, CSRF, language, scopes, user admin, TOTP."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pyotp
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from starlette.requests import Request

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.org import accounts, tree
from giaoban.org.access import ROLE_LABELS_VI
from giaoban.org.models import AuthSession, LoginAttempt, Site, User
from giaoban.org.units import KIND_LABELS_VI
from giaoban.web import i18n, pagekit, pages
from tests.conftest import DEMO_PASSWORD, Demo

HTML = {"Accept": "text/html"}
WEB_DIR = Path(pages.__file__).parent


# --- helpers ---------------------------------------------------------------------------------


def field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no field {name}"
    return match.group(1)


def session_csrf(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "page carries no session CSRF token"
    return match.group(1)


def post_login(
    client: TestClient, username: str, password: str = DEMO_PASSWORD, next_url: str = "/"
) -> Response:
    form = client.get("/login", headers=HTML)
    data = {"username": username, "password": password, "csrf": field(form.text, "csrf"), "next": next_url}
    return client.post("/login", data=data, headers=HTML, follow_redirects=False)


def sign_in(client: TestClient, username: str, password: str = DEMO_PASSWORD) -> str:
    """Log in through the form; return the session's CSRF token."""
    r = post_login(client, username, password)
    assert r.status_code == 303, r.text
    return csrf_of(client)


def csrf_of(client: TestClient, path: str = "/account") -> str:
    r = client.get(path, headers=HTML, follow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.headers.get("location"))
    return session_csrf(r.text)


def count(demo: Demo, model: type) -> int:
    with demo.ctx.db.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def user_by_name(demo: Demo, username: str) -> User:
    with demo.ctx.db.session() as session:
        user = accounts.get_user_by_name(session, username)
        assert user is not None
        return user


def site_id(demo: Demo, code: str) -> int:
    with demo.ctx.db.session() as session:
        return int(session.execute(select(Site.id).where(Site.code == code)).scalar_one())


def text_of(html: str) -> str:
    """Visible-ish text: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- login -----------------------------------------------------------------------------------


def test_login_form_sets_session_cookie(client: TestClient, demo: Demo) -> None:
    form = client.get("/login", headers=HTML)
    assert form.status_code == 200
    assert "Đăng nhập" in form.text and 'lang="vi"' in form.text
    assert pagekit.LOGIN_CSRF_COOKIE in form.cookies
    r = client.post(
        "/login",
        data={"username": "admin", "password": DEMO_PASSWORD, "csrf": field(form.text, "csrf"), "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("gb_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    home = client.get("/", headers=HTML)
    assert home.status_code == 200
    assert "Quản trị hệ thống" in home.text and "Cơ cấu tổ chức" in home.text
    assert "Người dùng" in home.text  # the admin's navigation


def test_session_cookie_is_secure_when_configured(client: TestClient, demo: Demo) -> None:
    demo.ctx.settings.cookie_secure = True
    r = post_login(TestClient(client.app, base_url="https://testserver"), "admin")
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("gb_session="))
    assert "Secure" in cookie


def test_login_redirects_only_to_local_pages(client: TestClient, demo: Demo) -> None:
    assert post_login(client, "chutri", next_url="/sites?q=ha").headers["location"] == "/sites?q=ha"
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        assert pagekit.safe_next(bad) == "/"
    fresh = TestClient(client.app)
    assert post_login(fresh, "chutri", next_url="//evil.example/").headers["location"] == "/"


def test_login_errors_are_clear(client: TestClient, demo: Demo) -> None:
    r = post_login(client, "admin", "wrong-password-1")
    assert r.status_code == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in r.text
    assert 'value="admin"' in r.text  # the user name is kept in the form
    assert "gb_session" not in r.cookies

    with demo.ctx.db.session() as session:
        accounts.set_locked(
            Tx(session, demo.ctx.audit, Actor.system("test")), user_by_name(demo, "thuky").id, True
        )
    r = post_login(client, "thuky")
    assert r.status_code == 401
    assert "Tài khoản đang bị khóa" in r.text

    r = post_login(client, "", "")
    assert r.status_code == 400 and "Vui lòng nhập tên đăng nhập và mật khẩu." in r.text


def test_login_throttling_shows_429(client: TestClient, demo: Demo) -> None:
    for _ in range(demo.ctx.settings.login_max_failures):
        assert post_login(client, "dieuhanh", "not-the-password").status_code == 401
    r = post_login(client, "dieuhanh")  # even the right password waits now
    assert r.status_code == 429
    assert "Đăng nhập sai quá nhiều lần" in r.text


@pytest.mark.parametrize("token", ["", "forged", "x.y"])
def test_login_without_valid_csrf_is_refused(client: TestClient, demo: Demo, token: str) -> None:
    client.get("/login", headers=HTML)  # the pre-session cookie exists; the form field is wrong
    sessions = count(demo, AuthSession)
    r = client.post(
        "/login",
        data={"username": "admin", "password": DEMO_PASSWORD, "csrf": token},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert "gb_session" not in r.cookies
    assert count(demo, AuthSession) == sessions


def test_login_csrf_cookie_must_be_signed(client: TestClient, demo: Demo) -> None:
    """A cookie planted by someone else (no valid signature) does not pass, even if the form matches it."""
    client.cookies.set(pagekit.LOGIN_CSRF_COOKIE, "planted.0123456789abcdef0123456789abcdef")
    r = client.post(
        "/login",
        data={
            "username": "admin",
            "password": DEMO_PASSWORD,
            "csrf": "planted.0123456789abcdef0123456789abcdef",
        },
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_logout_needs_csrf_and_ends_the_session(client: TestClient, demo: Demo) -> None:
    csrf = sign_in(client, "chutri")
    r = client.post("/logout", data={"csrf": "wrong"}, headers=HTML, follow_redirects=False)
    assert r.status_code == 403
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 200  # still signed in
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


# --- pages need a login ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/org", "/sites", "/sites/1", "/users", "/users/new", "/users/1", "/account", "/account/totp"],
)
def test_pages_require_login(client: TestClient, demo: Demo, path: str) -> None:
    r = client.get(path, headers=HTML, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=")
    assert r.headers["location"].endswith(path.replace("/", "%2F"))


def test_pages_send_security_headers(client: TestClient, demo: Demo) -> None:
    r = client.get("/login", headers=HTML)
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


def test_error_pages_are_friendly_and_escaped(client: TestClient, demo: Demo) -> None:
    r = client.get("/khong-co-trang-nay", headers=HTML)
    assert r.status_code == 404
    assert "Không tìm thấy trang" in r.text and "Về trang chủ" in r.text
    client.cookies.set(i18n.LANG_COOKIE, "en")
    r = client.get("/khong-co-trang-nay", headers=HTML)
    assert "Page not found" in r.text

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "headers": [],
        "query_string": b"",
        "app": client.app,
    }
    html = pagekit.render_error(Request(scope), 400, "<script>alert(1)</script>")
    assert b"<script>alert(1)</script>" not in html.body


# --- language --------------------------------------------------------------------------------


def test_english_switch(client: TestClient, demo: Demo) -> None:
    assert "Đăng nhập" in client.get("/login", headers=HTML).text
    r = client.get("/lang/en", params={"next": "/login"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert r.cookies[i18n.LANG_COOKIE] == "en"
    page = client.get("/login", headers=HTML).text
    assert 'lang="en"' in page and "Log in" in page and "User name" in page
    assert "Tiếng Việt" in page  # the way back
    assert "Wrong user name or password." in post_login(client, "admin", "not-the-password").text
    sign_in(client, "dc-01")
    home = text_of(client.get("/", headers=HTML).text)
    assert "Site technician" in home and "Your site" in home and "Organization" in home
    r = client.get("/lang/vi", params={"next": "https://evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/"
    assert "Trang chủ" in client.get("/", headers=HTML).text
    assert client.get("/lang/xx", headers=HTML).status_code == 404


def test_default_locale_comes_from_settings(client: TestClient, demo: Demo) -> None:
    demo.ctx.settings.default_locale = "en"
    assert "Log in" in client.get("/login", headers=HTML).text


def test_english_catalog_covers_every_page_string() -> None:
    """Every string the pages show has an English translation, with the same placeholders, and the
    catalog keeps no entry that nothing shows any more."""
    path = i18n.catalog_path("en")
    with path.open("rb") as po:
        catalog = read_po(po, locale="en")
    # The same mapping as giaoban/web/locale/babel.cfg.
    method_map = [
        ("pages.py", "python"),
        ("pagekit.py", "python"),
        ("pages_org.py", "python"),
        ("pages_account.py", "python"),
        ("i18n.py", "python"),
        ("pages_meetings.py", "python"),
        ("templates/**.html", "jinja2"),
    ]
    extracted = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(str(WEB_DIR), method_map)
    }
    labels = {*ROLE_LABELS_VI.values(), *KIND_LABELS_VI.values()}
    assert labels <= extracted, f"add to i18n.FOREIGN_MESSAGES: {sorted(labels - extracted)}"
    missing = sorted(
        m for m in extracted if m and (m not in catalog or not catalog[m].string or catalog[m].fuzzy)
    )
    assert not missing, f"untranslated: {missing}"
    problems = [(m.id, errors) for m, errors in catalog.check() if errors]
    assert not problems
    stale = sorted(
        key for m in catalog if m.id and (key := m.id if isinstance(m.id, str) else m.id[0]) not in extracted
    )
    assert not stale, f"catalog entries no page uses any more (remove them): {stale}"


def test_page_sources_are_nfc() -> None:
    """Vietnamese text is stored NFC: templates, scripts and catalogs too."""
    folders = [WEB_DIR / "templates", WEB_DIR / "static", WEB_DIR / "locale"]
    files = [*Path(pages.__file__).parent.glob("page*.py"), Path(i18n.__file__)]
    files += [
        p for folder in folders for p in folder.rglob("*") if p.suffix in {".html", ".js", ".css", ".po"}
    ]
    assert len(files) > 10
    for path in files:
        assert unicodedata.is_normalized("NFC", path.read_text(encoding="utf-8")), path


# --- org tree page and the API behind it -----------------------------------------------------


def test_org_page_and_cookie_authenticated_api(client: TestClient, demo: Demo) -> None:
    sign_in(client, "admin")
    page = client.get("/org", params={"as_of": "2020-05-01", "unit": "7"}, headers=HTML)
    assert page.status_code == 200
    assert '"asOf": "2020-05-01"' in page.text and '"unit": 7' in page.text
    assert "Xem cơ cấu tại ngày" in page.text and "/static/js/org.js" in page.text
    # The tree module reads the API with the session cookie alone.
    roots = client.get("/api/v1/units", params={"roots": "true", "as_of": "2020-05-01"}).json()
    assert [u["code"] for u in roots["items"]] == ["TW"]
    children = client.get("/api/v1/units", params={"parent": roots["items"][0]["id"]}).json()
    assert "Thành ủy Hà Nội" in [u["name"] for u in children["items"]]
    nfd = unicodedata.normalize("NFD", "Hà Nội")
    for q in ("ha noi", "Hà Nội", "HA NOI", nfd):
        found = client.get("/api/v1/units", params={"q": q}).json()["items"]
        assert [u["code"] for u in found] == ["01"], q
    # Before the demo's effective date there was no tree.
    assert client.get("/api/v1/units", params={"roots": "true", "as_of": "2016-12-31"}).json()["total"] == 0


def test_unsafe_api_calls_from_the_page_need_the_csrf_header(client: TestClient, demo: Demo) -> None:
    csrf = sign_in(client, "dc-01")
    own = site_id(demo, "01")
    r = client.patch(f"/api/v1/sites/{own}", json={"tech_phone": "0912 345 678"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"
    r = client.patch(
        f"/api/v1/sites/{own}", json={"tech_phone": "0912 345 678"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 200 and r.json()["tech_phone"] == "0912 345 678"


# --- sites -----------------------------------------------------------------------------------


def test_site_operator_sees_only_their_site(client: TestClient, demo: Demo) -> None:
    sign_in(client, "dc-02")
    page = client.get("/sites", headers=HTML)
    assert page.status_code == 200
    rows = re.findall(r'<a href="/sites/(\d+)">', page.text)
    assert rows == [str(site_id(demo, "02"))]
    assert "Điểm cầu Tỉnh ủy Hà Giang" in page.text and "Thành ủy Hà Nội" not in page.text
    assert "1 điểm cầu" in text_of(page.text)
    assert client.get(f"/sites/{site_id(demo, '01')}", headers=HTML).status_code == 404
    assert client.get("/users", headers=HTML).status_code == 403
    assert 'href="/users"' not in client.get("/", headers=HTML).text


def test_sites_list_search_filter_and_pages(client: TestClient, demo: Demo) -> None:
    sign_in(client, "dieuhanh")
    first = client.get("/sites", headers=HTML)
    assert "71 điểm cầu" in text_of(first.text)
    assert len(re.findall(r'<a href="/sites/\d+">', first.text)) == pagekit.PAGE_SIZE
    assert "Trang 1 / 4" in first.text
    last = client.get("/sites", params={"page": "4"}, headers=HTML)
    assert len(re.findall(r'<a href="/sites/\d+">', last.text)) == 71 - 3 * pagekit.PAGE_SIZE
    found = client.get("/sites", params={"q": "HA NOI"}, headers=HTML)
    assert "Điểm cầu Thành ủy Hà Nội" in found.text and "1 điểm cầu" in text_of(found.text)
    none = client.get("/sites", params={"status": "maintenance"}, headers=HTML)
    assert "Không có điểm cầu nào phù hợp." in none.text
    odd = client.get("/sites", params={"page": "abc", "status": "bogus", "q": "x" * 500}, headers=HTML)
    assert odd.status_code == 200


def test_site_operator_updates_own_contacts_only(client: TestClient, demo: Demo) -> None:
    csrf = sign_in(client, "dc-01")
    own = site_id(demo, "01")
    form = client.get(f"/sites/{own}", headers=HTML).text
    assert 'name="tech_name"' in form and 'name="name"' not in form and 'name="status"' not in form
    r = client.post(f"/sites/{own}", data={"csrf": "bad", "tech_name": "Trần Văn B"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        f"/sites/{own}",
        data={"csrf": csrf, "tech_name": "Trần Văn B", "tech_phone": "024 3825 0000"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/sites/{own}?done=site"
    page = client.get(r.headers["location"], headers=HTML).text
    assert "Trần Văn B" in page and "Đã lưu thông tin điểm cầu." in page
    # The form as the page sends it, the phone emptied: the phone is cleared, the rest kept.
    offered = re.search(r'name="fields" value="([^"]*)"', page)
    assert offered is not None and "tech_phone" in offered.group(1).split(",")
    r = client.post(
        f"/sites/{own}",
        data={"csrf": csrf, "fields": offered.group(1), "tech_name": "Trần Văn B", "tech_phone": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with demo.ctx.db.session() as session:
        kept = session.execute(select(Site.tech_name, Site.tech_phone).where(Site.id == own)).one()
    assert tuple(kept) == ("Trần Văn B", "")
    r = client.post(f"/sites/{own}", data={"csrf": csrf, "name": "Tên khác"}, headers=HTML)
    assert r.status_code in (400, 403) and "name" in r.text  # a crafted form: the field is named
    with demo.ctx.db.session() as session:
        name = session.execute(select(Site.name).where(Site.id == own)).scalar_one()
    assert name == "Điểm cầu Thành ủy Hà Nội"
    other = site_id(demo, "02")
    r = client.post(f"/sites/{other}", data={"csrf": csrf, "tech_name": "X"}, follow_redirects=False)
    assert r.status_code == 404


# --- user administration ---------------------------------------------------------------------


def test_admin_user_management_flow(client: TestClient, demo: Demo) -> None:
    csrf = sign_in(client, "admin")
    assert "dc-01" in client.get("/users", params={"q": "dc-0"}, headers=HTML).text
    assert client.get("/users/new", headers=HTML).status_code == 200

    r = client.post(
        "/users",
        data={
            "csrf": csrf,
            "username": "ktv-moi",
            "full_name": "Nguyễn Thị Hoa",
            "password": "Mat-khau-ban-dau-1",
            "role": "site_operator",
            "unit_code": "02",
            "site_code": "02",
            "must_change": "1",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    user_page = r.headers["location"]
    assert re.fullmatch(r"/users/\d+\?done=created", user_page)
    user_id = int(user_page.split("/")[2].split("?")[0])
    page = client.get(user_page, headers=HTML).text
    assert "Đã tạo người dùng." in page and "Nguyễn Thị Hoa" in page
    assert "Kỹ thuật viên điểm cầu · Tỉnh ủy Hà Giang (02)" in text_of(page)

    # Replace the role: drop the site operator role, add a chair role at the centre.
    r = client.post(
        f"/users/{user_id}/roles",
        data={"csrf": csrf, "role": "chair", "unit_code": "TW"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    roles = {(x.role, x.unit.code) for x in user_by_name(demo, "ktv-moi").roles}
    assert roles == {("chair", "TW")}

    # Details.
    r = client.post(
        f"/users/{user_id}/details",
        data={"csrf": csrf, "full_name": "Nguyễn Thị Hoa", "email": "hoa@example.vn", "phone": "0900"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and user_by_name(demo, "ktv-moi").email == "hoa@example.vn"

    # Lock: the user cannot log in; unlock: they can.
    r = client.post(f"/users/{user_id}/lock", data={"csrf": csrf, "locked": "1", "reason": "Nghỉ phép"})
    assert r.status_code == 200 and "Đã khóa tài khoản." in r.text
    other = TestClient(client.app)
    assert post_login(other, "ktv-moi", "Mat-khau-ban-dau-1").status_code == 401
    client.post(f"/users/{user_id}/lock", data={"csrf": csrf, "locked": "0"})
    assert not user_by_name(demo, "ktv-moi").is_locked

    # Reset the password; the user must change it at the next login.
    r = client.post(
        f"/users/{user_id}/password",
        data={"csrf": csrf, "new_password": "Mot-mat-khau-moi-2", "must_change": "1"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=reset")
    r = post_login(other, "ktv-moi", "Mot-mat-khau-moi-2")
    assert r.headers["location"] == "/account?must=1"
    assert other.get("/sites", headers=HTML, follow_redirects=False).headers["location"] == "/account?must=1"
    own_csrf = csrf_of(other)
    r = other.post(
        "/account/password",
        data={
            "csrf": own_csrf,
            "current_password": "Mot-mat-khau-moi-2",
            "new_password": "Mat-khau-cua-toi-3",
            "confirm_password": "Mat-khau-cua-toi-3",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/account?done=password"
    assert other.get("/sites", headers=HTML, follow_redirects=False).status_code == 200


def test_user_admin_refusals_are_shown_and_change_nothing(client: TestClient, demo: Demo) -> None:
    csrf = sign_in(client, "admin")
    users = count(demo, User)
    base = {"csrf": csrf, "password": "Mat-khau-ban-dau-1"}
    r = client.post("/users", data={**base, "username": "dc-01"})
    assert r.status_code == 409 and "đã tồn tại" in r.text
    r = client.post("/users", data={**base, "username": "moi-1", "password": "ngan"})
    assert r.status_code == 400 and "Mật khẩu phải có ít nhất 10 ký tự." in r.text
    r = client.post("/users", data={**base, "username": "moi-2", "role": "chair", "unit_code": "ZZ"})
    assert r.status_code == 400 and "Không tìm thấy đơn vị có mã “ZZ”" in r.text
    assert 'value="moi-2"' in r.text  # what was typed stays in the form
    r = client.post("/users", data={**base, "username": "moi-3", "csrf": "forged"})
    assert r.status_code == 403
    assert count(demo, User) == users

    admin_id = user_by_name(demo, "admin").id
    r = client.post(f"/users/{admin_id}/lock", data={"csrf": csrf, "locked": "1"})
    assert r.status_code == 400 and "Không thể tự khóa tài khoản của chính mình." in r.text
    assert not user_by_name(demo, "admin").is_locked

    target = user_by_name(demo, "dc-04").id
    r = client.post(f"/users/{target}/lock", data={"csrf": "", "locked": "1"})
    assert r.status_code == 403 and not user_by_name(demo, "dc-04").is_locked
    assert client.get("/users/999999", headers=HTML).status_code == 404


def test_scoped_admin_only_manages_their_subtree(client: TestClient, demo: Demo) -> None:
    """An admin of Hà Nội's subtree sees central users read-only and cannot grant roles elsewhere."""
    with demo.ctx.db.session() as session:
        accounts.create_user(
            Tx(session, demo.ctx.audit, Actor.system("test")),
            username="qt-hanoi",
            password=DEMO_PASSWORD,
            roles=[accounts.RoleSpec(role="admin", unit_id=demo.unit_id("01"))],
            check_strength=False,
        )
    csrf = sign_in(client, "qt-hanoi")
    listed = client.get("/users", headers=HTML).text
    assert "dc-01" in listed and "dc-02" not in listed and ">admin<" not in listed
    assert client.get(f"/users/{user_by_name(demo, 'admin').id}", headers=HTML).status_code == 404
    r = client.post(
        "/users",
        data={
            "csrf": csrf,
            "username": "moi-4",
            "password": "Mat-khau-ban-dau-1",
            "role": "chair",
            "unit_code": "TW",
        },
    )
    assert r.status_code == 400 and "Không tìm thấy đơn vị có mã “TW”" in r.text


def test_org_staff_cannot_open_user_admin(client: TestClient, demo: Demo) -> None:
    sign_in(client, "tochuc-79")
    assert client.get("/users", headers=HTML).status_code == 403
    assert client.get("/users/new", headers=HTML).status_code == 403
    assert client.get("/org", headers=HTML).status_code == 200


# --- account: password and TOTP --------------------------------------------------------------


def test_change_password_errors(client: TestClient, demo: Demo) -> None:
    csrf = sign_in(client, "thuky")
    data = {"csrf": csrf, "current_password": DEMO_PASSWORD, "new_password": "Mat-khau-moi-99"}
    r = client.post("/account/password", data={**data, "confirm_password": "khac"})
    assert r.status_code == 400 and "không giống nhau" in r.text
    r = client.post(
        "/account/password",
        data={**data, "current_password": "sai", "confirm_password": data["new_password"]},
    )
    assert r.status_code in (400, 403) and "Mật khẩu hiện tại không đúng." in r.text
    r = client.post("/account/password", data={**data, "csrf": "x", "confirm_password": data["new_password"]})
    assert r.status_code == 403
    assert post_login(TestClient(client.app), "thuky").status_code == 303  # the old password still works


def _enrol_totp(client: TestClient, csrf: str, next_url: str = "/account") -> str:
    r = client.post(
        "/account/totp", data={"csrf": csrf, "action": "begin", "next": next_url}, follow_redirects=False
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"], headers=HTML).text
    secret = re.search(r'<span class="secret" id="totp-secret">([A-Z2-7 ]+)</span>', page)
    assert secret, page
    assert "<svg" in page and 'role="img"' in page and "otpauth://totp/Giao%20Ban:" in page
    secret_key = secret.group(1).replace(" ", "")
    r = client.post(
        "/account/totp", data={"csrf": csrf, "action": "confirm", "code": "000000", "next": next_url}
    )
    assert r.status_code == 400 and "Mã xác thực không đúng." in r.text
    r = client.post(
        "/account/totp",
        data={"csrf": csrf, "action": "confirm", "code": pyotp.TOTP(secret_key).now(), "next": next_url},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "done=totp_on" in r.headers["location"]
    return secret_key


def test_totp_enrolment_and_second_step(client: TestClient, demo: Demo) -> None:
    csrf = sign_in(client, "chutri")
    assert "Bật xác thực hai lớp" in client.get("/account", headers=HTML).text
    r = client.post("/account/totp", data={"csrf": "forged", "action": "begin"})
    assert r.status_code == 403 and user_by_name(demo, "chutri").totp_secret is None
    secret = _enrol_totp(client, csrf)
    assert user_by_name(demo, "chutri").totp_enabled

    browser = TestClient(client.app)
    r = post_login(browser, "chutri", next_url="/sites")
    assert r.headers["location"] == "/login/totp?next=%2Fsites"
    # Half logged in: pages send back to the second step, the API does not accept the session.
    assert (
        browser.get("/org", headers=HTML, follow_redirects=False)
        .headers["location"]
        .startswith("/login/totp")
    )
    assert browser.get("/api/v1/units").status_code == 401
    step = browser.get(r.headers["location"], headers=HTML)
    assert step.status_code == 200 and "Mã xác thực" in step.text
    step_csrf = session_csrf(step.text)

    failures = count(demo, LoginAttempt)
    r = browser.post("/login/totp", data={"csrf": step_csrf, "code": "123456", "next": "/sites"})
    assert r.status_code == 401 and "Mã xác thực không đúng. Vui lòng đăng nhập lại." in r.text
    assert count(demo, LoginAttempt) == failures + 1  # counts toward the login throttle
    assert (
        browser.get("/login/totp", headers=HTML, follow_redirects=False)
        .headers["location"]
        .startswith("/login?")
    )

    r = post_login(browser, "chutri", next_url="/sites")
    step_csrf = session_csrf(browser.get(r.headers["location"], headers=HTML).text)
    r = browser.post(
        "/login/totp",
        data={"csrf": step_csrf, "code": pyotp.TOTP(secret).now(), "next": "/sites"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/sites"
    assert browser.get("/sites", headers=HTML, follow_redirects=False).status_code == 200

    # Turning it off needs a current code.
    r = client.post("/account/totp/disable", data={"csrf": csrf, "code": "000000"})
    assert r.status_code == 403 and user_by_name(demo, "chutri").totp_enabled
    r = client.post(
        "/account/totp/disable", data={"csrf": csrf, "code": pyotp.TOTP(secret).now()}, follow_redirects=False
    )
    assert r.status_code == 303 and not user_by_name(demo, "chutri").totp_enabled


def test_admins_must_enrol_totp_first_when_required(client: TestClient, demo: Demo) -> None:
    demo.ctx.settings.admin_totp_required = True
    r = post_login(client, "admin", next_url="/users")
    assert r.headers["location"] == "/account/totp?next=%2Fusers"
    assert (
        client.get("/", headers=HTML, follow_redirects=False).headers["location"].startswith("/account/totp")
    )
    page = client.get("/account/totp", headers=HTML)
    assert "Tài khoản quản trị phải bật xác thực hai lớp" in page.text
    assert 'class="mainnav"' not in page.text  # nothing else to do before enrolling
    secret = _enrol_totp(client, session_csrf(page.text), next_url="/users")
    assert client.get("/users", headers=HTML, follow_redirects=False).status_code == 200
    csrf = csrf_of(client)
    r = client.post("/account/totp/disable", data={"csrf": csrf, "code": pyotp.TOTP(secret).now()})
    assert r.status_code == 403 and user_by_name(demo, "admin").totp_enabled
    # Non-admins are not asked.
    assert post_login(TestClient(client.app), "thuky").headers["location"] == "/"


def test_unexpected_failure_gives_a_friendly_500(
    client: TestClient, demo: Demo, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sign_in(client, "admin")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(tree, "list_units", broken)  # what the home page asks first
    r = client.get("/", headers=HTML)
    assert r.status_code == 500
    assert "Đã có lỗi xảy ra" in r.text and "boom" not in r.text
    assert "boom" in caplog.text  # logged for the operators, with its traceback


def test_hostile_query_and_csrf_values_give_clean_answers(client: TestClient, demo: Demo) -> None:
    """A NUL in a search box and a non-ASCII login CSRF value are refused or ignored, never a 500."""
    client.get("/login", headers=HTML)  # a valid login CSRF cookie; the form field is hostile
    r = client.post("/login", data={"username": "admin", "password": "x", "csrf": "ư.ư"}, headers=HTML)
    assert r.status_code == 403
    sign_in(client, "admin")
    for path in ("/sites?q=ha%00noi", "/users?q=%00"):
        r = client.get(path, headers=HTML)
        assert r.status_code == 200, path


# --- every page form, with fields missing or wrong ----------------------------------------------


def test_site_form_with_an_invalid_field_and_no_status_shows_the_error(
    client: TestClient, demo: Demo
) -> None:
    """The form is shown again with the reason and every field, whichever fields the post carried."""
    csrf = sign_in(client, "admin")
    sid = site_id(demo, "01")
    for data in ({"name": ""}, {"name": "x" * 400}, {"tech_phone": "\x00"}, {}, {"status": "bogus"}):
        r = client.post(f"/sites/{sid}", data={"csrf": csrf, **data}, headers=HTML, follow_redirects=False)
        assert r.status_code in (303, 400), (data, r.status_code, r.text[:300])
        if r.status_code == 400:
            assert 'name="status"' in r.text, data
            assert 'role="alert"' in r.text, data


def _page_form_routes(client: TestClient) -> list[tuple[str, list[str]]]:
    """Every page route that takes a form post, with its form fields (read from the app itself)."""
    from fastapi import routing

    app = client.app
    routes = (
        routing.iter_route_contexts(app.routes)  # type: ignore[attr-defined]
        if hasattr(routing, "iter_route_contexts")
        else app.routes  # type: ignore[attr-defined]
    )
    out = []
    for route in routes:
        original = getattr(route, "original_route", route)
        path = route.path_format
        if not isinstance(original, routing.APIRoute) or "POST" not in route.methods:
            continue
        if path.startswith(("/api/", "/internal/")):
            continue
        fields = [p.alias for p in original.dependant.body_params if p.alias != "csrf"]
        out.append((path, fields))
    return sorted(out)


def test_every_page_form_with_fields_missing_or_wrong_gets_no_server_error(
    client: TestClient, demo: Demo
) -> None:
    from tests.live.test_techcheck import _meeting

    meeting, _, _ = _meeting(demo)
    target = user_by_name(demo, "chutri").id
    ids = {"site_id": site_id(demo, "01"), "user_id": target, "meeting_id": meeting}
    routes = _page_form_routes(client)
    assert {"/sites/{site_id}", "/users", "/meetings/new", "/account/password"} <= {p for p, _ in routes}
    wrong = ("", "\x00", "x" * 6000, "-1", "\ud800", "9" * 30)
    problems = []
    csrf = sign_in(client, "admin")
    # The login forms last: their failed attempts count towards throttling the address.
    for path, fields in sorted(routes, key=lambda r: (r[0].startswith("/login"), r[0])):
        if path == "/logout":
            continue
        url = path.format(**ids)
        posts: list[dict[str, str]] = [{}]
        posts += [{name: value} for name in fields for value in wrong]
        posts += [dict.fromkeys(fields, value) for value in wrong]
        for data in posts:
            token = field(client.get("/login", headers=HTML).text, "csrf") if path == "/login" else csrf
            try:
                r = client.post(url, data={"csrf": token, **data}, headers=HTML, follow_redirects=False)
            except UnicodeEncodeError:
                continue  # a lone surrogate cannot even be sent as a form
            if r.status_code >= 500:
                problems.append(f"{url} {sorted(data)} {[v[:10] for v in data.values()]}: {r.status_code}")
            if (
                not path.startswith("/login")
                and client.get("/account", follow_redirects=False).status_code != 200
            ):
                csrf = sign_in(client, "admin")  # that post ended the session (a password, a lock)
    assert not problems, "\n".join(problems)
