"""Helpers for the org tests: one transaction per action, trees read back as plain data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from giaoban.audit.log import Actor
from giaoban.audit.models import AuditEntry
from giaoban.context import AppContext, Tx
from giaoban.org import units as svc
from giaoban.org.models import Site, Unit, UnitEvent, UnitLineage, UnitVersion
from giaoban.types import local_today

T = TypeVar("T")

# One row of a tree: (name, kind, parent code).
Node = tuple[str, str, str | None]


def act(ctx: AppContext, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one service action in its own transaction (rolled back if it raises)."""
    with ctx.db.session() as session:
        return action(Tx(session, ctx.audit, Actor.system("test")), *args, **kwargs)


def unit_id(ctx: AppContext, code: str) -> int:
    with ctx.db.session() as session:
        unit = svc.get_unit_by_code(session, code)
        assert unit is not None, code
        return unit.id


def tree(ctx: AppContext, as_of: date, **filters: Any) -> dict[str, Node]:
    """The tree as of a date: code → (name, kind, parent code)."""
    with ctx.db.session() as session:
        rows = session.execute(svc.query_units(svc.UnitFilter(as_of=as_of, **filters))).all()
        codes = {uid: code for uid, code in session.execute(select(Unit.id, Unit.code))}
        return {code: (v.name, v.kind, codes[v.parent_id] if v.parent_id else None) for v, code in rows}


def kinds_count(ctx: AppContext, as_of: date, kind: str) -> int:
    return sum(1 for _, k, _ in tree(ctx, as_of).values() if k == kind)


def check_paths(session: Session, as_of: date) -> dict[int, UnitVersion]:
    """Assert that, as of the date, every unit's path is its parent's path plus its id.

    Returns the versions in effect, by unit id.
    """
    versions = {
        v.unit_id: v for v in session.execute(select(UnitVersion).where(svc.versions_as_of(as_of))).scalars()
    }
    for uid, v in versions.items():
        if v.parent_id is None:
            assert v.path == f"/{uid}/", (as_of, uid, v.path)
            assert v.depth == 0
        else:
            parent = versions.get(v.parent_id)
            assert parent is not None, f"{as_of}: unit {uid} has parent {v.parent_id}, not in effect"
            assert v.path == f"{parent.path}{uid}/", (as_of, uid, v.path, parent.path)
            assert v.depth == parent.depth + 1
    return versions


def check_subtrees(session: Session, as_of: date) -> None:
    """Assert that the path range query gives, for every unit, the same subtree as a walk of parents."""
    versions = check_paths(session, as_of)
    children: dict[int | None, list[int]] = {}
    for uid, v in versions.items():
        children.setdefault(v.parent_id, []).append(uid)
    for uid, v in versions.items():
        walked, todo = set(), [uid]
        while todo:
            current = todo.pop()
            walked.add(current)
            todo.extend(children.get(current, []))
        queried = set(
            session.execute(
                select(UnitVersion.unit_id).where(
                    svc.versions_as_of(as_of), svc.subtree(UnitVersion.path, v.path)
                )
            ).scalars()
        )
        assert queried == walked, (as_of, uid, v.path)


def check_snapshot(session: Session) -> None:
    """Assert that ``units`` (the current snapshot) agrees with the versions in effect today."""
    today = svc.versions_as_of(local_today())
    current = {v.unit_id: v for v in session.execute(select(UnitVersion).where(today)).scalars()}
    for unit in session.execute(select(Unit)).scalars():
        if unit.valid_to is None:
            v = current[unit.id]
            assert (unit.name, unit.kind, unit.parent_id, unit.path, unit.depth) == (
                v.name,
                v.kind,
                v.parent_id,
                v.path,
                v.depth,
            )
        else:
            assert unit.id not in current
            open_versions = session.execute(
                select(func.count()).where(UnitVersion.unit_id == unit.id, UnitVersion.valid_to.is_(None))
            ).scalar_one()
            assert open_versions == 0


COUNTED = (Unit, UnitVersion, UnitEvent, UnitLineage, Site, AuditEntry)


def row_counts(ctx: AppContext) -> dict[str, int]:
    """Rows in every table an import or a tree action writes to."""
    with ctx.db.session() as session:
        return {
            model.__tablename__: session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in COUNTED
        }
