"""/api/v1/audit: read the audit trail (system admins over the whole tree)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from giaoban.audit.models import AuditEntry
from giaoban.errors import Forbidden
from giaoban.org.access import Perm
from giaoban.org.schemas import AuditOut
from giaoban.types import Line
from giaoban.web.api.common import ERRORS, ApiRoute, Limit, Offset
from giaoban.web.deps import Web, web
from giaoban.web.schemas import Page

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERRORS, route_class=ApiRoute)


@router.get("", response_model=Page[AuditOut], summary="Audit entries, newest first")
def list_audit(
    w: Annotated[Web, Depends(web)],
    entity_type: Annotated[Annotated[str, Line(40, required=False)] | None, Query()] = None,
    entity_id: Annotated[Annotated[str, Line(64, required=False)] | None, Query()] = None,
    action: Annotated[Annotated[str, Line(60, required=False)] | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AuditOut]:
    if not w.principal.is_global(Perm.audit_read):
        raise Forbidden("Chỉ quản trị toàn hệ thống được xem nhật ký.")
    with w.read() as session:
        stmt = select(AuditEntry)
        if entity_type:
            stmt = stmt.where(AuditEntry.entity_type == entity_type)
        if entity_id:
            stmt = stmt.where(AuditEntry.entity_id == entity_id)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
        rows = session.execute(stmt.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).scalars()
        return Page(
            items=[
                AuditOut(
                    id=e.id,
                    at=e.at,
                    actor=e.actor,
                    ip=e.ip,
                    action=e.action,
                    entity_type=e.entity_type,
                    entity_id=e.entity_id,
                    before=json.loads(e.before) if e.before else None,
                    after=json.loads(e.after) if e.after else None,
                )
                for e in rows
            ],
            total=total,
        )
