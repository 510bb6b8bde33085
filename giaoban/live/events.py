"""What the media side of a live meeting tells the hub: its events and its one failure.

Shared by the hub (``giaoban.live.hub``) and the Janus stage (``giaoban.live.stage``), so that
neither imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StageEvent:
    """Something Janus told the media side (from its reader: handled later, under the room lock)."""

    # publisher_up | publisher_down | offer | reset (target: the media event that says media may be
    # lost: node_down | node_restarted | sessions_lost | rooms_lost)
    kind: str
    site_id: int | None = None
    handle_id: int | None = None
    peer: str | None = None
    target: str | None = None
    jsep: dict[str, Any] | None = None


class MediaFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
