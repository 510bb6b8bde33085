"""The live state of one meeting, changed only by log records (no I/O).

Every change — a site connecting or dropping, a floor request or grant, a check-in, a chat message —
is a ``Record``. ``LiveMeeting.apply(record)`` validates it against the current state, changes the
state and returns the delta to push to every tab; a record that the state refuses raises and
changes nothing. The hub persists each applied record, so replaying the records rebuilds the same
state after an app restart (nothing in queue, attendance or chat is lost).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from giaoban.live.alerts import AlertBook, AlertError
from giaoban.live.attendance import partition
from giaoban.live.floor import FloorError, FloorState, RequestKind
from giaoban.live.protocol import dumps
from giaoban.meetings.order import order_ids

LATE_AFTER_SECONDS = 5 * 60  # joining more than 5 minutes after the start counts as late ("đến muộn")
CHAT_IN_SNAPSHOT = 200
DELTAS_KEPT = 1000


@dataclass(frozen=True)
class Record:
    kind: str
    at: float  # epoch seconds
    site_id: int | None = None
    user: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at,
            "site_id": self.site_id,
            "user": self.user,
            "data": self.data,
        }


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class Mark:
    kind: str  # joined | late | left | rejoined
    at: float


@dataclass
class SiteLive:
    site_id: int
    name: str
    unit_name: str = ""
    code: str = ""
    connected: bool = False
    publishing: bool = False
    timeline: list[Mark] = field(default_factory=list)
    delegates: int | None = None
    names: list[str] = field(default_factory=list)
    checked_in_at: float | None = None
    # The latest tech check ("kiểm tra kỹ thuật", giaoban.live.techcheck) and the last request.
    techcheck: dict[str, Any] | None = None
    techcheck_requested_at: float | None = None

    def techcheck_json(self) -> dict[str, Any]:
        """``status``: ready | failed | not_checked, the measurements, and when it was last asked for."""
        out: dict[str, Any] = dict(self.techcheck) if self.techcheck else {"status": "not_checked"}
        out["requested_at"] = iso(self.techcheck_requested_at)
        return out

    def attendance(self) -> str:
        """present | late | left | absent, as the roll-call board shows it."""
        if not self.timeline:
            return "absent"
        if not self.connected:
            return "left"
        return "late" if self.timeline[0].kind == "late" else "present"

    def to_json(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "name": self.name,
            "unit_name": self.unit_name,
            "code": self.code,
            "connected": self.connected,
            "publishing": self.publishing,
            "attendance": self.attendance(),
            "timeline": [{"kind": m.kind, "at": iso(m.at)} for m in self.timeline],
            "checkin": None
            if self.checked_in_at is None
            else {"delegates": self.delegates, "names": self.names, "at": iso(self.checked_in_at)},
            "techcheck": self.techcheck_json(),
        }


@dataclass
class ChatMessage:
    at: float
    user: str
    from_site: int | None
    to: str | int  # "all", "control" or a site id
    text: str
    # Who wrote it as people know them: full name and unit (older records have only ``user``).
    name: str = ""
    unit: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "user": self.user,
            "name": self.name or self.user,
            "unit": self.unit,
            "from_site": self.from_site,
            "to": self.to,
            "text": self.text,
        }


class LiveError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Applied:
    """What applying a record produced: a delta for every tab, and/or a private message."""

    delta: str | None = None
    private: ChatMessage | None = None
    floor_changed: bool = False
    persist: bool = False  # kept in the meeting log though no tab is told (control-room alerts)


class LiveMeeting:
    def __init__(
        self,
        meeting_id: int,
        title: str,
        status: str,
        host_site_id: int,
        starts_at: float,
        sites: dict[int, tuple[str, str]],
        drop_grace: float = 30.0,
        codes: dict[int, str] | None = None,
    ) -> None:
        self.meeting_id = meeting_id
        self.title = title
        self.status = status
        self.host_site_id = host_site_id
        self.starts_at = starts_at
        codes = codes or {}
        self.sites = {
            sid: SiteLive(sid, name, unit, codes.get(sid, "")) for sid, (name, unit) in sites.items()
        }
        # The order every screen lists the sites in (giaoban.meetings.order): host first, then by code.
        self.order = order_ids({sid: s.code for sid, s in self.sites.items()}, host_site_id)
        self.floor = FloorState(host_site_id=host_site_id, drop_grace=drop_grace)
        self.chat: list[ChatMessage] = []
        self.private_chat: list[ChatMessage] = []
        self.alerts = AlertBook()  # the control room's alerts (giaoban.live.alerts)
        self.version = 0
        self._deltas: deque[tuple[int, str]] = deque(maxlen=DELTAS_KEPT)

    # -- views -----------------------------------------------------------------------------

    def meeting_json(self) -> dict[str, Any]:
        return {
            "id": self.meeting_id,
            "title": self.title,
            "status": self.status,
            "host_site_id": self.host_site_id,
        }

    def floor_json(self, now: float) -> dict[str, Any]:
        f = self.floor
        return {
            "now": iso(now),
            "max_holders": f.max_holders,
            "holders": [
                {
                    "site_id": t.site_id,
                    "granted_at": iso(t.granted_at),
                    "expires_at": iso(t.expires_at),
                    "seconds_left": None if t.expires_at is None else max(0, round(t.expires_at - now)),
                    "dropped": t.dropped_at is not None,
                }
                for t in f.holders
            ],
            "queue": [
                {
                    "site_id": r.site_id,
                    "kind": r.kind.value,
                    "position": i + 1,
                    "requested_at": iso(r.requested_at),
                    "dropped": r.dropped_at is not None,
                }
                for i, r in enumerate(f.queue)
            ],
            # Requests the chair declined (until the site asks again): its room says so.
            "declined": [{"site_id": sid, "at": iso(at)} for sid, at in f.declined],
            "audible": sorted(f.audible()),
        }

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "meeting": self.meeting_json(),
            "order": list(self.order),
            "sites": {str(sid): s.to_json() for sid, s in self.sites.items()},
            "floor": self.floor_json(now),
            "chat": [m.to_json() for m in self.chat[-CHAT_IN_SNAPSHOT:]],
            "roll_call": self.roll_call_json(),
        }

    def deltas_since(self, version: int) -> list[str] | None:
        """Deltas after ``version``, or None when some are no longer kept (send a snapshot)."""
        if version == self.version:
            return []
        if version > self.version or not self._deltas or self._deltas[0][0] > version + 1:
            return None
        return [d for v, d in self._deltas if v > version]

    def presence(self, site_id: int) -> str:
        """absent (not connected) | connected (no picture yet) | live (sending its picture)."""
        site = self.sites.get(site_id)
        if site is None or not site.connected:
            return "absent"
        return "live" if site.publishing else "connected"

    def roll_call(self) -> dict[str, int]:
        """The partition of the invited sites (giaoban.live.attendance): each counted once."""
        return partition(self.sites.values()).counts()

    def roll_call_json(self) -> dict[str, int]:
        """``invited`` and the count of each state: what the console shows (they add up)."""
        return partition(self.sites.values()).to_json()

    # -- changes ---------------------------------------------------------------------------

    def _delta(self, changes: list[dict[str, Any]]) -> str:
        self.version += 1
        text = dumps({"type": "delta", "version": self.version, "changes": changes})
        self._deltas.append((self.version, text))
        return text

    def _site(self, site_id: int | None) -> SiteLive:
        if site_id is None or site_id not in self.sites:
            raise LiveError("not_invited", "Điểm cầu không được mời dự hội nghị này.")
        return self.sites[site_id]

    def apply(self, r: Record) -> Applied:
        handler = getattr(self, "_on_" + r.kind.replace(".", "_"), None)
        if handler is None:
            raise LiveError("unknown_record", f"unknown record kind {r.kind}")
        try:
            result: Applied = handler(r)
        except FloorError as exc:
            raise LiveError(exc.code, exc.message) from exc
        return result

    def _floor_delta(
        self, r: Record, new_floor: FloorState, extra: list[dict[str, Any]] | None = None
    ) -> Applied:
        self.floor = new_floor
        changes = [{"path": "floor", "value": self.floor_json(r.at)}, *(extra or [])]
        return Applied(delta=self._delta(changes), floor_changed=True)

    def _site_delta(self, site: SiteLive, floor: FloorState | None, r: Record) -> Applied:
        changes: list[dict[str, Any]] = [{"path": f"sites.{site.site_id}", "value": site.to_json()}]
        floor_changed = floor is not None and floor != self.floor
        if floor is not None and floor_changed:
            self.floor = floor
            changes.append({"path": "floor", "value": self.floor_json(r.at)})
        # A site's state may have moved from one roll-call count to another.
        changes.append({"path": "roll_call", "value": self.roll_call_json()})
        return Applied(delta=self._delta(changes), floor_changed=floor_changed)

    def _on_meeting_status(self, r: Record) -> Applied:
        self.status = str(r.data["status"])
        return Applied(delta=self._delta([{"path": "meeting", "value": self.meeting_json()}]))

    def _on_site_connected(self, r: Record) -> Applied:
        site = self._site(r.site_id)
        if site.connected:
            return Applied()
        if not site.timeline:
            kind = "late" if r.at > self.starts_at + LATE_AFTER_SECONDS else "joined"
        else:
            kind = "rejoined"
        site.timeline.append(Mark(kind, r.at))
        site.connected = True
        floor, _ = self.floor.returned(site.site_id)
        return self._site_delta(site, floor, r)

    def _on_site_disconnected(self, r: Record) -> Applied:
        """A site's last tab went away: ``dropped`` keeps its floor/queue place for the grace period."""
        site = self._site(r.site_id)
        if not site.connected:
            return Applied()
        site.connected = False
        site.publishing = False
        site.timeline.append(Mark("left", r.at))
        if r.data.get("dropped", True):
            floor, _ = self.floor.dropped(site.site_id, r.at)
        else:
            floor, _ = self.floor.left(site.site_id)
        return self._site_delta(site, floor, r)

    def _on_site_publishing(self, r: Record) -> Applied:
        site = self._site(r.site_id)
        publishing = bool(r.data.get("publishing"))
        if site.publishing == publishing:
            return Applied()
        site.publishing = publishing
        return self._site_delta(site, None, r)

    def _on_checkin(self, r: Record) -> Applied:
        site = self._site(r.site_id)
        site.delegates = int(r.data["delegates"])
        site.names = [str(n) for n in r.data.get("names", [])]
        site.checked_in_at = r.at
        return self._site_delta(site, None, r)

    def _on_floor_request(self, r: Record) -> Applied:
        self._site(r.site_id)
        assert r.site_id is not None
        floor, _ = self.floor.request(r.site_id, r.at, RequestKind(r.data.get("kind", "normal")))
        return self._floor_delta(r, floor)

    def _on_floor_cancel(self, r: Record) -> Applied:
        assert r.site_id is not None
        floor, _ = self.floor.cancel(r.site_id)
        return self._floor_delta(r, floor)

    def _on_floor_decline(self, r: Record) -> Applied:
        floor, _ = self.floor.decline(int(r.data["site_id"]), r.at)
        return self._floor_delta(r, floor)

    def _on_floor_grant(self, r: Record) -> Applied:
        target = r.data.get("site_id")
        if target is not None:
            self._site(int(target))
        seconds = r.data.get("seconds")
        floor, _ = self.floor.grant(target, r.at, float(seconds) if seconds else None)
        return self._floor_delta(r, floor)

    def _on_floor_revoke(self, r: Record) -> Applied:
        floor, _ = self.floor.revoke(int(r.data["site_id"]))
        return self._floor_delta(r, floor)

    def _on_floor_extend(self, r: Record) -> Applied:
        floor, _ = self.floor.extend(int(r.data["site_id"]), float(r.data["seconds"]), r.at)
        return self._floor_delta(r, floor)

    def _on_floor_config(self, r: Record) -> Applied:
        return self._floor_delta(r, self.floor.configure(max_holders=int(r.data["max_holders"])))

    def _on_floor_expire(self, r: Record) -> Applied:
        floor, events = self.floor.expire(r.at)
        if not events:
            return Applied()
        return self._floor_delta(r, floor)

    def _on_chat(self, r: Record) -> Applied:
        to = r.data.get("to", "all")
        msg = ChatMessage(
            r.at,
            r.user,
            r.site_id,
            to,
            str(r.data["text"]),
            name=str(r.data.get("name") or ""),
            unit=str(r.data.get("unit") or ""),
        )
        if to == "all":
            self.chat.append(msg)
            return Applied(delta=self._delta([{"path": "chat.append", "value": msg.to_json()}]))
        if isinstance(to, int):
            self._site(to)
        self.private_chat.append(msg)
        return Applied(private=msg)

    def _on_alert(self, r: Record) -> Applied:
        site = self._site(r.site_id)
        try:
            self.alerts.apply(site.site_id, r.at, r.data)
        except AlertError as exc:
            raise LiveError(exc.code, exc.message) from exc
        return Applied(persist=True)

    def _on_alert_ack(self, r: Record) -> Applied:
        try:
            return Applied(persist=self.alerts.ack(r.data.get("id"), r.at, r.user))
        except AlertError as exc:
            raise LiveError(exc.code, exc.message) from exc

    def _on_techcheck(self, r: Record) -> Applied:
        """A site's tech check result (validated by giaoban.live.techcheck before it is a record)."""
        site = self._site(r.site_id)
        status = r.data.get("status")
        if status not in ("ready", "failed"):
            raise LiveError("invalid", "Kết quả kiểm tra kỹ thuật không hợp lệ.")
        fields = ("reason", "camera", "mic_level", "echo_rtt_ms", "bandwidth_kbps", "turn")
        site.techcheck = {"status": status, **{k: r.data.get(k) for k in fields}, "at": iso(r.at)}
        return self._site_delta(site, None, r)

    def _on_techcheck_request(self, r: Record) -> Applied:
        """The control room asks a site to run its tech check: the site's tabs get a private message."""
        site = self._site(r.site_id)
        site.techcheck_requested_at = r.at
        msg = ChatMessage(r.at, r.user, None, site.site_id, str(r.data.get("text", "")))
        self.private_chat.append(msg)
        applied = self._site_delta(site, None, r)
        applied.private = msg
        return applied
