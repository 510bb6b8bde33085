"""Floor control ("xin phát biểu" / "mời phát biểu" / "kết thúc phát biểu") as a pure state machine.

No I/O and no clock: every operation takes ``now`` (seconds, any monotonic origin) and returns the
events it caused. The media layer turns the resulting audible set (host + holders) into Janus
``moderate`` and ``switch`` requests; this module only decides who may be heard.

Rules:
- A site asks for the floor once; asking again while queued or holding is an error.
- Queue order: the host site first, then points of order ("kiến nghị về thủ tục"), then everyone
  else, first come first served within each class.
- The chair grants the floor to the head of the queue or to any site by name ("mời phát biểu"),
  with an optional time limit; at most ``max_holders`` sites hold it at once (1 by default, up to
  4 for discussions).
- The chair may decline a request ("từ chối"): the site leaves the queue and is marked declined
  (with when) until it asks again or is given the floor, so its room can say so; nobody else moves.
- A turn ends when the chair revokes it, its time runs out (``expire``), or the holder leaves.
  A holder whose connection drops keeps the floor for ``drop_grace`` seconds; a queued site that
  drops keeps its place for the same grace.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

MAX_HOLDERS_LIMIT = 4


class RequestKind(enum.StrEnum):
    normal = "normal"
    point_of_order = "point_of_order"


class EndReason(enum.StrEnum):
    revoked = "revoked"
    expired = "expired"
    left = "left"
    dropped = "dropped"  # grace period ran out
    cancelled = "cancelled"


class FloorError(Exception):
    """An operation that the current state does not allow; ``code`` is stable for clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Request:
    site_id: int
    kind: RequestKind
    seq: int
    requested_at: float
    dropped_at: float | None = None


@dataclass(frozen=True)
class Turn:
    site_id: int
    granted_at: float
    expires_at: float | None
    dropped_at: float | None = None


@dataclass(frozen=True)
class Event:
    kind: str  # queued, cancelled, declined, granted, ended, extended, suspended, resumed
    site_id: int
    reason: str = ""


@dataclass(frozen=True)
class FloorState:
    host_site_id: int | None = None
    max_holders: int = 1
    drop_grace: float = 30.0
    queue: tuple[Request, ...] = ()
    holders: tuple[Turn, ...] = ()
    next_seq: int = 1
    # Sites whose last request the chair declined, and when: (site_id, declined_at), oldest first.
    declined: tuple[tuple[int, float], ...] = ()

    # -- queries ---------------------------------------------------------------------------

    def holder_ids(self) -> list[int]:
        return [t.site_id for t in self.holders]

    def queued_ids(self) -> list[int]:
        return [r.site_id for r in self.queue]

    def audible(self) -> frozenset[int]:
        """Sites whose audio everyone hears: the host and the floor holders."""
        ids = {t.site_id for t in self.holders}
        if self.host_site_id is not None:
            ids.add(self.host_site_id)
        return frozenset(ids)

    def position(self, site_id: int) -> int | None:
        for i, r in enumerate(self.queue):
            if r.site_id == site_id:
                return i + 1
        return None

    def declined_at(self, site_id: int) -> float | None:
        return next((at for sid, at in self.declined if sid == site_id), None)

    def turn(self, site_id: int) -> Turn | None:
        return next((t for t in self.holders if t.site_id == site_id), None)

    def next_deadline(self) -> float | None:
        """When ``expire`` next has work to do (a turn ends or a grace period runs out)."""
        times = [t.expires_at for t in self.holders if t.expires_at is not None]
        times += [t.dropped_at + self.drop_grace for t in self.holders if t.dropped_at is not None]
        times += [r.dropped_at + self.drop_grace for r in self.queue if r.dropped_at is not None]
        return min(times) if times else None

    # -- helpers ---------------------------------------------------------------------------

    def _priority(self, r: Request) -> tuple[int, int]:
        if r.site_id == self.host_site_id:
            return (0, r.seq)
        return (1 if r.kind == RequestKind.point_of_order else 2, r.seq)

    def _with_queue(self, queue: list[Request]) -> FloorState:
        return replace(self, queue=tuple(sorted(queue, key=self._priority)))

    def _undecline(self, site_id: int) -> FloorState:
        if self.declined_at(site_id) is None:
            return self
        return replace(self, declined=tuple(d for d in self.declined if d[0] != site_id))

    # -- operations ------------------------------------------------------------------------

    def configure(self, *, max_holders: int | None = None, host_site_id: int | None = None) -> FloorState:
        state = self
        if max_holders is not None:
            if not 1 <= max_holders <= MAX_HOLDERS_LIMIT:
                raise FloorError(
                    "bad_max_holders", f"Số điểm cầu phát biểu cùng lúc từ 1 đến {MAX_HOLDERS_LIMIT}."
                )
            if max_holders < len(self.holders):
                raise FloorError(
                    "too_many_holders", "Hãy kết thúc bớt lượt phát biểu trước khi giảm giới hạn."
                )
            state = replace(state, max_holders=max_holders)
        if host_site_id is not None:
            state = replace(state, host_site_id=host_site_id)
            state = state._with_queue(list(state.queue))
        return state

    def request(
        self, site_id: int, now: float, kind: RequestKind = RequestKind.normal
    ) -> tuple[FloorState, list[Event]]:
        if self.turn(site_id) is not None:
            raise FloorError("already_holding", "Điểm cầu đang được phát biểu.")
        if self.position(site_id) is not None:
            raise FloorError("already_queued", "Điểm cầu đã đăng ký phát biểu.")
        req = Request(site_id=site_id, kind=kind, seq=self.next_seq, requested_at=now)
        state = replace(self._undecline(site_id)._with_queue([*self.queue, req]), next_seq=self.next_seq + 1)
        return state, [Event("queued", site_id, kind.value)]

    def cancel(self, site_id: int) -> tuple[FloorState, list[Event]]:
        if self.position(site_id) is None:
            raise FloorError("not_queued", "Điểm cầu không có trong danh sách đăng ký phát biểu.")
        queue = [r for r in self.queue if r.site_id != site_id]
        return self._with_queue(queue), [Event("cancelled", site_id)]

    def decline(self, site_id: int, now: float) -> tuple[FloorState, list[Event]]:
        """The chair declines a queued request ("từ chối"): out of the queue, marked declined."""
        if self.position(site_id) is None:
            raise FloorError("not_queued", "Điểm cầu không có trong danh sách đăng ký phát biểu.")
        queue = [r for r in self.queue if r.site_id != site_id]
        state = replace(
            self._with_queue(queue), declined=(*self._undecline(site_id).declined, (site_id, now))
        )
        return state, [Event("declined", site_id)]

    def grant(
        self, site_id: int | None, now: float, limit_seconds: float | None = None
    ) -> tuple[FloorState, list[Event]]:
        """Give the floor to ``site_id`` (queued or not), or to the head of the queue when None."""
        if limit_seconds is not None and limit_seconds <= 0:
            raise FloorError("bad_limit", "Thời gian phát biểu phải lớn hơn 0.")
        if site_id is None:
            ready = [r for r in self.queue if r.dropped_at is None]
            if not ready:
                raise FloorError("queue_empty", "Không có điểm cầu nào đang chờ phát biểu.")
            site_id = ready[0].site_id
        if self.turn(site_id) is not None:
            raise FloorError("already_holding", "Điểm cầu đang được phát biểu.")
        if len(self.holders) >= self.max_holders:
            raise FloorError(
                "floor_full", "Đã đủ số điểm cầu phát biểu cùng lúc; hãy kết thúc một lượt trước."
            )
        req = next((r for r in self.queue if r.site_id == site_id), None)
        if req is not None and req.dropped_at is not None:
            raise FloorError("site_disconnected", "Điểm cầu đang mất kết nối.")
        queue = [r for r in self.queue if r.site_id != site_id]
        turn = Turn(site_id, now, now + limit_seconds if limit_seconds is not None else None)
        state = replace(self._undecline(site_id)._with_queue(queue), holders=(*self.holders, turn))
        return state, [Event("granted", site_id)]

    def revoke(self, site_id: int, reason: EndReason = EndReason.revoked) -> tuple[FloorState, list[Event]]:
        if self.turn(site_id) is None:
            raise FloorError("not_holding", "Điểm cầu không đang phát biểu.")
        holders = tuple(t for t in self.holders if t.site_id != site_id)
        return replace(self, holders=holders), [Event("ended", site_id, reason.value)]

    def extend(self, site_id: int, seconds: float, now: float) -> tuple[FloorState, list[Event]]:
        turn = self.turn(site_id)
        if turn is None:
            raise FloorError("not_holding", "Điểm cầu không đang phát biểu.")
        if seconds <= 0:
            raise FloorError("bad_limit", "Thời gian thêm phải lớn hơn 0.")
        base = max(turn.expires_at, now) if turn.expires_at is not None else now
        new = replace(turn, expires_at=base + seconds)
        holders = tuple(new if t.site_id == site_id else t for t in self.holders)
        return replace(self, holders=holders), [Event("extended", site_id)]

    def left(self, site_id: int) -> tuple[FloorState, list[Event]]:
        """The site left the meeting on purpose: it loses its turn and its queue place at once."""
        events: list[Event] = []
        state = self
        if state.turn(site_id) is not None:
            state, ev = state.revoke(site_id, EndReason.left)
            events += ev
        if state.position(site_id) is not None:
            state = state._with_queue([r for r in state.queue if r.site_id != site_id])
            events.append(Event("cancelled", site_id, EndReason.left.value))
        return state, events

    def dropped(self, site_id: int, now: float) -> tuple[FloorState, list[Event]]:
        """The site's connection dropped: keep its turn / place for ``drop_grace`` seconds."""
        holders = tuple(
            replace(t, dropped_at=now) if t.site_id == site_id and t.dropped_at is None else t
            for t in self.holders
        )
        queue = [
            replace(r, dropped_at=now) if r.site_id == site_id and r.dropped_at is None else r
            for r in self.queue
        ]
        changed = holders != self.holders or tuple(queue) != self.queue
        state = replace(self._with_queue(queue), holders=holders)
        return state, [Event("suspended", site_id)] if changed else []

    def returned(self, site_id: int) -> tuple[FloorState, list[Event]]:
        holders = tuple(replace(t, dropped_at=None) if t.site_id == site_id else t for t in self.holders)
        queue = [replace(r, dropped_at=None) if r.site_id == site_id else r for r in self.queue]
        changed = holders != self.holders or tuple(queue) != self.queue
        state = replace(self._with_queue(queue), holders=holders)
        return state, [Event("resumed", site_id)] if changed else []

    def expire(self, now: float) -> tuple[FloorState, list[Event]]:
        """End turns whose time is up and forget sites whose grace period ran out."""
        events: list[Event] = []
        holders = []
        for t in self.holders:
            if t.dropped_at is not None and now >= t.dropped_at + self.drop_grace:
                events.append(Event("ended", t.site_id, EndReason.dropped.value))
            elif t.expires_at is not None and now >= t.expires_at:
                events.append(Event("ended", t.site_id, EndReason.expired.value))
            else:
                holders.append(t)
        queue = []
        for r in self.queue:
            if r.dropped_at is not None and now >= r.dropped_at + self.drop_grace:
                events.append(Event("cancelled", r.site_id, EndReason.dropped.value))
            else:
                queue.append(r)
        return replace(self._with_queue(queue), holders=tuple(holders)), events


@dataclass
class FloorLog:
    """Convenience wrapper keeping the current state and every event, for services and tests."""

    state: FloorState = field(default_factory=FloorState)
    events: list[Event] = field(default_factory=list)

    def apply(self, result: tuple[FloorState, list[Event]]) -> list[Event]:
        self.state, events = result
        self.events.extend(events)
        return events
