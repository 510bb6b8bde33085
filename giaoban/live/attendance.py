"""Roll call ("điểm danh"): the one partition of the invited sites, and the printable attendance sheet.

Every invited site is in exactly one state (``SiteLive.attendance``):

- ``present``: joined on time and still connected ("Có mặt đúng giờ");
- ``late``: joined more than ``LATE_AFTER_SECONDS`` after the start and still connected ("Đến muộn");
- ``left``: joined, then its last tab went away ("Đã rời");
- ``absent``: never joined ("Vắng").

So the counts always add up to the number of invited sites: the console shows them as they are,
and the attendance sheet closes with the same totals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from giaoban.meetings.scheduling import LOCAL_TZ
from giaoban.tabular import Sheet

if TYPE_CHECKING:
    from giaoban.live.state import LiveMeeting

STATES = ("present", "late", "left", "absent")
STATE_LABELS = {
    "present": "Có mặt đúng giờ",
    "late": "Đến muộn",
    "left": "Đã rời",
    "absent": "Vắng",
}
MARK_LABELS = {"joined": "Vào", "late": "Vào muộn", "rejoined": "Vào lại", "left": "Rời"}
HEADER = (
    "STT",
    "Mã điểm cầu",
    "Điểm cầu",
    "Đơn vị",
    "Điểm danh",
    "Vào lúc",
    "Số đại biểu",
    "Đại biểu",
    "Diễn biến kết nối",
)
WIDTHS = (6, 12, 36, 36, 18, 12, 11, 40, 40)


class _Attending(Protocol):
    def attendance(self) -> str: ...


@dataclass(frozen=True)
class RollCall:
    """How many invited sites are in each state; the four add up to ``invited``."""

    present: int = 0
    late: int = 0
    left: int = 0
    absent: int = 0

    @property
    def invited(self) -> int:
        return self.present + self.late + self.left + self.absent

    def counts(self) -> dict[str, int]:
        return {state: getattr(self, state) for state in STATES}

    def to_json(self) -> dict[str, int]:
        """What the console shows: ``invited`` and one count per state."""
        return {"invited": self.invited, **self.counts()}


def partition(sites: Iterable[_Attending]) -> RollCall:
    """Each site counted once, in its state."""
    counts = dict.fromkeys(STATES, 0)
    for site in sites:
        counts[site.attendance()] += 1
    return RollCall(**counts)


def _local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).astimezone(LOCAL_TZ)


def attendance_sheet(
    live: LiveMeeting,
    *,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    host_name: str,
    now: datetime,
) -> Sheet:
    """The roll call as a printable sheet: a title (meeting, date and time, host), one row per invited
    site in the order every screen lists them, and totals that partition the invited sites.

    ``starts_at``/``ends_at``/``now`` are aware datetimes; every time shown is Vietnam local time.
    """
    start, end = starts_at.astimezone(LOCAL_TZ), ends_at.astimezone(LOCAL_TZ)
    day = start.date()

    def clock(ts: float) -> str:
        at = _local(ts)
        return at.strftime("%H:%M:%S") if at.date() == day else at.strftime("%H:%M:%S %d/%m/%Y")

    rows: list[list[object]] = []
    delegates = reported = 0
    for number, sid in enumerate(live.order, start=1):
        site = live.sites[sid]
        first = site.timeline[0].at if site.timeline else None
        if site.checked_in_at is not None:
            reported += 1
            delegates += site.delegates or 0
        rows.append(
            [
                number,
                site.code,
                site.name + (" (điểm cầu chính)" if sid == live.host_site_id else ""),
                site.unit_name,
                STATE_LABELS[site.attendance()],
                clock(first) if first is not None else "",
                site.delegates if site.checked_in_at is not None else "",
                ", ".join(site.names),
                "; ".join(f"{MARK_LABELS.get(m.kind, m.kind)} {clock(m.at)}" for m in site.timeline),
            ]
        )
    roll = partition(live.sites.values())
    totals: list[list[object]] = [[], ["", "", "Tổng số điểm cầu được mời", roll.invited]]
    totals += [["", "", STATE_LABELS[state], count] for state, count in roll.counts().items()]
    totals.append(["", "", "Số đại biểu (các điểm cầu đã báo)", f"{delegates} ({reported} điểm cầu)"])
    span = f"{start:%H:%M}–{end:%H:%M}" if end.date() == day else f"{start:%H:%M} đến {end:%H:%M %d/%m/%Y}"
    return Sheet(
        name="Điểm danh",
        header=HEADER,
        rows=rows,
        title=f"Điểm danh hội nghị: {title}",
        subtitle=(
            f"Ngày {day:%d/%m/%Y}, {span} (giờ Việt Nam)",
            f"Điểm cầu chính: {host_name}",
            f"Lập lúc {now.astimezone(LOCAL_TZ):%H:%M %d/%m/%Y}",
        ),
        footer=totals,
        widths=WIDTHS,
    )
