"""The page machinery every page module shares: the route class that turns redirects and domain
errors into pages, rendering with the reader's language, who is signed in, form helpers.

Pages parse forms, check the CSRF token, call a domain function (``giaoban.org``,
``giaoban.meetings``, ``giaoban.live``: the same functions the JSON API calls, which hold every
rule of who may see or change what) and render. Forms are plain HTML posts answered with a redirect
(post/redirect/get). Pages never import the JSON API (tests/web/test_layers.py).

Before a session exists the login form is protected by a signed double-submit cookie; after login
every form carries the session's own CSRF token.
"""

from __future__ import annotations

import hashlib
import http
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError

from giaoban.context import AppContext
from giaoban.errors import DomainError, Unauthorized
from giaoban.org.access import Perm
from giaoban.text import searchable
from giaoban.web.deps import Caller, Web, check_csrf, get_ctx, resolve_caller
from giaoban.web.i18n import LANG_COOKIE, LOCALE_NAMES, LOCALES, N_, Translator, pick_locale

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
LOGIN_CSRF_COOKIE = "gb_login_csrf"
PAGE_SIZE = 20
MAX_QUERY = 100


def query_text(q: str) -> str:
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


class Redirect(Exception):
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
            except Redirect as redirect:
                response = RedirectResponse(redirect.location, status_code=303)
            except Unauthorized:
                response = RedirectResponse(login_url(request), status_code=303)
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


def here_url(request: Request) -> str:
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


def login_url(request: Request) -> str:
    return "/login?" + urlencode({"next": here_url(request)})


def form_int(value: str | None, default: int, low: int = 1, high: int = 10_000_000) -> int:
    try:
        return min(max(int(value or default), low), high)
    except ValueError:
        return default


def form_date(value: str | None) -> date | None:
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
        "here": here_url(request),
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
        return RedirectResponse(login_url(request), status_code=303, headers=PAGE_HEADERS)
    try:
        default_phrase = http.HTTPStatus(status).phrase
    except ValueError:
        default_phrase = ""
    title = ERROR_TITLES.get(status, N_("Đã có lỗi xảy ra"))
    detail = "" if message in ("", default_phrase) else _(message)
    context = {"status": status, "title": _(title), "detail": detail, "hint": _(ERROR_HINTS.get(status, ""))}
    return render(request, "error.html", context, status=status)


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
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


def pending_step(caller: Caller) -> str:
    """Where a session that still waits for its second factor must go."""
    return "/login/totp" if caller.user.totp_enabled else "/account/totp"


def _signed_in(request: Request, *, password_change_ok: bool) -> Caller:
    ctx = get_ctx(request)
    caller = resolve_caller(request, ctx, allow_must_change=True)
    if caller is None:
        pending = resolve_caller(request, ctx, allow_pending=True, allow_must_change=True)
        if pending is not None:
            raise Redirect(pending_step(pending) + "?" + urlencode({"next": here_url(request)}))
        raise Redirect(login_url(request))
    if caller.user.must_change_password and not password_change_ok:
        raise Redirect("/account?must=1")
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
        raise Redirect(login_url(request))
    return caller


SignedIn = Annotated[Caller, Depends(signed_in)]
SignedInAny = Annotated[Caller, Depends(signed_in_any)]
HalfSignedIn = Annotated[Caller, Depends(half_signed_in)]
FormStr = Annotated[str, Form()]
OptionalForm = Annotated[str | None, Form()]


def page_web(request: Request, caller: Caller) -> Web:
    return Web(get_ctx(request), caller)


def check_form_csrf(request: Request, caller: Caller, token: str) -> None:
    check_csrf(request, caller, token or None)


def invalid_message(_: Translator, exc: ValidationError) -> str:
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


# --- forms ---------------------------------------------------------------------------------------


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


def pager(total: int, page: int) -> dict[str, int]:
    last = max(1, -(-total // PAGE_SIZE))
    return {"page": min(page, last), "last": last, "total": total}
