"""The signed-in person's own account: password, two-factor authentication."""

from __future__ import annotations

from urllib.parse import urlencode

import pyotp
import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from pydantic import ValidationError

from giaoban.errors import DomainError
from giaoban.org import accounts
from giaoban.org.models import Role
from giaoban.org.schemas import PasswordChange, TotpCode
from giaoban.web.deps import Caller, get_ctx
from giaoban.web.pagekit import (
    FormStr,
    PageRoute,
    Redirect,
    SignedIn,
    SignedInAny,
    check_form_csrf,
    half_signed_in,
    invalid_message,
    page_web,
    render,
    safe_next,
    translator,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)


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
    check_form_csrf(request, caller, csrf)
    _ = translator(request)
    if new_password != confirm_password:
        error = _("Mật khẩu mới và mật khẩu nhập lại không giống nhau.")
        return _account_page(request, caller, errors={"password": error}, status=400)
    try:
        body = PasswordChange(current_password=current_password, new_password=new_password)
        accounts.change_own_password(
            get_ctx(request), caller.principal, body.current_password, body.new_password, caller.auth.id
        )
    except ValidationError as exc:
        return _account_page(request, caller, errors={"password": invalid_message(_, exc)}, status=400)
    except DomainError as exc:
        return _account_page(request, caller, errors={"password": _(exc.message)}, status=exc.status)
    raise Redirect("/account?done=password")


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
        raise Redirect("/login/totp")
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
    check_form_csrf(request, caller, csrf)
    _ = translator(request)
    next_url = safe_next(next)
    again = "/account/totp?" + urlencode({"next": next_url})
    w = page_web(request, caller)
    if action == "begin":
        with w.tx() as tx:
            accounts.begin_totp_enrollment(tx, caller.user.id)
        raise Redirect(again)
    try:
        with w.tx() as tx:
            accounts.confirm_totp(tx, caller.user.id, code[:12], tx.session.merge(caller.auth))
    except DomainError as exc:
        return _totp_page(request, caller, next_url, error=_(exc.message), status=400)
    raise Redirect(next_url + ("&" if "?" in next_url else "?") + "done=totp_on")


@router.post("/account/totp/disable")
def totp_disable(request: Request, caller: SignedIn, csrf: FormStr = "", code: FormStr = "") -> Response:
    check_form_csrf(request, caller, csrf)
    _ = translator(request)
    try:
        accounts.disable_own_totp(get_ctx(request), caller.principal, TotpCode(code=code[:12]).code)
    except ValidationError:
        return _account_page(request, caller, errors={"totp": _("Mã xác thực không đúng.")}, status=400)
    except DomainError as exc:
        return _account_page(request, caller, errors={"totp": _(exc.message)}, status=exc.status)
    raise Redirect("/account?done=totp_off")
