"""Whatever allowed sequence of unit and role operations is made, someone active can still
administer the whole organization, and the organization still has exactly one root.

A hypothesis state machine drives the domain functions the API and the pages call (create, move,
merge, close units; grant and revoke roles; create, lock and unlock users; failed logins that lock
accounts) with arguments picked from the current data, refusals included. After every step:
exactly one unit has no parent and it is in effect; and some user who can sign in (not locked)
holds every permission over the whole tree, as the web layer computes it (``Principal``).
Runs on SQLite and PostgreSQL (the ``ctx`` fixture).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.errors import DomainError
from giaoban.org import accounts
from giaoban.org import units as svc
from giaoban.org.access import Perm, Principal
from giaoban.org.models import Role, RoleAssignment, Unit, User
from tests.conftest import wipe

PASSWORD = "Mat-khau-thu-2025"
ROLES = (Role.admin.value, Role.admin.value, Role.org_staff.value, Role.chair.value)
pick = st.integers(0, 10_000)


def _active_units(ctx: AppContext) -> list[Unit]:
    with ctx.db.session() as s:
        return list(s.execute(select(Unit).where(Unit.valid_to.is_(None)).order_by(Unit.id)).scalars())


def _users(ctx: AppContext) -> list[User]:
    with ctx.db.session() as s:
        return list(
            s.execute(
                select(User)
                .order_by(User.id)
                .options(selectinload(User.roles).selectinload(RoleAssignment.unit))
            ).scalars()
        )


def _nth(items: list[Any], n: int) -> Any:
    return items[n % len(items)]


def run_machine(ctx: AppContext, examples: int) -> None:
    password_hash = accounts.hash_password(PASSWORD)

    class Organization(RuleBasedStateMachine):
        step = 0

        def act(self, action: Any, *args: Any, **kwargs: Any) -> None:
            """One operation in its own transaction; a refusal rolls it back and is fine."""
            self.step += 1
            try:
                with ctx.db.session() as s:
                    action(Tx(s, ctx.audit, Actor.system("property")), *args, **kwargs)
            except DomainError:
                pass

        @initialize()
        def organization(self) -> None:
            wipe(ctx.db)
            with ctx.db.session() as s:
                tx = Tx(s, ctx.audit, Actor.system("property"))
                root = svc.create_unit(tx, code="TW", name="Trung ương", kind="central", parent_id=None)
                for code in ("01", "79"):
                    svc.create_unit(tx, code=code, name=f"Tỉnh {code}", kind="province", parent_id=root.id)
                accounts.create_user(
                    tx,
                    username="goc",
                    password=PASSWORD,
                    password_hash=password_hash,
                    roles=[accounts.RoleSpec(Role.admin.value, root.id)],
                    check_strength=False,
                )

        @rule(parent=pick, top=st.booleans())
        def create_unit(self, parent: int, top: bool) -> None:
            parent_id = None if top else _nth(_active_units(ctx), parent).id
            code = f"U{self.step}"
            self.act(svc.create_unit, code=code, name=f"Đơn vị {code}", kind="district", parent_id=parent_id)

        @rule(unit=pick, parent=pick, top=st.booleans())
        def move_unit(self, unit: int, parent: int, top: bool) -> None:
            units = _active_units(ctx)
            new_parent = None if top else _nth(units, parent).id
            self.act(svc.move_unit, _nth(units, unit).id, new_parent_id=new_parent)

        @rule(unit=pick)
        def close_unit(self, unit: int) -> None:
            self.act(svc.close_unit, _nth(_active_units(ctx), unit).id)

        @rule(source=pick, into=pick)
        def merge_units(self, source: int, into: int) -> None:
            units = _active_units(ctx)
            self.act(svc.merge_units, source_ids=[_nth(units, source).id], target_id=_nth(units, into).id)

        @rule(unit=pick, role=st.sampled_from(ROLES))
        def create_user(self, unit: int, role: str) -> None:
            spec = accounts.RoleSpec(role, _nth(_active_units(ctx), unit).id)
            self.act(
                accounts.create_user,
                username=f"nd{self.step}",
                password=PASSWORD,
                password_hash=password_hash,
                roles=[spec],
                check_strength=False,
            )

        @rule(user=pick, unit=pick, role=st.sampled_from(ROLES))
        def grant(self, user: int, unit: int, role: str) -> None:
            who = _nth(_users(ctx), user)
            specs = [accounts.RoleSpec(r.role, r.unit_id, r.site_id) for r in who.roles]
            specs.append(accounts.RoleSpec(role, _nth(_active_units(ctx), unit).id))
            self.act(accounts.set_roles, who.id, specs)

        @rule(user=pick, which=pick, everything=st.booleans())
        def revoke(self, user: int, which: int, everything: bool) -> None:
            who = _nth(_users(ctx), user)
            specs = [accounts.RoleSpec(r.role, r.unit_id, r.site_id) for r in who.roles]
            if specs:
                del specs[which % len(specs)]
            self.act(accounts.set_roles, who.id, [] if everything else specs)

        @rule(user=pick, locked=st.booleans())
        def lock(self, user: int, locked: bool) -> None:
            self.act(accounts.set_locked, _nth(_users(ctx), user).id, locked, "thử")

        @rule(user=pick)
        def failed_login(self, user: int) -> None:
            """A wrong password, with accounts locked at the first failure."""
            name = _nth(_users(ctx), user).username
            strict = ctx.settings.model_copy(update={"lock_after_failures": 1, "login_max_failures": 10_000})
            self.act(accounts.login, strict, username=name, password="sai-mat-khau")

        @invariant()
        def one_root_and_someone_administers_it(self) -> None:
            with ctx.db.session() as s:
                roots = list(s.execute(select(Unit).where(Unit.parent_id.is_(None))).scalars())
                assert len(roots) == 1 and roots[0].valid_to is None, [(u.code, u.valid_to) for u in roots]
                root_path = svc.root_path(s)
            assert root_path == roots[0].path
            units = _active_units(ctx)
            admins = []
            for user in _users(ctx):
                if user.is_locked:
                    continue  # cannot sign in (giaoban.web.deps.resolve_caller)
                p = Principal.from_user(user, root_path=root_path)
                if all(p.is_global(perm) for perm in Perm) and all(
                    p.can_unit(perm, u.path) for perm in Perm for u in units
                ):
                    admins.append(user.username)
            assert admins, "nobody active can administer the whole organization"

    run_state_machine_as_test(
        Organization,
        settings=settings(
            max_examples=examples,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


def test_someone_active_always_administers_the_whole_organization(ctx: AppContext) -> None:
    # Fewer examples on PostgreSQL: the same code, a slower round trip.
    run_machine(ctx, 30 if ctx.db.is_sqlite else 10)
