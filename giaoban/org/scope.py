"""One way to narrow what a principal may read or change, used by the API, pages, CLI and WebSocket.

Each rule is one function here: a per-object check (``readable_unit``, ``changeable_unit``,
``readable_site``, ``readable_user`` …) that raises the domain's refusal, and, where a list is
filtered, the SQL predicate of the same rule (``sites_in_scope``, ``users_in_scope``). What is
outside a caller's read scope is "not found", so nothing about it leaks; what they may read but not
change is "forbidden".
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import Session, selectinload

from giaoban.errors import Forbidden, NotFound
from giaoban.org.access import Perm, Principal
from giaoban.org.models import RoleAssignment, Site, Unit, User
from giaoban.org.units import in_any_subtree

# --- units ---------------------------------------------------------------------------------------


def readable_unit(session: Session, p: Principal, unit_id: int, perm: Perm = Perm.unit_read) -> Unit:
    """The unit if ``p`` may read it (and, for another ``perm``, do that too); otherwise "not
    found" when it is outside their read scope, "forbidden" when it is readable but not ``perm``."""
    unit = session.get(Unit, unit_id)
    if unit is None or not p.can_unit(Perm.unit_read, unit.path):
        raise NotFound(f"Không có đơn vị mã số {unit_id}.", code="unit_not_found")
    if perm != Perm.unit_read and not p.can_unit(perm, unit.path):
        raise Forbidden("Bạn không có quyền thay đổi đơn vị này.")
    return unit


def changeable_unit(session: Session, p: Principal, unit_id: int) -> Unit:
    """The unit if ``p`` may rename, move, close or merge it: ``unit.write`` from strictly above it.
    The unit at the top of a caller's own scope is theirs to work in, not to change."""
    unit = readable_unit(session, p, unit_id, Perm.unit_write)
    if not p.can_unit_above(Perm.unit_write, unit.path):
        raise Forbidden(
            "Đơn vị này là phạm vi quản lý của bạn: chỉ cấp trên được đổi tên, di chuyển, giải thể "
            "hoặc sáp nhập đơn vị này.",
            code="own_scope_unit",
        )
    return unit


def writable_parent(session: Session, p: Principal, parent_id: int | None) -> None:
    """New units (a split's parts) go under ``parent_id``: ``p`` must be able to create units there."""
    if parent_id is None:
        return  # the root, which the domain refuses to split
    parent = session.get(Unit, parent_id)
    if parent is None or not p.can_unit(Perm.unit_write, parent.path):
        raise Forbidden("Các đơn vị mới sẽ thuộc cấp trên, nơi bạn không có quyền tạo đơn vị.")


def merge_allowed(
    session: Session,
    p: Principal,
    source_ids: list[int],
    target_id: int | None,
    new_target: bool,
    new_parent_id: int | None,
) -> None:
    """A merge needs ``unit.write`` on every unit it touches, from above each, and on the parent of
    a new target (default: the first source's parent)."""
    touched = [*source_ids, *([target_id] if target_id is not None else [])]
    for unit_id in touched:
        readable_unit(session, p, unit_id, Perm.unit_write)
    # Visible and writable first (a refusal above must not tell which is whose), then "from above".
    for unit_id in touched:
        changeable_unit(session, p, unit_id)
    if new_target:
        parent_id = new_parent_id
        if parent_id is None:
            parent_id = readable_unit(session, p, source_ids[0]).parent_id
        if parent_id is not None:  # None: the source is the root, which the domain refuses
            readable_unit(session, p, parent_id, Perm.unit_write)


# --- sites ---------------------------------------------------------------------------------------


def sites_in_scope(p: Principal, perm: Perm = Perm.site_read) -> ColumnElement[bool]:
    """The sites ``p`` holds ``perm`` on, for a query joining Site and Unit: their subtrees, plus
    the sites a site-operator grant is pinned to."""
    scope = in_any_subtree(Unit.path, p.unit_paths(perm))
    pinned = p.pinned_sites(perm)
    return scope | Site.id.in_(pinned) if pinned else scope


def readable_site(session: Session, p: Principal, site_id: int) -> tuple[Site, Unit]:
    site = session.get(Site, site_id)
    if site is not None:
        unit = session.get(Unit, site.unit_id)
        if unit is not None and p.can_site(Perm.site_read, site.id, unit.path):
            return site, unit
    raise NotFound(f"Không có điểm cầu mã số {site_id}.", code="site_not_found")


def site_unit_for_create(session: Session, p: Principal, unit_id: int) -> Unit:
    unit = readable_unit(session, p, unit_id)
    if not p.can_unit(Perm.site_write, unit.path):
        raise Forbidden("Bạn không có quyền tạo điểm cầu cho đơn vị này.")
    return unit


def site_move_target(session: Session, p: Principal, unit: Unit, target_id: int) -> Unit:
    """The unit a site moves to: ``site.write`` where it is and where it goes."""
    if not p.can_unit(Perm.site_write, unit.path):
        raise Forbidden("Bạn không có quyền chuyển điểm cầu này.")
    target = readable_unit(session, p, target_id)
    if not p.can_unit(Perm.site_write, target.path):
        raise Forbidden("Bạn không có quyền chuyển điểm cầu vào đơn vị này.")
    return target


# --- users ---------------------------------------------------------------------------------------


def user_visible(p: Principal, user: User, perm: Perm = Perm.user_read) -> bool:
    """``p`` sees ``user`` when one of the user's roles lies in their scope (a user without roles:
    only for one who holds ``perm`` over the whole organization)."""
    if not user.roles:
        return p.is_global(perm)
    return any(p.can_unit(perm, r.unit.path) for r in user.roles)


def user_manageable(p: Principal, user: User) -> bool:
    """Every role the user holds lies inside ``p``'s admin scope, so ``p`` may change them."""
    if not user.roles:
        return p.is_global(Perm.user_write)
    return all(p.can_unit(Perm.user_write, r.unit.path) for r in user.roles)


def users_in_scope(p: Principal, perm: Perm = Perm.user_read) -> ColumnElement[bool]:
    """``user_visible`` as a predicate on User, for lists."""
    in_scope = exists(
        select(RoleAssignment.id)
        .join(Unit, Unit.id == RoleAssignment.unit_id)
        .where(RoleAssignment.user_id == User.id, in_any_subtree(Unit.path, p.unit_paths(perm)))
    )
    if not p.is_global(perm):
        return in_scope
    no_roles = ~exists(select(RoleAssignment.id).where(RoleAssignment.user_id == User.id))
    return or_(in_scope, no_roles)


def require_user_admin(p: Principal, perm: Perm = Perm.user_read) -> None:
    if not p.can_any(perm):
        raise Forbidden("Bạn không có quyền quản lý người dùng.")


def readable_user(session: Session, p: Principal, user_id: int) -> User:
    user = session.get(User, user_id, options=[selectinload(User.roles).selectinload(RoleAssignment.unit)])
    if user is None or not p.can_any(Perm.user_read) or not user_visible(p, user):
        raise NotFound(f"Không có người dùng mã số {user_id}.", code="user_not_found")
    return user


def writable_user(session: Session, p: Principal, user_id: int) -> User:
    user = readable_user(session, p, user_id)
    if not user_manageable(p, user):
        raise Forbidden("Người dùng này có vai trò ngoài phạm vi quản trị của bạn.")
    return user


def grantable_unit(session: Session, p: Principal, unit_id: int) -> Unit:
    """A unit where ``p`` may give a role (``user.write`` over it)."""
    unit = session.get(Unit, unit_id)
    if unit is None or not p.can_unit(Perm.user_write, unit.path):
        raise Forbidden(f"Bạn không thể giao vai trò tại đơn vị {unit_id}.")
    return unit
