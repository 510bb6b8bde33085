"""Pages of the briefings ("hội nghị"): list, schedule form, detail with lifecycle buttons, a
site's room and the chair/operator console.

These pages parse forms, check the CSRF token and call ``giaoban.meetings.service`` (the
functions the meetings API calls too, authorizing through ``giaoban.meetings.access``), so the
role, site and meeting checks are the same code for both. The room and the console are ES modules speaking the live protocol
(docs/protocol.md) over one WebSocket per tab.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from giaoban.errors import DomainError, Forbidden, NotFound
from giaoban.live import service as live_service
from giaoban.live.state import LATE_AFTER_SECONDS
from giaoban.meetings import scheduling as svc
from giaoban.meetings import service
from giaoban.meetings.access import MANAGE_ROLES, MeetingAccess, meeting_access
from giaoban.meetings.lifecycle import STATUS_LABELS_VI, MeetingStatus
from giaoban.meetings.schemas import MeetingDetail, MeetingIn, StatusIn
from giaoban.text import check_text, search_key
from giaoban.types import EARLIEST_DAY, LATEST_DAY
from giaoban.web.deps import Caller, Web, get_ctx
from giaoban.web.downloads import ics_response, xlsx_response
from giaoban.web.i18n import N_, Translator
from giaoban.web.pagekit import (
    PAGE_SIZE,
    PageRoute,
    Redirect,
    SignedIn,
    check_form_csrf,
    form_int,
    form_values,
    invalid_message,
    render,
    translator,
)
from giaoban.web.pages_roster import checkin_roster, roster_links

router = APIRouter(include_in_schema=False, route_class=PageRoute)

FormStr = Annotated[str, Form()]
FormList = Annotated[list[str], Form()]

KIND_LABELS = {
    "briefing": N_("Giao ban định kỳ"),
    "thematic": N_("Hội nghị chuyên đề"),
    "training": N_("Tập huấn"),
}
STATUS_LABELS = {
    "scheduled": N_("Đã lên lịch"),
    "open": N_("Đang kiểm tra kỹ thuật"),
    "live": N_("Đang diễn ra"),
    "ended": N_("Đã kết thúc"),
    "cancelled": N_("Đã hủy"),
}
# Buttons that move a meeting on, per current status: (target, label, confirm question or "").
LIFECYCLE_ACTIONS = {
    "scheduled": [
        ("open", N_("Mở kiểm tra kỹ thuật"), ""),
        ("cancelled", N_("Hủy hội nghị"), N_("Hủy hội nghị này? Các điểm cầu sẽ không vào được phòng họp.")),
    ],
    "open": [
        ("live", N_("Bắt đầu hội nghị"), ""),
        ("ended", N_("Kết thúc"), N_("Kết thúc hội nghị? Phòng họp sẽ đóng với mọi điểm cầu.")),
        ("cancelled", N_("Hủy hội nghị"), N_("Hủy hội nghị này? Các điểm cầu sẽ không vào được phòng họp.")),
    ],
    "live": [
        ("ended", N_("Kết thúc hội nghị"), N_("Kết thúc hội nghị? Phòng họp sẽ đóng với mọi điểm cầu.")),
    ],
}
STATUS_DONE = {
    "open": N_("Đã mở kiểm tra kỹ thuật: các điểm cầu có thể vào phòng họp."),
    "live": N_("Hội nghị đã bắt đầu."),
    "ended": N_("Hội nghị đã kết thúc."),
    "cancelled": N_("Đã hủy hội nghị."),
    "created": N_("Đã lên lịch hội nghị."),
}
UNIT_KIND_LABELS = {
    "central": N_("Trung ương"),
    "province": N_("Tỉnh, thành phố"),
    "central-committee": N_("Đảng bộ trực thuộc Trung ương"),
    "regional-office": N_("Cơ quan thường trực"),
    "district": N_("Huyện, quận"),
    "commune": N_("Xã, phường, đặc khu"),
    "grassroots": N_("Cơ sở"),
}
ROOM_OPEN = (MeetingStatus.open.value, MeetingStatus.live.value)
MAX_AGENDA_LINES = 100

assert set(STATUS_LABELS) == {s.value for s in MeetingStatus} and len(STATUS_LABELS_VI) == len(STATUS_LABELS)


def _web(request: Request, caller: Caller) -> Web:
    return Web(get_ctx(request), caller)


def _access(request: Request, caller: Caller, meeting_id: int) -> MeetingAccess:
    access = meeting_access(get_ctx(request), caller.principal, meeting_id)
    if access is None:
        raise NotFound(N_("Không tìm thấy hội nghị, hoặc hội nghị không thuộc phạm vi của bạn."))
    return access


def _labels(_: Translator) -> dict[str, Any]:
    return {
        "kinds": {k: _(v) for k, v in KIND_LABELS.items()},
        "statuses": {k: _(v) for k, v in STATUS_LABELS.items()},
    }


def _when(_: Translator, starts: datetime, ends: datetime) -> str:
    """ "08:00–11:00 12/03/2026" in Vietnam's time (stored times are naive UTC)."""
    start = _.datetime(starts)
    end = _.datetime(ends)
    if start[-10:] == end[-10:] and _.locale == "vi":
        return f"{start[:5]}–{end[:5]} {start[-10:]}"
    return f"{start} – {end}"


# --- list ------------------------------------------------------------------------------------


@router.get("/meetings")
def meetings_page(request: Request, caller: SignedIn, status: str = "", page: str = "1") -> Response:
    _ = translator(request)
    w = _web(request, caller)
    status_filter = status if status in STATUS_LABELS else None
    number = form_int(page, 1, 1, 100_000)
    with w.read() as session:
        result = service.meetings_for(
            session, caller.principal, status=status_filter, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        names = svc.site_labels(
            session,
            sorted({s for m in result.items for s in [*m.my_sites[:1], m.host_site_id]}),
        )
    rows = [
        {
            "m": m,
            "when": _when(_, m.starts_at, m.ends_at),
            "host": names.get(m.host_site_id, ""),
            # One site: its room straight away; several (a central operator): a count, the detail
            # page lists them (a row never holds one button per site).
            "site": (m.my_sites[0], names.get(m.my_sites[0], "")) if len(m.my_sites) == 1 else None,
            "site_count": len(m.my_sites),
            "room_open": m.status in ROOM_OPEN,
        }
        for m in result.items
    ]
    last = max(1, -(-result.total // PAGE_SIZE))
    context = {
        "rows": rows,
        "status": status_filter or "",
        "pager": {"page": min(number, last), "last": last, "total": result.total},
        "query": {"status": status_filter or ""},
        "can_schedule": any(g.role in MANAGE_ROLES for g in caller.principal.grants),
        "rosters": roster_links(request, caller),
        **_labels(_),
    }
    return render(request, "meetings.html", context, caller=caller)


# --- schedule --------------------------------------------------------------------------------


def _new_page(
    request: Request,
    caller: Caller,
    *,
    form: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    _ = translator(request)
    scope = service.manage_scope(caller.principal)
    if not scope:
        raise Forbidden(N_("Chỉ điều hành Trung ương hoặc quản trị được lên lịch hội nghị."))
    with _web(request, caller).read() as session:
        choices = svc.schedule_choices(session, scope)
    tomorrow = (datetime.now(svc.LOCAL_TZ).date() + timedelta(days=1)).isoformat()
    host = next(
        (s for s in choices.sites if s.group == "central"), choices.sites[0] if choices.sites else None
    )
    defaults: dict[str, Any] = {
        "kind": "briefing",
        "day": tomorrow,
        "start": "08:00",
        "end": "11:00",
        "owner": str(choices.owners[0].id) if choices.owners else "",
        "host": str(host.id) if host else "",
        "site_ids": [],
        "unit_kinds": [],
        "under": "",
    }
    context = {
        "c": choices,
        "form": form_values(defaults, form),
        "error": error,
        "unit_kinds": {k: _(UNIT_KIND_LABELS.get(k, k)) for k in choices.kinds},
        **_labels(_),
    }
    return render(request, "meeting_new.html", context, caller=caller, status=status)


@router.get("/meetings/new")
def new_meeting_page(request: Request, caller: SignedIn) -> Response:
    return _new_page(request, caller)


def _agenda(_: Translator, text: str) -> list[dict[str, Any]]:
    """One item per line: "Title | presenter | minutes" (the last two optional)."""
    items: list[dict[str, Any]] = []
    # The text policy first (no control characters), then one line per item.
    text = check_text(text, label=_("Chương trình"), max_length=MAX_AGENDA_LINES * 600, code="invalid_agenda")
    for line in text.split("\n"):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        item: dict[str, Any] = {"title": parts[0]}
        if len(parts) > 1 and parts[1]:
            item["presenter"] = parts[1]
        if len(parts) > 2 and parts[2]:
            if not parts[2].isdigit():
                message = _("Thời lượng của nội dung “%(title)s” phải là số phút.", title=parts[0])
                raise DomainError(message, code="invalid_agenda")
            item["minutes"] = int(parts[2])
        items.append(item)
    if len(items) > MAX_AGENDA_LINES:
        raise DomainError(_("Chương trình có quá nhiều nội dung."), code="invalid_agenda")
    return items


def _local(_: Translator, day: str, clock: str, label: str) -> datetime:
    """The form's day and clock, Vietnam's time, inside the accepted range (giaoban.types)."""
    try:
        value = datetime.combine(date.fromisoformat(day), time.fromisoformat(clock))
    except ValueError:
        raise DomainError(_("%(field)s chưa hợp lệ.", field=label), code="invalid_time") from None
    if not EARLIEST_DAY <= value.date() <= LATEST_DAY:
        raise DomainError(
            _(
                "%(field)s phải trong khoảng %(first)s đến %(last)s.",
                field=_("Ngày họp"),
                first=_.date(EARLIEST_DAY),
                last=_.date(LATEST_DAY),
            ),
            code="invalid_time",
        )
    return value


def _ids(values: list[str]) -> list[int]:
    return sorted({int(v) for v in values if v.isdigit()})


@router.post("/meetings/new")
def create_meeting(
    request: Request,
    caller: SignedIn,
    csrf: FormStr = "",
    title: FormStr = "",
    kind: FormStr = "briefing",
    description: FormStr = "",
    day: FormStr = "",
    start: FormStr = "",
    end: FormStr = "",
    owner: FormStr = "",
    host: FormStr = "",
    chair: FormStr = "",
    secretary: FormStr = "",
    agenda: FormStr = "",
    under: FormStr = "",
    unit_kinds: FormList = [],  # noqa: B006  # FastAPI copies form defaults
    site_ids: FormList = [],  # noqa: B006
) -> Response:
    check_form_csrf(request, caller, csrf)
    _ = translator(request)
    form = {
        "title": title,
        "kind": kind,
        "description": description,
        "day": day,
        "start": start,
        "end": end,
        "owner": owner,
        "host": host,
        "chair": chair,
        "secretary": secretary,
        "agenda": agenda,
        "under": under,
        "unit_kinds": unit_kinds[:20],
        "site_ids": _ids(site_ids[:5000]),
    }
    try:
        body = MeetingIn.model_validate(
            {
                "title": title,
                "kind": kind if kind in KIND_LABELS else "briefing",
                "description": description,
                "starts_at": _local(_, day, start, _("Giờ bắt đầu")),
                "ends_at": _local(_, day, end, _("Giờ kết thúc")),
                "owner_unit_id": form_int(owner, 0, 0, 2**31 - 1),
                "host_site_id": form_int(host, 0, 0, 2**31 - 1),
                "chair_user_id": form_int(chair, 0, 0, 2**31 - 1) or None,
                "secretary_user_id": form_int(secretary, 0, 0, 2**31 - 1) or None,
                "agenda": _agenda(_, agenda),
                "invite": {
                    "site_ids": form["site_ids"],
                    "under_unit_ids": _ids([under]),
                    "unit_kinds": form["unit_kinds"],
                },
            }
        )
        with _web(request, caller).tx() as tx:
            created = service.schedule(tx, caller.principal, body)
    except ValidationError as exc:
        return _new_page(request, caller, form=form, error=invalid_message(_, exc), status=400)
    except NotFound:
        raise
    except DomainError as exc:
        return _new_page(request, caller, form=form, error=_(exc.message), status=exc.status)
    raise Redirect(f"/meetings/{created.id}?done=created")


# --- one meeting -----------------------------------------------------------------------------


def _detail(request: Request, caller: Caller, meeting_id: int) -> tuple[MeetingDetail, dict[int, str]]:
    w = _web(request, caller)
    with w.read() as session:
        detail = service.meeting_detail(session, caller.principal, meeting_id)
        people = svc.user_labels(session, [detail.chair_user_id, detail.secretary_user_id])
    return detail, people


# A site's presence in the live room (LiveMeeting.presence), as the meeting page shows it.
PRESENCE_LABELS = {
    "absent": N_("Chưa vào phòng"),
    "connected": N_("Đã kết nối, chưa phát hình"),
    "live": N_("Đang phát hình"),
}
FEW_SITES = 3  # up to this many sites of one's own: big buttons at the top; more: in the table


def _presence(request: Request, meeting_id: int) -> dict[int, str] | None:
    """Each site's presence, when the live room is loaded (nobody connected yet otherwise)."""
    room = request.app.state.hub.rooms.get(meeting_id)
    if room is None:
        return None
    live = room.live
    return {sid: live.presence(sid) for sid in list(live.sites)}


@router.get("/meetings/{meeting_id:int}")
def meeting_page(request: Request, caller: SignedIn, meeting_id: int) -> Response:
    _ = translator(request)
    detail, people = _detail(request, caller, meeting_id)
    names = {s.site_id: s.name for s in detail.sites}
    done = request.query_params.get("done", "")
    room_open = detail.status in ROOM_OPEN
    presence = (_presence(request, meeting_id) if room_open else None) or {}
    mine = set(detail.my_sites)
    site_rows = [
        {
            "s": s,
            "key": search_key(f"{s.code} {s.name} {s.unit_name}"),
            "host": s.site_id == detail.host_site_id,
            "mine": s.site_id in mine,
            "presence": presence.get(s.site_id, "absent"),
        }
        for s in detail.sites
    ]
    context = {
        "m": detail,
        "when": _when(_, detail.starts_at, detail.ends_at),
        "host": names.get(detail.host_site_id, ""),
        "host_presence": presence.get(detail.host_site_id, "absent"),
        "host_is_mine": detail.host_site_id in mine,
        "connected": sum(1 for p in presence.values() if p != "absent"),
        "presence_labels": {k: _(v) for k, v in PRESENCE_LABELS.items()},
        "site_rows": site_rows,
        "any_mine": len(mine) > FEW_SITES,  # a few of one's own: their buttons are at the top
        "chair": people.get(detail.chair_user_id or 0, ""),
        "secretary": people.get(detail.secretary_user_id or 0, ""),
        "my_sites": [(s, names.get(s, f"#{s}")) for s in detail.my_sites],
        "few_sites": len(mine) <= FEW_SITES,
        "room_open": room_open,
        "actions": [
            (t, _(label), _(q) if q else "") for t, label, q in LIFECYCLE_ACTIONS.get(detail.status, [])
        ]
        if detail.can_chair
        else [],
        "has_record": detail.status != MeetingStatus.scheduled.value,
        **_labels(_),
    }
    if done in STATUS_DONE:
        context["done"] = _(STATUS_DONE[done])
    return render(request, "meeting.html", context, caller=caller)


@router.post("/meetings/{meeting_id:int}/status")
async def meeting_status(
    request: Request, caller: SignedIn, meeting_id: int, csrf: FormStr = "", status: FormStr = ""
) -> Response:
    check_form_csrf(request, caller, csrf)
    try:
        body = StatusIn.model_validate({"status": status})
    except ValidationError:
        raise DomainError(N_("Trạng thái không hợp lệ."), code="invalid_status") from None
    await live_service.change_status(
        get_ctx(request), request.app.state.hub, caller.principal, meeting_id, body.status
    )
    raise Redirect(f"/meetings/{meeting_id}?done={body.status}")


@router.get("/meetings/{meeting_id:int}/meeting.ics")
def meeting_ics(request: Request, caller: SignedIn, meeting_id: int) -> Response:
    with _web(request, caller).read() as session:
        data = service.ics(session, caller.principal, meeting_id)
    return ics_response(data, meeting_id)


@router.get("/meetings/{meeting_id:int}/attendance.xlsx")
async def meeting_attendance(request: Request, caller: SignedIn, meeting_id: int) -> Response:
    hub = request.app.state.hub
    data = await live_service.attendance_xlsx(get_ctx(request), hub, caller.principal, meeting_id)
    return xlsx_response(data, meeting_id)


# --- the live room and the console -----------------------------------------------------------


def _live_config(request: Request, detail: MeetingDetail, **extra: Any) -> dict[str, Any]:
    _ = translator(request)
    return {
        "meetingId": detail.id,
        "title": detail.title,
        "status": detail.status,
        "hostSiteId": detail.host_site_id,
        "locale": _.locale,
        "statuses": {k: _(v) for k, v in STATUS_LABELS.items()},
        "lateAfterSeconds": LATE_AFTER_SECONDS,
        **extra,
    }


@router.get("/meetings/{meeting_id:int}/room")
async def room_page(request: Request, caller: SignedIn, meeting_id: int, site: str = "") -> Response:
    access = await anyio.to_thread.run_sync(_access, request, caller, meeting_id)
    if not access.sites_as_site:
        raise Forbidden(N_("Tài khoản của bạn không vận hành điểm cầu nào được mời dự hội nghị này."))
    site_id = form_int(site, 0, 0, 2**31 - 1)
    if site_id not in access.sites_as_site:
        if site or len(access.sites_as_site) > 1:
            raise Redirect(f"/meetings/{meeting_id}")
        site_id = next(iter(access.sites_as_site))
    detail, _people = await anyio.to_thread.run_sync(_detail, request, caller, meeting_id)
    if detail.status not in (*ROOM_OPEN, MeetingStatus.scheduled.value):
        raise Redirect(f"/meetings/{meeting_id}")
    me = next(s for s in detail.sites if s.site_id == site_id)
    host = next((s.name for s in detail.sites if s.site_id == detail.host_site_id), "")
    config = _live_config(
        request,
        detail,
        siteId=site_id,
        siteName=me.name,
        hostName=host,
        isHost=site_id == detail.host_site_id,
    )
    roster = await anyio.to_thread.run_sync(checkin_roster, request, caller, site_id)
    context = {"m": detail, "config": config, "site_name": me.name, "host": host, "roster": roster}
    return render(request, "meeting_room.html", context, caller=caller, show_nav=False)


@router.get("/meetings/{meeting_id:int}/console")
async def console_page(request: Request, caller: SignedIn, meeting_id: int) -> Response:
    access = await anyio.to_thread.run_sync(_access, request, caller, meeting_id)
    if not access.console:
        raise Forbidden(N_("Chỉ phòng điều hành (chủ trì, thư ký, điều hành Trung ương) mở được trang này."))
    detail, _people = await anyio.to_thread.run_sync(_detail, request, caller, meeting_id)
    if detail.status not in (*ROOM_OPEN, MeetingStatus.scheduled.value):
        raise Redirect(f"/meetings/{meeting_id}")
    host = next((s.name for s in detail.sites if s.site_id == detail.host_site_id), "")
    config = _live_config(
        request,
        detail,
        canChair=access.chair,
        hostName=host,
        xlsxUrl=f"/meetings/{meeting_id}/attendance.xlsx",
        sites={str(s.site_id): {"code": s.code, "name": s.name} for s in detail.sites},
    )
    context = {"m": detail, "config": config, "host": host, "can_chair": access.chair}
    return render(request, "meeting_console.html", context, caller=caller, show_nav=False)


@router.get("/meetings/{meeting_id:int}/control")
async def control_page(request: Request, caller: SignedIn, meeting_id: int) -> Response:
    """The control room's wall of connection health (giaoban/web/static/js/control.js)."""
    access = await anyio.to_thread.run_sync(_access, request, caller, meeting_id)
    if not access.console:
        raise Forbidden(N_("Chỉ phòng điều hành (chủ trì, thư ký, điều hành Trung ương) mở được trang này."))
    detail, _people = await anyio.to_thread.run_sync(_detail, request, caller, meeting_id)
    if detail.status not in (*ROOM_OPEN, MeetingStatus.scheduled.value):
        raise Redirect(f"/meetings/{meeting_id}")
    host = next((s.name for s in detail.sites if s.site_id == detail.host_site_id), "")
    config = _live_config(request, detail, hostName=host)
    return render(
        request, "meeting_control.html", {"m": detail, "config": config}, caller=caller, show_nav=False
    )


# --- tech check ("kiểm tra kỹ thuật", giaoban.live.techcheck) ---------------------------


@router.get("/meetings/{meeting_id:int}/techcheck")
async def techcheck_page(request: Request, caller: SignedIn, meeting_id: int, site: str = "") -> Response:
    """A site's tech check (``?site=N``, js/techcheck.js), or the control room's readiness board."""
    _ = translator(request)
    access = await anyio.to_thread.run_sync(_access, request, caller, meeting_id)
    detail, _people = await anyio.to_thread.run_sync(_detail, request, caller, meeting_id)
    if detail.status in (MeetingStatus.ended.value, MeetingStatus.cancelled.value):
        raise Redirect(f"/meetings/{meeting_id}")
    site_id = form_int(site, 0, 0, 2**31 - 1)
    if not site_id and not access.console and len(access.sites_as_site) == 1:
        site_id = next(iter(access.sites_as_site))
    readiness = await live_service.readiness(
        get_ctx(request), request.app.state.hub, caller.principal, meeting_id
    )
    context: dict[str, Any] = {
        "m": detail,
        "statuses": {k: _(v) for k, v in STATUS_LABELS.items()},
        "config": None,
    }
    if site_id:
        if site_id not in access.sites_as_site:
            raise Forbidden(N_("Tài khoản của bạn không vận hành điểm cầu này trong hội nghị."))
        me = next(s for s in detail.sites if s.site_id == site_id)
        mine = next(r for r in readiness.items if r.site_id == site_id)
        config = {"meetingId": meeting_id, "siteId": site_id, "locale": _.locale, "last": mine.model_dump()}
        context.update(site_name=me.name, config=config, last=mine)
        return render(request, "meeting_techcheck.html", context, caller=caller, show_nav=False)
    if not access.console:
        raise Forbidden(N_("Chỉ phòng điều hành xem được tình trạng kỹ thuật của các điểm cầu."))
    done = request.query_params.get("done", "")
    context.update(board=readiness.items, done=_("Đã gửi đề nghị kiểm tra kỹ thuật.") if done else "")
    return render(request, "meeting_techcheck.html", context, caller=caller)


@router.post("/meetings/{meeting_id:int}/techcheck/request")
async def techcheck_request(
    request: Request, caller: SignedIn, meeting_id: int, csrf: FormStr = "", site_id: FormStr = ""
) -> Response:
    check_form_csrf(request, caller, csrf)
    target = form_int(site_id, 0, 0, 2**31 - 1)
    if not target:
        raise DomainError(N_("Chưa chọn điểm cầu."), code="invalid_site")
    hub = request.app.state.hub
    await live_service.request_techcheck(get_ctx(request), hub, caller.principal, meeting_id, target)
    raise Redirect(f"/meetings/{meeting_id}/techcheck?done=requested")
