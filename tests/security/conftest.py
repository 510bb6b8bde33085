"""The world the security tests play in: the demo organization, one login per kind of actor, fresh
targets made on demand, and a snapshot of every table to prove that a refused request wrote nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, inspect, select

from giaoban.audit.log import Actor as AuditActor
from giaoban.context import AppContext, Tx
from giaoban.db import Base
from giaoban.org import accounts, sites, units
from giaoban.org.models import RoleAssignment, Site, Unit, User
from tests.conftest import DEMO_PASSWORD, Demo, login

ROOT = "TW"  # the demo's central unit
OWN = "01"  # Hà Nội: where the scoped actors hold their roles
OTHER = "79"  # TP. Hồ Chí Minh: a subtree none of them may touch


@dataclass(frozen=True)
class Actor:
    """Someone calling the API: one role assignment (or none) at one unit, maybe pinned to a site."""

    name: str
    username: str
    role: str | None
    unit: str | None = None
    site: str | None = None
    created: bool = False  # not in the demo: made by the ``world`` fixture


ACTORS = (
    Actor("admin@TW", "admin", "admin", ROOT),
    Actor("admin@01", "quantri-01", "admin", OWN, created=True),
    Actor("central_operator@TW", "dieuhanh", "central_operator", ROOT),
    Actor("chair@TW", "chutri", "chair", ROOT),
    Actor("secretary@TW", "thuky", "secretary", ROOT),
    Actor("site_operator@01 (site 01)", "dc-01", "site_operator", OWN, site=OWN),
    Actor("org_staff@01", "tochuc-01", "org_staff", OWN),
    Actor("exam_candidate@01", "thisinh-01", "exam_candidate", OWN, created=True),
    Actor("no roles", "khongvaitro", None, created=True),
)

# Columns that change on a read (a session's last activity), so "nothing changed" ignores them.
VOLATILE = {("auth_sessions", "last_seen_at")}


@dataclass
class World:
    """Helpers never nest database sessions: on SQLite a second writer would wait for the first."""

    ctx: AppContext
    client: TestClient
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # actor name -> bearer headers
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _tables: list[Table] = field(default_factory=list)

    # --- reading the organization (plain data, never the access code under test) ---------------

    def unit(self, code: str) -> Unit:
        with self.ctx.db.session() as session:
            unit = session.execute(select(Unit).where(Unit.code == code)).scalar_one()
            session.expunge(unit)
            return unit

    def unit_id(self, code: str) -> int:
        return self.unit(code).id

    def site_id(self, code: str) -> int:
        with self.ctx.db.session() as session:
            return int(session.execute(select(Site.id).where(Site.code == code)).scalar_one())

    def unit_path(self, unit_id: int) -> str:
        with self.ctx.db.session() as session:
            return str(session.execute(select(Unit.path).where(Unit.id == unit_id)).scalar_one())

    def site_unit_path(self, site_id: int) -> str:
        with self.ctx.db.session() as session:
            return str(
                session.execute(
                    select(Unit.path).join(Site, Site.unit_id == Unit.id).where(Site.id == site_id)
                ).scalar_one()
            )

    def user_role_paths(self, user_id: int) -> list[str]:
        with self.ctx.db.session() as session:
            return list(
                session.execute(
                    select(Unit.path)
                    .join(RoleAssignment, RoleAssignment.unit_id == Unit.id)
                    .where(RoleAssignment.user_id == user_id)
                ).scalars()
            )

    def user_id(self, username: str) -> int:
        with self.ctx.db.session() as session:
            return int(session.execute(select(User.id).where(User.username == username)).scalar_one())

    # --- fresh targets, made by the system actor ------------------------------------------------

    def _tx(self, session: Any) -> Tx:
        return Tx(session, self.ctx.audit, AuditActor.system("security-tests"))

    def seq(self) -> int:
        return next(self._seq)

    def new_unit(self, parent_code: str) -> int:
        """A new district (no children, no site) under ``parent_code``."""
        code, parent_id = f"{parent_code}-T{self.seq()}", self.unit_id(parent_code)
        with self.ctx.db.session() as session:
            unit = units.create_unit(
                self._tx(session), code=code, name=f"Huyện thử {code}", kind="district", parent_id=parent_id
            )
            return unit.id

    def new_site(self, unit_code: str) -> int:
        code, unit_id = f"{unit_code}-S{self.seq()}", self.unit_id(unit_code)
        with self.ctx.db.session() as session:
            site = sites.create_site(self._tx(session), code=code, unit_id=unit_id, name=f"Phòng họp {code}")
            return site.id

    def home_site(self, code: str) -> int:
        """The demo site ``code``, back in its own unit (the demo gives site and unit one code) if an
        earlier case moved it away."""
        site_id, home = self.site_id(code), self.unit_id(code)
        with self.ctx.db.session() as session:
            site = session.get(Site, site_id)
            assert site is not None
            if site.unit_id != home:
                sites.move_site(self._tx(session), site_id, home)
        return site_id

    def new_user(self, *roles: tuple[str, str]) -> int:
        """A user holding ``(role, unit code)`` assignments (none: a user with no roles)."""
        specs = [accounts.RoleSpec(role=role, unit_id=self.unit_id(code)) for role, code in roles]
        with self.ctx.db.session() as session:
            user = accounts.create_user(
                self._tx(session),
                username=f"muctieu-{self.seq()}",
                password=DEMO_PASSWORD,
                full_name="Người dùng thử",
                email="muctieu@example.org",
                phone="0900000000",
                roles=specs,
                check_strength=False,
            )
            return user.id

    # --- proof that nothing was written -----------------------------------------------------------

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (but a session's last-seen time)."""
        engine = self.ctx.db.engine
        if not self._tables:
            present = set(inspect(engine).get_table_names())
            self._tables = [t for t in Base.metadata.sorted_tables if t.name in present]
        out: dict[str, list[tuple[Any, ...]]] = {}
        with engine.connect() as conn:
            for table in self._tables:
                cols = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
                rows = conn.execute(select(*cols).order_by(*table.primary_key.columns)).all()
                out[table.name] = [tuple(r) for r in rows]
        return out


def changed_tables(
    before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def make_actors(demo: Demo) -> None:
    """The actors the demo does not have: a province admin, an exam candidate, a user with no roles."""
    with demo.ctx.db.session() as session:
        tx = Tx(session, demo.ctx.audit, AuditActor.system("security-tests"))
        own = session.execute(select(Unit).where(Unit.code == OWN)).scalar_one()
        for actor in ACTORS:
            if actor.created:
                roles = [accounts.RoleSpec(role=actor.role, unit_id=own.id)] if actor.role else []
                accounts.create_user(
                    tx, username=actor.username, password=DEMO_PASSWORD, roles=roles, check_strength=False
                )


@pytest.fixture
def world(client: TestClient, demo: Demo) -> World:
    """The demo, the extra actors, and a bearer token for every actor."""
    make_actors(demo)
    w = World(demo.ctx, client)
    for actor in ACTORS:
        w.headers[actor.name] = login(client, actor.username)
    return w
