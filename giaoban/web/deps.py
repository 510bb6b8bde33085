"""Request plumbing shared by the API and the pages: who is calling, CSRF, units of work."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy.orm import Session, selectinload

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.errors import Forbidden, Unauthorized
from giaoban.org import accounts
from giaoban.org.access import Principal
from giaoban.org.models import AuthSession, RoleAssignment, User
from giaoban.org.units import root_path

SESSION_COOKIE = "gb_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: Request) -> str:
    """The client's address: the peer's, unless the peer is a trusted reverse proxy
    (``GIAOBAN_TRUSTED_PROXIES``); then the right-most X-Forwarded-For hop that is not itself a
    trusted proxy. Hops to the left of that one could be written by the client, so never count."""
    peer = request.client.host if request.client else ""
    ctx: AppContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None or not ctx.settings.trusted_proxies:
        return peer
    networks = ctx.settings.trusted_proxy_networks()

    def trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return addr is not None and any(addr in net for net in networks)

    if not trusted(_address(peer)):
        return peer
    hops = [h.strip() for line in request.headers.getlist("x-forwarded-for") for h in line.split(",")]
    client = peer
    for hop in reversed([h for h in hops if h]):
        addr = _address(hop)
        if addr is None:
            return client  # garbage in the chain: stop at the last address a trusted proxy vouched for
        client = str(addr)
        if not trusted(addr):
            return client
    return client


@dataclass
class Caller:
    """The authenticated caller of one request."""

    principal: Principal
    auth: AuthSession
    user: User
    via_cookie: bool

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.user_id, self.principal.username, self.principal.ip)


def _token(request: Request) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(SESSION_COOKIE), True


def resolve_caller(
    request: Request, ctx: AppContext, *, allow_pending: bool = False, allow_must_change: bool = False
) -> Caller | None:
    """The caller behind the request's bearer token or session cookie, or None.

    One who must change their password first counts only where ``allow_must_change`` says so (the
    pages, which send them to /account; the API, which answers ``password_change_required``);
    anywhere else (the live room's WebSockets) they are not signed in yet."""
    token, via_cookie = _token(request)
    if not token:
        return None
    with ctx.db.session() as session:
        auth = accounts.session_for_token(session, token)
        if auth is None:
            return None
        if via_cookie != (auth.kind == "cookie"):
            return None  # a cookie token is not a bearer token, and the other way round
        if auth.second_factor_pending and not allow_pending:
            return None
        user = session.get(
            User, auth.user_id, options=[selectinload(User.roles).selectinload(RoleAssignment.unit)]
        )
        if user is None or user.is_locked or (user.must_change_password and not allow_must_change):
            return None
        accounts.touch(auth)
        principal = Principal.from_user(user, ip=client_ip(request), root_path=root_path(session))
        return Caller(principal=principal, auth=auth, user=user, via_cookie=via_cookie)


def check_csrf(request: Request, caller: Caller, form_token: str | None = None) -> None:
    """Cookie-authenticated changes must carry the session's CSRF token (header or form field)."""
    if request.method in SAFE_METHODS or not caller.via_cookie:
        return
    sent = form_token or request.headers.get(CSRF_HEADER) or ""
    # As bytes: compare_digest refuses str with non-ASCII characters, which a forged token may hold.
    if not hmac.compare_digest(sent.encode(), caller.auth.csrf_token.encode()):
        raise Forbidden("Thiếu hoặc sai mã chống giả mạo (CSRF). Tải lại trang và thử lại.", code="csrf")


def _api_caller(request: Request, ctx: AppContext) -> Caller:
    caller = resolve_caller(request, ctx, allow_must_change=True)
    if caller is None:
        raise Unauthorized("Chưa đăng nhập hoặc phiên đã hết hạn.", code="not_authenticated")
    check_csrf(request, caller)
    return caller


def api_caller(request: Request, ctx: AppContext = Depends(get_ctx)) -> Caller:
    """The caller of an API route. One who must change their password (a new account, a reset) may
    do nothing else first, by bearer token as by cookie: only ``api_caller_any`` routes answer."""
    caller = _api_caller(request, ctx)
    if caller.user.must_change_password:
        raise Forbidden(
            "Bạn cần đổi mật khẩu trước khi tiếp tục (POST /api/v1/auth/password).",
            code="password_change_required",
        )
    return caller


def api_caller_any(request: Request, ctx: AppContext = Depends(get_ctx)) -> Caller:
    """Like ``api_caller``, also for one who must first change their password (to change it, or to
    log out)."""
    return _api_caller(request, ctx)


class Web:
    """Per-request access to units of work, bound to the caller for the audit trail."""

    def __init__(self, ctx: AppContext, caller: Caller) -> None:
        self.ctx = ctx
        self.caller = caller

    @property
    def principal(self) -> Principal:
        return self.caller.principal

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        with self.ctx.db.session() as session:
            yield Tx(session=session, audit=self.ctx.audit, actor=self.caller.actor)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.ctx.db.session() as session:
            yield session


def web(ctx: AppContext = Depends(get_ctx), caller: Caller = Depends(api_caller)) -> Web:
    return Web(ctx, caller)


def web_any(ctx: AppContext = Depends(get_ctx), caller: Caller = Depends(api_caller_any)) -> Web:
    """``web`` for the routes open to one who must first change their password."""
    return Web(ctx, caller)
