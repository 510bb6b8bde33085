"""The access matrix: every API route × every kind of actor × a target in their own subtree or another.

What each actor may do is written out below (``POLICY``, ``PINNED``) and the expected outcome of
every call is derived from it and from the data (a unit's materialized path), never by asking the
code under test. The routes are read from the application itself, so a new API route that has no
row in ``ROUTES`` fails ``test_every_api_route_is_in_the_matrix``.

What "no leak" means here:
- a read of something outside the caller's scope is 404, exactly as for something that does not
  exist; a list (or an export) holds exactly the rows in scope, and its total says so;
- a write outside the caller's scope, or beyond their role, is refused (403, or 404 when they
  cannot even see the target) and the database is byte-for-byte unchanged, audit trail included;
- what the policy allows succeeds.

Scoped actors hold their role in province 01 (Hà Nội); the "other" subtree is province 79
(TP. Hồ Chí Minh). Every write case gets fresh targets, so one actor's success never changes what
the next one sees; the demo is loaded once per route.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyotp
import pytest
from fastapi.routing import APIRoute
from httpx import Response
from sqlalchemy import select

from giaoban.audit.log import AuditLog
from giaoban.audit.models import AuditEntry
from giaoban.context import AppContext
from giaoban.db import Database
from giaoban.meetings import scheduling as meeting_svc
from giaoban.meetings.models import Invitation, Meeting
from giaoban.org.access import ROLE_PERMS, SITE_PINNED
from giaoban.org.models import RoleAssignment, Site, Unit, User
from giaoban.settings import Settings
from giaoban.types import local_today
from giaoban.web.app import create_app
from tests.conftest import DEMO_PASSWORD, login
from tests.security.conftest import ACTORS, OTHER, OWN, ROOT, Actor, World, changed_tables

# --- the policy, written out --------------------------------------------------------------------

UR, UW = "unit.read", "unit.write"
SR, SW, SC = "site.read", "site.write", "site.contact_write"
USR, USW = "user.read", "user.write"
AR = "audit.read"

# What each role may do, over the subtree of the unit where it is assigned.
POLICY: dict[str, frozenset[str]] = {
    "admin": frozenset({UR, UW, SR, SW, SC, USR, USW, AR}),
    "central_operator": frozenset({UR, SR, SW, SC}),
    "chair": frozenset({UR, SR}),
    "secretary": frozenset({UR, SR}),
    "site_operator": frozenset({UR, SR, SC}),
    "org_staff": frozenset({UR, UW, SR}),
    "exam_candidate": frozenset(),
}
# A site operator pinned to a site reads and edits the contacts of that site only.
PINNED = frozenset({SR, SC})
# Lists of units and sites show what the caller may see (maybe nothing); the lists of users and of
# the audit trail refuse (403) a caller who holds no such permission at all.


def test_policy_is_the_one_the_matrix_checks() -> None:
    """A change to the roles' permissions must be a conscious change of this table too."""
    assert {role.value: frozenset(p.value for p in perms) for role, perms in ROLE_PERMS.items()} == POLICY
    assert frozenset(p.value for p in SITE_PINNED) == PINNED


@dataclass
class Policy:
    """The expected answers, computed from POLICY and the organization's data."""

    w: World
    # Where each actor's role sits; looked up once (the actors' own units never move).
    _roots: dict[str, str] = field(default_factory=dict)
    _pins: dict[str, int] = field(default_factory=dict)

    def root_path(self, actor: Actor) -> str:
        assert actor.unit is not None
        if actor.name not in self._roots:
            self._roots[actor.name] = self.w.unit(actor.unit).path
        return self._roots[actor.name]

    def pinned_site(self, actor: Actor) -> int:
        assert actor.site is not None
        if actor.name not in self._pins:
            self._pins[actor.name] = self.w.site_id(actor.site)
        return self._pins[actor.name]

    def grants(self, actor: Actor, perm: str, unit_path: str, site_id: int | None = None) -> bool:
        if actor.role is None or perm not in POLICY[actor.role]:
            return False
        if actor.site is not None and perm in PINNED:
            return site_id is not None and site_id == self.pinned_site(actor)
        return unit_path.startswith(self.root_path(actor))

    def anywhere(self, actor: Actor, perm: str) -> bool:
        return actor.role is not None and perm in POLICY[actor.role]

    def at_root(self, actor: Actor, perm: str) -> bool:
        return self.anywhere(actor, perm) and actor.unit == ROOT


# --- what a call needs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OnUnit:
    perm: str
    unit_id: int

    def holds(self, p: Policy, a: Actor) -> bool:
        return p.grants(a, self.perm, p.w.unit_path(self.unit_id))

    def __str__(self) -> str:
        return f"{self.perm} on unit {self.unit_id}"


@dataclass(frozen=True)
class OnSite:
    perm: str
    site_id: int

    def holds(self, p: Policy, a: Actor) -> bool:
        return p.grants(a, self.perm, p.w.site_unit_path(self.site_id), self.site_id)

    def __str__(self) -> str:
        return f"{self.perm} on site {self.site_id}"


@dataclass(frozen=True)
class OnUser:
    """user.read: some role of the user lies in scope; user.write: every role does. A user with no
    roles belongs to nobody's subtree: only the whole tree's admins see and manage them."""

    perm: str
    user_id: int

    def holds(self, p: Policy, a: Actor, paths: list[str] | None = None) -> bool:
        paths = p.w.user_role_paths(self.user_id) if paths is None else paths
        if not paths:
            return p.at_root(a, self.perm)
        inside = [p.grants(a, self.perm, path) for path in paths]
        return any(inside) if self.perm == USR else all(inside)

    def __str__(self) -> str:
        return f"{self.perm} on user {self.user_id}"


@dataclass(frozen=True)
class AtRoot:
    perm: str

    def holds(self, p: Policy, a: Actor) -> bool:
        return p.at_root(a, self.perm)

    def __str__(self) -> str:
        return f"{self.perm} over the whole tree"


@dataclass(frozen=True)
class Never:
    """What nobody may do: a second root, moving or closing the root. The whole organization's
    administrators hear why (409), everyone else that it is not theirs to ask (403/404)."""

    why: str

    def holds(self, p: Policy, a: Actor) -> bool:
        return False

    def __str__(self) -> str:
        return f"nobody ({self.why})"


@dataclass(frozen=True)
class AnyOf:
    needs: tuple[Need, ...]

    def holds(self, p: Policy, a: Actor) -> bool:
        return any(n.holds(p, a) for n in self.needs)

    def __str__(self) -> str:
        return " or ".join(map(str, self.needs))


# --- meetings: who may do what is written out here too (never read from giaoban.meetings.access)

CONSOLE = frozenset({"admin", "central_operator", "chair", "secretary"})  # the control room
MANAGE = frozenset({"admin", "central_operator"})  # schedule, invite, move through the lifecycle
CHAIRS = frozenset({"admin", "central_operator", "chair"})  # the chair (if it is theirs) runs it
SITE_RUN = frozenset({"admin", "central_operator", "site_operator"})  # run an invited site's room
HOST_DESK = frozenset({"chair", "secretary"})  # at the host site: run the host's room


@dataclass(frozen=True)
class MeetingFacts:
    owner_path: str
    host_site_id: int
    chair_user_id: int | None
    sites: tuple[tuple[int, str], ...]  # invited (site id, unit path)


def meeting_facts(w: World, meeting_id: int) -> MeetingFacts:
    with w.ctx.db.session() as s:
        m = s.get(Meeting, meeting_id)
        assert m is not None
        owner = s.execute(select(Unit.path).where(Unit.id == m.owner_unit_id)).scalar_one()
        sites = s.execute(
            select(Site.id, Unit.path)
            .join(Unit, Unit.id == Site.unit_id)
            .join(Invitation, Invitation.site_id == Site.id)
            .where(Invitation.meeting_id == meeting_id)
        ).all()
        return MeetingFacts(owner, m.host_site_id, m.chair_user_id, tuple((i, p) for i, p in sites))


def role_over(p: Policy, a: Actor, roles: frozenset[str], path: str, site_id: int | None = None) -> bool:
    """``a``'s one role is in ``roles`` over ``path``; a role pinned to a site covers that site only."""
    if a.role not in roles or a.unit is None or not path.startswith(p.root_path(a)):
        return False
    return a.site is None or site_id == p.pinned_site(a)


def meeting_can(p: Policy, a: Actor, what: str, f: MeetingFacts) -> bool:
    console = role_over(p, a, CONSOLE, f.owner_path)
    manage = role_over(p, a, MANAGE, f.owner_path)
    if what == "console":
        return console
    if what == "manage":
        return manage
    if what == "chair":
        mine = f.chair_user_id is None or f.chair_user_id == p.w.user_id(a.username)
        return manage or (mine and role_over(p, a, CHAIRS, f.owner_path))
    as_site = any(
        role_over(p, a, SITE_RUN, path, sid)
        or (sid == f.host_site_id and role_over(p, a, HOST_DESK, path, sid))
        for sid, path in f.sites
    )
    if what.startswith("site "):  # act as that one invited site
        sid = int(what.split()[1])
        return any(
            s == sid
            and (
                role_over(p, a, SITE_RUN, path, s)
                or (s == f.host_site_id and role_over(p, a, HOST_DESK, path, s))
            )
            for s, path in f.sites
        )
    assert what == "see"
    return console or as_site


@dataclass(frozen=True)
class InMeeting:
    """``see`` (console or one of its sites), ``console``, ``chair`` or ``manage`` in a meeting."""

    what: str
    meeting_id: int

    def holds(self, p: Policy, a: Actor) -> bool:
        return meeting_can(p, a, self.what, meeting_facts(p.w, self.meeting_id))

    def __str__(self) -> str:
        return f"{self.what} in meeting {self.meeting_id}"


@dataclass(frozen=True)
class ManageAt:
    """A scheduler's role (admin, central operator) over a unit, or over a site's unit."""

    unit_id: int | None = None
    site_id: int | None = None

    def holds(self, p: Policy, a: Actor) -> bool:
        path = p.w.unit_path(self.unit_id) if self.unit_id is not None else None
        if path is None:
            assert self.site_id is not None
            path = p.w.site_unit_path(self.site_id)
        return role_over(p, a, MANAGE, path)

    def __str__(self) -> str:
        return f"schedule at {'unit ' + str(self.unit_id) if self.unit_id else 'site ' + str(self.site_id)}"


@dataclass(frozen=True)
class RosterEdit:
    """A unit's delegate roster: ``unit.write`` over the unit, or a site operator's own unit (the
    unit of their role, or of the site they are pinned to)."""

    unit_id: int

    def holds(self, p: Policy, a: Actor) -> bool:
        path = p.w.unit_path(self.unit_id)
        if p.grants(a, UW, path):
            return True
        if a.role != "site_operator" or a.unit is None:
            return False
        if a.site is None:
            return p.w.unit_id(a.unit) == self.unit_id
        return p.w.site_unit_path(p.pinned_site(a)) == path

    def __str__(self) -> str:
        return f"roster edit on unit {self.unit_id}"


Need = OnUnit | OnSite | OnUser | AtRoot | Never | AnyOf | InMeeting | ManageAt | RosterEdit


@dataclass
class Call:
    """One request, what it needs to succeed, and how a refusal may look."""

    method: str
    url: str
    needs: tuple[Need, ...]
    # What the caller must be able to see for a refusal to be exactly 403; when they cannot see
    # something the call names, 404 is as good an answer (it does not tell that it exists).
    visible: tuple[Need, ...] = ()
    json: Any = None
    params: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    ok: int = 200
    refused: frozenset[int] | None = None  # how this route refuses, when that is not 403/404
    returns_id: int | None = None
    # A file naming a unit the caller cannot see must be refused exactly as one naming a unit
    # that does not exist (``twin``), or the refusal tells which codes exist elsewhere.
    names_unit: int | None = None
    twin: Call | None = None


@dataclass
class Listing:
    """A list (or an export): ``rows`` gives exactly what the caller must get, or the error status."""

    url: str
    rows: Callable[[Policy, Actor], set[Any] | int]
    params: dict[str, Any] = field(default_factory=dict)
    export: bool = False


READ, WRITE, LIST, SELF, PUBLIC = "read", "write", "list", "self", "public"


@dataclass
class Route:
    kind: str
    cases: dict[str, Callable[[World], Any]] = field(default_factory=dict)


# --- the data the lists are checked against --------------------------------------------------------


def active_units(w: World) -> list[Unit]:
    today = local_today()
    with w.ctx.db.session() as s:
        rows = s.execute(select(Unit).where(Unit.valid_from <= today)).scalars().all()
        return [u for u in rows if u.valid_to is None or u.valid_to > today]


def all_sites(w: World) -> list[tuple[int, str, int, str]]:
    with w.ctx.db.session() as s:
        return [
            (site.id, site.code, site.unit_id, path)
            for site, path in s.execute(select(Site, Unit.path).join(Unit, Unit.id == Site.unit_id)).all()
        ]


def all_users(w: World) -> dict[int, list[str]]:
    """Every user with the paths of the units of their roles."""
    with w.ctx.db.session() as s:
        users: dict[int, list[str]] = {uid: [] for uid in s.execute(select(User.id)).scalars()}
        for uid, path in s.execute(
            select(RoleAssignment.user_id, Unit.path).join(Unit, Unit.id == RoleAssignment.unit_id)
        ).all():
            users[uid].append(path)
        return users


def in_subtree(path: str, root: str) -> bool:
    return path.startswith(root)


def units_seen(under: str | None = None, key: str = "id") -> Callable[[Policy, Actor], set[Any] | int]:
    def rows(p: Policy, a: Actor) -> set[Any] | int:
        root = p.w.unit(under).path if under else "/"
        if under is not None and not p.grants(a, UR, root):
            return 404
        return {
            getattr(u, key) for u in active_units(p.w) if p.grants(a, UR, u.path) and in_subtree(u.path, root)
        }

    return rows


def unit_export(under: str | None = None) -> Callable[[Policy, Actor], set[Any] | int]:
    seen = units_seen(under, key="code")

    def rows(p: Policy, a: Actor) -> set[Any] | int:
        return 403 if not p.anywhere(a, UR) else seen(p, a)

    return rows


def sites_seen(
    under: str | None = None, unit: str | None = None, key: int = 0, export: bool = False
) -> Callable[[Policy, Actor], set[Any] | int]:
    def rows(p: Policy, a: Actor) -> set[Any] | int:
        if export and not p.anywhere(a, SR):
            return 403
        # ``under`` names a unit, which the caller must be able to see.
        if under is not None and not p.grants(a, UR, p.w.unit(under).path):
            return 404
        root = p.w.unit(under).path if under else "/"
        unit_id = p.w.unit_id(unit) if unit else None
        return {
            row[key]
            for row in all_sites(p.w)
            if p.grants(a, SR, row[3], row[0])
            and in_subtree(row[3], root)
            and (unit_id is None or row[2] == unit_id)
        }

    return rows


def users_seen(unit: str | None = None) -> Callable[[Policy, Actor], set[Any] | int]:
    def rows(p: Policy, a: Actor) -> set[Any] | int:
        if not p.anywhere(a, USR):
            return 403
        if unit is not None and not p.grants(a, UR, p.w.unit(unit).path):
            return 404
        root = p.w.unit(unit).path if unit else None
        out = set()
        for user_id, paths in all_users(p.w).items():
            if not OnUser(USR, user_id).holds(p, a, paths):
                continue
            if root is None or any(in_subtree(path, root) for path in paths):
                out.add(user_id)
        return out

    return rows


def audit_seen(p: Policy, a: Actor) -> set[Any] | int:
    if not p.at_root(a, AR):
        return 403
    with p.w.ctx.db.session() as s:
        return set(s.execute(select(AuditEntry.id)).scalars())


# --- request builders -------------------------------------------------------------------------------

NEW_PASSWORD = "Mật-khẩu-mới-2025!"
NOWHERE = "KHONG-CO"  # a unit code that exists nowhere


def unit_read(path: str, code: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = w.unit_id(code)
        return Call("GET", path.format(id=uid), (OnUnit(UR, uid),), returns_id=uid)

    return build


def unit_create(parent: str | None) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        body = {"code": f"N{w.seq()}", "name": "Đơn vị mới", "kind": "district"}
        if parent is None:
            # The organization has one root already: nobody makes a second one.
            return Call(
                "POST",
                "/api/v1/units",
                (Never("a second root"),),
                json={**body, "parent_id": None},
                refused=frozenset({403, 409}),
            )
        pid = w.unit_id(parent)
        return Call(
            "POST",
            "/api/v1/units",
            (OnUnit(UW, pid),),
            (OnUnit(UR, pid),),
            json={**body, "parent_id": pid},
            ok=201,
        )

    return build


def unit_update(where: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = w.new_unit(where)
        return Call(
            "PATCH", f"/api/v1/units/{uid}", (OnUnit(UW, uid),), (OnUnit(UR, uid),), json={"name": "Tên mới"}
        )

    return build


def unit_move(where: str, to: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid, new_parent = w.new_unit(where), w.new_unit(to)
        return Call(
            "POST",
            f"/api/v1/units/{uid}/move",
            (OnUnit(UW, uid), OnUnit(UW, new_parent)),
            (OnUnit(UR, uid), OnUnit(UR, new_parent)),
            json={"parent_id": new_parent},
        )

    return build


def root_change(action: str) -> Callable[[World], Call]:
    """Move the root under a province, move a province to the top, close or merge away the root,
    split it: nobody may, whatever their role."""

    def build(w: World) -> Call:
        root, province = w.unit_id(ROOT), w.unit_id(OWN)
        url, body = {
            "move root": (f"/api/v1/units/{root}/move", {"parent_id": province}),
            "move to top": (f"/api/v1/units/{w.new_unit(OWN)}/move", {"parent_id": None}),
            "close root": (f"/api/v1/units/{root}/close", {}),
            "merge root": ("/api/v1/units/merge", {"source_ids": [root], "target_id": province}),
            "split root": (
                f"/api/v1/units/{root}/split",
                {"parts": [{"code": f"P{w.seq()}", "name": "Gốc thứ hai"}], "keep_source": True},
            ),
        }[action]
        return Call("POST", url, (Never(action),), json=body, refused=frozenset({403, 404, 409}))

    return build


def unit_close(where: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = w.new_unit(where)
        return Call("POST", f"/api/v1/units/{uid}/close", (OnUnit(UW, uid),), (OnUnit(UR, uid),), json={})

    return build


def unit_merge(where: str, into: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        source, target = w.new_unit(where), w.new_unit(into)
        return Call(
            "POST",
            "/api/v1/units/merge",
            (OnUnit(UW, source), OnUnit(UW, target)),
            (OnUnit(UR, source), OnUnit(UR, target)),
            json={"source_ids": [source], "target_id": target},
        )

    return build


def unit_split(where: str | None, province: str = OWN) -> Callable[[World], Call]:
    """Carve a new unit out of a fresh district of ``where``, or (``where=None``) out of the province
    itself, whose new sibling would sit under the root."""

    def build(w: World) -> Call:
        uid = w.new_unit(where) if where else w.unit_id(province)
        parent = w.unit_id(where) if where else w.unit_id(ROOT)
        return Call(
            "POST",
            f"/api/v1/units/{uid}/split",
            (OnUnit(UW, uid), OnUnit(UW, parent)),
            (OnUnit(UR, uid),),
            json={"parts": [{"code": f"P{w.seq()}", "name": "Phần tách ra"}], "keep_source": True},
        )

    return build


def site_read(which: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        sid = w.new_site(OWN) if which == "sibling" else w.site_id(which)
        return Call("GET", f"/api/v1/sites/{sid}", (OnSite(SR, sid),), returns_id=sid)

    return build


def site_create(unit: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = w.unit_id(unit)
        return Call(
            "POST",
            "/api/v1/sites",
            (OnUnit(SW, uid),),
            (OnUnit(UR, uid),),
            json={"code": f"S{w.seq()}", "unit_id": uid, "name": "Phòng họp mới"},
            ok=201,
        )

    return build


def site_update(which: str, change: str = "contact") -> Callable[[World], Call]:
    """``contact``: what a site's own operator may correct; ``status``: only site writers;
    ``move``: to another unit, which needs site.write at both ends."""

    def build(w: World) -> Call:
        sid = w.new_site(OWN) if which == "sibling" else w.home_site(which)
        unit_path = w.site_unit_path(sid)
        unit_id = int(unit_path.strip("/").split("/")[-1])
        on_unit = OnUnit(SW, unit_id)
        visible: tuple[Need, ...] = (OnSite(SR, sid),)
        if change == "contact":
            needs: tuple[Need, ...] = (AnyOf((on_unit, OnSite(SC, sid))),)
            body: dict[str, Any] = {"contact_name": f"Liên hệ {w.seq()}", "contact_phone": "0912345678"}
        elif change == "status":
            needs, body = (on_unit,), {"status": "maintenance"}
        else:
            to = w.unit_id(OTHER)
            needs, body = (on_unit, OnUnit(SW, to)), {"unit_id": to}
            visible += (OnUnit(UR, to),)
        return Call("PATCH", f"/api/v1/sites/{sid}", needs, visible, json=body)

    return build


# Targets for the user routes: who the target user is.
USER_TARGETS: dict[str, tuple[tuple[str, str], ...]] = {
    "own": (("chair", OWN),),
    "other": (("chair", OTHER),),
    "cross": (("chair", OWN), ("chair", OTHER)),  # visible to a province admin, not theirs to manage
    "top": (("admin", ROOT),),
    "no roles": (),
}


def user_read(target: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = w.new_user(*USER_TARGETS[target])
        return Call("GET", f"/api/v1/users/{uid}", (OnUser(USR, uid),), returns_id=uid)

    return build


def user_write(target: str, suffix: str, method: str, body: dict[str, Any]) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = w.new_user(*USER_TARGETS[target])
        return Call(
            method, f"/api/v1/users/{uid}{suffix}", (OnUser(USW, uid),), (OnUser(USR, uid),), json=body
        )

    return build


def user_create(roles: tuple[tuple[str, str], ...]) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        grants = [{"role": role, "unit_id": w.unit_id(code)} for role, code in roles]
        needs: tuple[Need, ...] = tuple(OnUnit(USW, g["unit_id"]) for g in grants) or (AtRoot(USW),)
        body = {"username": f"moi-{w.seq()}", "password": NEW_PASSWORD, "roles": grants}
        return Call("POST", "/api/v1/users", needs, json=body, ok=201)

    return build


def user_roles(target: str, new_roles: tuple[tuple[str, str], ...]) -> Callable[[World], Call]:
    """Replace the roles of a user: the caller must manage the user and every role granted."""

    def build(w: World) -> Call:
        uid = w.new_user(*USER_TARGETS[target])
        grants = [{"role": role, "unit_id": w.unit_id(code)} for role, code in new_roles]
        needs = (OnUser(USW, uid), *(OnUnit(USW, g["unit_id"]) for g in grants))
        return Call("PUT", f"/api/v1/users/{uid}/roles", needs, (OnUser(USR, uid),), json={"roles": grants})

    return build


def unit_import(parent: str | None, with_sites: bool = False) -> Callable[[World], Call]:
    """An import is refused as a whole: 403 without any write permission, otherwise the row whose
    parent lies outside the caller's scope is a row error (422), like an unknown parent."""

    def build(w: World) -> Call:
        code = f"I{w.seq()}"

        def upload(parent_code: str) -> Call:
            data = f"code\tname\tkind\tparent\n{code}\tĐơn vị nhập\tdistrict\t{parent_code}\n"
            return Call(
                "POST",
                "/api/v1/units/import",
                needs,
                params={"with_sites": str(with_sites).lower()},
                files={"file": ("units.tsv", data.encode(), "text/tab-separated-values")},
                refused=frozenset({403, 422}),
            )

        needs: tuple[Need, ...]
        if parent is None:
            needs = (Never("a second root"),)  # refused for everyone, as a row error or a 403
            return upload("")
        pid = w.unit_id(parent)
        needs = (OnUnit(UW, pid), OnUnit(SW, pid)) if with_sites else (OnUnit(UW, pid),)
        call = upload(parent)
        call.names_unit, call.twin = pid, upload(NOWHERE)
        return call

    return build


def site_import(unit: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        code, uid = f"I{w.seq()}", w.unit_id(unit)

        def upload(unit_code: str) -> Call:
            data = f"code\tunit\tname\n{code}\t{unit_code}\tĐiểm cầu nhập\n"
            return Call(
                "POST",
                "/api/v1/sites/import",
                (OnUnit(SW, uid),),
                files={"file": ("sites.tsv", data.encode(), "text/tab-separated-values")},
                refused=frozenset({403, 422}),
            )

        call = upload(unit)
        call.names_unit, call.twin = uid, upload(NOWHERE)
        return call

    return build


def listing(
    url: str, rows: Callable[[Policy, Actor], set[Any] | int], **params: Any
) -> Callable[[World], Listing]:
    def build(w: World) -> Listing:
        resolved = {k: (w.unit_id(v) if k in ("under", "unit") else v) for k, v in params.items()}
        return Listing(url, rows, resolved, export=url.endswith("/export"))

    return build


# Meetings to play with, by who organizes them, where the host is and which sites are invited.
MEETINGS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "own": (OWN, OWN, ()),
    "other": (OTHER, OTHER, ()),
    "central, own site invited": (ROOT, ROOT, (OWN,)),
    "central, other site invited": (ROOT, ROOT, (OTHER,)),
    "other, own site invited": (OTHER, OTHER, (OWN,)),
    "central, own site hosts": (ROOT, OWN, (OTHER,)),
}


def new_meeting(w: World, case: str, chair: int | None = None) -> int:
    owner, host, invited = MEETINGS[case]
    with w.ctx.db.session() as session:
        tx = w._tx(session)
        spec = meeting_svc.MeetingSpec(
            title=f"Giao ban thử {w.seq()}",
            kind="briefing",
            starts_at=datetime(2030, 1, 2, 8, 0),
            ends_at=datetime(2030, 1, 2, 11, 0),
            owner_unit_id=session.execute(select(Unit.id).where(Unit.code == owner)).scalar_one(),
            host_site_id=session.execute(select(Site.id).where(Site.code == host)).scalar_one(),
            chair_user_id=chair,
            invite=meeting_svc.InviteSpec(
                site_ids=list(session.execute(select(Site.id).where(Site.code.in_(invited))).scalars())
            ),
        )
        return meeting_svc.create_meeting(tx, spec).id


def meetings_seen(status: str | None = None) -> Callable[[Policy, Actor], set[Any] | int]:
    def rows(p: Policy, a: Actor) -> set[Any] | int:
        with p.w.ctx.db.session() as s:
            ids = list(s.execute(select(Meeting.id, Meeting.status)).all())
        return {i for i, st in ids if (status is None or st == status) and InMeeting("see", i).holds(p, a)}

    return rows


def meeting_listing(**params: Any) -> Callable[[World], Listing]:
    def build(w: World) -> Listing:
        for case in MEETINGS:
            new_meeting(w, case)
        return Listing("/api/v1/meetings", meetings_seen(params.get("status")), dict(params))

    return build


def meeting_read(case: str, suffix: str = "", what: str = "see") -> Callable[[World], Call]:
    """A read of one meeting: hidden (404) from whoever cannot see it; ``what`` beyond seeing it
    (the roll call needs the console) is refused 403 to those who see it."""

    def build(w: World) -> Call:
        mid = new_meeting(w, case)
        return Call(
            "GET",
            f"/api/v1/meetings/{mid}{suffix}",
            (InMeeting(what, mid),),
            (InMeeting("see", mid),) if what != "see" else (),
            returns_id=None if suffix else mid,
        )

    return build


def meeting_create(owner: str, host: str, invite: tuple[str, ...] = ()) -> Callable[[World], Call]:
    """Scheduling needs a scheduler's role over the organizing unit, the host site and every invited
    site; a site out of scope is refused like one that does not exist (409)."""

    def build(w: World) -> Call:
        oid, host_id = w.unit_id(owner), w.site_id(host)
        sites = [w.site_id(code) for code in invite]
        needs: tuple[Need, ...] = (ManageAt(unit_id=oid), ManageAt(site_id=host_id))
        needs += tuple(ManageAt(site_id=sid) for sid in sites)
        return Call(
            "POST",
            "/api/v1/meetings",
            needs,
            (OnUnit(UR, oid),),
            json={
                "title": f"Hội nghị mới {w.seq()}",
                "starts_at": "2030-02-01T08:00:00",
                "ends_at": "2030-02-01T11:00:00",
                "owner_unit_id": oid,
                "host_site_id": host_id,
                "invite": {"site_ids": sites},
            },
            ok=201,
            refused=None if owner == host and not invite else frozenset({403, 404, 409}),
        )

    return build


def meeting_invite(case: str, invite: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        mid, sid = new_meeting(w, case), w.site_id(invite)
        scoped = MEETINGS[case][0] == invite
        return Call(
            "PUT",
            f"/api/v1/meetings/{mid}/invitations",
            (InMeeting("manage", mid), ManageAt(site_id=sid)),
            (InMeeting("see", mid),),
            json={"site_ids": [sid]},
            refused=None if scoped else frozenset({403, 404, 409}),
            returns_id=mid,
        )

    return build


def meeting_status(case: str, another_chair: bool = False) -> Callable[[World], Call]:
    """Opening a meeting: its chair (a chair of the organizing unit when none is named), or a
    scheduler; ``another_chair`` names a chair who is none of the actors."""

    def build(w: World) -> Call:
        mid = new_meeting(w, case, w.new_user(("chair", ROOT)) if another_chair else None)
        return Call(
            "POST",
            f"/api/v1/meetings/{mid}/status",
            (InMeeting("chair", mid),),
            (InMeeting("see", mid),),
            json={"status": "open"},
            returns_id=mid,
        )

    return build


# The control room's quality wall (giaoban/web/api/quality.py): the console only.


def quality_history(case: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        mid = new_meeting(w, case)
        host = meeting_facts(w, mid).host_site_id
        url = f"/api/v1/meetings/{mid}/quality/{host}/history"
        return Call("GET", url, (InMeeting("console", mid),), (InMeeting("see", mid),))

    return build


def alert_ack(case: str) -> Callable[[World], Call]:
    """An open meeting with one alert in its log (a dropped host site): the console acknowledges it."""

    def build(w: World) -> Call:
        from giaoban.meetings.lifecycle import MeetingStatus
        from giaoban.meetings.models import MeetingRecord

        mid = new_meeting(w, case)
        host = meeting_facts(w, mid).host_site_id
        with w.ctx.db.session() as session:
            meeting_svc.transition(w._tx(session), mid, MeetingStatus.open)
            session.add(
                MeetingRecord(
                    meeting_id=mid,
                    seq=1,
                    at=1.0,
                    kind="alert",
                    site_id=host,
                    user="",
                    data={"rule": "dropped", "action": "raise"},
                )
            )
        url = f"/api/v1/meetings/{mid}/alerts/1/ack"
        return Call("POST", url, (InMeeting("console", mid),), (InMeeting("see", mid),))

    return build


READY = {"status": "ready", "camera": True, "mic_level": 0.4, "echo_rtt_ms": 12.5, "bandwidth_kbps": 900}


def techcheck_submit(case: str, site: str) -> Callable[[World], Call]:
    """A tech check result: only for a site the caller runs in that meeting."""

    def build(w: World) -> Call:
        mid, sid = new_meeting(w, case), w.site_id(site)
        url = f"/api/v1/meetings/{mid}/sites/{sid}/techcheck"
        return Call("POST", url, (InMeeting(f"site {sid}", mid),), (InMeeting("see", mid),), json=READY)

    return build


def techcheck_request(case: str, site: str) -> Callable[[World], Call]:
    """The control room asks one of the meeting's sites for a tech check."""

    def build(w: World) -> Call:
        mid, sid = new_meeting(w, case), w.site_id(site)
        url = f"/api/v1/meetings/{mid}/sites/{sid}/techcheck/request"
        return Call("POST", url, (InMeeting("console", mid),), (InMeeting("see", mid),))

    return build


def techcheck_board(case: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        mid = new_meeting(w, case)
        return Call("GET", f"/api/v1/meetings/{mid}/techcheck", (InMeeting("see", mid),))

    return build


# A unit's delegate roster (giaoban/web/api/roster.py): read with the unit, changed by RosterEdit.


def roster_unit(w: World, where: str) -> int:
    """``where``: a unit code, or "district of <code>" for a fresh district under it."""
    return w.new_unit(where.split()[-1]) if where.startswith("district") else w.unit_id(where)


def roster_entry(w: World, unit_id: int) -> int:
    from giaoban.org import roster as roster_svc

    with w.ctx.db.session() as session:
        return roster_svc.add_entry(w._tx(session), unit_id, full_name=f"Đại biểu thử {w.seq()}").id


def roster_read(where: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = roster_unit(w, where)
        return Call("GET", f"/api/v1/units/{uid}/roster", (OnUnit(UR, uid),))

    return build


def roster_add(where: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = roster_unit(w, where)
        body = {"full_name": "Nguyễn Văn Thử", "position": "Ủy viên"}
        return Call(
            "POST", f"/api/v1/units/{uid}/roster", (RosterEdit(uid),), (OnUnit(UR, uid),), json=body, ok=201
        )

    return build


def roster_update(where: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        uid = roster_unit(w, where)
        url = f"/api/v1/units/{uid}/roster/{roster_entry(w, uid)}"
        return Call("PATCH", url, (RosterEdit(uid),), (OnUnit(UR, uid),), json={"active": False})

    return build


def roster_order(where: str) -> Callable[[World], Call]:
    def build(w: World) -> Call:
        from giaoban.org import roster as roster_svc

        uid = roster_unit(w, where)
        roster_entry(w, uid)
        roster_entry(w, uid)
        with w.ctx.db.session() as session:
            ids = [e.id for e in roster_svc.list_entries(session, uid)]
        url = f"/api/v1/units/{uid}/roster/order"
        return Call("PUT", url, (RosterEdit(uid),), (OnUnit(UR, uid),), json={"ids": ids[::-1]})

    return build


ROSTER_UNITS = {"own": OWN, "own district": f"district of {OWN}", "other": OTHER}


# --- the matrix ------------------------------------------------------------------------------------

ROUTES: dict[str, Route] = {
    # auth: every actor, about themselves (checked by the SELF/PUBLIC runners below)
    "POST /api/v1/auth/login": Route(PUBLIC),
    "POST /api/v1/auth/logout": Route(SELF),
    "GET /api/v1/auth/me": Route(SELF),
    "POST /api/v1/auth/password": Route(SELF),
    "POST /api/v1/auth/totp/disable": Route(SELF),
    # units
    "GET /api/v1/units": Route(
        LIST,
        {
            "all": listing("/api/v1/units", units_seen()),
            "under own": listing("/api/v1/units", units_seen(OWN), under=OWN),
            "under other": listing("/api/v1/units", units_seen(OTHER), under=OTHER),
        },
    ),
    "GET /api/v1/units/{unit_id}": Route(
        READ, {"own": unit_read("/api/v1/units/{id}", OWN), "other": unit_read("/api/v1/units/{id}", OTHER)}
    ),
    "GET /api/v1/units/{unit_id}/history": Route(
        READ,
        {
            "own": unit_read("/api/v1/units/{id}/history", OWN),
            "other": unit_read("/api/v1/units/{id}/history", OTHER),
        },
    ),
    "POST /api/v1/units": Route(
        WRITE, {"own": unit_create(OWN), "other": unit_create(OTHER), "top level": unit_create(None)}
    ),
    "PATCH /api/v1/units/{unit_id}": Route(WRITE, {"own": unit_update(OWN), "other": unit_update(OTHER)}),
    "POST /api/v1/units/{unit_id}/move": Route(
        WRITE,
        {
            "own": unit_move(OWN, OWN),
            "other": unit_move(OTHER, OTHER),
            "own into other": unit_move(OWN, OTHER),
            "the root": root_change("move root"),
            "to the top": root_change("move to top"),
        },
    ),
    "POST /api/v1/units/{unit_id}/close": Route(
        WRITE, {"own": unit_close(OWN), "other": unit_close(OTHER), "the root": root_change("close root")}
    ),
    "POST /api/v1/units/merge": Route(
        WRITE,
        {
            "own": unit_merge(OWN, OWN),
            "other": unit_merge(OTHER, OTHER),
            "own into other": unit_merge(OWN, OTHER),
            "the root": root_change("merge root"),
        },
    ),
    "POST /api/v1/units/{unit_id}/split": Route(
        WRITE,
        {
            "own": unit_split(OWN),
            "other": unit_split(OTHER),
            "own province (new part under root)": unit_split(None),
            "the root": root_change("split root"),
        },
    ),
    "GET /api/v1/units/export": Route(
        LIST,
        {
            "all": listing("/api/v1/units/export", unit_export()),
            "under other": listing("/api/v1/units/export", unit_export(OTHER), under=OTHER),
        },
    ),
    "POST /api/v1/units/import": Route(
        WRITE,
        {
            "own": unit_import(OWN),
            "other": unit_import(OTHER),
            "top level": unit_import(None),
            "own, with sites": unit_import(OWN, with_sites=True),
        },
    ),
    # sites
    "GET /api/v1/sites": Route(
        LIST,
        {
            "all": listing("/api/v1/sites", sites_seen()),
            "under own": listing("/api/v1/sites", sites_seen(OWN), under=OWN),
            "under other": listing("/api/v1/sites", sites_seen(OTHER), under=OTHER),
            "unit other": listing("/api/v1/sites", sites_seen(unit=OTHER), unit=OTHER),
        },
    ),
    "GET /api/v1/sites/{site_id}": Route(
        READ,
        {"own": site_read(OWN), "own unit, another site": site_read("sibling"), "other": site_read(OTHER)},
    ),
    "POST /api/v1/sites": Route(WRITE, {"own": site_create(OWN), "other": site_create(OTHER)}),
    "PATCH /api/v1/sites/{site_id}": Route(
        WRITE,
        {
            "own: contacts": site_update(OWN),
            "own: status": site_update(OWN, "status"),
            "own unit, another site: contacts": site_update("sibling"),
            "other: contacts": site_update(OTHER),
            "own: move to other": site_update(OWN, "move"),
        },
    ),
    "GET /api/v1/sites/export": Route(
        LIST,
        {
            "all": listing("/api/v1/sites/export", sites_seen(key=1, export=True)),
            "under other": listing(
                "/api/v1/sites/export", sites_seen(OTHER, key=1, export=True), under=OTHER
            ),
        },
    ),
    "POST /api/v1/sites/import": Route(WRITE, {"own": site_import(OWN), "other": site_import(OTHER)}),
    # users
    "GET /api/v1/users": Route(
        LIST,
        {
            "all": listing("/api/v1/users", users_seen()),
            "unit own": listing("/api/v1/users", users_seen(OWN), unit=OWN),
            "unit other": listing("/api/v1/users", users_seen(OTHER), unit=OTHER),
        },
    ),
    "GET /api/v1/users/{user_id}": Route(READ, {t: user_read(t) for t in USER_TARGETS}),
    "POST /api/v1/users": Route(
        WRITE,
        {
            "own": user_create((("chair", OWN),)),
            "own admin": user_create((("admin", OWN),)),
            "other": user_create((("chair", OTHER),)),
            "own and other": user_create((("chair", OWN), ("chair", OTHER))),
            "admin at root": user_create((("admin", ROOT),)),
            "no roles": user_create(()),
        },
    ),
    "PATCH /api/v1/users/{user_id}": Route(
        WRITE, {t: user_write(t, "", "PATCH", {"full_name": "Tên đã sửa"}) for t in USER_TARGETS}
    ),
    "PUT /api/v1/users/{user_id}/roles": Route(
        WRITE,
        {
            "own": user_roles("own", (("secretary", OWN),)),
            "other": user_roles("other", (("secretary", OTHER),)),
            "own, granted in other": user_roles("own", (("chair", OTHER),)),
            "own, made admin at root": user_roles("own", (("admin", ROOT),)),
            "cross": user_roles("cross", (("secretary", OWN),)),
            "no roles": user_roles("no roles", (("chair", OWN),)),
        },
    ),
    "POST /api/v1/users/{user_id}/lock": Route(
        WRITE, {t: user_write(t, "/lock", "POST", {"locked": True, "reason": "Thử"}) for t in USER_TARGETS}
    ),
    "POST /api/v1/users/{user_id}/password": Route(
        WRITE, {t: user_write(t, "/password", "POST", {"new_password": NEW_PASSWORD}) for t in USER_TARGETS}
    ),
    # audit
    "GET /api/v1/audit": Route(LIST, {"all": listing("/api/v1/audit", audit_seen)}),
    # meetings
    "GET /api/v1/meetings": Route(
        LIST, {"all": meeting_listing(), "scheduled": meeting_listing(status="scheduled")}
    ),
    "GET /api/v1/meetings/{meeting_id}": Route(READ, {c: meeting_read(c) for c in MEETINGS}),
    "GET /api/v1/meetings/{meeting_id}/ics": Route(READ, {c: meeting_read(c, "/ics") for c in MEETINGS}),
    "GET /api/v1/meetings/{meeting_id}/attendance.xlsx": Route(
        READ, {c: meeting_read(c, "/attendance.xlsx", "console") for c in MEETINGS}
    ),
    # the control room's quality wall
    "GET /api/v1/meetings/{meeting_id}/quality": Route(
        READ, {c: meeting_read(c, "/quality", "console") for c in MEETINGS}
    ),
    "GET /api/v1/meetings/{meeting_id}/quality/{site_id}/history": Route(
        READ, {c: quality_history(c) for c in MEETINGS}
    ),
    "POST /api/v1/meetings/{meeting_id}/alerts/{alert_id}/ack": Route(
        WRITE, {c: alert_ack(c) for c in MEETINGS}
    ),
    "POST /api/v1/meetings": Route(
        WRITE,
        {
            "own": meeting_create(OWN, OWN),
            "other": meeting_create(OTHER, OTHER),
            "own, hosted by other": meeting_create(OWN, OTHER),
            "own, inviting other": meeting_create(OWN, OWN, (OTHER,)),
            "central": meeting_create(ROOT, ROOT, (OWN, OTHER)),
        },
    ),
    "PUT /api/v1/meetings/{meeting_id}/invitations": Route(
        WRITE,
        {
            "own": meeting_invite("own", OWN),
            "other": meeting_invite("other", OTHER),
            "own, inviting other": meeting_invite("own", OTHER),
            "other, own site invited": meeting_invite("other, own site invited", OTHER),
        },
    ),
    "GET /api/v1/meetings/{meeting_id}/techcheck": Route(READ, {c: techcheck_board(c) for c in MEETINGS}),
    "POST /api/v1/meetings/{meeting_id}/sites/{site_id}/techcheck": Route(
        WRITE,
        {
            "own": techcheck_submit("own", OWN),
            "other": techcheck_submit("other", OTHER),
            "central, own site": techcheck_submit("central, own site invited", OWN),
            "central, as the host": techcheck_submit("central, own site invited", ROOT),
            "central, own site hosts, as the other site": techcheck_submit("central, own site hosts", OTHER),
        },
    ),
    "POST /api/v1/meetings/{meeting_id}/sites/{site_id}/techcheck/request": Route(
        WRITE,
        {
            "own": techcheck_request("own", OWN),
            "other": techcheck_request("other", OTHER),
            "central, own site": techcheck_request("central, own site invited", OWN),
            "other, own site": techcheck_request("other, own site invited", OWN),
        },
    ),
    "POST /api/v1/meetings/{meeting_id}/status": Route(
        WRITE,
        {
            **{c: meeting_status(c) for c in MEETINGS},
            "central, chaired by someone else": meeting_status(
                "central, own site invited", another_chair=True
            ),
        },
    ),
    # a unit's delegate roster
    "GET /api/v1/units/{unit_id}/roster": Route(READ, {c: roster_read(u) for c, u in ROSTER_UNITS.items()}),
    "POST /api/v1/units/{unit_id}/roster": Route(WRITE, {c: roster_add(u) for c, u in ROSTER_UNITS.items()}),
    "PATCH /api/v1/units/{unit_id}/roster/{entry_id}": Route(
        WRITE, {c: roster_update(u) for c, u in ROSTER_UNITS.items()}
    ),
    "PUT /api/v1/units/{unit_id}/roster/order": Route(
        WRITE, {c: roster_order(u) for c, u in ROSTER_UNITS.items()}
    ),
}


# --- the routes the application serves -----------------------------------------------------------


def api_routes(app: Any) -> set[str]:
    from fastapi import routing

    routes = (
        routing.iter_route_contexts(app.routes) if hasattr(routing, "iter_route_contexts") else app.routes
    )
    out = set()
    for route in routes:
        original = getattr(route, "original_route", route)
        path = route.path_format
        if isinstance(original, APIRoute) and path.startswith("/api/"):
            out.update(f"{method} {path}" for method in route.methods if method != "HEAD")
    return out


def test_every_api_route_is_in_the_matrix() -> None:
    app = create_app(AppContext(Settings(), Database("sqlite://"), AuditLog("routes-only")))
    served = api_routes(app)
    assert served, "no API routes found"
    missing = sorted(served - ROUTES.keys())
    stale = sorted(ROUTES.keys() - served)
    assert not missing, f"API routes without a row in the access matrix: {missing}"
    assert not stale, f"rows of the access matrix for routes that no longer exist: {stale}"


# --- running it -----------------------------------------------------------------------------------


def _send(w: World, actor: Actor, call: Call | Listing, extra: dict[str, Any] | None = None) -> Response:
    headers = w.headers[actor.name]
    if isinstance(call, Listing):
        return w.client.get(call.url, params={**call.params, **(extra or {})}, headers=headers)
    return w.client.request(
        call.method, call.url, json=call.json, params=call.params, files=call.files, headers=headers
    )


def _rows_of(response: Response, listing: Listing) -> tuple[set[Any], int]:
    if listing.export:
        lines = list(csv.reader(io.StringIO(response.content.decode("utf-8")), delimiter="\t"))
        codes = {line[0] for line in lines[1:] if line}
        return codes, len(codes)
    body = response.json()
    return {item["id"] for item in body["items"]}, int(body["total"])


def _check_listing(w: World, p: Policy, actor: Actor, case: str, listing: Listing) -> list[str]:
    expected = listing.rows(p, actor)
    r = _send(w, actor, listing, {} if listing.export else {"limit": 500})
    where = f"{actor.name} · {case}"
    if isinstance(expected, int):
        ok = r.status_code == expected
        return [] if ok else [f"{where}: expected {expected}, got {r.status_code} {r.text[:200]}"]
    if r.status_code != 200:
        return [f"{where}: expected 200, got {r.status_code} {r.text[:200]}"]
    got, total = _rows_of(r, listing)
    problems = []
    if got - expected:
        problems.append(f"{where}: LEAK, rows outside the scope: {sorted(got - expected)[:10]}")
    if expected - got:
        problems.append(f"{where}: rows in scope missing: {sorted(expected - got)[:10]}")
    if total != len(expected):
        problems.append(f"{where}: total {total}, but {len(expected)} rows are in scope")
    return problems


def _check_call(w: World, p: Policy, actor: Actor, case: str, kind: str, call: Call) -> list[str]:
    where = f"{actor.name} · {case} · {call.method} {call.url}"
    if all(n.holds(p, actor) for n in call.needs):
        outcome, statuses = "allowed", {call.ok}
    elif kind == READ and not (call.visible and all(n.holds(p, actor) for n in call.visible)):
        outcome, statuses = "hidden", {404}
    elif kind == READ:
        outcome, statuses = "forbidden", {403}
    elif call.refused is not None:
        outcome, statuses = "refused", set(call.refused)
    elif all(n.holds(p, actor) for n in call.visible):
        outcome, statuses = "forbidden", {403}
    else:
        outcome, statuses = "refused", {403, 404}
    before = w.snapshot() if kind == WRITE and outcome != "allowed" else None
    r = _send(w, actor, call)
    needs = ", ".join(map(str, call.needs))
    problems = []
    if r.status_code not in statuses:
        problems.append(
            f"{where}: {outcome} (needs {needs}) → expected {sorted(statuses)}, got {r.status_code} {r.text[:200]}"
        )
    if outcome == "allowed" and call.returns_id is not None and r.status_code == 200:
        body = r.json()
        got_id = body.get("id", body.get("unit", {}).get("id"))
        if got_id != call.returns_id:
            problems.append(f"{where}: answered with object {got_id}, asked for {call.returns_id}")
    if outcome != "allowed" and r.status_code in (403, 404) and set(r.json()) != {"error"}:
        problems.append(f"{where}: a refusal carries more than the error: {r.text[:200]}")
    if before is not None:
        changed = changed_tables(before, w.snapshot())
        if changed:
            problems.append(f"{where}: WRITE LEAK, answered {r.status_code} and changed {changed}")
    hidden = call.names_unit is not None and not p.grants(actor, UR, w.unit_path(call.names_unit))
    if outcome != "allowed" and r.status_code == 422 and hidden and call.twin is not None:
        twin = _send(w, actor, call.twin)
        if _row_codes(r) != _row_codes(twin):
            problems.append(
                f"{where}: READ LEAK, a unit out of sight is refused as {_row_codes(r)}, "
                f"one that does not exist as {_row_codes(twin)}"
            )
    return problems


def _row_codes(r: Response) -> list[str]:
    body = r.json()
    return [d["code"] for d in body["error"]["details"]] if r.status_code == 422 else [str(r.status_code)]


def _check_totp_disable(w: World, actor: Actor, headers: dict[str, str], where: str) -> list[str]:
    """Every actor turns their own TOTP off, with a current code only (enrolled here first)."""
    from giaoban.audit.log import Actor as AuditActor
    from giaoban.context import Tx
    from giaoban.org import accounts

    uid = w.user_id(actor.username)
    with w.ctx.db.session() as s:
        tx = Tx(s, w.ctx.audit, AuditActor.system("security-tests"))
        secret, _uri = accounts.begin_totp_enrollment(tx, uid)
        totp = pyotp.TOTP(secret)
        accounts.confirm_totp(tx, uid, totp.now())
    valid = {totp.at(datetime.now().timestamp() + k * 30) for k in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in valid)
    url = "/api/v1/auth/totp/disable"
    refused = w.client.post(url, json={"code": wrong}, headers=headers)
    done = w.client.post(url, json={"code": totp.now()}, headers=headers)
    with w.ctx.db.session() as s:
        still_on = s.execute(select(User.totp_enabled).where(User.id == uid)).scalar_one()
    ok = refused.status_code == 403 and done.status_code == 204 and not still_on
    return [] if ok else [f"{where}: wrong code {refused.status_code}, right code {done.status_code}"]


def _check_self(w: World, p: Policy, actor: Actor, route: str) -> list[str]:
    """The auth routes: every actor, about themselves."""
    where = f"{actor.name} · {route}"
    if route == "POST /api/v1/auth/login":
        r = w.client.post("/api/v1/auth/login", json={"username": actor.username, "password": DEMO_PASSWORD})
        ok = r.status_code == 200 and r.json()["user"]["username"] == actor.username
        return [] if ok else [f"{where}: {r.status_code} {r.text[:200]}"]
    headers = login(w.client, actor.username)
    if route == "GET /api/v1/auth/me":
        r = w.client.get("/api/v1/auth/me", headers=headers)
        if r.status_code != 200:
            return [f"{where}: {r.status_code} {r.text[:200]}"]
        # Each permission with the roots of the subtrees it covers; pinned ones cover no subtree.
        expected = {}
        if actor.role is not None and actor.unit is not None:
            for perm in POLICY[actor.role]:
                if not (actor.site is not None and perm in PINNED):
                    expected[perm] = [w.unit_id(actor.unit)]
        got = r.json()["permissions"]
        return [] if got == expected else [f"{where}: permissions {got}, policy says {expected}"]
    if route == "POST /api/v1/auth/logout":
        r = w.client.post("/api/v1/auth/logout", headers=headers)
        after = w.client.get("/api/v1/auth/me", headers=headers)
        ok = r.status_code == 204 and after.status_code == 401
        return [] if ok else [f"{where}: logout {r.status_code}, then /me {after.status_code}"]
    if route == "POST /api/v1/auth/totp/disable":
        return _check_totp_disable(w, actor, headers, where)
    assert route == "POST /api/v1/auth/password"
    body = {"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD}
    r = w.client.post("/api/v1/auth/password", json=body, headers=headers)
    if r.status_code != 204:
        return [f"{where}: {r.status_code} {r.text[:200]}"]
    again = w.client.post("/api/v1/auth/login", json={"username": actor.username, "password": NEW_PASSWORD})
    return (
        []
        if again.status_code == 200
        else [f"{where}: the new password does not log in ({again.status_code})"]
    )


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_access(route: str, world: World) -> None:
    spec = ROUTES[route]
    p = Policy(world)
    problems: list[str] = []
    for actor in ACTORS:
        if spec.kind in (SELF, PUBLIC):
            problems += _check_self(world, p, actor, route)
            continue
        for case, build in spec.cases.items():
            target = build(world)
            if isinstance(target, Listing):
                problems += _check_listing(world, p, actor, case, target)
            else:
                problems += _check_call(world, p, actor, case, spec.kind, target)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


# --- the same rules, in the places a table cannot show ---------------------------------------------


def test_nobody_changes_their_own_roles_or_locks_themselves(world: World) -> None:
    for actor in ("admin@TW", "admin@01"):
        me = world.client.get("/api/v1/auth/me", headers=world.headers[actor]).json()["user"]["id"]
        before = world.snapshot()
        r = world.client.put(
            f"/api/v1/users/{me}/roles",
            json={"roles": [{"role": "admin", "unit_id": world.unit_id(ROOT)}]},
            headers=world.headers[actor],
        )
        assert r.status_code == 403, r.text
        r = world.client.post(f"/api/v1/users/{me}/lock", json={"locked": True}, headers=world.headers[actor])
        assert r.status_code == 403, r.text
        assert changed_tables(before, world.snapshot()) == []


def test_every_api_route_but_login_needs_a_login(world: World) -> None:
    unit, site, user = world.unit_id(OWN), world.site_id(OWN), world.user_id("chutri")
    meeting = new_meeting(world, "own")
    for route in sorted(api_routes(world.client.app)):
        if route == "POST /api/v1/auth/login":
            continue
        method, path = route.split(" ", 1)
        url = path.format(
            unit_id=unit, site_id=site, user_id=user, meeting_id=meeting, alert_id=1, entry_id=1
        )
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            r = world.client.request(method, url, headers=headers)
            assert r.status_code == 401, f"{route} with {headers}: {r.status_code} {r.text[:200]}"
            assert r.json()["error"]["code"] == "not_authenticated"


def test_a_role_on_a_dissolved_unit_covers_nothing(world: World) -> None:
    """Merging a province away must not leave its staff with a grant that covers anything."""
    admin = world.headers["admin@TW"]
    staff = world.headers["org_staff@01"]
    r = world.client.post(
        "/api/v1/units/merge",
        json={"source_ids": [world.unit_id(OWN)], "target_id": world.unit_id(OTHER)},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    staff = login(world.client, "tochuc-01")
    assert world.client.get(f"/api/v1/units/{world.unit_id(OTHER)}", headers=staff).status_code == 404
    assert world.client.get(f"/api/v1/units/{world.unit_id(OWN)}", headers=staff).status_code == 404
    assert world.client.get("/api/v1/units", headers=staff).json()["total"] == 0
    assert world.client.get("/api/v1/auth/me", headers=staff).json()["permissions"] == {}


def test_lists_page_without_leaking(world: World) -> None:
    """Paging through a scoped list gives the same rows as one big page, nothing from outside."""
    staff = world.headers["org_staff@01"]
    whole = world.client.get("/api/v1/units", params={"limit": 500}, headers=staff).json()
    seen: list[int] = []
    for offset in range(0, whole["total"] + 3, 3):
        page = world.client.get("/api/v1/units", params={"limit": 3, "offset": offset}, headers=staff).json()
        assert page["total"] == whole["total"]
        seen += [item["id"] for item in page["items"]]
    assert seen == [item["id"] for item in whole["items"]]


def test_search_does_not_reach_outside_the_scope(world: World) -> None:
    """A name search by a Hà Nội actor never finds TP. Hồ Chí Minh, however it is spelled."""
    staff = world.headers["org_staff@01"]
    for q in ("Hồ Chí Minh", "ho chi minh", OTHER):
        assert world.client.get("/api/v1/units", params={"q": q}, headers=staff).json()["total"] == 0
        sites = world.client.get("/api/v1/sites", params={"q": q}, headers=staff).json()
        assert sites["total"] == 0
    admin01 = world.headers["admin@01"]
    users = world.client.get("/api/v1/users", params={"q": "tochuc-79"}, headers=admin01).json()
    assert users["total"] == 0
    # …and the same searches do find it for an actor of the whole tree.
    chair = world.headers["chair@TW"]
    assert world.client.get("/api/v1/units", params={"q": "ho chi minh"}, headers=chair).json()["total"] >= 1


def test_role_assignments_are_the_ones_the_actors_were_given(world: World) -> None:
    """The matrix assumes each actor holds exactly the one assignment ACTORS describes."""
    pinned = {actor.name: world.site_id(actor.site) for actor in ACTORS if actor.site}
    with world.ctx.db.session() as s:
        for actor in ACTORS:
            rows = s.execute(
                select(RoleAssignment.role, Unit.code, RoleAssignment.site_id)
                .join(Unit, Unit.id == RoleAssignment.unit_id)
                .join(User, User.id == RoleAssignment.user_id)
                .where(User.username == actor.username)
            ).all()
            expected = [(actor.role, actor.unit, pinned.get(actor.name))] if actor.role else []
            assert [tuple(r) for r in rows] == expected, actor
