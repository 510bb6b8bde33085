"""Meeting lifecycle as a pure state machine.

scheduled → open (sites may connect and test) → live → ended; a scheduled or open meeting can be
cancelled. Only the meeting's chair or a central operator moves it (checked by the caller).
"""

from __future__ import annotations

import enum


class MeetingStatus(enum.StrEnum):
    scheduled = "scheduled"
    open = "open"
    live = "live"
    ended = "ended"
    cancelled = "cancelled"


TRANSITIONS: dict[MeetingStatus, frozenset[MeetingStatus]] = {
    MeetingStatus.scheduled: frozenset({MeetingStatus.open, MeetingStatus.cancelled}),
    MeetingStatus.open: frozenset({MeetingStatus.live, MeetingStatus.cancelled, MeetingStatus.ended}),
    MeetingStatus.live: frozenset({MeetingStatus.ended}),
    MeetingStatus.ended: frozenset(),
    MeetingStatus.cancelled: frozenset(),
}

STATUS_LABELS_VI = {
    MeetingStatus.scheduled: "Đã lên lịch",
    MeetingStatus.open: "Đang kiểm tra kỹ thuật",
    MeetingStatus.live: "Đang diễn ra",
    MeetingStatus.ended: "Đã kết thúc",
    MeetingStatus.cancelled: "Đã hủy",
}


class TransitionError(Exception):
    def __init__(self, current: MeetingStatus, target: MeetingStatus) -> None:
        super().__init__(f"cannot go from {current} to {target}")
        self.current = current
        self.target = target


def next_status(current: MeetingStatus, target: MeetingStatus) -> MeetingStatus:
    if target not in TRANSITIONS[current]:
        raise TransitionError(current, target)
    return target


def has_room(status: MeetingStatus) -> bool:
    """Whether a media room exists in this state: created on open, destroyed after the end."""
    return status in (MeetingStatus.open, MeetingStatus.live)
