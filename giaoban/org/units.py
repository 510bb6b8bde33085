"""Actions on the effective-dated unit tree: create, update (rename / change kind), move, merge, split, close.

Every action writes new ``unit_versions`` rows instead of overwriting history, records a
``unit_events`` row (and lineage for merges and splits), updates the current snapshot in ``units``
and writes audit entries, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from giaoban.context import Tx
from giaoban.errors import Conflict, DomainError, NotFound
from giaoban.org.models import RoleAssignment, Site, Unit, UnitEvent, UnitKind, UnitLineage, UnitVersion
from giaoban.text import nfc, search_key

BUILTIN_KINDS: tuple[str, ...] = tuple(k.value for k in UnitKind)

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
    as_of = f.as_of or date.today()
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
        .where(versions_as_of(as_of or date.today()), UnitVersion.parent_id.in_(parent_ids))
        .group_by(UnitVersion.parent_id)
    ).all()
    return {int(pid): int(n) for pid, n in rows if pid is not None}


def get_unit(session: Session, unit_id: int) -> Unit:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"Không có đơn vị mã số {unit_id}.", code="unit_not_found")
    return unit


def get_unit_by_code(session: Session, code: str) -> Unit | None:
    return session.execute(select(Unit).where(Unit.code == code)).scalar_one_or_none()


def ancestors(session: Session, unit: Unit) -> list[Unit]:
    """The unit's ancestors from the root down, read in one query from its path."""
    ids = [int(p) for p in unit.path.strip("/").split("/")[:-1]]
    if not ids:
        return []
    by_id = {u.id: u for u in session.execute(select(Unit).where(Unit.id.in_(ids))).scalars()}
    return [by_id[i] for i in ids if i in by_id]


def _today_or(effective: date | None) -> date:
    today = date.today()
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


def _event(tx: Tx, kind: str, unit: Unit, effective: date, **data: Any) -> UnitEvent:
    event = UnitEvent(kind=kind, effective=effective, unit_id=unit.id, data=data, actor_id=tx.actor.user_id)
    tx.session.add(event)
    tx.session.flush()
    return event


def _check_kind(kind: str, kinds: Sequence[str]) -> str:
    if kind not in kinds:
        raise DomainError(
            f"Loại đơn vị '{kind}' không hợp lệ; các loại: {', '.join(kinds)}.", code="invalid_unit_kind"
        )
    return kind


def _check_code(session: Session, code: str) -> str:
    code = nfc(code)
    if not code or len(code) > 32:
        raise DomainError("Mã đơn vị phải có từ 1 đến 32 ký tự.", code="invalid_unit_code")
    if get_unit_by_code(session, code) is not None:
        raise Conflict(f"Mã đơn vị '{code}' đã tồn tại.", code="unit_code_exists")
    return code


def _check_name(name: str) -> str:
    name = nfc(name)
    if not name or len(name) > 300:
        raise DomainError("Tên đơn vị phải có từ 1 đến 300 ký tự.", code="invalid_unit_name")
    return name


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
    session = tx.session
    effective = _today_or(effective)
    code = _check_code(session, code)
    name = _check_name(name)
    _check_kind(kind, kinds)
    parent = None
    if parent_id is not None:
        parent = get_unit(session, parent_id)
        _require_active(parent)
        if effective < parent.valid_from:
            raise DomainError(
                "Đơn vị không thể có hiệu lực trước đơn vị cấp trên.", code="effective_before_parent"
            )
    unit = Unit(
        code=code,
        name=name,
        name_key=search_key(name),
        kind=kind,
        parent_id=parent_id,
        path="/",
        depth=(parent.depth + 1) if parent else 0,
        valid_from=effective,
    )
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    session.add(
        UnitVersion(
            unit_id=unit.id,
            name=unit.name,
            name_key=unit.name_key,
            kind=kind,
            parent_id=parent_id,
            path=unit.path,
            depth=unit.depth,
            valid_from=effective,
        )
    )
    _event(tx, "create", unit, effective)
    tx.record("unit.create", "unit", unit.id, after=snapshot(unit))
    return unit


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
    effective = _today_or(effective)
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
    old_prefix = unit.path
    new_prefix = f"{parent.path if parent else '/'}{unit.id}/"
    depth_shift = ((parent.depth + 1) if parent else 0) - unit.depth
    for member in _active_subtree(session, unit):
        changes: dict[str, Any] = {
            "path": new_prefix + member.path[len(old_prefix) :],
            "depth": member.depth + depth_shift,
        }
        if member.id == unit.id:
            changes["parent_id"] = parent.id if parent else None
        _new_version(session, member, effective, **changes)


def move_unit(tx: Tx, unit_id: int, *, new_parent_id: int | None, effective: date | None = None) -> Unit:
    session = tx.session
    effective = _today_or(effective)
    unit = get_unit(session, unit_id)
    _require_active(unit)
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
    before = snapshot(unit)
    _reparent(session, unit, parent, effective)
    _event(tx, "move", unit, effective, from_parent=before["parent_id"], to_parent=new_parent_id)
    tx.record("unit.move", "unit", unit.id, before=before, after=snapshot(unit))
    return unit


def _close(tx: Tx, unit: Unit, effective: date, event: str) -> None:
    before = snapshot(unit)
    current = _open_version(tx.session, unit)
    if effective < current.valid_from:
        raise DomainError(
            f"Đơn vị {unit.code} đã có thay đổi hiệu lực từ {current.valid_from.isoformat()}; "
            "ngày hiệu lực phải từ ngày đó trở đi.",
            code="effective_before_history",
        )
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
    effective = _today_or(effective)
    unit = get_unit(tx.session, unit_id)
    _require_active(unit)
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
    effective = _today_or(effective)
    if (target_id is None) == (new_target is None):
        raise DomainError("Chọn một đơn vị nhận sáp nhập hoặc khai báo đơn vị mới.", code="merge_target")
    ids = list(dict.fromkeys(source_ids))
    if not ids:
        raise DomainError("Cần ít nhất một đơn vị bị sáp nhập.", code="merge_sources")
    sources = [get_unit(session, i) for i in ids]
    for source in sources:
        _require_active(source)
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
    effective = _today_or(effective)
    source = get_unit(session, source_id)
    _require_active(source)
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
