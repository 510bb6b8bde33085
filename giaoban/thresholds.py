"""The control room's thresholds: what turns a site's tile amber or red and what raises an alert.

A plain value with no dependency on the rest of the app, so that ``giaoban.settings`` can check
``GIAOBAN_QUALITY_THRESHOLDS`` when it reads the environment, and the quality monitor
(``giaoban.live.quality``) uses the same type (docs/operations.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    """What turns a tile amber or red, and what raises an alert (docs/operations.md)."""

    loss_amber: float = 2.0  # % of packets lost (either direction)
    loss_red: float = 8.0
    rtt_amber: int = 250  # ms
    rtt_red: int = 500
    jitter_amber: int = 50  # ms (audio when it flows, else video: video frames arrive in bursts)
    jitter_red: int = 150
    stale_after: float = 12.0  # s without media stats from a publishing site: "no figures"
    # Alerts: raise at or above, clear below (the gap is the hysteresis).
    loss_alert: float = 10.0
    loss_clear: float = 5.0
    rtt_alert: int = 800
    rtt_clear: int = 500
    raise_after: int = 3  # bad samples in a row (≈ 6 s)
    clear_after: int = 5  # good samples in a row (≈ 10 s)
    drop_after: int = 2  # samples disconnected before "dropped" (a reconnect takes 1–2 s)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, Any]) -> Thresholds:
        """The defaults with ``overrides`` (``GIAOBAN_QUALITY_THRESHOLDS``); ValueError naming the
        field for an unknown name, a value that is not a number ≥ 0, a count below 1, or a pair out
        of order (amber above red, clear above raise)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, raw in overrides.items():
            if name not in fields:
                raise ValueError(f"unknown quality threshold {name!r}; known: {', '.join(fields)}")
            kind = type(getattr(DEFAULT_THRESHOLDS, name))
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"quality threshold {name}: {raw!r} is not a number") from None
            if not math.isfinite(number) or number < 0 or (kind is int and number != int(number)):
                what = "a whole number" if kind is int else "a number"
                raise ValueError(f"quality threshold {name}: {raw!r} must be {what} >= 0")
            values[name] = kind(number)
        th = dataclasses.replace(DEFAULT_THRESHOLDS, **values)
        for low, high in (
            ("loss_amber", "loss_red"),
            ("rtt_amber", "rtt_red"),
            ("jitter_amber", "jitter_red"),
            ("loss_clear", "loss_alert"),
            ("rtt_clear", "rtt_alert"),
        ):
            if getattr(th, low) > getattr(th, high):
                raise ValueError(
                    f"quality thresholds: {low} ({getattr(th, low)}) above {high} ({getattr(th, high)})"
                )
        for count in ("raise_after", "clear_after", "drop_after"):
            if getattr(th, count) < 1:
                raise ValueError(f"quality threshold {count} must be at least 1")
        return th


DEFAULT_THRESHOLDS = Thresholds()
