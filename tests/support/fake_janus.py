"""A fake media service for unit tests of the stage and the hub: one node, its rooms, sessions and
handles, and what ``moderate`` has done to each publisher stream — the assertions are on that state.

``kill()`` is a Janus SIGKILL as the real service sees it: the node goes down, every session and room
is gone; ``restore()`` is the supervisor's restart plus the service rebuilding its control session.
``events(...)`` delivers ``MediaEvent``s to the listeners (the stage's ``watch_media``) in the order
given, which the real service never varies — the tests do.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from giaoban.media.client import (
    JanusConnectionError,
    JanusPluginError,
    JanusSessionLostError,
    PluginResponse,
)
from giaoban.media.service import MediaEvent
from giaoban.media.videoroom import RoomOptions

_ids = itertools.count(1000)


class FakeHandle:
    def __init__(self, session: FakeSession, janus: FakeJanus) -> None:
        self.id = next(_ids)
        self.session = session
        self.janus = janus
        self.callbacks: list[Any] = []
        self.feed: int | None = None

    def add_callback(self, cb: Any) -> None:
        self.callbacks.append(cb)

    async def message(
        self, body: dict[str, Any], jsep: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> PluginResponse:
        self.janus.check(self.session)
        request = body["request"]
        if request == "join":
            if body["room"] not in self.janus.rooms:
                raise JanusPluginError(426, "No such room")
            self.feed = int(body["id"])
            return PluginResponse({"videoroom": "joined", "id": self.feed, "private_id": 1}, None, {})
        if request in ("publish", "configure") and jsep is not None:
            assert self.feed is not None
            streams = self.janus.streams_of(jsep["sdp"])
            self.janus.feeds[self.feed] = streams
            # A new PeerConnection forgets moderation; a renegotiation keeps what its mids had.
            if request == "publish":
                self.janus.muted.pop(self.feed, None)
            data = {"videoroom": "event", "configured": "ok", "streams": streams}
            return PluginResponse(data, {"type": "answer", "sdp": "v=0\r\n"}, {})
        if request in ("leave", "unpublish"):
            return PluginResponse({}, None, {})
        raise AssertionError(f"the fake does not do {request}")

    async def detach(self) -> None:
        pass


class FakeSession:
    def __init__(self, janus: FakeJanus) -> None:
        self.id = next(_ids)
        self.janus = janus
        self.lost = False

    async def attach(self, plugin: str, opaque_id: str | None = None) -> FakeHandle:
        self.janus.check(self)
        return FakeHandle(self, self.janus)

    async def destroy(self) -> None:
        self.lost = True


class FakeControl:
    def __init__(self, janus: FakeJanus) -> None:
        self.janus = janus

    async def exists(self, room: int) -> bool:
        self.janus.check(self.janus.control_session)
        return room in self.janus.rooms

    async def moderate(self, room: int, secret: str | None, feed: int, mid: str, mute: bool) -> None:
        self.janus.check(self.janus.control_session)
        if mid not in {s["mid"] for s in self.janus.feeds.get(feed, [])}:
            raise JanusPluginError(428, f"No such mid {mid}")
        self.janus.muted.setdefault(feed, {})[mid] = mute


class FakeClient:
    def __init__(self, janus: FakeJanus) -> None:
        self.janus = janus

    async def create_session(self) -> FakeSession:
        if not self.janus.up:
            raise JanusConnectionError("not connected")
        if self.janus.fail_sessions:
            self.janus.fail_sessions -= 1
            raise JanusConnectionError("connection closed")
        self.janus.sessions_made += 1
        return FakeSession(self.janus)


class FakeJanus:
    """The media service (``MediaService``'s methods the stage uses) and the node behind it."""

    def __init__(self) -> None:
        self.up = True
        self.listeners: list[Any] = []
        self.rooms: set[int] = set()
        self.feeds: dict[int, list[dict[str, Any]]] = {}  # feed -> streams Janus has
        self.muted: dict[int, dict[str, bool]] = {}  # feed -> mid -> moderated
        self.control_session = FakeSession(self)
        self.ctl = FakeControl(self)
        self.cl = FakeClient(self)
        self.rooms_created = 0
        self.sessions_made = 0
        self.fail_sessions = 0  # create_session fails this many more times

    # -- the node ------------------------------------------------------------------------

    def check(self, session: FakeSession) -> None:
        if not self.up:
            raise JanusConnectionError("not connected to ws://10.0.0.1:8188")
        if session.lost:
            raise JanusSessionLostError(f"session {session.id} is lost: claim refused")

    @staticmethod
    def streams_of(sdp: str) -> list[dict[str, Any]]:
        streams: list[dict[str, Any]] = []
        kind: str | None = None
        for line in sdp.splitlines():
            if line.startswith("m="):
                kind = line[2:].split()[0]
            elif line.startswith("a=mid:") and kind is not None:
                streams.append({"type": kind, "mid": line[6:], "mindex": len(streams)})
        return streams

    def kill(self, *sessions: Any) -> None:
        """Janus dies: every session (the control one too) and every room and feed are gone."""
        self.up = False
        self.control_session.lost = True
        for session in sessions:
            session.lost = True
        self.rooms.clear()
        self.feeds.clear()
        self.muted.clear()

    def restore(self) -> None:
        """Janus answers again and the service has rebuilt its control session."""
        self.up = True
        self.control_session = FakeSession(self)

    def emit(self, kind: str, **fields: Any) -> None:
        for listener in list(self.listeners):
            listener(MediaEvent(kind, "local", **fields))  # type: ignore[arg-type]

    # -- MediaService ----------------------------------------------------------------------

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def ready(self, node: str) -> bool:
        return self.up and not self.control_session.lost

    async def wait_ready(self, node: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready(node):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    def control(self, node: str) -> FakeControl:
        return self.ctl

    def client(self, node: str) -> FakeClient:
        return self.cl

    async def create_room(
        self, options: RoomOptions, *, room: int | None = None, node: str | None = None
    ) -> tuple[str, int]:
        self.check(self.control_session)
        assert room is not None
        if room in self.rooms:
            raise JanusPluginError(427, "Room exists")
        self.rooms.add(room)
        self.rooms_created += 1
        return "local", room

    def track_room(self, node: str, room: int, secret: str | None) -> None:
        pass

    async def destroy_room(self, node: str, room: int) -> None:
        self.rooms.discard(room)


def offer(*mlines: tuple[str, str], ufrag: str = "u1") -> str:
    """A minimal offer: ``("audio", "0"), ("video", "1")`` …"""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    for kind, mid in mlines:
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF 96", f"a=ice-ufrag:{ufrag}", "a=ice-pwd:p", f"a=mid:{mid}"]
    return "\r\n".join(lines) + "\r\n"
