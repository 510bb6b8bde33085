"""Logging in, and everything that ends or refuses a login: throttling, locks, password changes,
TOTP, token kinds, expiry, logout, and CSRF for browser sessions."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.db import utcnow
from giaoban.org import accounts
from giaoban.org.models import AuthSession, User
from tests.conftest import DEMO_PASSWORD, Demo, login
from tests.security.conftest import World as _World
from tests.security.conftest import changed_tables, make_actors

NEW_PASSWORD = "Mật-khẩu-mới-2025!"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


def _login(client: TestClient, username: str, password: str = DEMO_PASSWORD, **extra: str) -> object:
    return client.post(LOGIN, json={"username": username, "password": password, **extra})


def _error(response: object) -> tuple[int, str]:
    r = response
    return r.status_code, r.json()["error"]["code"]  # type: ignore[attr-defined]


def _user_id(ctx: AppContext, username: str) -> int:
    with ctx.db.session() as s:
        return int(s.execute(select(User.id).where(User.username == username)).scalar_one())


def _cookie_session(ctx: AppContext, username: str, password: str = DEMO_PASSWORD) -> accounts.LoginResult:
    """A browser session, as the login page opens one."""
    with ctx.db.session() as s:
        result = accounts.login(
            Tx(s, ctx.audit, Actor(None, username, "testclient")),
            ctx.settings,
            username=username,
            password=password,
            kind="cookie",
        )
    assert isinstance(result, accounts.LoginResult)
    return result


def _enrol_totp(ctx: AppContext, username: str) -> pyotp.TOTP:
    with ctx.db.session() as s:
        tx = Tx(s, ctx.audit, Actor.system("test"))
        user_id = _user_id(ctx, username)
        secret, uri = accounts.begin_totp_enrollment(tx, user_id)
        assert uri.startswith("otpauth://totp/")
        accounts.confirm_totp(tx, user_id, pyotp.TOTP(secret).now())
    return pyotp.TOTP(secret)


def _other_code(totp: pyotp.TOTP) -> str:
    """A six-digit code that is valid at no moment near now."""
    now = totp.timecode(utcnow())
    valid = {totp.generate_otp(now + d) for d in (-2, -1, 0, 1, 2)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


# --- logging in ------------------------------------------------------------------------------------


def test_bearer_login_and_who_am_i(client: TestClient, demo: Demo) -> None:
    r = _login(client, "tochuc-01")
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["user"]["username"] == "tochuc-01"
    me = client.get(ME, headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["user"]["username"] == "tochuc-01"
    # The token is only ever stored hashed.
    with demo.ctx.db.session() as s:
        stored = list(s.execute(select(AuthSession.token_hash)).scalars())
    assert body["token"] not in stored and accounts.token_hash(body["token"]) in stored


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient, demo: Demo) -> None:
    wrong = _login(client, "thuky", "not-the-password")
    unknown = _login(client, "nobody-here", "not-the-password")
    assert _error(wrong) == _error(unknown) == (401, "bad_credentials")
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_user_name_is_case_and_space_insensitive(client: TestClient, demo: Demo) -> None:
    assert _login(client, "  ThuKy ").status_code == 200


# --- throttling ------------------------------------------------------------------------------------


def test_throttled_per_user_after_the_allowed_failures(app: object, demo: Demo) -> None:
    n = demo.ctx.settings.login_max_failures
    one_ip = TestClient(app, client=("10.0.0.1", 5000))  # type: ignore[arg-type]
    other_ip = TestClient(app, client=("10.0.0.2", 5000))  # type: ignore[arg-type]
    for i in range(n):
        # Failures from two addresses count toward the same user.
        c = one_ip if i % 2 else other_ip
        assert _error(_login(c, "thuky", f"wrong-{i}")) == (401, "bad_credentials")
    # The right password no longer helps, from any address, until the window passes.
    assert _error(_login(one_ip, "thuky")) == (429, "too_many_attempts")
    assert _error(_login(TestClient(app, client=("10.0.0.3", 5000)), "thuky")) == (429, "too_many_attempts")  # type: ignore[arg-type]
    # Other users (and the same address, well under its own limit) are not affected.
    assert _login(one_ip, "chutri").status_code == 200
    # Once the failures are older than the window, the user may log in again.
    with demo.ctx.db.session() as s:
        from giaoban.org.models import LoginAttempt

        s.execute(
            update(LoginAttempt).values(
                at=utcnow() - timedelta(seconds=demo.ctx.settings.login_window_seconds + 1)
            )
        )
    assert _login(one_ip, "thuky").status_code == 200


def test_throttled_per_address_across_user_names(app: object, demo: Demo) -> None:
    limit = demo.ctx.settings.login_max_failures * 4
    sprayer = TestClient(app, client=("10.9.9.9", 5000))  # type: ignore[arg-type]
    # One failure per name (real accounts: an unknown name costs a full-strength hash check), so
    # only the address adds up.
    names = sorted(name for name in demo.logins if name.startswith("dc-"))[:limit]
    assert len(names) == limit
    for name in names:
        assert _login(sprayer, name, "Password123").status_code == 401
    assert _error(_login(sprayer, "chutri")) == (429, "too_many_attempts")
    elsewhere = TestClient(app, client=("10.9.9.10", 5000))  # type: ignore[arg-type]
    assert _login(elsewhere, "chutri").status_code == 200


def test_many_failures_lock_the_account(client: TestClient, demo: Demo) -> None:
    settings = demo.ctx.settings
    settings.login_max_failures, settings.lock_after_failures = 1000, 3
    for _ in range(3):
        assert _error(_login(client, "thuky", "wrong-password")) == (401, "bad_credentials")
    assert _error(_login(client, "thuky")) == (401, "account_locked")


# --- lock and unlock -------------------------------------------------------------------------------


def test_admin_locks_and_unlocks_an_account(client: TestClient, demo: Demo) -> None:
    admin = login(client, "admin")
    victim = login(client, "chutri")
    uid = _user_id(demo.ctx, "chutri")
    r = client.post(f"/api/v1/users/{uid}/lock", json={"locked": True, "reason": "Nghỉ phép"}, headers=admin)
    assert r.status_code == 200 and r.json()["is_locked"] and r.json()["locked_reason"] == "Nghỉ phép"
    assert client.get(ME, headers=victim).status_code == 401  # the open session ended
    with demo.ctx.db.session() as s:
        assert s.execute(select(AuthSession).where(AuthSession.user_id == uid)).first() is None
    assert _error(_login(client, "chutri")) == (401, "account_locked")
    # A wrong password does not reveal that the account is locked.
    assert _error(_login(client, "chutri", "wrong-password")) == (401, "bad_credentials")
    r = client.post(f"/api/v1/users/{uid}/lock", json={"locked": False}, headers=admin)
    assert r.status_code == 200 and not r.json()["is_locked"]
    assert _login(client, "chutri").status_code == 200


def test_a_locked_user_cookie_session_is_refused_too(client: TestClient, demo: Demo) -> None:
    session = _cookie_session(demo.ctx, "chutri")
    client.cookies.set("gb_session", session.token)
    assert client.get(ME).status_code == 200
    with demo.ctx.db.session() as s:
        s.execute(update(User).where(User.username == "chutri").values(is_locked=True))
    assert client.get(ME).status_code == 401


# --- passwords -------------------------------------------------------------------------------------


def test_password_change_ends_the_other_sessions(client: TestClient, demo: Demo) -> None:
    this = login(client, "thuky")
    other = login(client, "thuky")
    browser = _cookie_session(demo.ctx, "thuky")
    body = {"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post("/api/v1/auth/password", json=body, headers=this).status_code == 204
    assert client.get(ME, headers=this).status_code == 200  # the session that changed it stays
    assert client.get(ME, headers=other).status_code == 401
    client.cookies.set("gb_session", browser.token)
    assert client.get(ME).status_code == 401
    client.cookies.clear()
    assert _error(_login(client, "thuky")) == (401, "bad_credentials")
    assert _login(client, "thuky", NEW_PASSWORD).status_code == 200


@pytest.mark.parametrize(
    ("new_password", "status", "code"),
    [
        ("short1!", 422, None),  # under the documented minimum length: refused by the schema
        ("aaaaaaaaaaaa", 400, "weak_password"),  # too few different characters
        ("xx-thuky-2025", 400, "weak_password"),  # contains the user name
        (DEMO_PASSWORD, 400, "weak_password"),  # the same as before
    ],
)
def test_weak_passwords_are_refused(
    client: TestClient, demo: Demo, new_password: str, status: int, code: str | None
) -> None:
    h = login(client, "thuky")
    body = {"current_password": DEMO_PASSWORD, "new_password": new_password}
    r = client.post("/api/v1/auth/password", json=body, headers=h)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code
    assert _login(client, "thuky").status_code == 200  # nothing changed


def test_password_change_needs_the_current_password(client: TestClient, demo: Demo) -> None:
    h = login(client, "thuky")
    body = {"current_password": "not-the-password", "new_password": NEW_PASSWORD}
    assert _error(client.post("/api/v1/auth/password", json=body, headers=h)) == (403, "wrong_password")
    assert _login(client, "thuky").status_code == 200


def test_guessing_the_current_password_is_throttled(client: TestClient, demo: Demo) -> None:
    """A borrowed session cannot be used to guess the password faster than the login form allows."""
    h = login(client, "thuky")
    for i in range(demo.ctx.settings.login_max_failures):
        body = {"current_password": f"guess-{i}", "new_password": NEW_PASSWORD}
        assert _error(client.post("/api/v1/auth/password", json=body, headers=h)) == (403, "wrong_password")
    right = {"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD}
    assert _error(client.post("/api/v1/auth/password", json=right, headers=h)) == (429, "too_many_attempts")
    assert _error(_login(client, "thuky")) == (429, "too_many_attempts")


def test_admin_password_reset_ends_every_session(client: TestClient, demo: Demo) -> None:
    admin = login(client, "admin")
    victim = login(client, "chutri")
    uid = _user_id(demo.ctx, "chutri")
    r = client.post(f"/api/v1/users/{uid}/password", json={"new_password": NEW_PASSWORD}, headers=admin)
    assert r.status_code == 200 and r.json()["must_change_password"] is True
    assert client.get(ME, headers=victim).status_code == 401
    assert _login(client, "chutri", NEW_PASSWORD).status_code == 200
    weak = client.post(f"/api/v1/users/{uid}/password", json={"new_password": "chutri-chutri"}, headers=admin)
    assert _error(weak) == (400, "weak_password")


# --- TOTP ------------------------------------------------------------------------------------------


def test_totp_is_required_once_enrolled(client: TestClient, demo: Demo) -> None:
    totp = _enrol_totp(demo.ctx, "chutri")
    assert _error(_login(client, "chutri")) == (401, "totp_required")
    assert _error(_login(client, "chutri", totp=_other_code(totp))) == (401, "bad_totp")
    r = _login(client, "chutri", totp=totp.now())
    assert r.status_code == 200
    assert r.json()["user"]["totp_enabled"] is True
    me = client.get(ME, headers={"Authorization": f"Bearer {r.json()['token']}"})
    assert me.status_code == 200


def test_a_wrong_totp_code_counts_as_a_failed_login(client: TestClient, demo: Demo) -> None:
    totp = _enrol_totp(demo.ctx, "chutri")
    for _ in range(demo.ctx.settings.login_max_failures):
        assert _error(_login(client, "chutri", totp=_other_code(totp))) == (401, "bad_totp")
    assert _error(_login(client, "chutri", totp=totp.now())) == (429, "too_many_attempts")


def test_a_browser_session_waiting_for_its_code_opens_nothing(client: TestClient, demo: Demo) -> None:
    _enrol_totp(demo.ctx, "chutri")
    pending = _cookie_session(demo.ctx, "chutri")
    assert pending.session.second_factor_pending
    client.cookies.set("gb_session", pending.token)
    assert client.get(ME).status_code == 401
    assert client.get("/api/v1/sites").status_code == 401


def test_admins_must_use_totp_when_the_setting_says_so(client: TestClient, demo: Demo) -> None:
    demo.ctx.settings.admin_totp_required = True
    assert _error(_login(client, "admin")) == (401, "totp_enrollment_required")
    pending = _cookie_session(demo.ctx, "admin")  # the browser is sent to enrol first
    assert pending.needs_totp_enrollment and pending.session.second_factor_pending
    client.cookies.set("gb_session", pending.token)
    assert client.get(ME).status_code == 401
    client.cookies.clear()
    assert _login(client, "chutri").status_code == 200  # not an admin: unaffected
    totp = _enrol_totp(demo.ctx, "admin")
    assert _error(_login(client, "admin")) == (401, "totp_required")
    assert _login(client, "admin", totp=totp.now()).status_code == 200


# --- tokens ----------------------------------------------------------------------------------------


def test_a_cookie_token_is_not_a_bearer_token_and_the_other_way_round(client: TestClient, demo: Demo) -> None:
    browser = _cookie_session(demo.ctx, "chutri")
    assert client.get(ME, headers={"Authorization": f"Bearer {browser.token}"}).status_code == 401
    bearer = _login(client, "chutri").json()["token"]
    client.cookies.set("gb_session", bearer)
    assert client.get(ME).status_code == 401
    client.cookies.set("gb_session", browser.token)
    assert client.get(ME).status_code == 200


def test_an_expired_session_is_refused(client: TestClient, demo: Demo) -> None:
    h = login(client, "chutri")
    assert client.get(ME, headers=h).status_code == 200
    with demo.ctx.db.session() as s:
        s.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert _error(client.get(ME, headers=h)) == (401, "not_authenticated")
    with demo.ctx.db.session() as s:
        assert accounts.prune_sessions(s) >= 1


def test_logout_ends_the_token(client: TestClient, demo: Demo) -> None:
    h = login(client, "chutri")
    keep = login(client, "chutri")
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 204
    assert client.get(ME, headers=h).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 401
    assert client.get(ME, headers=keep).status_code == 200  # only that token


# --- CSRF for browser sessions ---------------------------------------------------------------------


@pytest.fixture
def browser(client: TestClient, demo: Demo) -> tuple[_World, accounts.LoginResult]:
    """The root admin's browser session, its cookie set on ``client``."""
    make_actors(demo)
    session = _cookie_session(demo.ctx, "admin")
    client.cookies.set("gb_session", session.token)
    return _World(demo.ctx, client), session


def _csrf_cases(w: _World) -> list[tuple[str, str, dict[str, object]]]:
    unit, site, user = w.unit_id("01"), w.site_id("01"), w.user_id("chutri")
    return [
        ("PATCH", f"/api/v1/sites/{site}", {"contact_name": "Giả mạo"}),
        ("POST", "/api/v1/units", {"code": "CSRF", "name": "Giả mạo", "kind": "district", "parent_id": unit}),
        ("PATCH", f"/api/v1/users/{user}", {"full_name": "Giả mạo"}),
        ("POST", f"/api/v1/users/{user}/lock", {"locked": True}),
        ("POST", "/api/v1/auth/password", {"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD}),
        ("POST", "/api/v1/auth/logout", {}),
    ]


@pytest.mark.parametrize("sent", [None, b"", b"wrong-token", "sai-mã".encode("latin-1")])
def test_cookie_writes_without_the_csrf_token_change_nothing(
    browser: tuple[_World, accounts.LoginResult], sent: bytes | None
) -> None:
    w, _ = browser
    headers = [] if sent is None else [(b"X-CSRF-Token", sent)]
    before = w.snapshot()
    for method, url, body in _csrf_cases(w):
        r = w.client.request(method, url, json=body, headers=headers)
        assert _error(r) == (403, "csrf"), (method, url, r.text)
    assert changed_tables(before, w.snapshot()) == []


def test_cookie_writes_with_the_csrf_token_go_through(browser: tuple[_World, accounts.LoginResult]) -> None:
    w, session = browser
    assert w.client.get(ME).status_code == 200  # reads need no token
    headers = {"X-CSRF-Token": session.session.csrf_token}
    for method, url, body in _csrf_cases(w):
        r = w.client.request(method, url, json=body, headers=headers)
        assert r.status_code in (200, 201, 204), (method, url, r.text)


def test_another_sessions_csrf_token_does_not_count(browser: tuple[_World, accounts.LoginResult]) -> None:
    w, _ = browser
    someone_else = _cookie_session(w.ctx, "dieuhanh")
    before = w.snapshot()
    r = w.client.patch(
        f"/api/v1/sites/{w.site_id('01')}",
        json={"contact_name": "Giả mạo"},
        headers={"X-CSRF-Token": someone_else.session.csrf_token},
    )
    assert _error(r) == (403, "csrf")
    assert changed_tables(before, w.snapshot()) == []


def test_bearer_requests_need_no_csrf_token(client: TestClient, demo: Demo) -> None:
    """A bearer token is not sent by the browser on its own, so it carries no CSRF risk."""
    h = login(client, "admin")
    site = _World(demo.ctx, client).site_id("01")
    assert (
        client.patch(f"/api/v1/sites/{site}", json={"contact_name": "Kịch bản"}, headers=h).status_code == 200
    )
