"""The page of a unit's delegate roster ("danh sách đại biểu thường trực"): ``/units/{id}/roster``.

The page is rendered with the roster as it stands (``giaoban.org.roster``: who may read or change
it is ``roster_unit`` / ``may_edit``, for the page and the API alike); ``static/js/roster.js`` makes
the changes through the JSON API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from giaoban.meetings import checkin
from giaoban.org import roster as svc
from giaoban.org.models import Unit
from giaoban.org.schemas import entry_out
from giaoban.web.deps import Caller, Web, get_ctx
from giaoban.web.pagekit import PageRoute, SignedIn, render

router = APIRouter(include_in_schema=False, route_class=PageRoute)


@router.get("/units/{unit_id:int}/roster")
def roster_page(request: Request, caller: SignedIn, unit_id: int) -> Response:
    w = Web(get_ctx(request), caller)
    with w.read() as session:
        unit = svc.roster_unit(session, w.principal, unit_id)
        entries = [entry_out(e) for e in svc.list_entries(session, unit.id)]
        can_edit = unit.valid_to is None and svc.may_edit(session, w.principal, unit)
        unit_name, closed = unit.name, unit.valid_to is not None
    config = {"unitId": unit_id, "canEdit": can_edit, "entries": [e.model_dump() for e in entries]}
    context = {
        "unit_id": unit_id,
        "unit_name": unit_name,
        "closed": closed,
        "entries": entries,
        "can_edit": can_edit,
        "config": config,
    }
    return render(request, "roster.html", context, caller=caller)


def checkin_roster(request: Request, caller: Caller, site_id: int) -> dict[str, Any]:
    """What the room's check-in form offers a site (the caller runs it: the room page checked):
    its unit's active roster, the entries named at its last check-in, and the roster page's address
    when the caller may edit the roster."""
    w = Web(get_ctx(request), caller)
    with w.read() as session:
        choices = checkin.checkin_choices(session, site_id)
        unit = session.get(Unit, choices.unit_id)
        editable = unit is not None and unit.valid_to is None and svc.may_edit(session, w.principal, unit)
        return {
            "entries": [{"id": e.id, "name": e.full_name, "position": e.position} for e in choices.entries],
            "ticked": choices.ticked,
            "edit_url": f"/units/{choices.unit_id}/roster" if editable else "",
        }


def roster_links(request: Request, caller: Caller) -> list[dict[str, Any]]:
    """The rosters a site operator keeps (their own units'), for the meeting list's page head."""
    w = Web(get_ctx(request), caller)
    with w.read() as session:
        ids = svc.editable_unit_ids(session, w.principal)
        units = [session.get(Unit, i) for i in ids[:5]]
        return [
            {"url": f"/units/{u.id}/roster", "name": u.name}
            for u in units
            if u is not None and u.valid_to is None
        ]
