"""The pages around everything else: language switch, login with its second factor, logout, home."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from giaoban.errors import DomainError, NotFound, Unauthorized
from giaoban.org import accounts, tree
from giaoban.org import sites as site_svc
from giaoban.org.access import Perm
from giaoban.org.models import LoginAttempt, Role
from giaoban.org.schemas import site_out
from giaoban.web.deps import SESSION_COOKIE, client_ip, get_ctx, resolve_caller
from giaoban.web.i18n import LANG_COOKIE, LOCALES, N_
from giaoban.web.pagekit import (
    LOGIN_CSRF_COOKIE,
    FormStr,
    HalfSignedIn,
    PageRoute,
    Redirect,
    SignedIn,
    check_form_csrf,
    page_web,
    render,
    safe_next,
    set_cookie,
    translator,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)


# --- language --------------------------------------------------------------------------------


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/") -> Response:
    if code not in LOCALES:
        raise NotFound(N_("Không hỗ trợ ngôn ngữ này."))
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(response, request, LANG_COOKIE, code, 365 * 24 * 3600)
    return response


# --- login, second factor, logout ------------------------------------------------------------


def _login_token_sig(request: Request, nonce: str) -> str:
    key = get_ctx(request).settings.resolved_secret_key.encode()
    return hmac.new(key, b"login-csrf:" + nonce.encode(), hashlib.sha256).hexdigest()[:32]


def _login_token(request: Request) -> tuple[str, bool]:
    """The pre-session CSRF token from the cookie, or a new one (second value: cookie must be set).

    The cookie is signed with the installation's key, so a cookie planted from a sibling domain
    does not pass.
    """
    value = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if _login_token_ok(request, value, value):
        return value, False
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_login_token_sig(request, nonce)}", True


def _login_token_ok(request: Request, cookie: str, sent: str) -> bool:
    nonce, _sep, sig = cookie.partition(".")
    # Compared as bytes: compare_digest refuses non-ASCII str, and these values come from the client.
    if (
        not nonce
        or not sig
        or not hmac.compare_digest(sig.encode(), _login_token_sig(request, nonce).encode())
    ):
        return False
    return hmac.compare_digest(cookie.encode(), sent.encode())


def _login_page(
    request: Request, *, next_url: str, username: str = "", error: str = "", status: int = 200
) -> Response:
    token, fresh = _login_token(request)
    context = {"login_csrf": token, "next_url": next_url, "username": username, "error": error}
    response = render(request, "login.html", context, status=status)
    if fresh:
        set_cookie(response, request, LOGIN_CSRF_COOKIE, token, None)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    if resolve_caller(request, get_ctx(request), allow_must_change=True) is not None:
        raise Redirect(safe_next(next))
    return _login_page(request, next_url=safe_next(next))


@router.post("/login")
def login_submit(
    request: Request,
    username: FormStr = "",
    password: FormStr = "",
    csrf: FormStr = "",
    next: FormStr = "/",
) -> Response:
    _ = translator(request)
    next_url = safe_next(next)
    username = username.strip()[:64]
    if not _login_token_ok(request, request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf):
        error = _("Trang đăng nhập đã cũ hoặc không hợp lệ. Vui lòng nhập lại và bấm Đăng nhập.")
        return _login_page(request, next_url=next_url, username=username, error=error, status=403)
    if not username or not password:
        error = _("Vui lòng nhập tên đăng nhập và mật khẩu.")
        return _login_page(request, next_url=next_url, username=username, error=error, status=400)
    ctx = get_ctx(request)
    try:
        result = accounts.sign_in(
            ctx,
            username=username,
            password=password[:200],
            totp=None,
            kind="cookie",
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent", ""),
            replaces=request.cookies.get(SESSION_COOKIE),
        )
    except DomainError as exc:
        return _login_page(
            request, next_url=next_url, username=username, error=_(exc.message), status=exc.status
        )
    if result.needs_totp:
        location = "/login/totp?" + urlencode({"next": next_url})
    elif result.needs_totp_enrollment:
        location = "/account/totp?" + urlencode({"next": next_url})
    elif result.user.must_change_password:
        location = "/account?must=1"
    else:
        location = next_url
    response = RedirectResponse(location, status_code=303)
    set_cookie(response, request, SESSION_COOKIE, result.token, ctx.settings.session_hours * 3600)
    return response


@router.get("/login/totp")
def totp_step_form(request: Request, caller: HalfSignedIn, next: str = "/") -> Response:
    if not caller.auth.second_factor_pending:
        raise Redirect(safe_next(next))
    if not caller.user.totp_enabled:
        raise Redirect("/account/totp?" + urlencode({"next": safe_next(next)}))
    return render(request, "login_totp.html", {"next_url": safe_next(next)}, caller=caller, show_nav=False)


@router.post("/login/totp")
def totp_step(
    request: Request, caller: HalfSignedIn, code: FormStr = "", csrf: FormStr = "", next: FormStr = "/"
) -> Response:
    check_form_csrf(request, caller, csrf)
    next_url = safe_next(next)
    if not caller.auth.second_factor_pending:
        raise Redirect(next_url)
    w = page_web(request, caller)
    try:
        with w.tx() as tx:
            accounts.complete_second_factor(tx, tx.session.merge(caller.auth), code[:12])
    except Unauthorized:
        # A wrong code ends this half-open login and counts as a failed login, so guessing codes
        # runs into the same throttle as guessing passwords.
        with w.tx() as tx:
            tx.session.add(
                LoginAttempt(username_key=caller.user.username, ip=client_ip(request), success=False)
            )
            accounts.logout(tx, tx.session.merge(caller.auth))
        _ = translator(request)
        response = _login_page(
            request,
            next_url=next_url,
            username=caller.user.username,
            error=_("Mã xác thực không đúng. Vui lòng đăng nhập lại."),
            status=401,
        )
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    raise Redirect(next_url)


@router.post("/logout")
def logout(request: Request, csrf: FormStr = "") -> Response:
    ctx = get_ctx(request)
    caller = resolve_caller(request, ctx, allow_pending=True, allow_must_change=True)
    if caller is not None:
        check_form_csrf(request, caller, csrf)
        with page_web(request, caller).tx() as tx:
            accounts.logout(tx, tx.session.merge(caller.auth))
    response = RedirectResponse("/login?done=logout", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- home ------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, caller: SignedIn) -> Response:
    w = page_web(request, caller)
    p = w.principal
    counts: dict[str, int] = {}
    own_sites: list[Any] = []
    if p.can_any(Perm.unit_read):
        with w.read() as session:
            counts["units"] = tree.list_units(session, p, tree.UnitQuery(limit=1)).total
    if p.can_any(Perm.site_read):
        with w.read() as session:
            sites = site_svc.list_sites(session, p, site_svc.SiteFilter(), limit=3)
            counts["sites"] = sites.total
            if p.has_role(Role.site_operator) and sites.total <= 3:
                own_sites = [site_out(s, u) for s, u in sites.items]
    if p.can_any(Perm.user_read):
        with w.read() as session:
            counts["users"] = accounts.list_users(session, p, accounts.UserQuery(limit=1)).total
    context = {"counts": counts, "own_sites": own_sites, "is_site_operator": p.has_role(Role.site_operator)}
    return render(request, "home.html", context, caller=caller)
