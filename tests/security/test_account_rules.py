"""Account rules that hold the same way for the API and the pages: a password that must be changed,
one browser session per login, turning TOTP off, and whose address the login throttle counts."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.requests import Request

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.errors import DomainError
from giaoban.org import accounts
from giaoban.org.models import AuthSession, LoginAttempt, User
from giaoban.settings import Settings
from giaoban.web.app import create_app
from giaoban.web.deps import resolve_caller
from tests.conftest import DEMO_PASSWORD, Demo, login

NEW_PASSWORD = "Mật-khẩu-mới-2025!"
HTML = {"Accept": "text/html"}
_names = itertools.count(1)


def _error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def _tx(session: Any, ctx: AppContext) -> Tx:
    return Tx(session, ctx.audit, Actor.system("account-tests"))


def _user(ctx: AppContext, username: str) -> User:
    with ctx.db.session() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one()
        s.expunge(user)
        return user


def _sessions(ctx: AppContext, username: str) -> int:
    with ctx.db.session() as s:
        return int(
            s.execute(
                select(func.count()).select_from(AuthSession).join(User).where(User.username == username)
            ).scalar_one()
        )


# --- a password that must be changed --------------------------------------------------------------


def test_a_bearer_token_must_change_its_password_before_anything_else(client: TestClient, demo: Demo) -> None:
    ctx = demo.ctx
    with ctx.db.session() as s:
        accounts.reset_password(_tx(s, ctx), _user(ctx, "chutri").id, DEMO_PASSWORD + "x", must_change=True)
    r = client.post("/api/v1/auth/login", json={"username": "chutri", "password": DEMO_PASSWORD + "x"})
    assert r.status_code == 200
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    for path in ("/api/v1/units", "/api/v1/sites", "/api/v1/auth/me", "/api/v1/meetings"):
        assert _error(client.get(path, headers=h)) == (403, "password_change_required"), path
    assert r.json()["must_change_password"] is True  # the login said so up front
    # Changing the password is what it may do; then everything else works again.
    body = {"current_password": DEMO_PASSWORD + "x", "new_password": NEW_PASSWORD}
    assert client.post("/api/v1/auth/password", json=body, headers=h).status_code == 204
    assert client.get("/api/v1/units", headers=h).status_code == 200
    assert _user(ctx, "chutri").must_change_password is False


def test_one_who_must_change_the_password_may_still_log_out(client: TestClient, demo: Demo) -> None:
    ctx = demo.ctx
    with ctx.db.session() as s:
        accounts.reset_password(_tx(s, ctx), _user(ctx, "thuky").id, NEW_PASSWORD, must_change=True)
    h = login(client, "thuky", NEW_PASSWORD)
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 204
    assert _sessions(ctx, "thuky") == 0


def test_a_cookie_session_that_must_change_gets_the_same_api_answer(client: TestClient, demo: Demo) -> None:
    ctx = demo.ctx
    with ctx.db.session() as s:
        accounts.reset_password(_tx(s, ctx), _user(ctx, "chutri").id, NEW_PASSWORD, must_change=True)
    form = client.get("/login", headers=HTML).text
    csrf = re.search(r'name="csrf" value="([^"]*)"', form)
    assert csrf
    data = {"username": "chutri", "password": NEW_PASSWORD, "csrf": csrf.group(1), "next": "/"}
    r = client.post("/login", data=data, headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/account?must=1"
    assert _error(client.get("/api/v1/units")) == (403, "password_change_required")


def test_the_live_room_sockets_do_not_count_one_who_must_change(client: TestClient, demo: Demo) -> None:
    """The WebSockets resolve their caller with ``resolve_caller`` and its default: not signed in."""
    ctx = demo.ctx
    with ctx.db.session() as s:
        accounts.reset_password(_tx(s, ctx), _user(ctx, "chutri").id, NEW_PASSWORD, must_change=True)
    token = login(client, "chutri", NEW_PASSWORD)["Authorization"].encode()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/ws",
        "headers": [(b"authorization", token)],
        "app": client.app,
        "client": ("127.0.0.1", 1),
    }
    assert resolve_caller(Request(scope), ctx) is None
    caller = resolve_caller(Request(scope), ctx, allow_must_change=True)
    assert caller is not None and caller.user.username == "chutri"


# --- one browser, one session ----------------------------------------------------------------------


def _login_form(client: TestClient) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', client.get("/login", headers=HTML).text)
    assert match
    return match.group(1)


def test_logging_in_again_ends_the_older_cookie_session(client: TestClient, demo: Demo) -> None:
    ctx = demo.ctx
    csrf = _login_form(client)  # the form, read before the first login (it redirects after)
    data = {"username": "chutri", "password": DEMO_PASSWORD, "csrf": csrf, "next": "/"}
    assert client.post("/login", data=data, headers=HTML, follow_redirects=False).status_code == 303
    first = client.cookies.get("gb_session")
    assert first and _sessions(ctx, "chutri") == 1
    # Another tab still shows the login form: someone else logs in on the same browser.
    data = {"username": "thuky", "password": DEMO_PASSWORD, "csrf": csrf, "next": "/"}
    assert client.post("/login", data=data, headers=HTML, follow_redirects=False).status_code == 303
    assert client.cookies.get("gb_session") != first
    assert _sessions(ctx, "chutri") == 0 and _sessions(ctx, "thuky") == 1
    old = TestClient(client.app, cookies={"gb_session": first})
    assert old.get("/api/v1/auth/me").status_code == 401
    # A failed login leaves the current session alone.
    data = {"username": "thuky", "password": "not-the-password", "csrf": csrf, "next": "/"}
    assert client.post("/login", data=data, headers=HTML, follow_redirects=False).status_code == 401
    assert _sessions(ctx, "thuky") == 1
    # A bearer login (scripts) ends nobody's session but the cookie's it came with.
    assert login(client, "chutri") and _sessions(ctx, "thuky") == 0


# --- turning TOTP off: the rules live in the service --------------------------------------------------


def _enrol(ctx: AppContext, username: str) -> pyotp.TOTP:
    with ctx.db.session() as s:
        tx = _tx(s, ctx)
        uid = _user(ctx, username).id
        secret, _uri = accounts.begin_totp_enrollment(tx, uid)
        totp = pyotp.TOTP(secret)
        accounts.confirm_totp(tx, uid, totp.now())
    return totp


def _other_code(totp: pyotp.TOTP) -> str:
    now = time.time()
    valid = {totp.at(now + k * 30) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def test_disabling_totp_needs_a_current_code(demo: Demo) -> None:
    ctx = demo.ctx
    totp = _enrol(ctx, "chutri")
    uid = _user(ctx, "chutri").id
    with pytest.raises(DomainError) as wrong, ctx.db.session() as s:
        accounts.disable_totp(_tx(s, ctx), ctx.settings, uid, _other_code(totp))
    assert (wrong.value.status, wrong.value.code) == (403, "bad_totp")
    assert _user(ctx, "chutri").totp_enabled
    with ctx.db.session() as s:
        accounts.disable_totp(_tx(s, ctx), ctx.settings, uid, totp.now())
    assert not _user(ctx, "chutri").totp_enabled and _user(ctx, "chutri").totp_secret is None


def test_admins_keep_totp_while_it_is_required(demo: Demo) -> None:
    ctx = demo.ctx
    required = ctx.settings.model_copy(update={"admin_totp_required": True})
    totp = _enrol(ctx, "admin")
    with pytest.raises(DomainError) as kept, ctx.db.session() as s:
        accounts.disable_totp(_tx(s, ctx), required, _user(ctx, "admin").id, totp.now())
    assert (kept.value.status, kept.value.code) == (403, "totp_required_for_admin")
    assert _user(ctx, "admin").totp_enabled
    with ctx.db.session() as s:  # not required: an admin may turn it off like anyone
        accounts.disable_totp(_tx(s, ctx), ctx.settings, _user(ctx, "admin").id, totp.now())
    assert not _user(ctx, "admin").totp_enabled


# --- whose address the login throttle counts ------------------------------------------------------


def _app(demo: Demo, proxies: list[str]) -> TestClient:
    settings = demo.ctx.settings.model_copy(update={"trusted_proxies": proxies})
    ctx = AppContext(settings=settings, db=demo.ctx.db, audit=demo.ctx.audit)
    # TestClient's peer address is "testclient"; 127.0.0.1 stands for nginx on loopback.
    return TestClient(create_app(ctx), client=("127.0.0.1", 50000))


def _failed_from(demo: Demo) -> list[str]:
    with demo.ctx.db.session() as s:
        return list(
            s.execute(
                select(LoginAttempt.ip).where(~LoginAttempt.success).order_by(LoginAttempt.id)
            ).scalars()
        )


def _fail(client: TestClient, forwarded: str | None) -> None:
    """One failed login under a fresh user name (the per-name throttle stays out of the way)."""
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    body = {"username": f"khong-co-{next(_names)}", "password": "wrong"}
    r = client.post("/api/v1/auth/login", json=body, headers=headers)
    assert r.status_code == 401


def test_forwarded_for_counts_only_from_a_trusted_proxy(demo: Demo) -> None:
    with _app(demo, []) as untrusted:
        _fail(untrusted, "203.0.113.9")
    with _app(demo, ["127.0.0.1", "10.0.0.0/8"]) as behind_nginx:
        _fail(behind_nginx, "203.0.113.7")  # nginx appended the client's address
        _fail(behind_nginx, "198.51.100.1, 203.0.113.8")  # the left hop was written by the client
        _fail(behind_nginx, "203.0.113.6, 10.1.2.3")  # through a second trusted proxy
        _fail(behind_nginx, "not-an-address")
        _fail(behind_nginx, None)
    assert _failed_from(demo) == [
        "127.0.0.1",
        "203.0.113.7",
        "203.0.113.8",
        "203.0.113.6",
        "127.0.0.1",
        "127.0.0.1",
    ]


def test_trusted_proxies_setting_reads_commas_or_json_and_refuses_garbage() -> None:
    assert Settings(trusted_proxies="127.0.0.1, 10.0.0.0/8").trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    assert Settings(trusted_proxies='["::1"]').trusted_proxies == ["::1"]
    assert Settings().trusted_proxies == []
    with pytest.raises(ValueError):
        Settings(trusted_proxies="nginx.local")


def test_the_api_turns_totp_off_by_the_same_rules_and_throttles_guessing(
    client: TestClient, demo: Demo
) -> None:
    ctx = demo.ctx
    h = login(client, "chutri")
    totp = _enrol(ctx, "chutri")
    url = "/api/v1/auth/totp/disable"
    for _ in range(ctx.settings.login_max_failures):
        assert _error(client.post(url, json={"code": _other_code(totp)}, headers=h)) == (403, "bad_totp")
    # Guessing codes with a borrowed session runs into the login throttle; the right code waits too.
    assert _error(client.post(url, json={"code": totp.now()}, headers=h)) == (429, "too_many_attempts")
    assert _user(ctx, "chutri").totp_enabled
    assert client.post(url, json={"code": "12ab"}, headers=h).status_code == 422

    required = ctx.settings.model_copy(update={"admin_totp_required": True})
    admin_totp = _enrol(ctx, "admin")
    with TestClient(create_app(AppContext(settings=required, db=ctx.db, audit=ctx.audit))) as strict:
        r = strict.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": DEMO_PASSWORD, "totp": admin_totp.now()},
        )
        admin = {"Authorization": f"Bearer {r.json()['token']}"}
        r = strict.post(url, json={"code": admin_totp.now()}, headers=admin)
        assert _error(r) == (403, "totp_required_for_admin")
    assert _user(ctx, "admin").totp_enabled
