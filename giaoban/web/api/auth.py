"""/api/v1/auth: bearer tokens for scripts, the caller's identity, password change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from giaoban.context import AppContext
from giaoban.org import accounts
from giaoban.org.access import Perm
from giaoban.org.schemas import LoginIn, LoginOut, MeOut, PasswordChange, TotpCode, user_out
from giaoban.web.api.common import ERRORS, THROTTLED, ApiRoute
from giaoban.web.deps import SESSION_COOKIE, Web, client_ip, get_ctx, web, web_any

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERRORS, route_class=ApiRoute)


@router.post("/login", response_model=LoginOut, responses=THROTTLED, summary="Log in; returns a bearer token")
def login(body: LoginIn, request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> LoginOut:
    result = accounts.sign_in(
        ctx,
        username=body.username,
        password=body.password,
        totp=body.totp,
        kind="bearer",
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
        replaces=request.cookies.get(SESSION_COOKIE),
    )
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
    accounts.change_own_password(
        w.ctx, w.principal, body.current_password, body.new_password, w.caller.auth.id
    )


@router.post(
    "/totp/disable", status_code=204, responses=THROTTLED, summary="Turn off my two-factor authentication"
)
def disable_totp(w: Annotated[Web, Depends(web)], body: TotpCode) -> None:
    """Needs a current code; refused (403 ``totp_required_for_admin``) for a system admin while
    ``GIAOBAN_ADMIN_TOTP_REQUIRED`` is on (``accounts.disable_totp``; the account page calls this).
    A wrong code counts as a failed login, so a borrowed session cannot guess codes at full speed."""
    accounts.disable_own_totp(w.ctx, w.principal, body.code)
