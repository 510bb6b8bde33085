"""Actions on sites ("điểm cầu"): the briefing endpoints attached to units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select

from giaoban.context import Tx
from giaoban.errors import Conflict, DomainError, NotFound
from giaoban.org.models import Site, SiteStatus, Unit
from giaoban.org.units import get_unit, in_any_subtree, subtree
from giaoban.text import nfc, search_key

SITE_FIELDS = ("name", "location", "contact_name", "contact_phone", "tech_name", "tech_phone", "status")
# What a site's own operator may correct: how to reach the room and its people.
CONTACT_FIELDS = ("location", "contact_name", "contact_phone", "tech_name", "tech_phone")

FIELD_LIMITS = {
    "name": 300,
    "location": 300,
    "contact_name": 200,
    "contact_phone": 50,
    "tech_name": 200,
    "tech_phone": 50,
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
        text = nfc(str(value))
        if len(text) > FIELD_LIMITS[key]:
            raise DomainError(f"Trường {key} dài quá {FIELD_LIMITS[key]} ký tự.", code="field_too_long")
        out[key] = text
    if "name" in out and not out["name"]:
        raise DomainError("Tên điểm cầu không được để trống.", code="invalid_site_name")
    return out


def create_site(tx: Tx, *, code: str, unit_id: int, name: str, **fields: Any) -> Site:
    session = tx.session
    code = nfc(code)
    if not code or len(code) > 40:
        raise DomainError("Mã điểm cầu phải có từ 1 đến 40 ký tự.", code="invalid_site_code")
    if session.execute(select(Site.id).where(Site.code == code)).first():
        raise Conflict(f"Mã điểm cầu '{code}' đã tồn tại.", code="site_code_exists")
    unit = get_unit(session, unit_id)
    if unit.valid_to is not None:
        raise Conflict(f"Đơn vị {unit.code} đã giải thể.", code="unit_closed")
    values = _clean({"name": name, **fields})
    site = Site(code=code, unit_id=unit.id, name_key=search_key(values["name"]), **values)
    session.add(site)
    session.flush()
    tx.record("site.create", "site", site.id, after=site_snapshot(site))
    return site


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
