"""/api/v1/units/{unit_id}/roster: a unit's delegate roster ("đại biểu thường trực").

Reading needs ``unit.read`` over the unit (otherwise 404, like a unit that does not exist);
changes need what ``giaoban.org.roster.may_edit`` says (otherwise 403).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from giaoban.org import roster as svc
from giaoban.org.schemas import RosterEntryOut, SearchText, entry_out
from giaoban.types import Id, Line
from giaoban.web.api.common import ERRORS, ApiRoute, PathId
from giaoban.web.deps import Web, web

router = APIRouter(prefix="/units", tags=["roster"], responses=ERRORS, route_class=ApiRoute)

# The sizes of RosterEntry's columns (giaoban.org.roster.FIELD_LIMITS), under the text policy.
FullName = Annotated[str, Line(200)]
Position = Annotated[str, Line(200, required=False)]
Phone = Annotated[str, Line(50, required=False)]


class RosterOut(BaseModel):
    unit_id: int
    unit_name: str
    can_edit: bool = Field(description="Whether the caller may change this roster.")
    items: list[RosterEntryOut]
    total: int


class RosterEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full_name: FullName
    position: Position = ""
    phone: Phone = ""


class RosterEntryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full_name: FullName | None = None
    position: Position | None = None
    phone: Phone | None = None
    active: StrictBool | None = Field(default=None, description="false: no longer offered at check-in")


class RosterOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Id] = Field(
        max_length=svc.MAX_ENTRIES, description="Every entry of the roster, in the new order"
    )


@router.get("/{unit_id:int}/roster", response_model=RosterOut, summary="A unit's delegate roster")
def get_roster(
    w: Annotated[Web, Depends(web)],
    unit_id: PathId,
    active: Annotated[
        bool | None, Query(description="Only active (true) or inactive (false) entries")
    ] = None,
    q: Annotated[SearchText | None, Query(description="Name, any diacritics")] = None,
) -> RosterOut:
    with w.read() as session:
        unit = svc.roster_unit(session, w.principal, unit_id)
        entries = svc.list_entries(session, unit.id, active=active, q=q)
        return RosterOut(
            unit_id=unit.id,
            unit_name=unit.name,
            can_edit=unit.valid_to is None and svc.may_edit(session, w.principal, unit),
            items=[entry_out(e) for e in entries],
            total=len(entries),
        )


@router.post(
    "/{unit_id:int}/roster", response_model=RosterEntryOut, status_code=201, summary="Add a delegate"
)
def add_entry(w: Annotated[Web, Depends(web)], unit_id: PathId, body: RosterEntryIn) -> RosterEntryOut:
    with w.tx() as tx:
        unit = svc.roster_unit(tx.session, w.principal, unit_id, edit=True)
        return entry_out(svc.add_entry(tx, unit.id, **body.model_dump()))


@router.patch(
    "/{unit_id:int}/roster/{entry_id:int}",
    response_model=RosterEntryOut,
    summary="Change a delegate (active=false deactivates)",
)
def update_entry(
    w: Annotated[Web, Depends(web)], unit_id: PathId, entry_id: PathId, body: RosterEntryPatch
) -> RosterEntryOut:
    with w.tx() as tx:
        unit = svc.roster_unit(tx.session, w.principal, unit_id, edit=True)
        return entry_out(svc.update_entry(tx, unit.id, entry_id, **body.model_dump(exclude_unset=True)))


@router.put("/{unit_id:int}/roster/order", response_model=RosterOut, summary="Reorder the roster")
def reorder(w: Annotated[Web, Depends(web)], unit_id: PathId, body: RosterOrderIn) -> RosterOut:
    with w.tx() as tx:
        unit = svc.roster_unit(tx.session, w.principal, unit_id, edit=True)
        entries = svc.reorder(tx, unit.id, body.ids)
        return RosterOut(
            unit_id=unit.id,
            unit_name=unit.name,
            can_edit=True,
            items=[entry_out(e) for e in entries],
            total=len(entries),
        )
