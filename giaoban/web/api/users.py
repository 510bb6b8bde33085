"""/api/v1/users: accounts and their role assignments (system admins, within their subtree)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from giaoban.errors import Forbidden, NotFound
from giaoban.org import accounts as svc
from giaoban.org.access import Perm, Principal
from giaoban.org.models import RoleAssignment, Unit, User
from giaoban.org.schemas import (
    LockIn,
    Page,
    PasswordReset,
    RoleIn,
    RoleOut,
    RolesIn,
    SearchText,
    UserCreate,
    UserDetail,
    UserOut,
    UserUpdate,
)
from giaoban.org.units import get_unit, in_any_subtree
from giaoban.text import search_key
from giaoban.types import Line
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.api.units import readable_unit
from giaoban.web.deps import Web, web

router = APIRouter(prefix="/users", tags=["users"], responses=ERRORS, route_class=ApiRoute)


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        is_locked=user.is_locked,
        totp_enabled=user.totp_enabled,
        last_login_at=user.last_login_at,
        roles=[
            RoleOut(
                role=r.role,
                unit_id=r.unit_id,
                unit_code=r.unit.code,
                unit_name=r.unit.name,
                site_id=r.site_id,
            )
            for r in user.roles
        ],
    )


def user_detail(user: User) -> UserDetail:
    return UserDetail(
        **user_out(user).model_dump(),
        email=user.email,
        phone=user.phone,
        locked_reason=user.locked_reason,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
    )


def _visible(p: Principal, user: User, perm: Perm = Perm.user_read) -> bool:
    if not user.roles:
        return p.is_global(perm)
    return any(p.can_unit(perm, r.unit.path) for r in user.roles)


def _manageable(p: Principal, user: User) -> bool:
    """Every role the user holds lies inside the caller's admin scope, so the caller may change them."""
    if not user.roles:
        return p.is_global(Perm.user_write)
    return all(p.can_unit(Perm.user_write, r.unit.path) for r in user.roles)


def readable_user(w: Web, session: Session, user_id: int) -> User:
    user = session.get(User, user_id, options=[selectinload(User.roles).selectinload(RoleAssignment.unit)])
    if user is None or not _visible(w.principal, user):
        raise NotFound(f"Không có người dùng mã số {user_id}.", code="user_not_found")
    return user


def writable_user(w: Web, session: Session, user_id: int) -> User:
    user = readable_user(w, session, user_id)
    if not _manageable(w.principal, user):
        raise Forbidden("Người dùng này có vai trò ngoài phạm vi quản trị của bạn.")
    return user


def _check_grantable(w: Web, session: Session, roles: Sequence[RoleIn]) -> list[svc.RoleSpec]:
    specs = []
    for r in roles:
        unit = session.get(Unit, r.unit_id)
        if unit is None or not w.principal.can_unit(Perm.user_write, unit.path):
            raise Forbidden(f"Bạn không thể giao vai trò tại đơn vị {r.unit_id}.")
        get_unit(session, r.unit_id)
        specs.append(svc.RoleSpec(role=r.role, unit_id=r.unit_id, site_id=r.site_id))
    return specs


@router.get("", response_model=Page[UserOut], summary="List users whose roles lie in your scope")
def list_users(
    w: Annotated[Web, Depends(web)],
    q: Annotated[SearchText | None, Query(description="User name or full name")] = None,
    role: Annotated[Annotated[str, Line(40, required=False)] | None, Query()] = None,
    unit: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Users with a role in this subtree")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[UserOut]:
    with w.read() as session:
        p = w.principal
        if not p.can_any(Perm.user_read):
            raise Forbidden("Bạn không có quyền quản lý người dùng.")
        paths = p.unit_paths(Perm.user_read)
        in_scope = exists(
            select(RoleAssignment.id)
            .join(Unit, Unit.id == RoleAssignment.unit_id)
            .where(RoleAssignment.user_id == User.id, in_any_subtree(Unit.path, paths))
        )
        no_roles = ~exists(select(RoleAssignment.id).where(RoleAssignment.user_id == User.id))
        stmt = select(User).where(or_(in_scope, no_roles) if p.is_global(Perm.user_read) else in_scope)
        if q:
            key = search_key(q)
            stmt = stmt.where(
                or_(
                    User.username.contains(q.strip().lower(), autoescape=True),
                    User.full_name_key.contains(key, autoescape=True),
                )
            )
        if role or unit:
            cond = [RoleAssignment.user_id == User.id]
            if role:
                cond.append(RoleAssignment.role == role)
            if unit:
                cond.append(in_any_subtree(Unit.path, [readable_unit(w, session, unit).path]))
            stmt = stmt.where(
                exists(select(RoleAssignment.id).join(Unit, Unit.id == RoleAssignment.unit_id).where(*cond))
            )
        total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
        users = session.execute(
            stmt.order_by(User.username)
            .limit(limit)
            .offset(offset)
            .options(selectinload(User.roles).selectinload(RoleAssignment.unit))
        ).scalars()
        return Page(items=[user_out(u) for u in users], total=total)


@router.get("/{user_id:int}", response_model=UserDetail, summary="One user (audited: personal data)")
def get_user(w: Annotated[Web, Depends(web)], user_id: PathId) -> UserDetail:
    with w.tx() as tx:
        if not w.principal.can_any(Perm.user_read):
            raise NotFound(f"Không có người dùng mã số {user_id}.", code="user_not_found")
        user = readable_user(w, tx.session, user_id)
        tx.record("user.read", "user", user.id)
        return user_detail(user)


@router.post("", response_model=UserDetail, status_code=201, summary="Create a user")
def create_user(w: Annotated[Web, Depends(web)], body: UserCreate) -> UserDetail:
    with w.tx() as tx:
        if not w.principal.can_any(Perm.user_write):
            raise Forbidden("Bạn không có quyền tạo người dùng.")
        specs = _check_grantable(w, tx.session, body.roles)
        if not specs and not w.principal.is_global(Perm.user_write):
            raise Forbidden("Người dùng phải có ít nhất một vai trò trong phạm vi của bạn.")
        user = svc.create_user(
            tx,
            username=body.username,
            password=body.password,
            full_name=body.full_name,
            email=body.email,
            phone=body.phone,
            roles=specs,
            must_change_password=body.must_change_password,
        )
        return user_detail(svc.get_user(tx.session, user.id))


@router.patch("/{user_id:int}", response_model=UserDetail, summary="Update a user's details")
def update_user(w: Annotated[Web, Depends(web)], user_id: PathId, body: UserUpdate) -> UserDetail:
    with w.tx() as tx:
        writable_user(w, tx.session, user_id)
        user = svc.update_user(tx, user_id, **body.model_dump(exclude_unset=True))
        return user_detail(user)


@router.put("/{user_id:int}/roles", response_model=UserDetail, summary="Replace a user's role assignments")
def set_roles(w: Annotated[Web, Depends(web)], user_id: PathId, body: RolesIn) -> UserDetail:
    with w.tx() as tx:
        writable_user(w, tx.session, user_id)
        if user_id == w.principal.user_id:
            raise Forbidden("Không thể tự thay đổi vai trò của chính mình.", code="self_roles")
        specs = _check_grantable(w, tx.session, body.roles)
        user = svc.set_roles(tx, user_id, specs)
        return user_detail(user)


@router.post("/{user_id:int}/lock", response_model=UserDetail, summary="Lock or unlock an account")
def lock_user(w: Annotated[Web, Depends(web)], user_id: PathId, body: LockIn) -> UserDetail:
    with w.tx() as tx:
        writable_user(w, tx.session, user_id)
        if user_id == w.principal.user_id and body.locked:
            raise Forbidden("Không thể tự khóa tài khoản của chính mình.", code="self_lock")
        user = svc.set_locked(tx, user_id, body.locked, body.reason)
        return user_detail(user)


@router.post("/{user_id:int}/password", response_model=UserDetail, summary="Set a new password for a user")
def reset_password(w: Annotated[Web, Depends(web)], user_id: PathId, body: PasswordReset) -> UserDetail:
    with w.tx() as tx:
        writable_user(w, tx.session, user_id)
        user = svc.reset_password(tx, user_id, body.new_password, must_change=body.must_change)
        return user_detail(user)
