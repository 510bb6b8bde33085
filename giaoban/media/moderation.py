"""Server-side mutes that survive republishing.

Janus's VideoRoom ``moderate`` blocks a publisher stream, but the block lives in the publisher's stream
objects: when the site's PeerConnection goes away (network drop, page reload, republish) and it
publishes again, it comes back **unmuted** (tests/media/test_bots.py proves it). A
:class:`ModerationKeeper` holds the set of muted feeds for one room and re-applies ``moderate`` as soon as
Janus announces the feed's new streams (the room's ``publishers`` event).

It listens on its own handle joined to the room as a publisher that never publishes: such a participant
receives every ``publishers`` / ``unpublished`` / ``leaving`` announcement of the room (a subscriber
handle does not). The live layer (``giaoban.live``) owns the policy (who may speak) and calls :meth:`mute` /
:meth:`unmute`; the keeper only makes it stick.

Between Janus announcing the new streams and the re-applied ``moderate`` taking effect, the site's audio
is forwarded: one event + one request round trip (a few ms on one machine; see :attr:`last_gap_ms`).
A subscriber only receives the new streams after it subscribes again, which takes longer, so in practice
nothing leaks to subscribers; the gap is reported anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from giaoban.media.client import JanusClientError, JanusHandle, JanusSession, JsonDict
from giaoban.media.videoroom import ERR_NO_SUCH_FEED, PLUGIN

log = logging.getLogger(__name__)


class ModerationKeeper:
    """Keeps ``moderate`` mutes of one room in force across republishes (see the module docstring)."""

    def __init__(self, handle: JanusHandle, room: int, secret: str | None) -> None:
        self.handle = handle
        self.room = room
        self.secret = secret
        self.muted: dict[int, set[str]] = {}  # feed -> kinds ("audio", "video") kept muted
        self.streams: dict[int, list[JsonDict]] = {}  # feed -> streams of its latest announcement
        self.reapplied = 0  # moderate requests sent because a muted feed (re)appeared
        self.errors = 0
        self.last_gap_ms: float | None = None  # announcement seen -> moderate acknowledged
        self.id: int | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    async def start(
        cls,
        session: JanusSession,
        room: int,
        secret: str | None,
        *,
        display: str = "giaoban-moderation",
        opaque_id: str = "giaoban-moderation",
        timeout: float | None = None,
    ) -> ModerationKeeper:
        """Attach a handle, join ``room`` as a listening publisher, and start keeping mutes."""
        handle = await session.attach(PLUGIN, opaque_id)
        keeper = cls(handle, room, secret)
        handle.add_callback(keeper._on_event)
        body: JsonDict = {"request": "join", "ptype": "publisher", "room": room, "display": display}
        joined = (await handle.message(body, timeout=timeout)).data
        keeper.id = int(joined["id"])
        keeper._learn(joined.get("publishers") or [], time.monotonic())
        return keeper

    # -- policy ---------------------------------------------------------------------------------------

    async def mute(self, feed: int, kinds: Iterable[str] = ("audio",)) -> None:
        """Keep ``kinds`` of ``feed`` blocked, now (if it publishes) and after every republish."""
        wanted = set(kinds)
        self.muted.setdefault(feed, set()).update(wanted)
        await self._apply(feed, wanted, mute=True, started=None)

    async def unmute(self, feed: int, kinds: Iterable[str] = ("audio",)) -> None:
        """Stop keeping ``kinds`` of ``feed`` blocked and unblock them now."""
        gone = set(kinds)
        left = self.muted.get(feed, set()) - gone
        if left:
            self.muted[feed] = left
        else:
            self.muted.pop(feed, None)
        await self._apply(feed, gone, mute=False, started=None)

    def is_muted(self, feed: int, kind: str = "audio") -> bool:
        return kind in self.muted.get(feed, set())

    # -- events ---------------------------------------------------------------------------------------

    def _on_event(self, msg: JsonDict) -> None:
        # Runs inside the client's reader: never await a request here (its answer is read by the reader).
        data = (msg.get("plugindata") or {}).get("data") or {}
        if data.get("videoroom") != "event" or data.get("room") not in (None, self.room):
            return
        now = time.monotonic()
        if isinstance(data.get("publishers"), list):
            self._learn(data["publishers"], now)
        for key in ("unpublished", "leaving"):
            feed = data.get(key)
            if isinstance(feed, int):
                self.streams.pop(feed, None)

    def _learn(self, publishers: list[JsonDict], seen_at: float) -> None:
        for pub in publishers:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                feed = int(pub["id"])
                self.streams[feed] = list(pub.get("streams") or [])
                kinds = self.muted.get(feed)
                if kinds:
                    self._spawn(self._apply(feed, set(kinds), mute=True, started=seen_at, again=True))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(
        self, feed: int, kinds: set[str], *, mute: bool, started: float | None, again: bool = False
    ) -> None:
        async with self._lock:
            for stream in self.streams.get(feed, []):
                if stream.get("type") not in kinds or stream.get("disabled") or stream.get("mid") is None:
                    continue
                body: JsonDict = {
                    "request": "moderate",
                    "room": self.room,
                    "id": feed,
                    "mid": str(stream["mid"]),
                    "mute": mute,
                }
                if self.secret is not None:
                    body["secret"] = self.secret
                try:
                    await self.handle.message(body)
                except JanusClientError as exc:
                    if getattr(exc, "code", None) == ERR_NO_SUCH_FEED:
                        continue  # gone again: the next announcement will bring it back
                    self.errors += 1
                    log.warning("moderate %s/%s failed: %s", feed, stream.get("mid"), exc)
                    continue
                if again:
                    self.reapplied += 1
                if started is not None:
                    self.last_gap_ms = (time.monotonic() - started) * 1000

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every pending re-application has been sent (for tests and orderly shutdown)."""
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*list(self._tasks), return_exceptions=True), timeout)

    async def close(self) -> None:
        """Stop keeping mutes (the mutes already applied stay until the publishers republish)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(JanusClientError):
            await self.handle.detach()
