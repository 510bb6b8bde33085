"""The demo organization: the 2017 briefing network (71 sites) and one login per role.

Units and sites come from ``data/units-2017.tsv`` through the ordinary import path. Passwords are
generated (and printed once) unless ``GIAOBAN_DEMO_PASSWORD`` sets one for all demo logins.
"""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.org import accounts
from giaoban.org.io import import_units
from giaoban.org.models import Site, Unit, User
from giaoban.org.units import root_unit

DEMO_TSV = Path(__file__).parent / "data" / "units-2017.tsv"
DEMO_EFFECTIVE = date(2017, 1, 1)
# Org-work staff are demonstrated in two provinces: Hà Nội and TP. Hồ Chí Minh.
ORG_STAFF_UNITS = ("01", "79")


@dataclass
class DemoLogin:
    username: str
    password: str
    role: str
    scope: str


def is_empty(ctx: AppContext) -> bool:
    with ctx.db.session() as session:
        return session.execute(select(func.count()).select_from(Unit)).scalar_one() == 0


def _password(fixed: str | None) -> str:
    return fixed or secrets.token_urlsafe(9)


def load_demo(ctx: AppContext, password: str | None = None, tsv: Path = DEMO_TSV) -> list[DemoLogin]:
    """Load the demo org and its logins into an empty database; return the logins."""
    fixed = password or ctx.settings.demo_password
    logins: list[DemoLogin] = []
    with ctx.db.session() as session:
        tx = Tx(session, ctx.audit, Actor.system("demo"))
        import_units(tx, tsv.read_bytes(), tsv.name, effective=DEMO_EFFECTIVE, with_sites=True)
        root = root_unit(session)  # the file's one unit without a parent (TW)
        assert root is not None

        planned: list[tuple[str, str, str, Unit, int | None, str]] = []

        def add(username: str, full_name: str, role: str, unit: Unit, site_id: int | None = None) -> None:
            planned.append((username, full_name, role, unit, site_id, _password(fixed)))

        add("admin", "Quản trị hệ thống", "admin", root)
        add("dieuhanh", "Kỹ thuật viên điều hành Trung ương", "central_operator", root)
        add("chutri", "Đồng chí Chủ trì", "chair", root)
        add("thuky", "Thư ký hội nghị", "secretary", root)
        for site, unit in session.execute(select(Site, Unit).join(Unit).order_by(Unit.id)).all():
            add(f"dc-{site.code.lower()}", f"Kỹ thuật viên {site.name}", "site_operator", unit, site.id)
        for code in ORG_STAFF_UNITS:
            staff_unit = session.execute(select(Unit).where(Unit.code == code)).scalar_one_or_none()
            if staff_unit is not None:
                add(f"tochuc-{code.lower()}", f"Cán bộ tổ chức {staff_unit.name}", "org_staff", staff_unit)
        # argon2 costs ~0.3 s a hash: hash the distinct passwords once each, on every core.
        distinct = sorted({pw for *_, pw in planned})
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            hashes = dict(zip(distinct, pool.map(accounts.hash_password, distinct), strict=True))
        for username, full_name, role, unit, site_id, pw in planned:
            accounts.create_user(
                tx,
                username=username,
                password=pw,
                full_name=full_name,
                roles=[accounts.RoleSpec(role=role, unit_id=unit.id, site_id=site_id)],
                check_strength=fixed is None,
                password_hash=hashes[pw],
            )
            logins.append(DemoLogin(username, pw, role, unit.name))
    return logins


def demo_usernames(ctx: AppContext) -> list[str]:
    with ctx.db.session() as session:
        return list(session.execute(select(User.username).order_by(User.id)).scalars())
