"""/api/v1/auth: bearer tokens for scripts, the caller's identity, password change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.errors import DomainError
from giaoban.org import accounts
from giaoban.org.access import Perm
from giaoban.org.schemas import LoginIn, LoginOut, MeOut, PasswordChange, TotpCode
from giaoban.web.api.common import ERRORS, THROTTLED, ApiRoute
from giaoban.web.api.users import user_out
from giaoban.web.deps import SESSION_COOKIE, Web, client_ip, get_ctx, web, web_any

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERRORS, route_class=ApiRoute)


def do_login(
    ctx: AppContext, request: Request, username: str, password: str, totp: str | None, kind: str
) -> accounts.LoginResult:
    """Shared by the API and the login page: failed attempts are committed, then reported."""
    actor = Actor(None, accounts.login_key(username), client_ip(request))
    with ctx.db.session() as session:
        result = accounts.login(
            Tx(session, ctx.audit, actor),
            ctx.settings,
            username=username,
            password=password,
            totp=totp,
            kind=kind,
            user_agent=request.headers.get("user-agent", ""),
            replaces=request.cookies.get(SESSION_COOKIE),
        )
    if isinstance(result, accounts.LoginFailure):
        raise result.error
    return result


@router.post("/login", response_model=LoginOut, responses=THROTTLED, summary="Log in; returns a bearer token")
def login(body: LoginIn, request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> LoginOut:
    result = do_login(ctx, request, body.username, body.password, body.totp, "bearer")
    with ctx.db.session() as session:
        user = accounts.get_user(session, result.user.id)
        return LoginOut(
            token=result.token,
            expires_at=result.session.expires_at,
            user=user_out(user),
            must_change_password=user.must_change_password,
        )


@router.post("/logout", status_code=204, summary="End this token or session")
def logout(w: Annotated[Web, Depends(web_any)]) -> None:
    with w.tx() as tx:
        auth = tx.session.merge(w.caller.auth)
        accounts.logout(tx, auth)


@router.get("/me", response_model=MeOut, summary="Who am I, and where may I do what")
def me(w: Annotated[Web, Depends(web)]) -> MeOut:
    p = w.principal
    perms = {}
    for perm in Perm:
        ids = [int(path.strip("/").split("/")[-1]) for path in p.unit_paths(perm)]
        if ids:
            perms[perm.value] = ids
    return MeOut(user=user_out(w.caller.user), permissions=perms)


@router.post("/password", status_code=204, responses=THROTTLED, summary="Change my password")
def change_password(w: Annotated[Web, Depends(web_any)], body: PasswordChange) -> None:
    """A wrong current password counts as a failed login, so a borrowed session cannot be used to
    guess the password at full speed."""
    p = w.principal
    with w.read() as session:
        accounts.check_not_throttled(session, w.ctx.settings, p.username, p.ip)
    try:
        with w.tx() as tx:
            accounts.change_password(
                tx, p.user_id, body.current_password, body.new_password, w.caller.auth.id
            )
    except DomainError as exc:
        if exc.code == "wrong_password":
            with w.ctx.db.session() as session:
                accounts.record_failed_attempt(session, p.username, p.ip)
        raise


@router.post(
    "/totp/disable", status_code=204, responses=THROTTLED, summary="Turn off my two-factor authentication"
)
def disable_totp(w: Annotated[Web, Depends(web)], body: TotpCode) -> None:
    """Needs a current code; refused (403 ``totp_required_for_admin``) for a system admin while
    ``GIAOBAN_ADMIN_TOTP_REQUIRED`` is on (``accounts.disable_totp``; the account page calls this).
    A wrong code counts as a failed login, so a borrowed session cannot guess codes at full speed."""
    p = w.principal
    with w.read() as session:
        accounts.check_not_throttled(session, w.ctx.settings, p.username, p.ip)
    try:
        with w.tx() as tx:
            accounts.disable_totp(tx, w.ctx.settings, p.user_id, body.code)
    except DomainError as exc:
        if exc.code == "bad_totp":
            with w.ctx.db.session() as session:
                accounts.record_failed_attempt(session, p.username, p.ip)
        raise
