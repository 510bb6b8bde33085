"""Reading the org tree as a principal may see it: lists of units as of a date, one unit with its
ancestors. The writes (create, rename, move, close, merge, split) are in ``units``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from giaoban.errors import NotFound
from giaoban.org import units as svc
from giaoban.org.access import Perm, Principal
from giaoban.org.models import Site, Unit, UnitVersion
from giaoban.org.scope import readable_unit
from giaoban.types import Listing, local_today


@dataclass(frozen=True)
class UnitRow:
    """A unit as it stood on a date: the version then, its (stable) code and its children then."""

    version: UnitVersion | Unit
    code: str
    child_count: int = 0


@dataclass(frozen=True)
class UnitQuery:
    kind: str | None = None
    parent: int | None = None
    under: int | None = None
    roots: bool = False  # only the caller's own top units (whose parent they cannot see)
    as_of: date | None = None
    q: str | None = None
    limit: int = 50
    offset: int = 0


def list_units(session: Session, p: Principal, f: UnitQuery) -> Listing[UnitRow]:
    scope = p.unit_paths(Perm.unit_read)
    under_path = None
    if f.under is not None:
        unit = readable_unit(session, p, f.under)
        # The subtree as it stood on that date: a unit that moved since had its old path then.
        under_path = svc.path_as_of(session, f.under, f.as_of) or unit.path
    flt = svc.UnitFilter(
        kind=f.kind, parent_id=f.parent, under_path=under_path, as_of=f.as_of, q=f.q, scope_paths=scope
    )
    stmt = svc.query_units(flt)
    if f.roots:
        roots_ids = [int(path.strip("/").split("/")[-1]) for path in scope]
        stmt = stmt.where(UnitVersion.unit_id.in_(roots_ids))
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    rows = session.execute(stmt.limit(f.limit).offset(f.offset)).all()
    counts = svc.child_counts(session, [v.unit_id for v, _ in rows], f.as_of)
    return Listing([UnitRow(v, code, counts.get(v.unit_id, 0)) for v, code in rows], total)


@dataclass(frozen=True)
class UnitView:
    unit: UnitRow
    ancestors: list[UnitRow]
    site_count: int


def unit_detail(session: Session, p: Principal, unit_id: int, as_of: date | None = None) -> UnitView:
    """One unit as of a date with the ancestors ``p`` may see and its number of sites."""
    unit = readable_unit(session, p, unit_id)
    day = as_of or local_today()
    version = session.execute(
        select(UnitVersion).where(UnitVersion.unit_id == unit.id, svc.versions_as_of(day))
    ).scalar_one_or_none()
    if version is None:
        raise NotFound(
            f"Đơn vị chưa có hoặc đã giải thể vào ngày {day.isoformat()}.", code="unit_not_in_effect"
        )
    counts = svc.child_counts(session, [unit.id], day)
    sites = session.execute(select(func.count()).where(Site.unit_id == unit.id)).scalar_one()
    ancestors = [
        UnitRow(a, a.code) for a in svc.ancestors(session, unit) if p.can_unit(Perm.unit_read, a.path)
    ]
    return UnitView(UnitRow(version, unit.code, counts.get(unit.id, 0)), ancestors, sites)
