"""Messages of the browser ⇄ server protocol (docs/protocol.md), validated with Pydantic.

Parsing never raises anything but ``ProtocolError``: a malformed message gets an ``error`` reply
with a stable code and changes nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from giaoban.types import Line, Text

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024  # an SDP offer with simulcast is ~6 KB


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, msg_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.msg_id = msg_id


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=1, le=2**53)


class Jsep(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["offer", "answer"]
    sdp: str = Field(min_length=10, max_length=60_000)

    @field_validator("sdp")
    @classmethod
    def _looks_like_sdp(cls, sdp: str) -> str:
        """Refuse what cannot be a session description before anything reaches Janus (and before
        a republish lets the site's current publisher go)."""
        if not sdp.startswith("v=0") or "\nm=" not in sdp:
            raise ValueError("not an SDP session description")
        return sdp


class Hello(_Msg):
    type: Literal["hello"]
    protocol: int
    as_: Literal["site", "console"] = Field(alias="as")
    site_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    resume_from: int | None = Field(default=None, ge=0)


class FloorRequest(_Msg):
    type: Literal["floor.request"]
    kind: Literal["normal", "point_of_order"] = "normal"


class FloorCancel(_Msg):
    type: Literal["floor.cancel"]


class FloorGrant(_Msg):
    type: Literal["floor.grant"]
    site_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    seconds: int | None = Field(default=None, ge=10, le=3600)


class FloorRevoke(_Msg):
    type: Literal["floor.revoke"]
    site_id: int = Field(ge=1, le=2**31 - 1)


class FloorDecline(_Msg):
    """The chair declines a site's request for the floor ("từ chối"); the site is told."""

    type: Literal["floor.decline"]
    site_id: int = Field(ge=1, le=2**31 - 1)


class FloorExtend(_Msg):
    type: Literal["floor.extend"]
    site_id: int = Field(ge=1, le=2**31 - 1)
    seconds: int = Field(ge=10, le=3600)


class FloorConfig(_Msg):
    type: Literal["floor.config"]
    max_holders: int = Field(ge=1, le=4)


class CheckIn(_Msg):
    type: Literal["checkin"]
    delegates: int = Field(ge=0, le=10_000)
    # One line each under the text policy (giaoban.text), the size of RosterEntry.full_name.
    names: list[Annotated[str, Line(200, required=False)]] = Field(default_factory=list, max_length=500)

    @field_validator("names")
    @classmethod
    def _no_blank(cls, names: list[str]) -> list[str]:
        """Blank names (nothing visible once cleaned) are dropped."""
        return [n for n in names if n]


class ChatSend(_Msg):
    type: Literal["chat.send"]
    text: Annotated[str, Text(2000, required=True)]  # a paragraph: line breaks kept
    to: Literal["all", "control"] | int = "all"


class MediaPublish(_Msg):
    type: Literal["media.publish"]
    jsep: Jsep


class MediaSubscribe(_Msg):
    type: Literal["media.subscribe"]
    # False: a pre-warmed view (the room page before "Vào phòng họp"): the connection is set up but
    # Janus sends nothing on it until ``media.view`` {on: true}.
    active: bool = True


class MediaView(_Msg):
    """Turn the tab's view on (Janus sends the host and the speakers) or off (nothing is sent)."""

    type: Literal["media.view"]
    on: bool


class MediaStart(_Msg):
    type: Literal["media.start"]
    jsep: Jsep
    target: Literal["view", "wall"] = "view"


class Candidate(BaseModel):
    """One ICE candidate as the browser gives it (RTCIceCandidate.toJSON()), or the end marker."""

    model_config = ConfigDict(extra="ignore")
    candidate: str | None = Field(default=None, max_length=1000)
    sdpMid: str | None = Field(default=None, max_length=64)  # the browser's names
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=1000)
    completed: bool | None = None


class MediaTrickle(_Msg):
    type: Literal["media.trickle"]
    target: Literal["publisher", "subscriber", "wall"]
    candidate: Candidate | None


class MediaWall(_Msg):
    """The console's wall of sites: video only, low simulcast layer, ``WALL_PAGE`` sites a page."""

    type: Literal["media.wall"]
    page: int = Field(ge=1, le=1000)
    renew: bool = False  # a new subscription (the tab lost its PeerConnection), not a page turn


class MediaRestart(_Msg):
    """ICE restart of one of the tab's PeerConnections (docs/protocol.md, "Recovery")."""

    type: Literal["media.restart"]
    target: Literal["publisher", "view", "wall"]
    jsep: Jsep | None = None  # publisher: the offer made with iceRestart


class MediaUnpublish(_Msg):
    type: Literal["media.unpublish"]


class Ping(_Msg):
    type: Literal["ping"]


ClientMessage = Annotated[
    Hello
    | FloorRequest
    | FloorCancel
    | FloorGrant
    | FloorRevoke
    | FloorDecline
    | FloorExtend
    | FloorConfig
    | CheckIn
    | ChatSend
    | MediaPublish
    | MediaSubscribe
    | MediaView
    | MediaStart
    | MediaTrickle
    | MediaWall
    | MediaUnpublish
    | MediaRestart
    | Ping,
    Field(discriminator="type"),
]
_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)
KNOWN_TYPES = frozenset(
    t.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for t in (
        Hello,
        FloorRequest,
        FloorCancel,
        FloorGrant,
        FloorRevoke,
        FloorDecline,
        FloorExtend,
        FloorConfig,
        CheckIn,
        ChatSend,
        MediaPublish,
        MediaSubscribe,
        MediaView,
        MediaStart,
        MediaTrickle,
        MediaWall,
        MediaUnpublish,
        MediaRestart,
        Ping,
    )
)


def parse(raw: str | bytes) -> Any:
    """One client message, or ``ProtocolError`` saying precisely what is wrong with it."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", "Thông điệp quá lớn.")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", "Thông điệp không phải JSON hợp lệ.") from exc
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", "Thông điệp phải là một đối tượng JSON.")
    msg_id = data.get("id") if isinstance(data.get("id"), int) else None
    if data.get("type") not in KNOWN_TYPES:
        raise ProtocolError(
            "unknown_type", f"Loại thông điệp không được hỗ trợ: {data.get('type')!r}.", msg_id
        )
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        why = str(first["msg"]).removeprefix("Value error, ")
        raise ProtocolError("invalid", f"Trường '{where}' không hợp lệ: {why}", msg_id) from exc


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)
