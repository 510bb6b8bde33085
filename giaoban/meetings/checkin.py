"""What a site's check-in form offers ("báo cáo đại biểu"): its unit's active roster, with the
entries named at the site's last check-in ticked.

The roster is the org domain's (``giaoban.org.roster``); the last check-in is a record of one of
the site's recent meetings, so the query that joins them lives here, above both.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from giaoban.errors import NotFound
from giaoban.meetings.models import Invitation, Meeting, MeetingRecord
from giaoban.org.models import RosterEntry, Site
from giaoban.org.roster import list_entries
from giaoban.text import nfc, search_key

RECENT_MEETINGS = 10  # how far back the check-in form looks for the site's last check-in


@dataclass
class CheckinChoices:
    """What a site's check-in form offers: its unit's active roster, and which entries were named
    at the site's last check-in (in any of its recent meetings)."""

    unit_id: int
    entries: list[RosterEntry]
    ticked: list[int]


def last_checkin_names(session: Session, site_id: int) -> list[str]:
    """The names of the site's latest check-in among its last ``RECENT_MEETINGS`` meetings."""
    meetings = (
        select(Meeting.id)
        .join(Invitation, Invitation.meeting_id == Meeting.id)
        .where(Invitation.site_id == site_id)
        .order_by(Meeting.starts_at.desc())
        .limit(RECENT_MEETINGS)
    )
    ids = list(session.execute(meetings).scalars())
    host = select(Meeting.id).where(Meeting.host_site_id == site_id).order_by(Meeting.starts_at.desc())
    ids += list(session.execute(host.limit(RECENT_MEETINGS)).scalars())
    if not ids:
        return []
    row = session.execute(
        select(MeetingRecord.data)
        .where(
            MeetingRecord.meeting_id.in_(ids),
            MeetingRecord.kind == "checkin",
            MeetingRecord.site_id == site_id,
        )
        .order_by(MeetingRecord.at.desc(), MeetingRecord.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    names = row.get("names", []) if isinstance(row, dict) else []
    return [nfc(str(n)) for n in names if isinstance(n, str)]


def checkin_choices(session: Session, site_id: int) -> CheckinChoices:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"Không có điểm cầu mã số {site_id}.", code="site_not_found")
    entries = list_entries(session, site.unit_id, active=True)
    named = {search_key(n) for n in last_checkin_names(session, site_id)} if entries else set()
    ticked = [e.id for e in entries if e.full_name_key in named]
    return CheckinChoices(site.unit_id, entries, ticked)
