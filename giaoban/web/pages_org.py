"""Pages of the organization: the org tree, sites ("điểm cầu") and users with their roles.

Each page parses its form, calls the organization's domain functions (``giaoban.org.tree``,
``sites``, ``accounts``, whose rules of who may see or change what live in ``giaoban.org.scope``)
and renders; the JSON API calls the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from giaoban.errors import DomainError, Forbidden, NotFound
from giaoban.org import accounts, scope, tree
from giaoban.org import sites as site_svc
from giaoban.org.access import Perm
from giaoban.org.models import Role
from giaoban.org.schemas import (
    LockIn,
    PasswordReset,
    RoleIn,
    RolesIn,
    SiteOut,
    SiteStatusLit,
    SiteUpdate,
    UnitOut,
    UserCreate,
    UserUpdate,
    site_out,
    unit_out,
    user_detail,
    user_out,
)
from giaoban.org.units import allowed_kinds
from giaoban.text import TextError, clean_line
from giaoban.types import Listing, local_today
from giaoban.web.deps import Caller, Web, get_ctx
from giaoban.web.i18n import N_, SITE_STATUS_LABELS_VI, UNIT_EVENT_LABELS_VI, Translator
from giaoban.web.pagekit import (
    FIELD_LABELS,
    PAGE_SIZE,
    FormStr,
    OptionalForm,
    PageRoute,
    Redirect,
    SignedIn,
    check_form_csrf,
    form_date,
    form_int,
    form_values,
    invalid_message,
    page_web,
    pager,
    query_text,
    render,
    translator,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)


# --- org tree --------------------------------------------------------------------------------


def _units(w: Web, *, q: str | None = None, limit: int = 50) -> Listing[UnitOut]:
    with w.read() as session:
        found = tree.list_units(session, w.principal, tree.UnitQuery(q=q, limit=limit))
        return Listing([unit_out(r.version, r.code, r.child_count) for r in found.items], found.total)


def _sites(
    w: Web, *, q: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
) -> Listing[SiteOut]:
    with w.read() as session:
        f = site_svc.SiteFilter(status=status, q=q)
        found = site_svc.list_sites(session, w.principal, f, limit=limit, offset=offset)
        return Listing([site_out(s, u) for s, u in found.items], found.total)


@router.get("/org")
def org_page(request: Request, caller: SignedIn, as_of: str = "", unit: str = "") -> Response:
    _ = translator(request)
    if not caller.principal.can_any(Perm.unit_read):
        raise Forbidden(N_("Bạn không có quyền xem cơ cấu tổ chức."))
    kinds = allowed_kinds(get_ctx(request).settings.extra_unit_kinds)
    config = {
        "today": local_today().isoformat(),
        "asOf": (form_date(as_of) or local_today()).isoformat(),
        "unit": form_int(unit, 0, 0, 2**31 - 1) or None,
        "locale": _.locale,
        "kinds": {k: _.kind_label(k) for k in kinds},
        "statuses": {k: _(v) for k, v in SITE_STATUS_LABELS_VI.items()},
        "events": {k: _(v) for k, v in UNIT_EVENT_LABELS_VI.items()},
    }
    return render(request, "org.html", {"config": config}, caller=caller)


# --- sites -----------------------------------------------------------------------------------


@router.get("/sites")
def sites_page(
    request: Request, caller: SignedIn, q: str = "", status: str = "", page: str = "1"
) -> Response:
    w = page_web(request, caller)
    if not w.principal.can_any(Perm.site_read):
        raise Forbidden(N_("Bạn không có quyền xem danh sách điểm cầu."))
    q = query_text(q)
    status_filter = cast(SiteStatusLit | None, status if status in SITE_STATUS_LABELS_VI else None)
    number = form_int(page, 1, 1, 100_000)
    result = _sites(w, status=status_filter, q=q or None, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
    context = {
        "sites": result.items,
        "pager": pager(result.total, number),
        "q": q,
        "status": status_filter or "",
        "statuses": SITE_STATUS_LABELS_VI,
        "query": {"q": q, "status": status_filter or ""},
    }
    return render(request, "sites.html", context, caller=caller)


def _site_page(
    request: Request, caller: Caller, site_id: int, *, error: str = "", form: dict[str, str] | None = None
) -> Response:
    w = page_web(request, caller)
    p = w.principal
    with w.read() as session:
        site, unit = scope.readable_site(session, p, site_id)
        editable = site_svc.editable_fields(p, site, unit)
        out = site_out(site, unit)
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
    fields: FormStr = "",
    name: OptionalForm = None,
    location: OptionalForm = None,
    contact_name: OptionalForm = None,
    contact_phone: OptionalForm = None,
    tech_name: OptionalForm = None,
    tech_phone: OptionalForm = None,
    status: OptionalForm = None,
) -> Response:
    check_form_csrf(request, caller, csrf)
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
    # Only the fields the page offered: ``fields`` names them, so one left empty is cleared (the
    # form layer reads an empty field as absent); without it, only the fields sent.
    offered = [f for f in fields.split(",") if f in sent]
    form = {k: sent[k] or "" for k in offered} | {k: v for k, v in sent.items() if v is not None}
    try:
        body = SiteUpdate.model_validate(form)
        with page_web(request, caller).tx() as tx:
            changes = body.model_dump(exclude_unset=True, exclude={"unit_id"})
            site_svc.edit_site(tx, caller.principal, site_id, changes, body.unit_id)
    except ValidationError as exc:
        return _site_page(request, caller, site_id, error=invalid_message(_, exc), form=form)
    except (Forbidden, NotFound):
        raise
    except DomainError as exc:
        return _site_page(request, caller, site_id, error=_(exc.message), form=form)
    raise Redirect(f"/sites/{site_id}?done=site")


# --- users -----------------------------------------------------------------------------------


def _require_user_admin(w: Web) -> None:
    scope.require_user_admin(w.principal)


def _role_choices(_: Translator) -> list[tuple[str, str]]:
    return [(r.value, _.role_label(r.value)) for r in Role]


def _users_page(request: Request, caller: Caller, *, q: str, page: int) -> Response:
    w = page_web(request, caller)
    _require_user_admin(w)
    with w.read() as session:
        f = accounts.UserQuery(q=q or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        result = accounts.list_users(session, w.principal, f)
        users = [user_out(u) for u in result.items]
    context = {
        "users": users,
        "pager": pager(result.total, page),
        "q": q,
        "query": {"q": q},
        "can_create": w.principal.can_any(Perm.user_write),
    }
    return render(request, "users.html", context, caller=caller)


@router.get("/users")
def users_page(request: Request, caller: SignedIn, q: str = "", page: str = "1") -> Response:
    return _users_page(request, caller, q=query_text(q), page=form_int(page, 1, 1, 100_000))


def _new_user_page(
    request: Request,
    caller: Caller,
    *,
    form: dict[str, str] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    _ = translator(request)
    w = page_web(request, caller)
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
    found = _sites(w, q=typed, limit=50).items if typed else []
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
    check_form_csrf(request, caller, csrf)
    _ = translator(request)
    w = page_web(request, caller)
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
        with w.tx() as tx:
            fields = body.model_dump(exclude={"roles"})
            roles = [(r.role, r.unit_id, r.site_id) for r in body.roles]
            created = accounts.add_user(tx, w.principal, roles=roles, **fields)
    except ValidationError as exc:
        return _new_user_page(request, caller, form=form, error=invalid_message(_, exc), status=400)
    except DomainError as exc:
        return _new_user_page(request, caller, form=form, error=_(exc.message), status=exc.status)
    raise Redirect(f"/users/{created.id}?done=created")


def _user_page(
    request: Request, caller: Caller, user_id: int, *, errors: dict[str, str] | None = None
) -> Response:
    _ = translator(request)
    w = page_web(request, caller)
    _require_user_admin(w)
    with w.tx() as tx:
        found = accounts.read_user(tx, w.principal, user_id)  # an audited read of personal data
        user = user_detail(found)
        manageable = scope.user_manageable(w.principal, found)
    sites: dict[int, str] = {}
    for r in user.roles:
        if r.site_id is not None:
            try:
                with w.read() as session:
                    site = site_out(*scope.readable_site(session, w.principal, r.site_id))
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
    w = page_web(request, caller)
    _require_user_admin(w)
    try:
        action(w)
    except ValidationError as exc:
        return _user_page(request, caller, user_id, errors={section: invalid_message(_, exc)})
    except NotFound:
        raise
    except DomainError as exc:
        return _user_page(request, caller, user_id, errors={section: _(exc.message)})
    raise Redirect(f"/users/{user_id}?done={done}")


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
    check_form_csrf(request, caller, csrf)
    body = {"full_name": full_name, "email": email, "phone": phone}
    return _user_action(
        request,
        caller,
        user_id,
        "details",
        "details",
        lambda w: _edit(w, user_id, UserUpdate.model_validate(body)),
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
    check_form_csrf(request, caller, csrf)

    _ = translator(request)

    def change(w: Web) -> None:
        roles = [_kept_role(value) for value in keep[:50]]
        new_role = _new_role(w, _, role, unit_code, site_code)
        if new_role:
            roles.append(new_role)
        checked = RolesIn(roles=roles)
        with w.tx() as tx:
            accounts.replace_roles(
                tx, w.principal, user_id, [(r.role, r.unit_id, r.site_id) for r in checked.roles]
            )

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
    check_form_csrf(request, caller, csrf)
    lock = locked == "1"
    return _user_action(
        request,
        caller,
        user_id,
        "lock",
        "locked" if lock else "unlocked",
        lambda w: _lock(w, user_id, LockIn(locked=lock, reason=reason)),
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
    check_form_csrf(request, caller, csrf)
    body = {"new_password": new_password, "must_change": bool(must_change)}
    return _user_action(
        request,
        caller,
        user_id,
        "password",
        "reset",
        lambda w: _reset(w, user_id, PasswordReset.model_validate(body)),
    )


def _edit(w: Web, user_id: int, body: UserUpdate) -> None:
    with w.tx() as tx:
        accounts.edit_user(tx, w.principal, user_id, **body.model_dump(exclude_unset=True))


def _lock(w: Web, user_id: int, body: LockIn) -> None:
    with w.tx() as tx:
        accounts.lock_user(tx, w.principal, user_id, body.locked, body.reason)


def _reset(w: Web, user_id: int, body: PasswordReset) -> None:
    with w.tx() as tx:
        accounts.set_password(tx, w.principal, user_id, body.new_password, must_change=body.must_change)
