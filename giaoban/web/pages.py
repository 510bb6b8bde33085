"""Server-rendered pages, Vietnamese first: login, home, org tree, sites, users, account.

Pages parse forms, check the CSRF token, then call the very handlers the JSON API serves
(``giaoban.web.api.*``), so role and subtree checks are one piece of code for both. Forms are plain
HTML posts answered with a redirect (post/redirect/get); the org tree is an ES module that reads the
JSON API with the session cookie.

Before a session exists the login form is protected by a signed double-submit cookie; after login
every form carries the session's own CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlencode

import pyotp
import segno
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from pydantic import ValidationError

from giaoban.context import AppContext
from giaoban.errors import DomainError, Forbidden, NotFound, Unauthorized
from giaoban.org import accounts
from giaoban.org.access import Perm
from giaoban.org.models import LoginAttempt, Role
from giaoban.org.schemas import (
    LockIn,
    PasswordChange,
    PasswordReset,
    RoleIn,
    RolesIn,
    SiteStatusLit,
    SiteUpdate,
    TotpCode,
    UserCreate,
    UserUpdate,
)
from giaoban.org.sites import CONTACT_FIELDS
from giaoban.org.units import allowed_kinds
from giaoban.text import TextError, clean_line, searchable
from giaoban.types import local_today
from giaoban.web.api import auth as auth_api
from giaoban.web.api import sites as sites_api
from giaoban.web.api import units as units_api
from giaoban.web.api import users as users_api
from giaoban.web.deps import SESSION_COOKIE, Caller, Web, check_csrf, client_ip, get_ctx, resolve_caller
from giaoban.web.i18n import (
    LANG_COOKIE,
    LOCALE_NAMES,
    LOCALES,
    N_,
    SITE_STATUS_LABELS_VI,
    UNIT_EVENT_LABELS_VI,
    Translator,
    pick_locale,
)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
LOGIN_CSRF_COOKIE = "gb_login_csrf"
PAGE_SIZE = 20
MAX_QUERY = 100


def _query(q: str) -> str:
    """A search box's text as the API accepts it (the text policy's one-line form, bounded)."""
    return searchable(q, max_length=MAX_QUERY)


PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

ERROR_TITLES = {
    400: N_("Yêu cầu không hợp lệ"),
    401: N_("Cần đăng nhập"),
    403: N_("Không có quyền truy cập"),
    404: N_("Không tìm thấy trang"),
    405: N_("Thao tác không được hỗ trợ"),
    409: N_("Dữ liệu đã thay đổi"),
    422: N_("Dữ liệu không hợp lệ"),
    429: N_("Thao tác quá nhiều lần"),
}
ERROR_HINTS = {
    403: N_("Tài khoản của bạn không được phép xem hoặc thay đổi nội dung này."),
    404: N_("Trang hoặc dữ liệu bạn tìm không có, hoặc nằm ngoài phạm vi của bạn."),
    429: N_("Vui lòng chờ ít phút rồi thử lại."),
    500: N_("Vui lòng thử lại sau ít phút. Nếu vẫn gặp lỗi, hãy báo cho quản trị hệ thống."),
}

# Shown once after a form succeeds (post/redirect/get carries the key in ?done=).
DONE_MESSAGES = {
    "created": N_("Đã tạo người dùng."),
    "details": N_("Đã lưu thông tin người dùng."),
    "roles": N_("Đã cập nhật vai trò. Người dùng phải đăng nhập lại."),
    "locked": N_("Đã khóa tài khoản."),
    "unlocked": N_("Đã mở khóa tài khoản."),
    "reset": N_("Đã đặt mật khẩu mới. Hãy báo mật khẩu cho người dùng qua kênh an toàn."),
    "site": N_("Đã lưu thông tin điểm cầu."),
    "password": N_("Đã đổi mật khẩu."),
    "totp_on": N_("Đã bật xác thực hai lớp."),
    "totp_off": N_("Đã tắt xác thực hai lớp."),
    "logout": N_("Bạn đã đăng xuất."),
}

FIELD_LABELS = {
    "username": N_("Tên đăng nhập"),
    "password": N_("Mật khẩu"),
    "new_password": N_("Mật khẩu mới"),
    "current_password": N_("Mật khẩu hiện tại"),
    "full_name": N_("Họ và tên"),
    "email": N_("Thư điện tử"),
    "phone": N_("Số điện thoại"),
    "roles": N_("Vai trò"),
    "reason": N_("Lý do"),
    "name": N_("Tên điểm cầu"),
    "location": N_("Địa điểm, phòng họp"),
    "contact_name": N_("Người liên hệ"),
    "contact_phone": N_("Điện thoại liên hệ"),
    "tech_name": N_("Kỹ thuật viên"),
    "tech_phone": N_("Điện thoại kỹ thuật viên"),
    "status": N_("Trạng thái"),
    "title": N_("Tên hội nghị"),
    "description": N_("Ghi chú"),
    "agenda": N_("Chương trình"),
}


# --- plumbing ------------------------------------------------------------------------------------


class _Redirect(Exception):
    """Raised anywhere in a page to answer with "303 See Other" to ``location``."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class PageRoute(APIRoute):
    """Page routes: redirects and domain errors become pages; every page gets the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except _Redirect as redirect:
                response = RedirectResponse(redirect.location, status_code=303)
            except Unauthorized:
                response = RedirectResponse(_login_url(request), status_code=303)
            except DomainError as exc:
                response = render_error(request, exc.status, exc.message)
            except Exception:
                # Logged with its traceback; the reader gets a page, not a bare "Internal Server Error".
                log.exception("page %s %s failed", request.method, request.url.path)
                response = render_error(request, 500, "")
            for name, value in PAGE_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return run


router = APIRouter(include_in_schema=False, route_class=PageRoute)

_env = Environment(
    loader=FileSystemLoader(WEB_DIR / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@cache
def _static_version(path: str) -> str:
    return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:10]


def static_url(path: str) -> str:
    """URL of a static file, with a content hash so browsers never keep a stale copy."""
    return f"/static/{path}?v={_static_version(path)}"


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def translator(request: Request) -> Translator:
    ctx: AppContext = request.app.state.ctx
    return Translator.for_locale(pick_locale(request.cookies.get(LANG_COOKIE), ctx.settings.default_locale))


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (another site, a scheme) becomes "/"."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(ch) < 32 for ch in value)
    ):
        return "/"
    return value


def _login_url(request: Request) -> str:
    return "/login?" + urlencode({"next": _here(request)})


def _int(value: str | None, default: int, low: int = 1, high: int = 10_000_000) -> int:
    try:
        return min(max(int(value or default), low), high)
    except ValueError:
        return default


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass
class NavItem:
    href: str
    label: str
    active: bool


def _nav(request: Request, caller: Caller, _: Translator) -> list[NavItem]:
    p = caller.principal
    items = [("/", _("Trang chủ"))]
    if p.can_any(Perm.unit_read):
        items.append(("/org", _("Cơ cấu tổ chức")))
    if p.can_any(Perm.site_read):
        items.append(("/sites", _("Điểm cầu")))
    if p.can_any(Perm.user_read):
        items.append(("/users", _("Người dùng")))
    items.append(("/account", _("Tài khoản")))
    path = request.url.path
    return [
        NavItem(href, label, path == href or (href != "/" and path.startswith(href + "/")))
        for href, label in items
    ]


def role_summary(caller: Caller, _: Translator) -> str:
    """The caller's roles for the header, e.g. "Kỹ thuật viên điểm cầu · Tỉnh ủy Hà Giang"."""
    parts = [f"{_.role_label(r.role)} · {r.unit.name}" for r in caller.user.roles]
    return "; ".join(parts) if parts else _("Chưa được giao vai trò")


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    caller: Caller | None = None,
    status: int = 200,
    show_nav: bool = True,
) -> HTMLResponse:
    _ = translator(request)
    other = next(code for code in LOCALES if code != _.locale)
    done = request.query_params.get("done", "")
    values: dict[str, Any] = {
        "_": _,
        "ngettext": _.ngettext,
        "lang": _.locale,
        "other_lang": {"code": other, "name": LOCALE_NAMES[other]},
        "here": _here(request),
        "static": static_url,
        "caller": caller,
        "csrf": caller.auth.csrf_token if caller else "",
        "nav": _nav(request, caller, _) if caller and show_nav else [],
        "who": (
            {"name": caller.user.full_name or caller.user.username, "role": role_summary(caller, _)}
            if caller
            else None
        ),
        "done": _(DONE_MESSAGES[done]) if done in DONE_MESSAGES else "",
        "error": "",
    }
    values.update(context or {})
    html = _env.get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def render_error(request: Request, status: int, message: str) -> Response:
    """A friendly error page in the reader's language (no database access: it may be what failed)."""
    _ = translator(request)
    if status == 401:
        return RedirectResponse(_login_url(request), status_code=303, headers=PAGE_HEADERS)
    try:
        default_phrase = http.HTTPStatus(status).phrase
    except ValueError:
        default_phrase = ""
    title = ERROR_TITLES.get(status, N_("Đã có lỗi xảy ra"))
    detail = "" if message in ("", default_phrase) else _(message)
    context = {"status": status, "title": _(title), "detail": detail, "hint": _(ERROR_HINTS.get(status, ""))}
    return render(request, "error.html", context, status=status)


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    ctx: AppContext = request.app.state.ctx
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=ctx.settings.cookie_secure,
        path="/",
    )


# --- who is asking ---------------------------------------------------------------------------


def _pending_step(caller: Caller) -> str:
    """Where a session that still waits for its second factor must go."""
    return "/login/totp" if caller.user.totp_enabled else "/account/totp"


def _signed_in(request: Request, *, password_change_ok: bool) -> Caller:
    ctx = get_ctx(request)
    caller = resolve_caller(request, ctx, allow_must_change=True)
    if caller is None:
        pending = resolve_caller(request, ctx, allow_pending=True, allow_must_change=True)
        if pending is not None:
            raise _Redirect(_pending_step(pending) + "?" + urlencode({"next": _here(request)}))
        raise _Redirect(_login_url(request))
    if caller.user.must_change_password and not password_change_ok:
        raise _Redirect("/account?must=1")
    return caller


def signed_in(request: Request) -> Caller:
    """The signed-in caller; otherwise a redirect to the login (or to the step still missing)."""
    return _signed_in(request, password_change_ok=False)


def signed_in_any(request: Request) -> Caller:
    """Like ``signed_in``, also for a user who must first change their password."""
    return _signed_in(request, password_change_ok=True)


def half_signed_in(request: Request) -> Caller:
    """A session that passed the password, with or without its second factor."""
    caller = resolve_caller(request, get_ctx(request), allow_pending=True, allow_must_change=True)
    if caller is None:
        raise _Redirect(_login_url(request))
    return caller


SignedIn = Annotated[Caller, Depends(signed_in)]
SignedInAny = Annotated[Caller, Depends(signed_in_any)]
HalfSignedIn = Annotated[Caller, Depends(half_signed_in)]
FormStr = Annotated[str, Form()]
OptionalForm = Annotated[str | None, Form()]


def _web(request: Request, caller: Caller) -> Web:
    return Web(get_ctx(request), caller)


def _check_csrf(request: Request, caller: Caller, token: str) -> None:
    check_csrf(request, caller, token or None)


def _invalid(_: Translator, exc: ValidationError) -> str:
    """Pydantic's complaints about a form, in the reader's words, one sentence per field."""
    sentences: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error.get("loc") else ""
        if name in sentences:
            continue
        label = _(FIELD_LABELS.get(name, name))
        limits = error.get("ctx") or {}
        if error["type"] == "string_too_short":
            text = _("%(field)s phải có ít nhất %(n)s ký tự.", field=label, n=limits.get("min_length", ""))
        elif error["type"] == "string_too_long":
            text = _("%(field)s dài quá %(n)s ký tự.", field=label, n=limits.get("max_length", ""))
        elif error["type"] == "value_error":
            # The text policy's own words (giaoban.text): what is wrong and where.
            why = str(error["msg"]).removeprefix("Value error, ")
            text = f"{label}: {why[:1].lower()}{why[1:]}"
        else:
            text = _("%(field)s chưa hợp lệ.", field=label)
        sentences[name] = text
    return " ".join(sentences.values())


# --- language --------------------------------------------------------------------------------


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/") -> Response:
    if code not in LOCALES:
        raise NotFound(N_("Không hỗ trợ ngôn ngữ này."))
    response = RedirectResponse(safe_next(next), status_code=303)
    _set_cookie(response, request, LANG_COOKIE, code, 365 * 24 * 3600)
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
        _set_cookie(response, request, LOGIN_CSRF_COOKIE, token, None)
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    if resolve_caller(request, get_ctx(request), allow_must_change=True) is not None:
        raise _Redirect(safe_next(next))
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
        result = auth_api.do_login(ctx, request, username, password[:200], None, "cookie")
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
    _set_cookie(response, request, SESSION_COOKIE, result.token, ctx.settings.session_hours * 3600)
    return response


@router.get("/login/totp")
def totp_step_form(request: Request, caller: HalfSignedIn, next: str = "/") -> Response:
    if not caller.auth.second_factor_pending:
        raise _Redirect(safe_next(next))
    if not caller.user.totp_enabled:
        raise _Redirect("/account/totp?" + urlencode({"next": safe_next(next)}))
    return render(request, "login_totp.html", {"next_url": safe_next(next)}, caller=caller, show_nav=False)


@router.post("/login/totp")
def totp_step(
    request: Request, caller: HalfSignedIn, code: FormStr = "", csrf: FormStr = "", next: FormStr = "/"
) -> Response:
    _check_csrf(request, caller, csrf)
    next_url = safe_next(next)
    if not caller.auth.second_factor_pending:
        raise _Redirect(next_url)
    w = _web(request, caller)
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
    raise _Redirect(next_url)


@router.post("/logout")
def logout(request: Request, csrf: FormStr = "") -> Response:
    ctx = get_ctx(request)
    caller = resolve_caller(request, ctx, allow_pending=True, allow_must_change=True)
    if caller is not None:
        _check_csrf(request, caller, csrf)
        with _web(request, caller).tx() as tx:
            accounts.logout(tx, tx.session.merge(caller.auth))
    response = RedirectResponse("/login?done=logout", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- home ------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, caller: SignedIn) -> Response:
    w = _web(request, caller)
    p = w.principal
    counts: dict[str, int] = {}
    own_sites: list[Any] = []
    if p.can_any(Perm.unit_read):
        counts["units"] = _units(w, limit=1).total
    if p.can_any(Perm.site_read):
        sites = sites_api.list_sites(w, unit=None, under=None, status=None, q=None, limit=3, offset=0)
        counts["sites"] = sites.total
        if p.has_role(Role.site_operator) and sites.total <= 3:
            own_sites = sites.items
    if p.can_any(Perm.user_read):
        counts["users"] = users_api.list_users(w, q=None, role=None, unit=None, limit=1, offset=0).total
    context = {"counts": counts, "own_sites": own_sites, "is_site_operator": p.has_role(Role.site_operator)}
    return render(request, "home.html", context, caller=caller)


def _units(w: Web, *, q: str | None = None, limit: int = 50) -> Any:
    return units_api.list_units(
        w, kind=None, parent=None, under=None, roots=False, as_of=None, q=q, limit=limit, offset=0
    )


# --- org tree --------------------------------------------------------------------------------


@router.get("/org")
def org_page(request: Request, caller: SignedIn, as_of: str = "", unit: str = "") -> Response:
    _ = translator(request)
    if not caller.principal.can_any(Perm.unit_read):
        raise Forbidden(N_("Bạn không có quyền xem cơ cấu tổ chức."))
    kinds = allowed_kinds(get_ctx(request).settings.extra_unit_kinds)
    config = {
        "today": local_today().isoformat(),
        "asOf": (_date(as_of) or local_today()).isoformat(),
        "unit": _int(unit, 0, 0, 2**31 - 1) or None,
        "locale": _.locale,
        "kinds": {k: _.kind_label(k) for k in kinds},
        "statuses": {k: _(v) for k, v in SITE_STATUS_LABELS_VI.items()},
        "events": {k: _(v) for k, v in UNIT_EVENT_LABELS_VI.items()},
    }
    return render(request, "org.html", {"config": config}, caller=caller)


# --- sites -----------------------------------------------------------------------------------


def _pages(total: int, page: int) -> dict[str, int]:
    last = max(1, -(-total // PAGE_SIZE))
    return {"page": min(page, last), "last": last, "total": total}


@router.get("/sites")
def sites_page(
    request: Request, caller: SignedIn, q: str = "", status: str = "", page: str = "1"
) -> Response:
    w = _web(request, caller)
    if not w.principal.can_any(Perm.site_read):
        raise Forbidden(N_("Bạn không có quyền xem danh sách điểm cầu."))
    q = _query(q)
    status_filter = cast(SiteStatusLit | None, status if status in SITE_STATUS_LABELS_VI else None)
    number = _int(page, 1, 1, 100_000)
    result = sites_api.list_sites(
        w,
        unit=None,
        under=None,
        status=status_filter,
        q=q or None,
        limit=PAGE_SIZE,
        offset=(number - 1) * PAGE_SIZE,
    )
    context = {
        "sites": result.items,
        "pager": _pages(result.total, number),
        "q": q,
        "status": status_filter or "",
        "statuses": SITE_STATUS_LABELS_VI,
        "query": {"q": q, "status": status_filter or ""},
    }
    return render(request, "sites.html", context, caller=caller)


class FormValues(dict[str, Any]):
    """The values a form shows: what was stored, then what was sent over it; a field the post left
    out reads as "" (as a missing attribute in the template too), so re-showing a form with its
    errors never depends on which fields the post carried. Every page form is filled from one."""

    def __missing__(self, key: str) -> str:
        return ""


def form_values(*layers: dict[str, Any] | None) -> FormValues:
    values = FormValues()
    for layer in layers:
        values.update(layer or {})
    return values


def _site_page(
    request: Request, caller: Caller, site_id: int, *, error: str = "", form: dict[str, str] | None = None
) -> Response:
    w = _web(request, caller)
    p = w.principal
    with w.read() as session:
        site, unit = sites_api.readable_site(w, session, site_id)
        full = p.can_unit(Perm.site_write, unit.path)
        contacts = full or p.can_site(Perm.site_contact_write, site.id, unit.path)
        out = sites_api.site_out(site, unit)
    editable = ("name", *CONTACT_FIELDS, "status") if full else CONTACT_FIELDS if contacts else ()
    context = {
        "site": out,
        "editable": editable,
        "form": form_values({f: str(getattr(out, f)) for f in editable}, form),
        "labels": FIELD_LABELS,
        "statuses": SITE_STATUS_LABELS_VI,
        "error": error,
    }
    return render(request, "site.html", context, caller=caller, status=400 if error else 200)


@router.get("/sites/{site_id:int}")
def site_page(request: Request, caller: SignedIn, site_id: int) -> Response:
    return _site_page(request, caller, site_id)


@router.post("/sites/{site_id:int}")
def site_submit(
    request: Request,
    caller: SignedIn,
    site_id: int,
    csrf: FormStr = "",
    name: OptionalForm = None,
    location: OptionalForm = None,
    contact_name: OptionalForm = None,
    contact_phone: OptionalForm = None,
    tech_name: OptionalForm = None,
    tech_phone: OptionalForm = None,
    status: OptionalForm = None,
) -> Response:
    _check_csrf(request, caller, csrf)
    _ = translator(request)
    sent = {
        "name": name,
        "location": location,
        "contact_name": contact_name,
        "contact_phone": contact_phone,
        "tech_name": tech_name,
        "tech_phone": tech_phone,
        "status": status,
    }
    form = {k: v for k, v in sent.items() if v is not None}  # only the fields the page offered
    try:
        sites_api.update_site(_web(request, caller), site_id, SiteUpdate.model_validate(form))
    except ValidationError as exc:
        return _site_page(request, caller, site_id, error=_invalid(_, exc), form=form)
    except (Forbidden, NotFound):
        raise
    except DomainError as exc:
        return _site_page(request, caller, site_id, error=_(exc.message), form=form)
    raise _Redirect(f"/sites/{site_id}?done=site")


# --- users -----------------------------------------------------------------------------------


def _require_user_admin(w: Web) -> None:
    if not w.principal.can_any(Perm.user_read):
        raise Forbidden(N_("Bạn không có quyền quản lý người dùng."))


def _role_choices(_: Translator) -> list[tuple[str, str]]:
    return [(r.value, _.role_label(r.value)) for r in Role]


def _users_page(request: Request, caller: Caller, *, q: str, page: int) -> Response:
    w = _web(request, caller)
    _require_user_admin(w)
    result = users_api.list_users(
        w, q=q or None, role=None, unit=None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    context = {
        "users": result.items,
        "pager": _pages(result.total, page),
        "q": q,
        "query": {"q": q},
        "can_create": w.principal.can_any(Perm.user_write),
    }
    return render(request, "users.html", context, caller=caller)


@router.get("/users")
def users_page(request: Request, caller: SignedIn, q: str = "", page: str = "1") -> Response:
    return _users_page(request, caller, q=_query(q), page=_int(page, 1, 1, 100_000))


def _new_user_page(
    request: Request,
    caller: Caller,
    *,
    form: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    _ = translator(request)
    w = _web(request, caller)
    if not w.principal.can_any(Perm.user_write):
        raise Forbidden(N_("Bạn không có quyền tạo người dùng."))
    context = {
        "roles": _role_choices(_),
        "units": _units(w, limit=500).items,
        "form": form_values({"must_change": "1"} if form is None else form),
        "error": error,
    }
    return render(request, "user_new.html", context, caller=caller, status=status)


@router.get("/users/new")
def new_user_page(request: Request, caller: SignedIn) -> Response:
    return _new_user_page(request, caller)


def _typed_code(code: str) -> str | None:
    """A code as typed into a form, or None if no code could look like it (it is then "not found",
    never a query the database refuses)."""
    try:
        return clean_line(code, max_length=64)
    except TextError:
        return None


def _shown_code(code: str) -> str:
    return "".join(ch for ch in code if ch.isprintable()).strip()[:64]


def _find_unit(w: Web, _: Translator, code: str) -> int:
    typed = _typed_code(code)
    code = typed or _shown_code(code)
    for unit in _units(w, q=typed, limit=50).items if typed else ():
        if unit.code == code:
            return unit.id
    message = _("Không tìm thấy đơn vị có mã “%(code)s” trong phạm vi của bạn.", code=code)
    raise DomainError(message, code="unit_not_found")


def _find_site(w: Web, _: Translator, code: str) -> int:
    typed = _typed_code(code)
    code = typed or _shown_code(code)
    found = (
        sites_api.list_sites(w, unit=None, under=None, status=None, q=typed, limit=50, offset=0).items
        if typed
        else []
    )
    for site in found:
        if site.code == code:
            return site.id
    message = _("Không tìm thấy điểm cầu có mã “%(code)s” trong phạm vi của bạn.", code=code)
    raise DomainError(message, code="site_not_found")


def _new_role(w: Web, _: Translator, role: str, unit_code: str, site_code: str) -> RoleIn | None:
    """The role row of a form, with unit and site given by their codes; None when left empty."""
    if not role:
        return None
    if not unit_code.strip():
        raise DomainError(_("Hãy nhập mã đơn vị cho vai trò được giao."), code="unit_required")
    unit_id = _find_unit(w, _, unit_code)
    site_id = _find_site(w, _, site_code) if site_code.strip() else None
    return RoleIn.model_validate({"role": role, "unit_id": unit_id, "site_id": site_id})


@router.post("/users")
def user_create(
    request: Request,
    caller: SignedIn,
    csrf: FormStr = "",
    username: FormStr = "",
    full_name: FormStr = "",
    email: FormStr = "",
    phone: FormStr = "",
    password: FormStr = "",
    role: FormStr = "",
    unit_code: FormStr = "",
    site_code: FormStr = "",
    must_change: FormStr = "",
) -> Response:
    _check_csrf(request, caller, csrf)
    _ = translator(request)
    w = _web(request, caller)
    form = {
        "username": username,
        "full_name": full_name,
        "email": email,
        "phone": phone,
        "role": role,
        "unit_code": unit_code,
        "site_code": site_code,
        "must_change": must_change,
    }
    try:
        new_role = _new_role(w, _, role, unit_code, site_code)
        body = UserCreate(
            username=username.strip(),
            password=password,
            full_name=full_name,
            email=email,
            phone=phone,
            roles=[new_role] if new_role else [],
            must_change_password=bool(must_change),
        )
        created = users_api.create_user(w, body)
    except ValidationError as exc:
        return _new_user_page(request, caller, form=form, error=_invalid(_, exc), status=400)
    except DomainError as exc:
        return _new_user_page(request, caller, form=form, error=_(exc.message), status=exc.status)
    raise _Redirect(f"/users/{created.id}?done=created")


def _user_page(
    request: Request, caller: Caller, user_id: int, *, errors: dict[str, str] | None = None
) -> Response:
    _ = translator(request)
    w = _web(request, caller)
    _require_user_admin(w)
    user = users_api.get_user(w, user_id)  # an audited read of personal data
    with w.read() as session:
        try:
            users_api.writable_user(w, session, user_id)
            manageable = True
        except DomainError:
            manageable = False
    sites: dict[int, str] = {}
    for r in user.roles:
        if r.site_id is not None:
            try:
                site = sites_api.get_site(w, r.site_id)
                sites[r.site_id] = f"{site.code} · {site.name}"
            except NotFound:
                sites[r.site_id] = f"#{r.site_id}"
    is_self = user_id == caller.principal.user_id
    context = {
        "user": user,
        "manageable": manageable,
        "is_self": is_self,
        "role_sites": sites,
        "roles": _role_choices(_),
        "units": _units(w, limit=500).items if manageable else [],
        "errors": errors or {},
    }
    status = 400 if errors else 200
    return render(request, "user.html", context, caller=caller, status=status)


@router.get("/users/{user_id:int}")
def user_page(request: Request, caller: SignedIn, user_id: int) -> Response:
    return _user_page(request, caller, user_id)


def _user_action(
    request: Request, caller: Caller, user_id: int, section: str, done: str, action: Callable[[Web], Any]
) -> Response:
    """Run one change on a user; on a refusal show the user's page with the reason in ``section``."""
    _ = translator(request)
    w = _web(request, caller)
    _require_user_admin(w)
    try:
        action(w)
    except ValidationError as exc:
        return _user_page(request, caller, user_id, errors={section: _invalid(_, exc)})
    except NotFound:
        raise
    except DomainError as exc:
        return _user_page(request, caller, user_id, errors={section: _(exc.message)})
    raise _Redirect(f"/users/{user_id}?done={done}")


@router.post("/users/{user_id:int}/details")
def user_details(
    request: Request,
    caller: SignedIn,
    user_id: int,
    csrf: FormStr = "",
    full_name: FormStr = "",
    email: FormStr = "",
    phone: FormStr = "",
) -> Response:
    _check_csrf(request, caller, csrf)
    body = {"full_name": full_name, "email": email, "phone": phone}
    return _user_action(
        request,
        caller,
        user_id,
        "details",
        "details",
        lambda w: users_api.update_user(w, user_id, UserUpdate.model_validate(body)),
    )


@router.post("/users/{user_id:int}/roles")
def user_roles(
    request: Request,
    caller: SignedIn,
    user_id: int,
    csrf: FormStr = "",
    keep: Annotated[list[str], Form()] = [],  # noqa: B006  # FastAPI copies form defaults
    role: FormStr = "",
    unit_code: FormStr = "",
    site_code: FormStr = "",
) -> Response:
    _check_csrf(request, caller, csrf)

    _ = translator(request)

    def change(w: Web) -> None:
        roles = [_kept_role(value) for value in keep[:50]]
        new_role = _new_role(w, _, role, unit_code, site_code)
        if new_role:
            roles.append(new_role)
        users_api.set_roles(w, user_id, RolesIn(roles=roles))

    return _user_action(request, caller, user_id, "roles", "roles", change)


def _kept_role(value: str) -> RoleIn:
    """A role the form lists as kept: "role:unit_id:site_id" (site may be empty)."""
    role, _sep, rest = value.partition(":")
    unit_id, _sep, site_id = rest.partition(":")
    try:
        ids = {"unit_id": int(unit_id), "site_id": int(site_id) if site_id else None}
    except ValueError:
        raise DomainError(N_("Danh sách vai trò gửi lên không hợp lệ."), code="invalid_role") from None
    return RoleIn.model_validate({"role": role, **ids})


@router.post("/users/{user_id:int}/lock")
def user_lock(
    request: Request,
    caller: SignedIn,
    user_id: int,
    csrf: FormStr = "",
    locked: FormStr = "",
    reason: FormStr = "",
) -> Response:
    _check_csrf(request, caller, csrf)
    lock = locked == "1"
    return _user_action(
        request,
        caller,
        user_id,
        "lock",
        "locked" if lock else "unlocked",
        lambda w: users_api.lock_user(w, user_id, LockIn(locked=lock, reason=reason)),
    )


@router.post("/users/{user_id:int}/password")
def user_password(
    request: Request,
    caller: SignedIn,
    user_id: int,
    csrf: FormStr = "",
    new_password: FormStr = "",
    must_change: FormStr = "",
) -> Response:
    _check_csrf(request, caller, csrf)
    body = {"new_password": new_password, "must_change": bool(must_change)}
    return _user_action(
        request,
        caller,
        user_id,
        "password",
        "reset",
        lambda w: users_api.reset_password(w, user_id, PasswordReset.model_validate(body)),
    )


# --- own account -----------------------------------------------------------------------------


def _account_page(
    request: Request, caller: Caller, *, errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    ctx = get_ctx(request)
    must = caller.user.must_change_password
    totp_required = ctx.settings.admin_totp_required and caller.principal.has_role(Role.admin)
    context = {
        "user": caller.user,
        "must_change": must,
        "totp_required": totp_required,
        "errors": errors or {},
    }
    return render(request, "account.html", context, caller=caller, status=status, show_nav=not must)


@router.get("/account")
def account_page(request: Request, caller: SignedInAny) -> Response:
    return _account_page(request, caller)


@router.post("/account/password")
def account_password(
    request: Request,
    caller: SignedInAny,
    csrf: FormStr = "",
    current_password: FormStr = "",
    new_password: FormStr = "",
    confirm_password: FormStr = "",
) -> Response:
    _check_csrf(request, caller, csrf)
    _ = translator(request)
    if new_password != confirm_password:
        error = _("Mật khẩu mới và mật khẩu nhập lại không giống nhau.")
        return _account_page(request, caller, errors={"password": error}, status=400)
    try:
        body = PasswordChange(current_password=current_password, new_password=new_password)
        auth_api.change_password(_web(request, caller), body)
    except ValidationError as exc:
        return _account_page(request, caller, errors={"password": _invalid(_, exc)}, status=400)
    except DomainError as exc:
        return _account_page(request, caller, errors={"password": _(exc.message)}, status=exc.status)
    raise _Redirect("/account?done=password")


def otpauth_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Giao Ban")


def qr_svg(data: str, label: str) -> Markup:
    """A QR code as inline SVG (no image request, no script)."""
    svg = segno.make(data, error="m").svg_inline(scale=5, border=3, dark="#111111", light="#ffffff")
    labelled = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(label)}" ', 1)
    return Markup(labelled)  # segno's own markup, our escaped label


def _totp_page(
    request: Request, caller: Caller, next_url: str, *, error: str = "", status: int = 200
) -> Response:
    _ = translator(request)
    user = caller.user
    secret = None if user.totp_enabled else user.totp_secret
    uri = otpauth_uri(secret, user.username) if secret else ""
    context = {
        "enabled": user.totp_enabled,
        "pending": caller.auth.second_factor_pending,
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)) if secret else "",
        "uri": uri,
        "qr": qr_svg(uri, _("Mã QR để thêm tài khoản vào ứng dụng xác thực")) if uri else "",
        "next_url": next_url,
        "error": error,
    }
    return render(
        request, "account_totp.html", context, caller=caller, status=status, show_nav=not context["pending"]
    )


def _totp_caller(request: Request) -> Caller:
    """Enrolment is open to a signed-in user, and to a half-open login that must enrol first."""
    caller = half_signed_in(request)
    if caller.auth.second_factor_pending and caller.user.totp_enabled:
        raise _Redirect("/login/totp")
    return caller


@router.get("/account/totp")
def totp_page(request: Request, next: str = "/account") -> Response:
    caller = _totp_caller(request)
    return _totp_page(request, caller, safe_next(next))


@router.post("/account/totp")
def totp_submit(
    request: Request, csrf: FormStr = "", action: FormStr = "", code: FormStr = "", next: FormStr = "/account"
) -> Response:
    caller = _totp_caller(request)
    _check_csrf(request, caller, csrf)
    _ = translator(request)
    next_url = safe_next(next)
    again = "/account/totp?" + urlencode({"next": next_url})
    w = _web(request, caller)
    if action == "begin":
        with w.tx() as tx:
            accounts.begin_totp_enrollment(tx, caller.user.id)
        raise _Redirect(again)
    try:
        with w.tx() as tx:
            accounts.confirm_totp(tx, caller.user.id, code[:12], tx.session.merge(caller.auth))
    except DomainError as exc:
        return _totp_page(request, caller, next_url, error=_(exc.message), status=400)
    raise _Redirect(next_url + ("&" if "?" in next_url else "?") + "done=totp_on")


@router.post("/account/totp/disable")
def totp_disable(request: Request, caller: SignedIn, csrf: FormStr = "", code: FormStr = "") -> Response:
    _check_csrf(request, caller, csrf)
    _ = translator(request)
    try:
        auth_api.disable_totp(_web(request, caller), TotpCode(code=code[:12]))
    except ValidationError:
        return _account_page(request, caller, errors={"totp": _("Mã xác thực không đúng.")}, status=400)
    except DomainError as exc:
        return _account_page(request, caller, errors={"totp": _(exc.message)}, status=exc.status)
    raise _Redirect("/account?done=totp_off")
