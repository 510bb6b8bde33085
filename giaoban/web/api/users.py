"""/api/v1/users: accounts and their role assignments (system admins, within their subtree)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from giaoban.org import accounts as svc
from giaoban.org.schemas import (
    LockIn,
    PasswordReset,
    RoleIn,
    RolesIn,
    SearchText,
    UserCreate,
    UserDetail,
    UserOut,
    UserUpdate,
    user_detail,
    user_out,
)
from giaoban.types import Line
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset, PathId
from giaoban.web.deps import Web, web
from giaoban.web.schemas import Page

router = APIRouter(prefix="/users", tags=["users"], responses=ERRORS, route_class=ApiRoute)


def _roles(roles: list[RoleIn]) -> list[tuple[str, int, int | None]]:
    return [(r.role, r.unit_id, r.site_id) for r in roles]


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
        f = svc.UserQuery(q=q, role=role, unit=unit, limit=limit, offset=offset)
        found = svc.list_users(session, w.principal, f)
        return Page(items=[user_out(u) for u in found.items], total=found.total)


@router.get("/{user_id:int}", response_model=UserDetail, summary="One user (audited: personal data)")
def get_user(w: Annotated[Web, Depends(web)], user_id: PathId) -> UserDetail:
    with w.tx() as tx:
        return user_detail(svc.read_user(tx, w.principal, user_id))


@router.post("", response_model=UserDetail, status_code=201, summary="Create a user")
def create_user(w: Annotated[Web, Depends(web)], body: UserCreate) -> UserDetail:
    with w.tx() as tx:
        fields = body.model_dump(exclude={"roles"})
        return user_detail(svc.add_user(tx, w.principal, roles=_roles(body.roles), **fields))


@router.patch("/{user_id:int}", response_model=UserDetail, summary="Update a user's details")
def update_user(w: Annotated[Web, Depends(web)], user_id: PathId, body: UserUpdate) -> UserDetail:
    with w.tx() as tx:
        return user_detail(svc.edit_user(tx, w.principal, user_id, **body.model_dump(exclude_unset=True)))


@router.put("/{user_id:int}/roles", response_model=UserDetail, summary="Replace a user's role assignments")
def set_roles(w: Annotated[Web, Depends(web)], user_id: PathId, body: RolesIn) -> UserDetail:
    with w.tx() as tx:
        return user_detail(svc.replace_roles(tx, w.principal, user_id, _roles(body.roles)))


@router.post("/{user_id:int}/lock", response_model=UserDetail, summary="Lock or unlock an account")
def lock_user(w: Annotated[Web, Depends(web)], user_id: PathId, body: LockIn) -> UserDetail:
    with w.tx() as tx:
        return user_detail(svc.lock_user(tx, w.principal, user_id, body.locked, body.reason))


@router.post("/{user_id:int}/password", response_model=UserDetail, summary="Set a new password for a user")
def reset_password(w: Annotated[Web, Depends(web)], user_id: PathId, body: PasswordReset) -> UserDetail:
    with w.tx() as tx:
        user = svc.set_password(tx, w.principal, user_id, body.new_password, must_change=body.must_change)
        return user_detail(user)
