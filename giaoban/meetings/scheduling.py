"""Actions on meetings: schedule, edit, invite sites, move through the lifecycle, export .ics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from giaoban.context import Tx
from giaoban.db import utcnow
from giaoban.errors import Conflict, DomainError, NotFound
from giaoban.meetings.lifecycle import MeetingStatus, TransitionError, next_status
from giaoban.meetings.models import AgendaItem, Invitation, Meeting
from giaoban.meetings.order import site_order
from giaoban.org.models import Role, RoleAssignment, Site, SiteStatus, Unit, User
from giaoban.org.units import in_any_subtree, subtree
from giaoban.text import check_line, check_text, search_key
from giaoban.types import LOCAL_TZ, to_instant

KINDS = ("briefing", "thematic", "training")
KIND_LABELS_VI = {"briefing": "Giao ban định kỳ", "thematic": "Hội nghị chuyên đề", "training": "Tập huấn"}
MAX_DURATION = timedelta(hours=24)
# Column sizes (Meeting.title, AgendaItem.title/presenter); the description is a paragraph.
TITLE_MAX = 300
PRESENTER_MAX = 200
DESCRIPTION_MAX = 5000


def to_utc_naive(value: datetime) -> datetime:
    """Aware datetimes are converted; naive ones are taken as local time (Vietnam). Out of the
    accepted range (giaoban.types.to_instant): ``DomainError`` ``invalid_times``."""
    try:
        return to_instant(value, LOCAL_TZ).replace(tzinfo=None)
    except ValueError as exc:
        raise DomainError(str(exc), code="invalid_times") from None


@dataclass
class AgendaSpec:
    title: str
    presenter: str = ""
    minutes: int | None = None


@dataclass
class InviteSpec:
    """Which sites to invite: listed sites, whole subtrees, and/or every site of some unit kinds."""

    site_ids: Sequence[int] = ()
    under_unit_ids: Sequence[int] = ()
    unit_kinds: Sequence[str] = ()


@dataclass
class MeetingSpec:
    title: str
    kind: str
    starts_at: datetime
    ends_at: datetime
    owner_unit_id: int
    host_site_id: int
    chair_user_id: int | None = None
    secretary_user_id: int | None = None
    description: str = ""
    agenda: Sequence[AgendaSpec] = ()
    invite: InviteSpec = field(default_factory=InviteSpec)


def snapshot(m: Meeting) -> dict[str, Any]:
    return {
        "id": m.id,
        "title": m.title,
        "kind": m.kind,
        "status": m.status,
        "starts_at": m.starts_at,
        "ends_at": m.ends_at,
        "owner_unit_id": m.owner_unit_id,
        "host_site_id": m.host_site_id,
        "chair_user_id": m.chair_user_id,
        "secretary_user_id": m.secretary_user_id,
        "agenda": [a.title for a in m.agenda],
        "sites": sorted(i.site_id for i in m.invitations),
    }


def get_meeting(session: Session, meeting_id: int) -> Meeting:
    meeting = session.get(
        Meeting, meeting_id, options=[selectinload(Meeting.agenda), selectinload(Meeting.invitations)]
    )
    if meeting is None:
        raise NotFound(f"Không có hội nghị mã số {meeting_id}.", code="meeting_not_found")
    return meeting


def resolve_invites(session: Session, spec: InviteSpec, scope_paths: Sequence[str] | None) -> list[int]:
    """Site ids for an invitation spec, active sites of active units only, within ``scope_paths``."""
    ids: set[int] = set()
    base = (
        select(Site.id)
        .join(Unit, Unit.id == Site.unit_id)
        .where(Unit.valid_to.is_(None), Site.status != SiteStatus.inactive.value)
    )
    if scope_paths is not None:
        base = base.where(in_any_subtree(Unit.path, scope_paths))
    if spec.site_ids:
        found = set(session.execute(base.where(Site.id.in_(spec.site_ids))).scalars())
        missing = sorted(set(spec.site_ids) - found)
        if missing:
            raise Conflict(
                f"Điểm cầu không hợp lệ hoặc ngoài phạm vi: {', '.join(map(str, missing))}.",
                code="invalid_sites",
            )
        ids |= found
    for unit_id in spec.under_unit_ids:
        unit = session.get(Unit, unit_id)
        if unit is None or (
            scope_paths is not None and not any(unit.path.startswith(p) for p in scope_paths)
        ):
            raise Conflict(f"Đơn vị {unit_id} không hợp lệ hoặc ngoài phạm vi.", code="invalid_unit")
        ids |= set(session.execute(base.where(subtree(Unit.path, unit.path))).scalars())
    if spec.unit_kinds:
        ids |= set(session.execute(base.where(Unit.kind.in_(spec.unit_kinds))).scalars())
    return sorted(ids)


def _has_role(session: Session, user_id: int, role: Role) -> bool:
    return (
        session.execute(
            select(RoleAssignment.id).where(
                RoleAssignment.user_id == user_id, RoleAssignment.role == role.value
            )
        ).first()
        is not None
    )


def _validate(session: Session, spec: MeetingSpec) -> tuple[str, datetime, datetime]:
    title = check_line(
        spec.title, label="Tên hội nghị", max_length=TITLE_MAX, field="title", code="invalid_title"
    )
    if spec.kind not in KINDS:
        raise DomainError(f"Loại hội nghị phải là một trong: {', '.join(KINDS)}.", code="invalid_kind")
    starts, ends = to_utc_naive(spec.starts_at), to_utc_naive(spec.ends_at)
    if ends <= starts:
        raise DomainError("Giờ kết thúc phải sau giờ bắt đầu.", code="invalid_times")
    if ends - starts > MAX_DURATION:
        raise DomainError("Một hội nghị kéo dài nhiều nhất 24 giờ.", code="invalid_times")
    host = session.get(Site, spec.host_site_id)
    if host is None or host.status == SiteStatus.inactive.value:
        raise Conflict("Điểm cầu chính không hợp lệ.", code="invalid_host_site")
    for user_id, role, label in (
        (spec.chair_user_id, Role.chair, "chủ trì"),
        (spec.secretary_user_id, Role.secretary, "thư ký"),
    ):
        if user_id is not None and (
            session.get(User, user_id) is None or not _has_role(session, user_id, role)
        ):
            raise Conflict(f"Người dùng {user_id} không có vai trò {label}.", code="invalid_user_role")
    return title, starts, ends


def create_meeting(tx: Tx, spec: MeetingSpec, scope_paths: Sequence[str] | None = None) -> Meeting:
    session = tx.session
    title, starts, ends = _validate(session, spec)
    sites = set(resolve_invites(session, spec.invite, scope_paths))
    sites.add(spec.host_site_id)
    meeting = Meeting(
        title=title,
        title_key=search_key(title),
        kind=spec.kind,
        status=MeetingStatus.scheduled.value,
        description=check_text(
            spec.description,
            label="Ghi chú",
            max_length=DESCRIPTION_MAX,
            field="description",
            code="invalid_description",
        ),
        starts_at=starts,
        ends_at=ends,
        owner_unit_id=spec.owner_unit_id,
        host_site_id=spec.host_site_id,
        chair_user_id=spec.chair_user_id,
        secretary_user_id=spec.secretary_user_id,
        created_by=tx.actor.user_id,
    )
    meeting.agenda = [
        AgendaItem(
            position=i,
            title=check_line(
                a.title, label=f"Nội dung {i} của chương trình", max_length=TITLE_MAX, code="invalid_agenda"
            ),
            presenter=check_line(
                a.presenter,
                label=f"Người trình bày nội dung {i}",
                max_length=PRESENTER_MAX,
                required=False,
                code="invalid_agenda",
            ),
            minutes=a.minutes,
        )
        for i, a in enumerate(spec.agenda, start=1)
    ]
    meeting.invitations = [Invitation(site_id=s) for s in sorted(sites)]
    session.add(meeting)
    session.flush()
    tx.record("meeting.create", "meeting", meeting.id, after=snapshot(meeting))
    return meeting


def set_invitations(tx: Tx, meeting_id: int, spec: InviteSpec, scope_paths: Sequence[str] | None) -> Meeting:
    meeting = get_meeting(tx.session, meeting_id)
    if meeting.status in (MeetingStatus.ended, MeetingStatus.cancelled):
        raise Conflict("Hội nghị đã kết thúc.", code="meeting_closed")
    before = snapshot(meeting)
    wanted = set(resolve_invites(tx.session, spec, scope_paths)) | {meeting.host_site_id}
    meeting.invitations = [i for i in meeting.invitations if i.site_id in wanted]
    have = {i.site_id for i in meeting.invitations}
    meeting.invitations.extend(Invitation(site_id=s) for s in sorted(wanted - have))
    tx.session.flush()
    tx.record("meeting.invite", "meeting", meeting.id, before=before, after=snapshot(meeting))
    return meeting


def transition(tx: Tx, meeting_id: int, target: MeetingStatus) -> Meeting:
    meeting = get_meeting(tx.session, meeting_id)
    current = MeetingStatus(meeting.status)
    try:
        meeting.status = next_status(current, target).value
    except TransitionError as exc:
        raise Conflict(
            f"Không thể chuyển hội nghị từ '{current.value}' sang '{target.value}'.", code="bad_transition"
        ) from exc
    meeting.status_changed_at = utcnow()
    tx.record(
        "meeting.status",
        "meeting",
        meeting.id,
        before={"status": current.value},
        after={"status": target.value},
    )
    return meeting


def invited_meetings(session: Session, site_ids: Sequence[int]) -> list[Meeting]:
    return list(
        session.execute(
            select(Meeting)
            .join(Invitation, Invitation.meeting_id == Meeting.id)
            .where(Invitation.site_id.in_(site_ids))
            .order_by(Meeting.starts_at)
        ).scalars()
    )


def to_ics(meeting: Meeting, host_name: str, url: str = "") -> bytes:
    """An iCalendar file for one meeting (times in UTC, text in Vietnamese)."""
    cal = Calendar()
    cal.add("prodid", "-//Giao Ban//giaoban//VI")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", f"meeting-{meeting.id}@giaoban")
    event.add("summary", meeting.title)
    event.add("dtstart", meeting.starts_at.replace(tzinfo=UTC))
    event.add("dtend", meeting.ends_at.replace(tzinfo=UTC))
    event.add("dtstamp", utcnow().replace(tzinfo=UTC))
    event.add("location", host_name)
    lines = [meeting.description] if meeting.description else []
    lines += [
        f"{a.position}. {a.title}" + (f" — {a.presenter}" if a.presenter else "") for a in meeting.agenda
    ]
    if lines:
        event.add("description", "\n".join(lines))
    if url:
        event.add("url", url)
    cal.add_component(event)
    return bytes(cal.to_ical())


# -- what the scheduling form offers ----------------------------------------------------------


@dataclass
class Choice:
    id: int
    label: str
    code: str = ""
    group: str = ""


@dataclass
class ScheduleChoices:
    """What a scheduler may pick, all within ``scope_paths``: organizing units, sites, people."""

    owners: list[Choice]
    units: list[Choice]  # units whose subtree can be invited at once
    sites: list[Choice]
    kinds: list[str]  # unit kinds that have at least one site in scope
    chairs: list[Choice]
    secretaries: list[Choice]


def _users_with_role(session: Session, role: Role, scope_paths: Sequence[str]) -> list[Choice]:
    """Users holding ``role`` at a unit inside the scope or above it (a chair of the whole tree)."""
    rows = session.execute(
        select(User.id, User.full_name, User.username, Unit.path)
        .join(RoleAssignment, RoleAssignment.user_id == User.id)
        .join(Unit, Unit.id == RoleAssignment.unit_id)
        .where(RoleAssignment.role == role.value, User.is_locked.is_(False))
        .order_by(User.full_name, User.username)
    ).all()
    seen: dict[int, Choice] = {}
    for user_id, full_name, username, path in rows:
        if any(path.startswith(p) or p.startswith(path) for p in scope_paths):
            seen.setdefault(user_id, Choice(user_id, full_name or username, username))
    return list(seen.values())


def schedule_choices(session: Session, scope_paths: Sequence[str]) -> ScheduleChoices:
    in_scope = in_any_subtree(Unit.path, scope_paths)
    owners = [
        Choice(i, n, c)
        for i, n, c in session.execute(
            select(Unit.id, Unit.name, Unit.code)
            .where(Unit.path.in_(list(scope_paths)), Unit.valid_to.is_(None))
            .order_by(Unit.path)
        ).all()
    ]
    sites = session.execute(
        select(Site.id, Site.name, Site.code, Unit.kind)
        .join(Unit, Unit.id == Site.unit_id)
        .where(in_scope, Unit.valid_to.is_(None), Site.status != SiteStatus.inactive.value)
    ).all()
    # The central site (the usual host) first, then by code: the meetings' order.
    usual_host = next((i for i, _n, _c, kind in sites if kind == "central"), None)
    sites = site_order(sites, code=lambda r: r[2], site_id=lambda r: r[0], host_site_id=usual_host)
    parents = select(Unit.parent_id).where(Unit.parent_id.is_not(None), Unit.valid_to.is_(None)).distinct()
    units = [
        Choice(i, n, c)
        for i, n, c in session.execute(
            select(Unit.id, Unit.name, Unit.code)
            .where(in_scope, Unit.valid_to.is_(None), Unit.id.in_(parents))
            .order_by(Unit.path)
        ).all()
    ]
    kinds = sorted({kind for *_rest, kind in sites})
    return ScheduleChoices(
        owners=owners,
        units=units,
        sites=[Choice(i, n, c, k) for i, n, c, k in sites],
        kinds=kinds,
        chairs=_users_with_role(session, Role.chair, scope_paths),
        secretaries=_users_with_role(session, Role.secretary, scope_paths),
    )


def site_labels(session: Session, site_ids: Sequence[int]) -> dict[int, str]:
    if not site_ids:
        return {}
    return {
        i: n for i, n in session.execute(select(Site.id, Site.name).where(Site.id.in_(list(site_ids)))).all()
    }


def user_labels(session: Session, user_ids: Sequence[int | None]) -> dict[int, str]:
    ids = [i for i in user_ids if i is not None]
    if not ids:
        return {}
    return {
        i: full or username
        for i, full, username in session.execute(
            select(User.id, User.full_name, User.username).where(User.id.in_(ids))
        ).all()
    }
