"""Actions on sites ("điểm cầu"): the briefing endpoints attached to units."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from giaoban.audit.log import Change
from giaoban.context import Tx
from giaoban.errors import Conflict, DomainError, Forbidden, NotFound
from giaoban.org import scope
from giaoban.org.access import Perm, Principal
from giaoban.org.models import Site, SiteStatus, Unit
from giaoban.org.units import chunks, get_unit, in_any_subtree, subtree, units_by_id
from giaoban.text import check_line, search_key
from giaoban.types import Listing

SITE_FIELDS = ("name", "location", "contact_name", "contact_phone", "tech_name", "tech_phone", "status")
# What a site's own operator may correct: how to reach the room and its people.
CONTACT_FIELDS = ("location", "contact_name", "contact_phone", "tech_name", "tech_phone")

CODE_MAX = 40  # Site.code
# The column sizes of Site; every field is one line of text under giaoban.text's policy.
FIELD_LIMITS = {
    "name": 300,
    "location": 300,
    "contact_name": 200,
    "contact_phone": 50,
    "tech_name": 200,
    "tech_phone": 50,
}
FIELD_LABELS = {
    "code": "Mã điểm cầu",
    "name": "Tên điểm cầu",
    "location": "Địa điểm",
    "contact_name": "Người liên hệ",
    "contact_phone": "Điện thoại liên hệ",
    "tech_name": "Kỹ thuật viên",
    "tech_phone": "Điện thoại kỹ thuật",
}


def site_snapshot(site: Site) -> dict[str, Any]:
    return {
        "id": site.id,
        "code": site.code,
        "unit_id": site.unit_id,
        **{f: getattr(site, f) for f in SITE_FIELDS},
    }


def get_site(session: Any, site_id: int) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"Không có điểm cầu mã số {site_id}.", code="site_not_found")
    return site


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if key == "status":
            if value not in {s.value for s in SiteStatus}:
                raise DomainError(
                    f"Trạng thái '{value}' không hợp lệ (active, maintenance, inactive).",
                    code="invalid_site_status",
                )
            out[key] = value
            continue
        if key not in FIELD_LIMITS:
            raise DomainError(f"Trường không hợp lệ: {key}.", code="invalid_site_field")
        out[key] = check_line(
            str(value),
            label=FIELD_LABELS[key],
            max_length=FIELD_LIMITS[key],
            required=key == "name",
            field=key,
            code="invalid_site_name" if key == "name" else "invalid_site_field",
        )
    return out


@dataclass
class SiteDraft:
    """A site to create for an existing unit; ``fields`` are the optional SITE_FIELDS besides name."""

    code: str
    unit_id: int
    name: str
    fields: dict[str, Any] = field(default_factory=dict)


def existing_site_codes(session: Session, codes: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for batch in chunks(set(codes)):
        found.update(session.execute(select(Site.code).where(Site.code.in_(batch))).scalars())
    return found


def create_sites(tx: Tx, drafts: Sequence[SiteDraft]) -> list[Site]:
    """Create sites; every draft is checked before anything is written (the first problem is raised)."""
    session = tx.session
    codes = [
        check_line(
            d.code, label=FIELD_LABELS["code"], max_length=CODE_MAX, field="code", code="invalid_site_code"
        )
        for d in drafts
    ]
    if len(set(codes)) < len(codes):
        repeated = min(c for c in codes if codes.count(c) > 1)
        raise Conflict(f"Mã điểm cầu '{repeated}' lặp lại.", code="site_code_exists")
    taken = existing_site_codes(session, codes)
    if taken:
        raise Conflict(f"Mã điểm cầu '{min(taken)}' đã tồn tại.", code="site_code_exists")
    units = units_by_id(session, [d.unit_id for d in drafts])
    values: list[dict[str, Any]] = []
    for draft in drafts:
        unit = units.get(draft.unit_id)
        if unit is None:
            raise NotFound(f"Không có đơn vị mã số {draft.unit_id}.", code="unit_not_found")
        if unit.valid_to is not None:
            raise Conflict(f"Đơn vị {unit.code} đã giải thể.", code="unit_closed")
        unknown = set(draft.fields) - set(SITE_FIELDS)
        if unknown:
            raise DomainError(
                f"Trường không hợp lệ: {', '.join(sorted(unknown))}.", code="invalid_site_field"
            )
        values.append(_clean({"name": draft.name, **draft.fields}))
    sites = [
        Site(code=code, unit_id=draft.unit_id, name_key=search_key(v["name"]), **v)
        for code, draft, v in zip(codes, drafts, values, strict=True)
    ]
    session.add_all(sites)
    session.flush()
    tx.audit.record_many(
        session, tx.actor, [Change("site.create", "site", s.id, after=site_snapshot(s)) for s in sites]
    )
    return sites


def create_site(tx: Tx, *, code: str, unit_id: int, name: str, **fields: Any) -> Site:
    return create_sites(tx, [SiteDraft(code=code, unit_id=unit_id, name=name, fields=fields)])[0]


def update_site(tx: Tx, site_id: int, *, allowed: Sequence[str] = SITE_FIELDS, **fields: Any) -> Site:
    site = get_site(tx.session, site_id)
    changes = _clean(fields)
    refused = [k for k in changes if k not in allowed]
    if refused:
        raise DomainError(f"Không được sửa các trường: {', '.join(refused)}.", code="field_not_allowed")
    before = site_snapshot(site)
    for key, value in changes.items():
        setattr(site, key, value)
    if "name" in changes:
        site.name_key = search_key(changes["name"])
    if site_snapshot(site) != before:
        tx.record("site.update", "site", site.id, before=before, after=site_snapshot(site))
    return site


def move_site(tx: Tx, site_id: int, unit_id: int) -> Site:
    site = get_site(tx.session, site_id)
    unit = get_unit(tx.session, unit_id)
    if unit.valid_to is not None:
        raise Conflict(f"Đơn vị {unit.code} đã giải thể.", code="unit_closed")
    before = site_snapshot(site)
    site.unit_id = unit.id
    tx.record("site.move", "site", site.id, before=before, after=site_snapshot(site))
    return site


@dataclass
class SiteFilter:
    unit_id: int | None = None
    under_path: str | None = None
    status: str | None = None
    q: str | None = None
    scope_paths: Sequence[str] | None = None
    site_ids: Sequence[int] | None = None  # a site operator pinned to sites


def query_sites(f: SiteFilter) -> Select[Site, Unit]:
    stmt = select(Site, Unit).join(Unit, Unit.id == Site.unit_id).order_by(Unit.code, Site.code)
    if f.unit_id is not None:
        stmt = stmt.where(Site.unit_id == f.unit_id)
    if f.under_path:
        stmt = stmt.where(subtree(Unit.path, f.under_path))
    if f.status:
        stmt = stmt.where(Site.status == f.status)
    if f.q:
        key = search_key(f.q)
        stmt = stmt.where(
            or_(
                Site.name_key.contains(key, autoescape=True),
                Unit.name_key.contains(key, autoescape=True),
                Site.code == f.q.strip(),
            )
        )
    if f.scope_paths is not None:
        stmt = stmt.where(in_any_subtree(Unit.path, f.scope_paths))
    if f.site_ids is not None:
        stmt = stmt.where(Site.id.in_(f.site_ids))
    return stmt


# --- as a principal may (the API and the pages both call these) ------------------------------------


def editable_fields(p: Principal, site: Site, unit: Unit) -> tuple[str, ...]:
    """The fields of ``site`` that ``p`` may change: all of them with ``site.write`` over its unit,
    the contacts with ``site.contact_write`` on it (its operator), none otherwise."""
    if p.can_unit(Perm.site_write, unit.path):
        return SITE_FIELDS
    if p.can_site(Perm.site_contact_write, site.id, unit.path):
        return CONTACT_FIELDS
    return ()


def list_sites(
    session: Session,
    p: Principal,
    f: SiteFilter,
    *,
    under: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Listing[tuple[Site, Unit]]:
    """The sites ``p`` may read matching ``f`` (``under``: a unit's subtree, itself readable)."""
    if under is not None:
        f = replace(f, under_path=scope.readable_unit(session, p, under).path)
    stmt = query_sites(f).where(scope.sites_in_scope(p, Perm.site_read))
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    rows = session.execute(stmt.limit(limit).offset(offset)).all()
    return Listing([(s, u) for s, u in rows], total)


def add_site(tx: Tx, p: Principal, **fields: Any) -> tuple[Site, Unit]:
    unit = scope.site_unit_for_create(tx.session, p, fields["unit_id"])
    return create_site(tx, **fields), unit


def edit_site(
    tx: Tx, p: Principal, site_id: int, changes: dict[str, Any], unit_id: int | None = None
) -> tuple[Site, Unit]:
    """Change a site's fields and (``unit_id``) move it, as far as ``p`` may: ``site.write`` over its
    unit changes everything and moves it within that scope; its operator changes the contacts only.
    Everything is authorized before anything is written."""
    site, unit = scope.readable_site(tx.session, p, site_id)
    changes = {key: value for key, value in changes.items() if value is not None}
    allowed = editable_fields(p, site, unit)
    if not allowed:
        raise Forbidden("Bạn không có quyền sửa điểm cầu này.")
    refused = sorted(set(changes) - set(allowed))
    if refused:
        raise Forbidden(
            f"Bạn chỉ được sửa thông tin liên hệ của điểm cầu này (không được sửa: {', '.join(refused)}).",
            code="field_not_allowed",
        )
    target = None
    if unit_id is not None and unit_id != site.unit_id:
        target = scope.site_move_target(tx.session, p, unit, unit_id)
    site = update_site(tx, site.id, allowed=allowed, **changes)
    if target is not None:
        site = move_site(tx, site.id, target.id)
        unit = target
    return site, unit
