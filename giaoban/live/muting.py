"""The floor's second layer on Janus, as pure functions (used by :mod:`giaoban.live.stage`).

The first layer is the subscriptions: they name explicit feeds and mids, so nobody is sent the
audio of a site without the floor. The second is VideoRoom ``moderate``: every audio stream of a
site that is not audible is blocked on Janus, whatever the site sends. Two rules keep it whole:

* after **any** (re)negotiation of a publisher (the first ``publish``, an ICE restart) the stage
  takes the audio mids Janus reports for the feed — the ``streams`` of its ``configured`` event,
  not the ones it knew before — and brings every one of them to the floor
  (:func:`moderation_changes`);
* ``media.restart`` only restarts ICE: :func:`restart_refusal` refuses an offer that adds, drops,
  reorders or disables an m-line, changes a mid, or keeps the old ICE credentials. Other changes
  need a new ``media.publish`` (a new PeerConnection, moderated before its answer leaves).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MLine:
    kind: str  # "audio" | "video" | "application" | …
    mid: str | None
    disabled: bool  # port 0: rejected / stopped


@dataclass(frozen=True, slots=True)
class Offer:
    mlines: tuple[MLine, ...]
    ufrags: frozenset[str]  # every a=ice-ufrag (session or media level)


def parse_offer(sdp: str) -> Offer:
    """The m-lines (kind, mid, disabled) and ICE user fragments of an SDP; tolerant of odd lines."""
    mlines: list[MLine] = []
    ufrags: set[str] = set()
    kind: str | None = None
    mid: str | None = None
    disabled = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if kind is not None:
                mlines.append(MLine(kind, mid, disabled))
            fields = line[2:].split()
            kind = fields[0] if fields else ""
            disabled = len(fields) > 1 and fields[1] == "0"
            mid = None
        elif line.startswith("a=mid:") and kind is not None:
            mid = line[6:].strip()
        elif line.startswith("a=ice-ufrag:"):
            ufrags.add(line[12:].strip())
    if kind is not None:
        mlines.append(MLine(kind, mid, disabled))
    return Offer(tuple(mlines), frozenset(ufrags))


def restart_refusal(previous: str, offer: str) -> str | None:
    """Why ``offer`` is not a pure ICE restart of the publisher's ``previous`` offer (a Vietnamese
    message for the tab); None when it is one."""
    before, after = parse_offer(previous), parse_offer(offer)
    if not after.mlines or before.mlines != after.mlines:
        return (
            "Khởi động lại ICE không được thêm, bớt hay đổi các luồng đang phát; "
            "muốn đổi luồng, hãy phát lại (media.publish)."
        )
    if not after.ufrags or not before.ufrags.isdisjoint(after.ufrags):
        return "Khởi động lại ICE cần thông tin ICE mới (offer tạo với iceRestart)."
    return None


def audio_mids(streams: Iterable[Mapping[str, Any]]) -> list[str]:
    """The audio mids of a publisher as Janus reports them (``streams`` of ``configured``)."""
    return [str(s["mid"]) for s in streams if s.get("type") == "audio" and not s.get("disabled")]


def video_mids(streams: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(s["mid"]) for s in streams if s.get("type") == "video" and not s.get("disabled")]


def moderation_changes(
    audio: Sequence[str], applied: Mapping[str, bool], mute: bool
) -> list[tuple[str, bool]]:
    """The ``moderate`` requests that bring every audio mid of a feed to the floor (``mute``: the
    site is not audible). ``applied`` is what Janus is known to have (mid → muted); a mid missing
    from it (new, or a request that failed) is unknown and always sent."""
    return [(mid, mute) for mid in audio if applied.get(mid) is not mute]
