"""The control room's alerts as part of the meeting log: raised, cleared and acknowledged (no I/O).

The quality monitor (``giaoban.live.quality``) decides when a site's alert is raised or cleared;
each decision and each acknowledgement is a record of the meeting (``alert``, ``alert.ack``), applied
by ``LiveMeeting`` through this book and kept in ``meeting_records``, so the log shows when a site
dropped or lost its picture and who in the control room saw it, and an app restart rebuilds them.

Records:
- ``alert`` with ``site_id`` and ``data = {"rule": str, "action": "raise"|"clear", "value": float|None}``:
  a rule has at most one open alert per site; ids are given in order of raising (1, 2, …), so a
  replay gives the same ids.
- ``alert.ack`` with ``data = {"id": int}`` and the user who acknowledged it ("Đã biết").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

RULES = ("dropped", "video_stopped", "loss_high", "rtt_high")


class AlertError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass
class Alert:
    id: int
    site_id: int
    rule: str
    raised_at: float
    value: float | None = None
    cleared_at: float | None = None
    acked_at: float | None = None
    acked_by: str = ""

    @property
    def open(self) -> bool:
        return self.cleared_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "site_id": self.site_id,
            "rule": self.rule,
            "value": self.value,
            "raised_at": _iso(self.raised_at),
            "cleared_at": _iso(self.cleared_at),
            "acked_at": _iso(self.acked_at),
            "acked_by": self.acked_by,
            "open": self.open,
        }


class AlertBook:
    """Every alert of one meeting, in order of raising."""

    def __init__(self) -> None:
        self.items: list[Alert] = []

    def open_for(self, site_id: int, rule: str) -> Alert | None:
        return next((a for a in self.items if a.site_id == site_id and a.rule == rule and a.open), None)

    def get(self, alert_id: int) -> Alert | None:
        return self.items[alert_id - 1] if 1 <= alert_id <= len(self.items) else None

    def open_alerts(self) -> list[Alert]:
        return [a for a in self.items if a.open]

    def apply(self, site_id: int, at: float, data: dict[str, Any]) -> Alert:
        """A raise or a clear; raises AlertError (and changes nothing) when it does not fit."""
        rule = data.get("rule")
        if rule not in RULES:
            raise AlertError("invalid", f"unknown alert rule {rule!r}")
        current = self.open_for(site_id, str(rule))
        action = data.get("action")
        if action == "clear":
            if current is None:
                raise AlertError("no_such_alert", "Không có cảnh báo đang mở để kết thúc.")
            current.cleared_at = at
            return current
        if action != "raise":
            raise AlertError("invalid", f"unknown alert action {action!r}")
        if current is not None:
            raise AlertError("alert_open", "Cảnh báo này đang mở.")
        value = data.get("value")
        alert = Alert(
            len(self.items) + 1,
            site_id,
            str(rule),
            at,
            value=float(value) if isinstance(value, int | float) else None,
        )
        self.items.append(alert)
        return alert

    def ack(self, alert_id: object, at: float, user: str) -> bool:
        """Acknowledge; False when it already was (nothing to record)."""
        alert = self.get(alert_id) if isinstance(alert_id, int) and not isinstance(alert_id, bool) else None
        if alert is None:
            raise AlertError("no_such_alert", "Không có cảnh báo này.")
        if alert.acked_at is not None:
            return False
        alert.acked_at, alert.acked_by = at, user
        return True
