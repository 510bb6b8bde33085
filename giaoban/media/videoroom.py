"""VideoRoom (multistream, Janus 1.1) helpers on top of :mod:`giaoban.media.client`.

* :class:`VideoRoom` – room management on any VideoRoom handle (create/edit/destroy/exists/list,
  moderate, kick, listparticipants, rtp_forward, recording). It remembers the rooms it created so that
  :meth:`VideoRoom.missing_rooms` can tell which ones a restarted Janus has lost.
* :class:`VideoRoomPublisher` – a site's publishing handle: join, publish/configure with JSEP, unpublish.
* :class:`VideoRoomSubscriber` – one multistream subscription: join/start/update/switch/unsubscribe and
  simulcast layer selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from giaoban.media.client import JanusHandle, JanusSession, JsonDict, PluginResponse

PLUGIN = "janus.plugin.videoroom"

# VideoRoom error codes (janus_videoroom.c).
ERR_NO_SUCH_ROOM = 426
ERR_ROOM_EXISTS = 427
ERR_NO_SUCH_FEED = 428
ERR_PUBLISHERS_FULL = 432
ERR_UNAUTHORIZED = 433


@dataclass(slots=True)
class RoomOptions:
    """Options of ``create``; ``extra`` passes any other VideoRoom field through unchanged."""

    description: str | None = None
    secret: str | None = None
    pin: str | None = None
    is_private: bool = False
    publishers: int = 150
    bitrate: int | None = None
    bitrate_cap: bool = False
    fir_freq: int | None = None
    audiocodec: str | None = None
    videocodec: str | None = None
    opus_fec: bool | None = None
    audiolevel_ext: bool = True
    audiolevel_event: bool = False
    audio_active_packets: int | None = None
    audio_level_average: int | None = None
    notify_joining: bool = False
    require_pvtid: bool = False
    signed_tokens: bool = False
    record: bool = False
    rec_dir: str | None = None
    lock_record: bool = False
    permanent: bool = False
    extra: JsonDict = field(default_factory=dict)

    def to_request(self) -> JsonDict:
        """The ``create`` body fields (without ``request``/``room``)."""
        body: JsonDict = {
            "is_private": self.is_private,
            "publishers": self.publishers,
            "bitrate_cap": self.bitrate_cap,
            "audiolevel_ext": self.audiolevel_ext,
            "audiolevel_event": self.audiolevel_event,
            "notify_joining": self.notify_joining,
            "require_pvtid": self.require_pvtid,
            "signed_tokens": self.signed_tokens,
            "record": self.record,
            "lock_record": self.lock_record,
            "permanent": self.permanent,
        }
        optional = {
            "description": self.description,
            "secret": self.secret,
            "pin": self.pin,
            "bitrate": self.bitrate,
            "fir_freq": self.fir_freq,
            "audiocodec": self.audiocodec,
            "videocodec": self.videocodec,
            "opus_fec": self.opus_fec,
            "audio_active_packets": self.audio_active_packets,
            "audio_level_average": self.audio_level_average,
            "rec_dir": self.rec_dir,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        body.update(self.extra)
        return body


def _with_secret(body: JsonDict, secret: str | None) -> JsonDict:
    if secret is not None:
        body["secret"] = secret
    return body


class VideoRoom:
    """Room management through one VideoRoom handle (synchronous plugin requests)."""

    def __init__(self, handle: JanusHandle) -> None:
        self.handle = handle
        self.created: dict[int, str | None] = {}

    @classmethod
    async def attach(cls, session: JanusSession, opaque_id: str | None = "giaoban-control") -> VideoRoom:
        """Attach a control handle to the VideoRoom plugin on ``session``."""
        return cls(await session.attach(PLUGIN, opaque_id))

    async def _sync(self, body: JsonDict) -> JsonDict:
        return (await self.handle.message(body)).data

    async def create(self, room: int | None = None, options: RoomOptions | None = None) -> int:
        """Create a room (Janus picks the id when ``room`` is None); return its id."""
        opts = options or RoomOptions()
        body: JsonDict = {"request": "create", **opts.to_request()}
        if room is not None:
            body["room"] = room
        data = await self._sync(body)
        room_id = int(data["room"])
        self.created[room_id] = opts.secret
        return room_id

    async def edit(self, room: int, secret: str | None = None, **new_fields: Any) -> JsonDict:
        """Edit a room: ``edit(room, secret, description="x", publishers=200)`` sends ``new_*`` fields."""
        body: JsonDict = {"request": "edit", "room": room}
        for key, value in new_fields.items():
            body[key if key.startswith("new_") or key == "permanent" else f"new_{key}"] = value
        data = await self._sync(_with_secret(body, secret))
        if room in self.created and "new_secret" in body:
            self.created[room] = body["new_secret"]
        return data

    async def destroy(self, room: int, secret: str | None = None, *, permanent: bool = False) -> None:
        """Destroy a room (kicks everyone in it)."""
        await self._sync(_with_secret({"request": "destroy", "room": room, "permanent": permanent}, secret))
        self.created.pop(room, None)

    async def exists(self, room: int) -> bool:
        """Whether the room exists."""
        return bool((await self._sync({"request": "exists", "room": room})).get("exists"))

    async def list_rooms(self, admin_key: str | None = None) -> list[JsonDict]:
        """Public rooms (and private ones when an admin_key is configured and given)."""
        body: JsonDict = {"request": "list"}
        if admin_key:
            body["admin_key"] = admin_key
        listed: list[JsonDict] = (await self._sync(body)).get("list", [])
        return listed

    async def list_participants(self, room: int) -> list[JsonDict]:
        """Participants with their ``talking`` flags and streams."""
        participants: list[JsonDict] = (await self._sync({"request": "listparticipants", "room": room})).get(
            "participants", []
        )
        return participants

    async def moderate(self, room: int, secret: str | None, publisher_id: int, mid: str, mute: bool) -> None:
        """Block (``mute=True``) or unblock one publisher stream server-side, whatever the sender does.

        Janus forgets it when the publisher's PeerConnection goes away: re-apply after a republish.
        """
        body = {"request": "moderate", "room": room, "id": publisher_id, "mid": mid, "mute": mute}
        await self._sync(_with_secret(body, secret))

    async def kick(self, room: int, secret: str | None, publisher_id: int) -> None:
        """Remove a participant from the room."""
        await self._sync(_with_secret({"request": "kick", "room": room, "id": publisher_id}, secret))

    async def rtp_forward(
        self,
        room: int,
        secret: str | None,
        publisher_id: int,
        host: str,
        streams: list[JsonDict],
        *,
        host_family: str | None = None,
    ) -> list[JsonDict]:
        """Forward a publisher's streams as plain RTP (``streams``: ``[{"mid": "0", "port": 5002}, …]``).

        Returns the forwarders (each with its ``stream_id`` for :meth:`stop_rtp_forward`).
        """
        body: JsonDict = {
            "request": "rtp_forward",
            "room": room,
            "publisher_id": publisher_id,
            "host": host,
            "streams": streams,
        }
        if host_family:
            body["host_family"] = host_family
        forwarders: list[JsonDict] = (await self._sync(_with_secret(body, secret))).get("forwarders", [])
        return forwarders

    async def stop_rtp_forward(
        self, room: int, secret: str | None, publisher_id: int, stream_id: int
    ) -> None:
        """Stop one forwarder."""
        body = {
            "request": "stop_rtp_forward",
            "room": room,
            "publisher_id": publisher_id,
            "stream_id": stream_id,
        }
        await self._sync(_with_secret(body, secret))

    async def list_forwarders(self, room: int, secret: str | None) -> list[JsonDict]:
        """Active RTP forwarders of a room, per publisher."""
        data = await self._sync(_with_secret({"request": "listforwarders", "room": room}, secret))
        publishers: list[JsonDict] = data.get("publishers", [])
        return publishers

    async def enable_recording(self, room: int, secret: str | None, record: bool) -> None:
        """Start/stop recording every publisher of the room into .mjr files."""
        await self._sync(
            _with_secret({"request": "enable_recording", "room": room, "record": record}, secret)
        )

    async def missing_rooms(self) -> list[int]:
        """Rooms this helper created that no longer exist (e.g. Janus restarted); they are forgotten."""
        missing = [room for room in list(self.created) if not await self.exists(room)]
        for room in missing:
            self.created.pop(room, None)
        return missing


class VideoRoomPublisher:
    """A publishing participant (one handle per site)."""

    def __init__(self, handle: JanusHandle) -> None:
        self.handle = handle
        self.room: int | None = None
        self.id: int | None = None
        self.private_id: int | None = None

    @classmethod
    async def attach(cls, session: JanusSession, opaque_id: str | None = None) -> VideoRoomPublisher:
        """Attach a new handle for a publisher; ``opaque_id`` should name the site."""
        return cls(await session.attach(PLUGIN, opaque_id))

    async def join(
        self,
        room: int,
        *,
        id: int | None = None,
        display: str | None = None,
        pin: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> JsonDict:
        """Join as publisher; returns the ``joined`` event (``id``, ``private_id``, ``publishers``)."""
        body: JsonDict = {"request": "join", "ptype": "publisher", "room": room}
        optional = {"id": id, "display": display, "pin": pin, "token": token}
        body.update({k: v for k, v in optional.items() if v is not None})
        data = (await self.handle.message(body, timeout=timeout)).data
        self.room = room
        self.id = int(data["id"])
        self.private_id = int(data["private_id"]) if data.get("private_id") is not None else None
        return data

    async def publish(
        self,
        offer: JsonDict,
        *,
        descriptions: list[JsonDict] | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> PluginResponse:
        """Publish with an SDP offer; the response's ``jsep`` is Janus's answer."""
        body: JsonDict = {"request": "publish", **fields}
        if descriptions is not None:
            body["descriptions"] = descriptions
        return await self.handle.message(body, jsep=offer, timeout=timeout)

    async def configure(
        self, *, streams: list[JsonDict] | None = None, jsep: JsonDict | None = None, **fields: Any
    ) -> PluginResponse:
        """Change publishing (``streams: [{mid, send, keyframe}]``, bitrate…), optionally renegotiating."""
        body: JsonDict = {"request": "configure", **fields}
        if streams is not None:
            body["streams"] = streams
        return await self.handle.message(body, jsep=jsep)

    async def unpublish(self) -> None:
        """Stop publishing but stay in the room."""
        await self.handle.message({"request": "unpublish"})

    async def leave(self) -> None:
        """Leave the room."""
        await self.handle.message({"request": "leave"})


class VideoRoomSubscriber:
    """One multistream subscription (the site's view): slots are ``mid``s fed by publisher streams."""

    def __init__(self, handle: JanusHandle) -> None:
        self.handle = handle
        self.room: int | None = None

    @classmethod
    async def attach(cls, session: JanusSession, opaque_id: str | None = None) -> VideoRoomSubscriber:
        """Attach a new handle for a subscriber."""
        return cls(await session.attach(PLUGIN, opaque_id))

    async def join(
        self,
        room: int,
        streams: list[JsonDict],
        *,
        private_id: int | None = None,
        use_msid: bool = False,
        pin: str | None = None,
        timeout: float | None = None,
    ) -> PluginResponse:
        """Subscribe to ``streams`` (``[{"feed": id, "mid": "0"?}, …]``); the response carries the offer."""
        body: JsonDict = {"request": "join", "ptype": "subscriber", "room": room, "streams": streams}
        if private_id is not None:
            body["private_id"] = private_id
        if use_msid:
            body["use_msid"] = True
        if pin is not None:
            body["pin"] = pin
        response = await self.handle.message(body, timeout=timeout)
        self.room = room
        return response

    async def start(self, answer: JsonDict) -> PluginResponse:
        """Complete the negotiation with our SDP answer."""
        return await self.handle.message({"request": "start"}, jsep=answer)

    async def subscribe(self, streams: list[JsonDict]) -> PluginResponse:
        """Add streams (renegotiates: answer the new offer with :meth:`start`)."""
        return await self.handle.message({"request": "subscribe", "streams": streams})

    async def unsubscribe(self, streams: list[JsonDict]) -> PluginResponse:
        """Remove streams (``[{"feed": id}]``, ``[{"feed": id, "mid": m}]`` or ``[{"sub_mid": m}]``)."""
        return await self.handle.message({"request": "unsubscribe", "streams": streams})

    async def update(
        self, *, subscribe: list[JsonDict] | None = None, unsubscribe: list[JsonDict] | None = None
    ) -> PluginResponse:
        """Add and remove streams in one renegotiation."""
        body: JsonDict = {"request": "update"}
        if subscribe:
            body["subscribe"] = subscribe
        if unsubscribe:
            body["unsubscribe"] = unsubscribe
        return await self.handle.message(body)

    async def switch(self, streams: list[JsonDict]) -> PluginResponse:
        """Change the source of existing slots without renegotiation: ``[{feed, mid, sub_mid}]``."""
        return await self.handle.message({"request": "switch", "streams": streams})

    async def configure(self, streams: list[JsonDict], **fields: Any) -> PluginResponse:
        """Per-slot settings: ``[{"mid": m, "send": bool, "substream": 0-2, "temporal": 0-2}]``."""
        return await self.handle.message({"request": "configure", "streams": streams, **fields})

    async def set_layer(self, mid: str, substream: int, temporal: int | None = None) -> PluginResponse:
        """Pick the simulcast layer (and optionally temporal layer) of one video slot."""
        stream: JsonDict = {"mid": mid, "substream": substream}
        if temporal is not None:
            stream["temporal"] = temporal
        return await self.configure([stream])

    async def pause(self) -> None:
        """Pause all forwarding to this subscriber."""
        await self.handle.message({"request": "pause"})

    async def leave(self) -> None:
        """End the subscription."""
        await self.handle.message({"request": "leave"})
