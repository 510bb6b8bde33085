"""Actions on the effective-dated unit tree: create, update (rename / change kind), move, merge, split, close.

Every action writes new ``unit_versions`` rows instead of overwriting history, records a
``unit_events`` row (and lineage for merges and splits), updates the current snapshot in ``units``
and writes audit entries, all in the caller's transaction.

The organization has exactly one root ("đơn vị gốc", the demo's ``TW``): the first unit created
without a parent. Every other unit has a parent; no unit becomes a second root (created without a
parent, moved to the top, split or merged at the top) and the root itself is never moved, merged,
split or closed. "The whole organization" is the root's subtree, and a grant at the root covers it.
The database holds the same rule (a unique index over the units without a parent).

Changes may be back-dated, but never so as to rewrite history: a change effective on day D may not
reach behind the latest version of any unit it re-paths or closes ("effective_before_history"),
and a unit is only put under a parent that has stood at its present place every day since D
("effective_before_parent"). So the tree as of any date is a tree, and every unit's path is its
parent's path plus its own id (tests/org/test_units_history.py checks this against a model).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from giaoban.audit.log import Change
from giaoban.context import Tx
from giaoban.errors import Conflict, DomainError, NotFound
from giaoban.org.models import RoleAssignment, Site, Unit, UnitEvent, UnitKind, UnitLineage, UnitVersion
from giaoban.text import check_line, search_key
from giaoban.types import local_today

BUILTIN_KINDS: tuple[str, ...] = tuple(k.value for k in UnitKind)
# Deepest level below a top unit. Paths hold one id (up to 10 digits) and a "/" per level and must
# fit the 400-character path column; real trees are five or six levels deep.
MAX_DEPTH = 30

KIND_LABELS_VI = {
    "central": "Trung ương",
    "province": "Tỉnh, thành phố",
    "central-committee": "Đảng bộ trực thuộc Trung ương",
    "regional-office": "Cơ quan thường trực",
    "district": "Huyện, quận",
    "commune": "Xã, phường, đặc khu",
    "grassroots": "Cơ sở",
}


def allowed_kinds(extra: Iterable[str] = ()) -> tuple[str, ...]:
    return BUILTIN_KINDS + tuple(k for k in extra if k not in BUILTIN_KINDS)


def subtree(column: Any, path: str) -> ColumnElement[bool]:
    """Rows whose materialized path lies in the subtree rooted at ``path`` (itself included).

    Paths look like "/1/5/23/"; every descendant's path starts with its ancestor's, and because
    "/" sorts just before "0" the subtree is the half-open range [path, path-with-last-"/"-as-"0").
    That is an index range scan, with no walk of the tree.
    """
    return and_(column >= path, column < path[:-1] + "0")


def in_any_subtree(column: Any, paths: Sequence[str]) -> ColumnElement[bool]:
    return or_(*(subtree(column, p) for p in paths)) if paths else and_(column.is_(None), column.is_not(None))


def versions_as_of(as_of: date) -> ColumnElement[bool]:
    return and_(
        UnitVersion.valid_from <= as_of, or_(UnitVersion.valid_to.is_(None), UnitVersion.valid_to > as_of)
    )


def snapshot(unit: Unit) -> dict[str, Any]:
    return {
        "id": unit.id,
        "code": unit.code,
        "name": unit.name,
        "kind": unit.kind,
        "parent_id": unit.parent_id,
        "valid_from": unit.valid_from,
        "valid_to": unit.valid_to,
    }


@dataclass
class UnitFilter:
    kind: str | None = None
    parent_id: int | None = None
    roots_only: bool = False
    under_path: str | None = None
    as_of: date | None = None
    q: str | None = None
    scope_paths: Sequence[str] | None = None  # None: unrestricted


def query_units(f: UnitFilter) -> Select[UnitVersion, str]:
    """Units (their version as of ``f.as_of``, default today) matching the filter, in code order."""
    as_of = f.as_of or local_today()
    stmt = (
        select(UnitVersion, Unit.code)
        .join(Unit, Unit.id == UnitVersion.unit_id)
        .where(versions_as_of(as_of))
        .order_by(Unit.code)
    )
    if f.kind:
        stmt = stmt.where(UnitVersion.kind == f.kind)
    if f.parent_id is not None:
        stmt = stmt.where(UnitVersion.parent_id == f.parent_id)
    if f.roots_only:
        stmt = stmt.where(UnitVersion.parent_id.is_(None))
    if f.under_path:
        stmt = stmt.where(subtree(UnitVersion.path, f.under_path))
    if f.q:
        key = search_key(f.q)
        stmt = stmt.where(or_(UnitVersion.name_key.contains(key, autoescape=True), Unit.code == f.q.strip()))
    if f.scope_paths is not None:
        # Scope is the user's subtree today: they may read the history of units now in it.
        stmt = stmt.where(in_any_subtree(Unit.path, f.scope_paths))
    return stmt


def child_counts(session: Session, parent_ids: Sequence[int], as_of: date | None) -> dict[int, int]:
    if not parent_ids:
        return {}
    rows = session.execute(
        select(UnitVersion.parent_id, func.count())
        .where(versions_as_of(as_of or local_today()), UnitVersion.parent_id.in_(parent_ids))
        .group_by(UnitVersion.parent_id)
    ).all()
    return {int(pid): int(n) for pid, n in rows if pid is not None}


def get_unit(session: Session, unit_id: int) -> Unit:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"Không có đơn vị mã số {unit_id}.", code="unit_not_found")
    return unit


def root_unit(session: Session) -> Unit | None:
    """The organization's root: the one unit without a parent (None before the first unit exists)."""
    return session.execute(
        select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(1)
    ).scalar_one_or_none()


def root_path(session: Session) -> str | None:
    """The root's path ("/<id>/"): the whole organization's subtree."""
    return session.execute(
        select(Unit.path).where(Unit.parent_id.is_(None)).order_by(Unit.id).limit(1)
    ).scalar_one_or_none()


def second_root_error() -> Conflict:
    return Conflict(
        "Tổ chức chỉ có một đơn vị gốc: mỗi đơn vị khác phải có đơn vị cấp trên.", code="second_root"
    )


def _require_not_root(unit: Unit, what: str) -> None:
    """Refuse to move, merge, split or close the root: it is where the whole organization hangs."""
    if unit.parent_id is None:
        raise Conflict(
            f"Không thể {what} đơn vị gốc {unit.code}: mọi đơn vị khác và quyền quản trị toàn hệ thống "
            "đều thuộc đơn vị này.",
            code="root_fixed",
        )


def get_unit_by_code(session: Session, code: str) -> Unit | None:
    return session.execute(select(Unit).where(Unit.code == code)).scalar_one_or_none()


# Rows per IN (...) list: well under SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 500


def chunks(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def units_by_code(session: Session, codes: Iterable[str]) -> dict[str, Unit]:
    """Existing units with these codes, a few queries for any number of codes."""
    found: dict[str, Unit] = {}
    for batch in chunks(set(codes)):
        found.update((u.code, u) for u in session.execute(select(Unit).where(Unit.code.in_(batch))).scalars())
    return found


def units_by_id(session: Session, ids: Iterable[int]) -> dict[int, Unit]:
    found: dict[int, Unit] = {}
    for batch in chunks(set(ids)):
        found.update((u.id, u) for u in session.execute(select(Unit).where(Unit.id.in_(batch))).scalars())
    return found


def path_as_of(session: Session, unit_id: int, as_of: date | None) -> str | None:
    """The unit's materialized path on ``as_of`` (default today), or None if it was not in effect.

    Subtree questions about a past date must start from the path the unit had then: a unit that has
    moved since had its descendants under its old path.
    """
    return session.execute(
        select(UnitVersion.path).where(UnitVersion.unit_id == unit_id, versions_as_of(as_of or local_today()))
    ).scalar_one_or_none()


def ancestors(session: Session, unit: Unit) -> list[Unit]:
    """The unit's ancestors from the root down, read in one query from its path."""
    ids = [int(p) for p in unit.path.strip("/").split("/")[:-1]]
    if not ids:
        return []
    by_id = {u.id: u for u in session.execute(select(Unit).where(Unit.id.in_(ids))).scalars()}
    return [by_id[i] for i in ids if i in by_id]


def check_effective(effective: date | None) -> date:
    """The effective date of a change: today by default, never in the future."""
    today = local_today()
    effective = effective or today
    if effective > today:
        raise DomainError(
            "Ngày hiệu lực không được sau hôm nay (chưa hỗ trợ thay đổi hẹn trước).",
            code="effective_in_future",
        )
    return effective


def _open_version(session: Session, unit: Unit) -> UnitVersion:
    version = session.execute(
        select(UnitVersion).where(UnitVersion.unit_id == unit.id, UnitVersion.valid_to.is_(None))
    ).scalar_one_or_none()
    if version is None:
        raise Conflict(f"Đơn vị {unit.code} đã giải thể.", code="unit_closed")
    return version


def _require_active(unit: Unit) -> None:
    if unit.valid_to is not None:
        raise Conflict(f"Đơn vị {unit.code} đã giải thể từ {unit.valid_to.isoformat()}.", code="unit_closed")


def anchored_since(session: Session, units: Iterable[Unit], effective: date) -> set[int]:
    """Ids of the units that existed, at their current place in the tree, on every day from ``effective``.

    Only under such a unit may something be created or moved with that effective date: the new
    version's path is the parent's path today, so it must also have been the parent's path then.
    Renames after ``effective`` do not matter; a move or a later creation does.
    """
    by_id = {u.id: u for u in units}
    earliest: dict[int, date] = {}
    moved: set[int] = set()
    for batch in chunks(by_id):
        rows = session.execute(
            select(UnitVersion.unit_id, UnitVersion.valid_from, UnitVersion.path).where(
                UnitVersion.unit_id.in_(batch),
                or_(UnitVersion.valid_to.is_(None), UnitVersion.valid_to > effective),
            )
        ).all()
        for unit_id, valid_from, path in rows:
            earliest[unit_id] = min(valid_from, earliest.get(unit_id, valid_from))
            if path != by_id[unit_id].path:
                moved.add(unit_id)
    return {i for i, start in earliest.items() if start <= effective and i not in moved}


def _not_anchored(unit: Unit, effective: date, code: str = "effective_before_parent") -> DomainError:
    return DomainError(
        f"Vào ngày {effective.isoformat()} đơn vị {unit.code} chưa có hoặc chưa ở vị trí hiện nay; "
        "ngày hiệu lực phải từ lần thay đổi vị trí gần nhất của đơn vị đó trở đi.",
        code=code,
    )


def _require_anchored(
    session: Session, unit: Unit, effective: date, code: str = "effective_before_parent"
) -> None:
    if unit.id not in anchored_since(session, [unit], effective):
        raise _not_anchored(unit, effective, code)


def _require_settled_subtree(session: Session, unit: Unit, effective: date) -> None:
    """Refuse to re-path or close ``unit`` at ``effective`` if its subtree's history reaches past it.

    A past version under the unit's path that lasted beyond ``effective`` (a sub-unit closed, moved
    away or changed later) would be left hanging under a path, or a unit, that no longer holds then.
    """
    latest = session.execute(
        select(func.max(UnitVersion.valid_to)).where(subtree(UnitVersion.path, unit.path))
    ).scalar_one_or_none()
    if latest is not None and latest > effective:
        raise DomainError(
            f"Đơn vị {unit.code} hoặc cấp dưới của nó có thay đổi hiệu lực đến {latest.isoformat()}; "
            "ngày hiệu lực phải từ ngày đó trở đi.",
            code="effective_before_history",
        )


def _new_version(session: Session, unit: Unit, effective: date, **changes: Any) -> None:
    """Close the unit's open version at ``effective`` and open one with ``changes``; update the snapshot.

    A second change on the same day corrects that day's version in place, so no zero-length
    versions appear.
    """
    current = _open_version(session, unit)
    if effective < current.valid_from:
        raise DomainError(
            f"Đơn vị {unit.code} đã có thay đổi hiệu lực từ {current.valid_from.isoformat()}; "
            "ngày hiệu lực phải từ ngày đó trở đi.",
            code="effective_before_history",
        )
    values = {
        "name": current.name,
        "name_key": current.name_key,
        "kind": current.kind,
        "parent_id": current.parent_id,
        "path": current.path,
        "depth": current.depth,
    }
    values.update(changes)
    if current.valid_from == effective:
        for key, value in values.items():
            setattr(current, key, value)
    else:
        current.valid_to = effective
        session.add(UnitVersion(unit_id=unit.id, valid_from=effective, valid_to=None, **values))
    for key, value in values.items():
        setattr(unit, key, value)


def _plain(value: Any) -> Any:
    """``value`` for a JSON column: dates (as in a "before" snapshot) become ISO strings."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _event(tx: Tx, kind: str, unit: Unit, effective: date, **data: Any) -> UnitEvent:
    event = UnitEvent(
        kind=kind, effective=effective, unit_id=unit.id, data=_plain(data), actor_id=tx.actor.user_id
    )
    tx.session.add(event)
    tx.session.flush()
    return event


def _check_kind(kind: str, kinds: Sequence[str]) -> str:
    if kind not in kinds:
        raise DomainError(
            f"Loại đơn vị '{kind}' không hợp lệ; các loại: {', '.join(kinds)}.", code="invalid_unit_kind"
        )
    return kind


def _too_deep() -> DomainError:
    return DomainError(f"Cây đơn vị không được sâu quá {MAX_DEPTH + 1} cấp.", code="tree_too_deep")


CODE_MAX = 32  # Unit.code
NAME_MAX = 300  # Unit.name, UnitVersion.name
KIND_MAX = 40  # Unit.kind


def _check_code(code: str) -> str:
    return check_line(code, label="Mã đơn vị", max_length=CODE_MAX, field="code", code="invalid_unit_code")


def _check_name(name: str) -> str:
    return check_line(name, label="Tên đơn vị", max_length=NAME_MAX, field="name", code="invalid_unit_name")


@dataclass
class UnitDraft:
    """A unit to create. Its parent is an existing unit (``parent_id``), or by code an earlier draft of
    the same batch or an existing unit (``parent_code``); neither makes it the organization's root,
    which only the first unit of an empty tree may be."""

    code: str
    name: str
    kind: str
    parent_id: int | None = None
    parent_code: str | None = None


def create_units(
    tx: Tx,
    drafts: Sequence[UnitDraft],
    *,
    effective: date | None = None,
    kinds: Sequence[str] = BUILTIN_KINDS,
) -> list[Unit]:
    """Create units effective from one date; parents come before their children.

    Every draft is checked first (and the first problem raised), then the units are written a tree
    level at a time, so a batch of thousands costs a few statements per unit rather than a dozen.
    """
    session = tx.session
    effective = check_effective(effective)
    codes: list[str] = []
    position: dict[str, int] = {}
    for draft in drafts:
        code = _check_code(draft.code)
        if code in position:
            raise Conflict(f"Mã đơn vị '{code}' lặp lại.", code="unit_code_exists")
        position[code] = len(codes)
        codes.append(code)
    taken = units_by_code(session, codes)
    if taken:
        raise Conflict(f"Mã đơn vị '{min(taken)}' đã tồn tại.", code="unit_code_exists")
    names = [_check_name(d.name) for d in drafts]
    for draft in drafts:
        _check_kind(draft.kind, kinds)
    by_id = units_by_id(session, [d.parent_id for d in drafts if d.parent_id is not None])
    by_code = units_by_code(
        session, [d.parent_code for d in drafts if d.parent_code and d.parent_code not in position]
    )
    # Each draft's parent: the index of an earlier draft, an existing unit, or None.
    parents: list[int | Unit | None] = []
    for i, draft in enumerate(drafts):
        if draft.parent_id is not None:
            unit = by_id.get(draft.parent_id)
            if unit is None:
                raise NotFound(f"Không có đơn vị mã số {draft.parent_id}.", code="unit_not_found")
            parents.append(unit)
        elif draft.parent_code:
            if draft.parent_code in position:
                if position[draft.parent_code] >= i:
                    raise DomainError(
                        f"Đơn vị cấp trên '{draft.parent_code}' phải được khai báo trước '{codes[i]}'.",
                        code="parent_order",
                    )
                parents.append(position[draft.parent_code])
            elif draft.parent_code in by_code:
                parents.append(by_code[draft.parent_code])
            else:
                raise NotFound(f"Không có đơn vị mã '{draft.parent_code}'.", code="unit_not_found")
        else:
            parents.append(None)
    tops = sum(p is None for p in parents)
    if tops and (tops > 1 or root_path(session) is not None):
        raise second_root_error()
    existing = {p.id: p for p in parents if isinstance(p, Unit)}
    for old in existing.values():
        _require_active(old)
    anchored = anchored_since(session, existing.values(), effective) if existing else set()
    for old in existing.values():
        if old.id not in anchored:
            raise _not_anchored(old, effective)
    levels: list[int] = []
    depths: list[int] = []
    for ref in parents:
        levels.append(levels[ref] + 1 if isinstance(ref, int) else 0)
        depths.append(depths[ref] + 1 if isinstance(ref, int) else (ref.depth + 1 if ref else 0))
    if max(depths, default=0) > MAX_DEPTH:
        raise _too_deep()
    created: list[Unit | None] = [None] * len(drafts)

    def parent_of(i: int) -> Unit | None:
        ref = parents[i]
        return created[ref] if isinstance(ref, int) else ref

    for level in range(max(levels, default=-1) + 1):
        batch = [i for i in range(len(drafts)) if levels[i] == level]
        fresh: list[Unit] = []
        for i in batch:
            up = parent_of(i)
            fresh.append(
                Unit(
                    code=codes[i],
                    name=names[i],
                    name_key=search_key(names[i]),
                    kind=drafts[i].kind,
                    parent_id=up.id if up else None,
                    path="/",
                    depth=(up.depth + 1) if up else 0,
                    valid_from=effective,
                )
            )
        session.add_all(fresh)
        session.flush()  # one multi-row INSERT ... RETURNING gives the level its ids
        for i, unit in zip(batch, fresh, strict=True):
            created[i] = unit
            up = parent_of(i)
            unit.path = f"{up.path if up else '/'}{unit.id}/"
            session.add(
                UnitVersion(
                    unit_id=unit.id,
                    name=unit.name,
                    name_key=unit.name_key,
                    kind=unit.kind,
                    parent_id=unit.parent_id,
                    path=unit.path,
                    depth=unit.depth,
                    valid_from=effective,
                )
            )
            session.add(
                UnitEvent(
                    kind="create", effective=effective, unit_id=unit.id, data={}, actor_id=tx.actor.user_id
                )
            )
    units = [u for u in created if u is not None]
    tx.audit.record_many(
        session, tx.actor, [Change("unit.create", "unit", unit.id, after=snapshot(unit)) for unit in units]
    )
    return units


def create_unit(
    tx: Tx,
    *,
    code: str,
    name: str,
    kind: str,
    parent_id: int | None,
    effective: date | None = None,
    kinds: Sequence[str] = BUILTIN_KINDS,
) -> Unit:
    """Create one unit under an existing, active parent (or, in an empty tree, the root)."""
    draft = UnitDraft(code=code, name=name, kind=kind, parent_id=parent_id)
    return create_units(tx, [draft], effective=effective, kinds=kinds)[0]


def update_unit(
    tx: Tx,
    unit_id: int,
    *,
    name: str | None = None,
    kind: str | None = None,
    effective: date | None = None,
    kinds: Sequence[str] = BUILTIN_KINDS,
) -> Unit:
    """Rename and/or change the kind of a unit, effective from a date (history is kept)."""
    session = tx.session
    effective = check_effective(effective)
    unit = get_unit(session, unit_id)
    _require_active(unit)
    before = snapshot(unit)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _check_name(name)
        changes["name_key"] = search_key(changes["name"])
    if kind is not None:
        changes["kind"] = _check_kind(kind, kinds)
    if not changes or all(getattr(unit, k) == v for k, v in changes.items()):
        return unit
    _new_version(session, unit, effective, **changes)
    _event(tx, "rename" if "name" in changes else "update", unit, effective, before=before)
    tx.record("unit.update", "unit", unit.id, before=before, after=snapshot(unit))
    return unit


def _active_subtree(session: Session, unit: Unit) -> list[Unit]:
    return list(
        session.execute(
            select(Unit).where(subtree(Unit.path, unit.path), Unit.valid_to.is_(None)).order_by(Unit.depth)
        ).scalars()
    )


def _reparent(session: Session, unit: Unit, parent: Unit | None, effective: date) -> None:
    """Give ``unit`` a new parent and re-path its whole active subtree, each with a new version."""
    _require_settled_subtree(session, unit, effective)
    old_prefix = unit.path
    new_prefix = f"{parent.path if parent else '/'}{unit.id}/"
    depth_shift = ((parent.depth + 1) if parent else 0) - unit.depth
    members = _active_subtree(session, unit)
    if max(m.depth for m in members) + depth_shift > MAX_DEPTH:
        raise _too_deep()
    for member in members:
        changes: dict[str, Any] = {
            "path": new_prefix + member.path[len(old_prefix) :],
            "depth": member.depth + depth_shift,
        }
        if member.id == unit.id:
            changes["parent_id"] = parent.id if parent else None
        _new_version(session, member, effective, **changes)


def move_unit(tx: Tx, unit_id: int, *, new_parent_id: int | None, effective: date | None = None) -> Unit:
    session = tx.session
    effective = check_effective(effective)
    unit = get_unit(session, unit_id)
    _require_active(unit)
    if unit.parent_id is not None and new_parent_id is None:
        raise second_root_error()
    if new_parent_id is not None:
        _require_not_root(unit, "di chuyển")
    parent = None
    if new_parent_id is not None:
        parent = get_unit(session, new_parent_id)
        _require_active(parent)
        if parent.path.startswith(unit.path):
            raise DomainError(
                "Không thể chuyển đơn vị vào chính nó hoặc đơn vị cấp dưới của nó.", code="tree_cycle"
            )
    if unit.parent_id == new_parent_id:
        return unit
    if parent is not None:
        _require_anchored(session, parent, effective)
    before = snapshot(unit)
    _reparent(session, unit, parent, effective)
    _event(tx, "move", unit, effective, from_parent=before["parent_id"], to_parent=new_parent_id)
    tx.record("unit.move", "unit", unit.id, before=before, after=snapshot(unit))
    return unit


def _close(tx: Tx, unit: Unit, effective: date, event: str) -> None:
    _require_not_root(unit, "giải thể")
    before = snapshot(unit)
    current = _open_version(tx.session, unit)
    if effective < current.valid_from:
        raise DomainError(
            f"Đơn vị {unit.code} đã có thay đổi hiệu lực từ {current.valid_from.isoformat()}; "
            "ngày hiệu lực phải từ ngày đó trở đi.",
            code="effective_before_history",
        )
    _require_settled_subtree(tx.session, unit, effective)
    current.valid_to = effective
    unit.valid_to = effective
    tx.record(f"unit.{event}", "unit", unit.id, before=before, after=snapshot(unit))


def _live_sites(session: Session, unit: Unit) -> list[Site]:
    return list(session.execute(select(Site).where(Site.unit_id == unit.id)).scalars())


def _active_children(session: Session, unit: Unit) -> list[Unit]:
    return list(
        session.execute(
            select(Unit).where(Unit.parent_id == unit.id, Unit.valid_to.is_(None)).order_by(Unit.code)
        ).scalars()
    )


def _move_site(tx: Tx, site: Site, target: Unit) -> None:
    before = {"unit_id": site.unit_id}
    site.unit_id = target.id
    tx.record("site.move", "site", site.id, before=before, after={"unit_id": target.id})


def close_unit(tx: Tx, unit_id: int, *, effective: date | None = None) -> Unit:
    """Dissolve a unit with no successor. It must have no active sub-units and no sites left."""
    effective = check_effective(effective)
    unit = get_unit(tx.session, unit_id)
    _require_active(unit)
    _require_not_root(unit, "giải thể")
    if _active_children(tx.session, unit) or _live_sites(tx.session, unit):
        raise Conflict(
            "Đơn vị còn đơn vị cấp dưới hoặc điểm cầu; hãy chuyển hoặc sáp nhập trước khi giải thể.",
            code="unit_not_empty",
        )
    _close(tx, unit, effective, "close")
    _event(tx, "close", unit, effective)
    return unit


@dataclass
class NewUnit:
    code: str
    name: str
    kind: str | None = None
    parent_id: int | None = None


@dataclass
class ReorgResult:
    event_id: int
    target_ids: list[int]
    closed_ids: list[int]
    moved_children: int = 0
    moved_sites: int = 0
    roles_left_on_closed: int = 0


def _roles_on(session: Session, unit_ids: Sequence[int]) -> int:
    if not unit_ids:
        return 0
    return int(
        session.execute(
            select(func.count()).select_from(RoleAssignment).where(RoleAssignment.unit_id.in_(unit_ids))
        ).scalar_one()
    )


def merge_units(
    tx: Tx,
    *,
    source_ids: Sequence[int],
    target_id: int | None = None,
    new_target: NewUnit | None = None,
    new_name: str | None = None,
    effective: date | None = None,
    kinds: Sequence[str] = BUILTIN_KINDS,
) -> ReorgResult:
    """Merge ``source_ids`` into an existing unit or a new one ("sáp nhập").

    Sources' sub-units and sites move to the target; sources close at ``effective`` and lineage
    records where they went. Role assignments on closed units are left in place (they then cover
    nothing) and reported, so nobody silently gains access to a larger unit.
    """
    session = tx.session
    effective = check_effective(effective)
    if (target_id is None) == (new_target is None):
        raise DomainError("Chọn một đơn vị nhận sáp nhập hoặc khai báo đơn vị mới.", code="merge_target")
    ids = list(dict.fromkeys(source_ids))
    if not ids:
        raise DomainError("Cần ít nhất một đơn vị bị sáp nhập.", code="merge_sources")
    sources = [get_unit(session, i) for i in ids]
    for source in sources:
        _require_active(source)
        _require_not_root(source, "sáp nhập")
    for a in sources:
        for b in sources:
            if a.id != b.id and b.path.startswith(a.path):
                raise DomainError(
                    f"Đơn vị {b.code} thuộc {a.code}: không thể sáp nhập cả hai cùng lúc.",
                    code="merge_nested",
                )
    if new_target is not None:
        parent_id = new_target.parent_id if new_target.parent_id is not None else sources[0].parent_id
        target = create_unit(
            tx,
            code=new_target.code,
            name=new_target.name,
            kind=new_target.kind or sources[0].kind,
            parent_id=parent_id,
            effective=effective,
            kinds=kinds,
        )
    else:
        assert target_id is not None
        target = get_unit(session, target_id)
        _require_active(target)
        if target.id in ids:
            raise DomainError("Đơn vị nhận không được nằm trong danh sách bị sáp nhập.", code="merge_target")
        _require_anchored(session, target, effective)
    for source in sources:
        if target.path.startswith(source.path):
            raise DomainError(
                f"Đơn vị nhận thuộc {source.code}: không thể sáp nhập vào cấp dưới.", code="tree_cycle"
            )
    if new_name is not None and new_target is None:
        update_unit(tx, target.id, name=new_name, effective=effective, kinds=kinds)
    event = _event(tx, "merge", target, effective, sources=ids, target=target.id)
    result = ReorgResult(event_id=event.id, target_ids=[target.id], closed_ids=ids)
    for source in sources:
        for child in _active_children(session, source):
            _reparent(session, child, target, effective)
            result.moved_children += 1
        for site in _live_sites(session, source):
            _move_site(tx, site, target)
            result.moved_sites += 1
        _close(tx, source, effective, "merge")
        session.add(
            UnitLineage(
                predecessor_id=source.id, successor_id=target.id, event_id=event.id, effective=effective
            )
        )
    result.roles_left_on_closed = _roles_on(session, ids)
    session.flush()
    return result


@dataclass
class SplitPart:
    code: str
    name: str
    kind: str | None = None
    child_ids: list[int] = field(default_factory=list)
    site_ids: list[int] = field(default_factory=list)


def split_unit(
    tx: Tx,
    source_id: int,
    *,
    parts: Sequence[SplitPart],
    keep_source: bool = False,
    effective: date | None = None,
    kinds: Sequence[str] = BUILTIN_KINDS,
) -> ReorgResult:
    """Split a unit into new units ("chia tách"), handing each its sub-units and sites.

    Unless ``keep_source`` (a part is carved out and the rest stays), every sub-unit and site must
    go to some part and the source closes.
    """
    session = tx.session
    effective = check_effective(effective)
    source = get_unit(session, source_id)
    _require_active(source)
    _require_not_root(source, "chia tách")
    # The parts start where the source stood on that day: it must have stood there since.
    _require_anchored(session, source, effective, "effective_before_history")
    if len(parts) < (1 if keep_source else 2):
        raise DomainError("Chia tách cần ít nhất hai đơn vị mới.", code="split_parts")
    children = {c.id: c for c in _active_children(session, source)}
    sites = {s.id: s for s in _live_sites(session, source)}
    claimed_children: set[int] = set()
    claimed_sites: set[int] = set()
    for part in parts:
        for cid in part.child_ids:
            if cid not in children:
                raise DomainError(f"Đơn vị {cid} không phải cấp dưới của {source.code}.", code="split_child")
            if cid in claimed_children:
                raise DomainError(f"Đơn vị {cid} được giao cho hai phần.", code="split_child")
            claimed_children.add(cid)
        for sid in part.site_ids:
            if sid not in sites:
                raise DomainError(f"Điểm cầu {sid} không thuộc {source.code}.", code="split_site")
            if sid in claimed_sites:
                raise DomainError(f"Điểm cầu {sid} được giao cho hai phần.", code="split_site")
            claimed_sites.add(sid)
    if not keep_source and (set(children) - claimed_children or set(sites) - claimed_sites):
        raise DomainError(
            "Mọi đơn vị cấp dưới và điểm cầu phải được giao cho một đơn vị mới.", code="split_unassigned"
        )
    created: list[Unit] = []
    for part in parts:
        created.append(
            create_unit(
                tx,
                code=part.code,
                name=part.name,
                kind=part.kind or source.kind,
                parent_id=source.parent_id,
                effective=effective,
                kinds=kinds,
            )
        )
    event = _event(tx, "split", source, effective, parts=[u.id for u in created], keep_source=keep_source)
    result = ReorgResult(
        event_id=event.id, target_ids=[u.id for u in created], closed_ids=[] if keep_source else [source.id]
    )
    for part, unit in zip(parts, created, strict=True):
        for cid in part.child_ids:
            _reparent(session, children[cid], unit, effective)
            result.moved_children += 1
        for sid in part.site_ids:
            _move_site(tx, sites[sid], unit)
            result.moved_sites += 1
        session.add(
            UnitLineage(
                predecessor_id=source.id, successor_id=unit.id, event_id=event.id, effective=effective
            )
        )
    if not keep_source:
        _close(tx, source, effective, "split")
        result.roles_left_on_closed = _roles_on(session, [source.id])
    session.flush()
    return result


def history(session: Session, unit_id: int) -> dict[str, Any]:
    """A unit's versions, its events, and where it came from / went to."""
    unit = get_unit(session, unit_id)
    versions = session.execute(
        select(UnitVersion).where(UnitVersion.unit_id == unit.id).order_by(UnitVersion.valid_from)
    ).scalars()
    events = session.execute(
        select(UnitEvent).where(UnitEvent.unit_id == unit.id).order_by(UnitEvent.effective, UnitEvent.id)
    ).scalars()
    preds = session.execute(select(UnitLineage).where(UnitLineage.successor_id == unit.id)).scalars()
    succs = session.execute(select(UnitLineage).where(UnitLineage.predecessor_id == unit.id)).scalars()
    return {
        "unit": snapshot(unit),
        "versions": [
            {
                "name": v.name,
                "kind": v.kind,
                "parent_id": v.parent_id,
                "valid_from": v.valid_from,
                "valid_to": v.valid_to,
            }
            for v in versions
        ],
        "events": [{"kind": e.kind, "effective": e.effective, "data": e.data} for e in events],
        "predecessors": [{"unit_id": p.predecessor_id, "effective": p.effective} for p in preds],
        "successors": [{"unit_id": s.successor_id, "effective": s.effective} for s in succs],
    }
