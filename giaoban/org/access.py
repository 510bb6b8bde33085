"""Who may do what, where: roles grant permissions; each grant holds over one unit subtree.

The web layer asks a ``Principal`` before it calls a service, and narrows every list query with the
principal's scope, so a user never sees a row outside the subtrees their roles cover.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from giaoban.org.models import Role, RoleAssignment, Unit, User


class Perm(enum.StrEnum):
    unit_read = "unit.read"
    unit_write = "unit.write"
    site_read = "site.read"
    site_write = "site.write"
    site_contact_write = "site.contact_write"
    user_read = "user.read"
    user_write = "user.write"
    audit_read = "audit.read"


ROLE_PERMS: dict[Role, frozenset[Perm]] = {
    Role.admin: frozenset(Perm),
    Role.central_operator: frozenset(
        {Perm.unit_read, Perm.site_read, Perm.site_write, Perm.site_contact_write}
    ),
    Role.chair: frozenset({Perm.unit_read, Perm.site_read}),
    Role.secretary: frozenset({Perm.unit_read, Perm.site_read}),
    Role.site_operator: frozenset({Perm.unit_read, Perm.site_read, Perm.site_contact_write}),
    Role.org_staff: frozenset({Perm.unit_read, Perm.unit_write, Perm.site_read}),
    Role.exam_candidate: frozenset(),
}

# Permissions that a site operator pinned to one site holds only over that site.
SITE_PINNED = frozenset({Perm.site_read, Perm.site_contact_write})

ROLE_LABELS_VI = {
    Role.admin: "Quản trị hệ thống",
    Role.central_operator: "Điều hành Trung ương",
    Role.chair: "Chủ trì",
    Role.secretary: "Thư ký",
    Role.site_operator: "Kỹ thuật viên điểm cầu",
    Role.org_staff: "Cán bộ tổ chức",
    Role.exam_candidate: "Thí sinh",
}


def in_path(path: str, root: str) -> bool:
    return path.startswith(root)


@dataclass(frozen=True)
class Grant:
    role: Role
    unit_id: int
    unit_path: str
    site_id: int | None = None


@dataclass
class Principal:
    """An authenticated user and the grants their role assignments give them."""

    user_id: int
    username: str
    full_name: str = ""
    grants: list[Grant] = field(default_factory=list)
    ip: str = ""
    # Path of the organization's root unit: "the whole organization" is its subtree.
    root_path: str | None = None

    @classmethod
    def from_user(cls, user: User, ip: str = "", root_path: str | None = None) -> Principal:
        grants = [
            Grant(Role(r.role), r.unit_id, r.unit.path, r.site_id)
            for r in user.roles
            if r.unit.valid_to is None  # a grant on a dissolved unit covers nothing
        ]
        return cls(
            user_id=user.id,
            username=user.username,
            full_name=user.full_name,
            grants=grants,
            ip=ip,
            root_path=root_path,
        )

    @property
    def roles(self) -> set[Role]:
        return {g.role for g in self.grants}

    def has_role(self, *roles: Role) -> bool:
        return any(g.role in roles for g in self.grants)

    def _grants_for(self, perm: Perm) -> Iterable[Grant]:
        return (g for g in self.grants if perm in ROLE_PERMS[g.role])

    def unit_paths(self, perm: Perm) -> list[str]:
        """Roots of the subtrees over which ``perm`` holds for units (never site-pinned grants)."""
        paths = {
            g.unit_path for g in self._grants_for(perm) if not (g.site_id is not None and perm in SITE_PINNED)
        }
        # Drop paths already covered by a shorter one.
        return sorted(p for p in paths if not any(p != q and p.startswith(q) for q in paths))

    def pinned_sites(self, perm: Perm) -> list[int]:
        return sorted(
            {g.site_id for g in self._grants_for(perm) if g.site_id is not None and perm in SITE_PINNED}
        )

    def can_unit(self, perm: Perm, unit_path: str) -> bool:
        return any(in_path(unit_path, p) for p in self.unit_paths(perm))

    def can_site(self, perm: Perm, site_id: int, unit_path: str) -> bool:
        return self.can_unit(perm, unit_path) or site_id in self.pinned_sites(perm)

    def can_any(self, perm: Perm) -> bool:
        return any(True for _ in self._grants_for(perm))

    def is_global(self, perm: Perm) -> bool:
        """Holds ``perm`` over the whole organization: a grant at its root unit.

        Only that covers what belongs to no unit below the root: users without roles, the audit
        trail, the root itself.
        """
        return self.root_path is not None and self.can_unit(perm, self.root_path)

    def can_unit_above(self, perm: Perm, unit_path: str) -> bool:
        """Holds ``perm`` over the unit from strictly above it: the unit lies inside a granted subtree
        but is not that subtree's own top. A grant's own unit defines its holder's scope, so its
        holder may work inside it but not rename, close or merge it away; that is for whoever is
        scoped above. The root has nobody above it: the whole organization's holders may."""
        if unit_path == self.root_path or unit_path.count("/") == 2:
            return self.is_global(perm)
        return any(in_path(unit_path, p) and unit_path != p for p in self.unit_paths(perm))


def root_admin_ids(session: Session) -> set[int]:
    """Users who can administer the whole organization today: not locked, holding the admin role
    at the root unit (not pinned to a site)."""
    stmt = (
        select(RoleAssignment.user_id)
        .join(Unit, Unit.id == RoleAssignment.unit_id)
        .join(User, User.id == RoleAssignment.user_id)
        .where(
            RoleAssignment.role == Role.admin.value,
            RoleAssignment.site_id.is_(None),
            Unit.parent_id.is_(None),
            Unit.valid_to.is_(None),
            User.is_locked.is_(False),
        )
    )
    return set(session.execute(stmt).scalars())
