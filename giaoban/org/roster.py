"""A unit's delegate roster ("danh sách đại biểu thường trực"): the people it usually sends to briefings.

Full name, position, optional phone, an active flag and the unit's own order. The site's check-in
form (``giaoban/web/static/js/room.js``) offers the active entries as checkboxes
(``giaoban.meetings.checkin``: the org domain knows nothing of meetings). The later member
database can fill or replace this list; entries are deactivated rather than deleted, so a past
check-in that named someone keeps its meaning.

Who may change a unit's roster: whoever holds ``unit.write`` over the unit (org staff of an
enclosing subtree, admins), and the unit's own site operators (a site-operator role assigned at
the unit itself, or pinned to one of its sites). Reading needs ``unit.read`` over the unit. The web
layer answers 404 when the caller cannot read the unit, 403 when they can read but not edit.
Every change writes an audit entry in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from giaoban.context import Tx
from giaoban.errors import Conflict, DomainError, Forbidden, NotFound
from giaoban.org.access import Perm, Principal
from giaoban.org.models import Role, RosterEntry, Site, Unit
from giaoban.text import check_line, search_key

MAX_ENTRIES = 300  # per unit: a briefing room, not a membership register
# The column sizes of RosterEntry; each field is one line under giaoban.text's policy.
FIELD_LIMITS = {"full_name": 200, "position": 200, "phone": 50}
FIELD_LABELS = {"full_name": "Họ tên đại biểu", "position": "Chức vụ", "phone": "Điện thoại"}


def entry_snapshot(entry: RosterEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "unit_id": entry.unit_id,
        "full_name": entry.full_name,
        "position": entry.position,
        "phone": entry.phone,
        "active": entry.active,
        "sort_order": entry.sort_order,
    }


# --- who may do what ----------------------------------------------------------------------------


def may_read(principal: Principal, unit: Unit) -> bool:
    return principal.can_unit(Perm.unit_read, unit.path)


def may_edit(session: Session, principal: Principal, unit: Unit) -> bool:
    """``unit.write`` over the unit, or a site-operator role that is the unit's own."""
    if principal.can_unit(Perm.unit_write, unit.path):
        return True
    operator = [g for g in principal.grants if g.role == Role.site_operator]
    if any(g.site_id is None and g.unit_id == unit.id for g in operator):
        return True
    pinned = [g.site_id for g in operator if g.site_id is not None]
    if not pinned:
        return False
    found = session.execute(
        select(func.count()).select_from(Site).where(Site.id.in_(pinned), Site.unit_id == unit.id)
    ).scalar_one()
    return bool(found)


def editable_unit_ids(session: Session, principal: Principal) -> list[int]:
    """The units whose roster a site operator runs (for links on the pages); org staff reach
    their rosters through the org tree."""
    ids: set[int] = set()
    pinned: list[int] = []
    for g in principal.grants:
        if g.role != Role.site_operator:
            continue
        if g.site_id is None:
            ids.add(g.unit_id)
        else:
            pinned.append(g.site_id)
    if pinned:
        ids.update(session.execute(select(Site.unit_id).where(Site.id.in_(pinned))).scalars())
    return sorted(ids)


# --- reading ------------------------------------------------------------------------------------


def list_entries(
    session: Session, unit_id: int, *, active: bool | None = None, q: str | None = None
) -> list[RosterEntry]:
    stmt = select(RosterEntry).where(RosterEntry.unit_id == unit_id)
    if active is not None:
        stmt = stmt.where(RosterEntry.active.is_(active))
    if q:
        stmt = stmt.where(RosterEntry.full_name_key.contains(search_key(q), autoescape=True))
    return list(session.execute(stmt.order_by(RosterEntry.sort_order, RosterEntry.id)).scalars())


def get_entry(session: Session, unit_id: int, entry_id: int) -> RosterEntry:
    entry = session.get(RosterEntry, entry_id)
    if entry is None or entry.unit_id != unit_id:
        raise NotFound(
            f"Không có đại biểu mã số {entry_id} trong danh sách của đơn vị.", code="roster_not_found"
        )
    return entry


# --- changes ------------------------------------------------------------------------------------


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if key == "active":
            out[key] = bool(value)
            continue
        if key not in FIELD_LIMITS:
            raise DomainError(f"Trường không hợp lệ: {key}.", code="invalid_roster_field")
        out[key] = check_line(
            str(value),
            label=FIELD_LABELS[key],
            max_length=FIELD_LIMITS[key],
            required=key == "full_name",
            field=key,
            code="invalid_roster_name" if key == "full_name" else "invalid_roster_field",
        )
    return out


def _open_unit(session: Session, unit_id: int) -> Unit:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"Không có đơn vị mã số {unit_id}.", code="unit_not_found")
    if unit.valid_to is not None:
        raise Conflict(f"Đơn vị {unit.code} đã giải thể.", code="unit_closed")
    return unit


def add_entry(tx: Tx, unit_id: int, *, full_name: str, position: str = "", phone: str = "") -> RosterEntry:
    session = tx.session
    _open_unit(session, unit_id)
    values = _clean({"full_name": full_name, "position": position, "phone": phone})
    if "full_name" not in values:
        raise DomainError("Họ tên đại biểu không được để trống.", code="invalid_roster_name")
    count, last = session.execute(
        select(func.count(), func.max(RosterEntry.sort_order)).where(RosterEntry.unit_id == unit_id)
    ).one()
    if count >= MAX_ENTRIES:
        raise Conflict(f"Danh sách đã có {MAX_ENTRIES} đại biểu, không thêm được nữa.", code="roster_full")
    entry = RosterEntry(
        unit_id=unit_id,
        full_name_key=search_key(values["full_name"]),
        active=True,
        sort_order=(last or 0) + 1,
        **{"position": "", "phone": "", **values},
    )
    session.add(entry)
    session.flush()
    tx.record("roster.add", "roster_entry", entry.id, after=entry_snapshot(entry))
    return entry


def update_entry(tx: Tx, unit_id: int, entry_id: int, **fields: Any) -> RosterEntry:
    """Change name, position, phone and/or the active flag; a change to nothing writes nothing."""
    changes = _clean(fields)
    entry = get_entry(tx.session, unit_id, entry_id)
    before = entry_snapshot(entry)
    for key, value in changes.items():
        setattr(entry, key, value)
    if "full_name" in changes:
        entry.full_name_key = search_key(changes["full_name"])
    after = entry_snapshot(entry)
    if after != before:
        tx.session.flush()
        action = "roster.update"
        if set(changes) == {"active"}:
            action = "roster.activate" if entry.active else "roster.deactivate"
        tx.record(action, "roster_entry", entry.id, before=before, after=after)
    return entry


def deactivate_entry(tx: Tx, unit_id: int, entry_id: int) -> RosterEntry:
    return update_entry(tx, unit_id, entry_id, active=False)


def reorder(tx: Tx, unit_id: int, ids: Sequence[int]) -> list[RosterEntry]:
    """Put the unit's entries in the order ``ids``, which must name each of them exactly once.

    Any other list (an entry added or moved meanwhile, a repeat, a stranger) is refused as a
    conflict with the list as it stands, and nothing changes.
    """
    entries = list_entries(tx.session, unit_id)
    current = [e.id for e in entries]
    if len(ids) != len(current) or set(ids) != set(current):
        raise Conflict(
            "Danh sách đại biểu đã thay đổi. Tải lại trang rồi sắp xếp lại.", code="roster_order_stale"
        )
    if list(ids) == current:
        return entries
    by_id = {e.id: e for e in entries}
    for position, entry_id in enumerate(ids, start=1):
        by_id[entry_id].sort_order = position
    tx.session.flush()
    tx.record("roster.reorder", "unit", unit_id, before={"order": current}, after={"order": list(ids)})
    return [by_id[i] for i in ids]


def roster_unit(session: Session, p: Principal, unit_id: int, *, edit: bool = False) -> Unit:
    """The unit if ``p`` may read its roster (else "not found") and, with ``edit``, change it (else
    "forbidden"; a dissolved unit's roster is closed)."""
    unit = session.get(Unit, unit_id)
    if unit is None or not may_read(p, unit):
        raise NotFound(f"Không có đơn vị mã số {unit_id}.", code="unit_not_found")
    if edit and not may_edit(session, p, unit):
        raise Forbidden("Bạn không có quyền sửa danh sách đại biểu của đơn vị này.", code="roster_forbidden")
    if edit and unit.valid_to is not None:
        raise Conflict(f"Đơn vị {unit.code} đã giải thể.", code="unit_closed")
    return unit
