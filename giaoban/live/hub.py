"""The live-meeting hub: one ``Room`` per live meeting, the tabs connected to it, their messages.

Every tab message is validated (``protocol.parse``), authorized (role, site, meeting), turned into
a ``Record`` and applied under the room's lock: applied to the in-memory state, appended to
``meeting_records``, pushed to every tab as one serialized delta, and enforced on the media plane.
A refused message gets an ``error`` and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol

import anyio
from sqlalchemy import func, select

from giaoban.context import AppContext
from giaoban.live import protocol as p
from giaoban.live.events import MediaFailure, StageEvent
from giaoban.live.state import Applied, LiveError, LiveMeeting, Record
from giaoban.meetings.access import MeetingAccess, meeting_access
from giaoban.meetings.lifecycle import MeetingStatus
from giaoban.meetings.models import Invitation, Meeting, MeetingRecord
from giaoban.org.access import Principal
from giaoban.org.models import Site, Unit

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
# Recovery of a room's media after Janus lost it (``Hub._recover``): each attempt waits this long at
# most for the media service to be back, then tries; the n-th failure waits the n-th delay.
RECOVERY_WAIT = 5.0  # s
RECOVERY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # s, the last one repeats


class Connection(Protocol):
    async def send_text(self, data: str) -> None: ...
    async def close(self, code: int, reason: str) -> None: ...


class Stage(Protocol):
    """The media side of a room (giaoban.live.stage.JanusStage), as the hub uses it."""

    def bind(
        self, listener: Callable[[StageEvent], None], send: Callable[[str, dict[str, Any]], Awaitable[None]]
    ) -> None: ...
    async def publish(self, peer_key: str, site_id: int, jsep: dict[str, Any]) -> dict[str, Any]: ...
    async def unpublish(self, site_id: int) -> bool: ...
    def has_publisher(self, site_id: int) -> bool: ...
    async def publisher_up(self, site_id: int, handle_id: int | None) -> bool: ...
    async def publisher_down(self, site_id: int, handle_id: int | None) -> bool: ...
    async def subscribe(
        self, peer_key: str, site_id: int | None, *, active: bool = True
    ) -> dict[str, Any]: ...
    async def view_on(self, peer_key: str, on: bool) -> None: ...
    async def wall(self, peer_key: str, page: int, *, renew: bool = False) -> dict[str, Any]: ...
    async def start(self, peer_key: str, jsep: dict[str, Any], target: str = "view") -> None: ...
    def current(self, peer_key: str, target: str, handle_id: int | None) -> bool: ...
    async def trickle(
        self, peer_key: str, site_id: int | None, target: str, candidate: dict[str, Any] | None
    ) -> None: ...
    async def enforce(self, audible: frozenset[int], holders: list[int]) -> None: ...
    async def peer_gone(self, peer_key: str, site_id: int | None, last_tab: bool) -> bool: ...
    async def wait_media(self, timeout: float) -> bool: ...
    async def recover(self) -> bool: ...
    async def restart(
        self, peer_key: str, site_id: int | None, target: str, jsep: dict[str, Any] | None
    ) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class CloseConnection(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(eq=False)
class Peer:
    conn: Connection
    principal: Principal
    key: str  # unique per tab, names its media handles
    role: str = ""  # "site" | "console"
    site_id: int | None = None
    access: MeetingAccess | None = None
    last_id: int = 0


@dataclass
class Room:
    meeting_id: int
    live: LiveMeeting
    peers: set[Peer] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.TimerHandle | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stage: Stage | None = None
    seq: int = 0
    closed: bool = False  # the meeting ended: no more changes, tabs are sent away
    recovery: asyncio.Task[None] | None = None  # the one media recovery running (``Hub._recover``)
    recovery_again: bool = False  # another loss was reported while it ran: it checks once more

    def site_tabs(self, site_id: int) -> int:
        return sum(1 for peer in self.peers if peer.role == "site" and peer.site_id == site_id)


class Hub:
    def __init__(
        self,
        ctx: AppContext,
        stage_factory: Callable[[int, LiveMeeting], Any] | None = None,
        clock: Any = time.time,
    ) -> None:
        self.ctx = ctx
        self.stage_factory = stage_factory
        self.clock = clock
        self.rooms: dict[int, Room] = {}
        self._loading = asyncio.Lock()
        # ICE servers for a tab's welcome: (site_id or None, user_id) -> fields (giaoban.media.turn).
        self.ice_config: Callable[[int | None, int], dict[str, Any]] | None = None

    # -- rooms -----------------------------------------------------------------------------

    def _load(self, meeting_id: int) -> tuple[LiveMeeting, list[Record], int]:
        with self.ctx.db.session() as session:
            meeting = session.get(Meeting, meeting_id)
            if meeting is None:
                raise CloseConnection(4404, "no such meeting")
            rows = session.execute(
                select(Site.id, Site.name, Unit.name, Site.code)
                .join(Invitation, Invitation.site_id == Site.id)
                .join(Unit, Unit.id == Site.unit_id)
                .where(Invitation.meeting_id == meeting_id)
            ).all()
            live = LiveMeeting(
                meeting.id,
                meeting.title,
                meeting.status,
                meeting.host_site_id,
                meeting.starts_at.replace(tzinfo=UTC).timestamp(),
                {sid: (name, unit) for sid, name, unit, _code in rows},
                codes={sid: code for sid, _name, _unit, code in rows},
            )
            records = [
                Record(r.kind, r.at, r.site_id, r.user, dict(r.data or {}))
                for r in session.execute(
                    select(MeetingRecord)
                    .where(MeetingRecord.meeting_id == meeting_id)
                    .order_by(MeetingRecord.seq)
                ).scalars()
            ]
            seq = session.execute(
                select(func.coalesce(func.max(MeetingRecord.seq), 0)).where(
                    MeetingRecord.meeting_id == meeting_id
                )
            ).scalar_one()
        return live, records, int(seq)

    async def room(self, meeting_id: int) -> Room:
        """The live room, rebuilt from the meeting and its persisted records on first use."""
        room = self.rooms.get(meeting_id)
        if room is not None:
            return room
        async with self._loading:
            room = self.rooms.get(meeting_id)
            if room is not None:
                return room
            live, records, seq = await anyio.to_thread.run_sync(self._load, meeting_id)
            for record in records:
                try:
                    live.apply(record)
                except LiveError:
                    log.warning("meeting %s: record %s no longer applies", meeting_id, record.kind)
            room = Room(meeting_id, live, seq=seq)
            self.rooms[meeting_id] = room
            # After a restart nobody is connected yet: whoever was, dropped (and keeps their place
            # in the queue and their floor for the grace period).
            now = self.clock()
            for site in list(live.sites.values()):
                if site.connected:
                    await self._apply(
                        room, Record("site.disconnected", now, site.site_id, data={"dropped": True})
                    )
            if self.stage_factory is not None and live.status in (MeetingStatus.open, MeetingStatus.live):
                await self._open_stage(room)
            return room

    async def _open_stage(self, room: Room) -> None:
        assert self.stage_factory is not None
        stage: Stage = await self.stage_factory(room.meeting_id, room.live)
        loop = asyncio.get_running_loop()

        def listener(event: StageEvent) -> None:
            # Called from the Janus client's reader: never await there, queue the work instead.
            def spawn() -> None:
                task = loop.create_task(self._stage_event(room, stage, event))
                room.tasks.add(task)
                task.add_done_callback(room.tasks.discard)

            loop.call_soon_threadsafe(spawn)

        async def send(peer_key: str, message: dict[str, Any]) -> None:
            await self._send_to(room, peer_key, p.dumps(message))

        stage.bind(listener, send)
        room.stage = stage

    async def status_changed(self, meeting_id: int, status: MeetingStatus) -> None:
        """The meeting moved in its lifecycle: tell every tab; the media room exists only while
        the meeting is open or live (created on open, destroyed after the end)."""
        room = await self.room(meeting_id)
        async with room.lock:
            await self._apply(room, Record("meeting.status", self.clock(), data={"status": status.value}))
            opened = status in (MeetingStatus.open, MeetingStatus.live)
            if opened and room.stage is None and self.stage_factory is not None:
                await self._open_stage(room)
        if status in (MeetingStatus.ended, MeetingStatus.cancelled):
            await self.close_room(meeting_id)

    async def close_room(self, meeting_id: int) -> None:
        """The meeting is over: close its attendance timeline, its media room and its tabs."""
        room = self.rooms.pop(meeting_id, None)
        if room is None:
            return
        async with room.lock:
            now = self.clock()
            for site in list(room.live.sites.values()):
                if site.connected:
                    try:
                        record = Record("site.disconnected", now, site.site_id, data={"dropped": False})
                        await self._apply(room, record)
                    except LiveError:
                        log.exception("closing the timeline of site %s", site.site_id)
            room.closed = True
            if room.timer:
                room.timer.cancel()
            if room.recovery is not None:
                room.recovery.cancel()
            stage, room.stage = room.stage, None
        if stage is not None:
            await stage.close()
        for peer in list(room.peers):
            with contextlib.suppress(Exception):
                await peer.conn.close(4409, "meeting closed")

    # -- applying records ------------------------------------------------------------------

    async def record(self, meeting_id: int, record: Record) -> Applied | None:
        """Apply a record that comes from outside the tabs (the quality monitor's alerts, an
        acknowledgement from the control room) to a loaded, open room; None when there is none.
        Raises LiveError (nothing changed) when the state refuses it."""
        room = self.rooms.get(meeting_id)
        if room is None or room.closed:
            return None
        async with room.lock:
            if room.closed:
                return None
            return await self._apply(room, record)

    def _persist(self, meeting_id: int, seq: int, record: Record) -> None:
        with self.ctx.db.session() as session:
            session.add(
                MeetingRecord(
                    meeting_id=meeting_id,
                    seq=seq,
                    at=record.at,
                    kind=record.kind,
                    site_id=record.site_id,
                    user=record.user,
                    data=record.data,
                )
            )

    async def _apply(self, room: Room, record: Record) -> Applied:
        """Apply, persist, push, enforce. Caller need not hold the lock; raises LiveError if refused.

        A floor change goes to the media plane at once, alongside persisting and pushing the delta
        (both wait on other things: the database, the tabs' sockets). The enforcement is awaited
        before returning, so the floor's muting is in force on Janus before the command is acked."""
        applied = room.live.apply(record)
        if applied.delta is None and applied.private is None and not applied.persist:
            return applied
        room.seq += 1
        enforcing: asyncio.Future[None] | None = None
        if applied.floor_changed:
            self._schedule_expiry(room)
            if room.stage is not None:
                floor = room.live.floor
                enforcing = asyncio.ensure_future(room.stage.enforce(floor.audible(), floor.holder_ids()))
        try:
            await anyio.to_thread.run_sync(self._persist, room.meeting_id, room.seq, record)
            if applied.delta is not None:
                await self._broadcast(room, applied.delta)
            if applied.private is not None:
                await self._send_private(room, applied.private)
        finally:
            if enforcing is not None:
                await enforcing
        return applied

    async def _broadcast(self, room: Room, text: str) -> None:
        for peer in list(room.peers):
            try:
                await peer.conn.send_text(text)
            except Exception:  # a dead tab is removed by its own receive loop
                log.debug("send to %s failed", peer.key)

    async def _send_to(self, room: Room, peer_key: str, text: str) -> None:
        for peer in list(room.peers):
            if peer.key == peer_key:
                try:
                    await peer.conn.send_text(text)
                except Exception:
                    log.debug("send to %s failed", peer.key)

    async def _stage_event(self, room: Room, stage: Stage, event: StageEvent) -> None:
        """Janus told us something about a handle: update views and the sites' publishing state."""
        if event.kind == "reset":
            self._recover_later(room, stage, event.target or "reset")
            return
        async with room.lock:
            if room.stage is not stage:
                return  # the meeting's media room has closed since
            try:
                if event.kind in ("publisher_up", "publisher_down") and event.site_id is not None:
                    up = event.kind == "publisher_up"
                    handler = stage.publisher_up if up else stage.publisher_down
                    if await handler(event.site_id, event.handle_id):
                        await self._publishing(room, event.site_id, up)
                elif (
                    event.kind == "offer"
                    and event.peer
                    and event.target
                    and event.jsep
                    and stage.current(event.peer, event.target, event.handle_id)
                ):
                    message = {"type": "media.offer", "target": event.target, "jsep": event.jsep}
                    await self._send_to(room, event.peer, p.dumps(message))
            except Exception:
                log.exception("media event %s in meeting %s", event.kind, room.meeting_id)

    def _recover_later(self, room: Room, stage: Stage, why: str) -> None:
        """The one recovery path after Janus may have lost the meeting's media, whichever event
        said so first (the connection dropped, Janus restarted, our session or the room lost) and
        however many follow: one recovery task per room; a report while it runs makes it check
        once more (``recover`` is idempotent: only a real loss rebuilds anything)."""
        if room.closed or room.stage is not stage:
            return
        if room.recovery is not None and not room.recovery.done():
            room.recovery_again = True
            return
        room.recovery_again = False
        room.recovery = asyncio.get_running_loop().create_task(self._recover(room, stage, why))

    async def _recover(self, room: Room, stage: Stage, why: str) -> None:
        """Wait for the media service to be back, then (under the room lock) have the stage check
        and rebuild what Janus lost; when it did: every site not publishing, the floor applied to
        the stage again, ``media.reset`` to every tab. Retried with backoff until it works or the
        meeting ends; one log line per attempt, a traceback only for the unexpected."""
        attempt = 0
        failures = 0
        while not room.closed and room.stage is stage:
            attempt += 1
            room.recovery_again = False
            error: str | None = None
            if not await stage.wait_media(RECOVERY_WAIT):
                error = f"the media server is not back after {RECOVERY_WAIT:.0f} s"
            else:
                async with room.lock:
                    if room.closed or room.stage is not stage:
                        return
                    try:
                        rebuilt = await stage.recover()
                    except MediaFailure as exc:
                        error = exc.message
                    except Exception as exc:
                        log.exception("meeting %s: media recovery attempt %d", room.meeting_id, attempt)
                        error = f"unexpected {type(exc).__name__}"
                    else:
                        if rebuilt:
                            await self._media_back(room, stage)
                            log.info(
                                "meeting %s: media recovered after %s (attempt %d)",
                                room.meeting_id,
                                why,
                                attempt,
                            )
                        else:
                            log.info(
                                "meeting %s: media checked after %s: nothing lost (check %d)",
                                room.meeting_id,
                                why,
                                attempt,
                            )
            if error is None:
                if not room.recovery_again:
                    return
                continue  # lost again meanwhile (or reported twice): check once more
            delay = RECOVERY_DELAYS[min(failures, len(RECOVERY_DELAYS) - 1)]
            failures += 1
            log.warning(
                "meeting %s: media recovery after %s, attempt %d: %s; again in %.1f s",
                room.meeting_id,
                why,
                attempt,
                error,
                delay,
            )
            await asyncio.sleep(delay)

    async def _media_back(self, room: Room, stage: Stage) -> None:
        """The stage rebuilt the meeting's media: mark every site as not publishing, apply the floor
        again, and tell every tab to publish and subscribe again (``media.reset``). Caller holds
        the room lock. The tabs are told whatever else fails: without ``media.reset`` they would
        wait on a media room that is gone."""
        try:
            for site in list(room.live.sites.values()):
                if site.publishing:
                    await self._publishing(room, site.site_id, False)
            floor = room.live.floor
            await stage.enforce(floor.audible(), floor.holder_ids())
        except Exception:
            log.exception("meeting %s: after rebuilding its media", room.meeting_id)
        await self._broadcast(room, p.dumps({"type": "media.reset"}))

    async def _publishing(self, room: Room, site_id: int, publishing: bool) -> None:
        site = room.live.sites.get(site_id)
        if site is None or (publishing and not site.connected):
            return
        await self._apply(
            room, Record("site.publishing", self.clock(), site_id, data={"publishing": publishing})
        )

    async def _send_private(self, room: Room, msg: Any) -> None:
        text = p.dumps({"type": "chat.private", "message": msg.to_json()})
        for peer in list(room.peers):
            to_console = msg.to == "control" and peer.role == "console"
            to_site = isinstance(msg.to, int) and peer.role == "site" and peer.site_id == msg.to
            from_site = peer.role == "site" and peer.site_id == msg.from_site and msg.from_site is not None
            from_console = msg.from_site is None and peer.role == "console"
            if to_console or to_site or from_site or from_console:
                await peer.conn.send_text(text)

    def _schedule_expiry(self, room: Room) -> None:
        if room.timer:
            room.timer.cancel()
            room.timer = None
        deadline = room.live.floor.next_deadline()
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self.clock())

        def fire() -> None:
            task = loop.create_task(self._expire(room))
            room.tasks.add(task)
            task.add_done_callback(room.tasks.discard)

        room.timer = loop.call_later(delay, fire)

    async def _expire(self, room: Room) -> None:
        async with room.lock:
            try:
                await self._apply(room, Record("floor.expire", self.clock()))
            except LiveError:
                log.exception("floor expiry failed")

    # -- tabs ------------------------------------------------------------------------------

    async def hello(self, peer: Peer, meeting_id: int, hello: p.Hello) -> tuple[Room, dict[str, Any]]:
        """Authorize the tab for the meeting and the role it asks for; return the welcome."""
        if hello.protocol != p.PROTOCOL_VERSION:
            raise CloseConnection(4400, f"protocol {hello.protocol} not supported (server speaks 1)")
        access = await anyio.to_thread.run_sync(meeting_access, self.ctx, peer.principal, meeting_id)
        if access is None:
            raise CloseConnection(4404, "no such meeting")
        if access.status not in (MeetingStatus.open, MeetingStatus.live):
            raise CloseConnection(4409, "meeting not open")
        if hello.as_ == "site":
            if hello.site_id is None or hello.site_id not in access.sites_as_site:
                raise CloseConnection(4403, "you cannot act as this site in this meeting")
        elif not access.console:
            raise CloseConnection(4403, "you cannot open this meeting's console")
        peer.role, peer.site_id, peer.access = hello.as_, hello.site_id, access
        peer.last_id = hello.id
        room = await self.room(meeting_id)
        async with room.lock:
            room.peers.add(peer)
            welcome: dict[str, Any] = {
                "type": "welcome",
                "id": hello.id,
                "protocol": p.PROTOCOL_VERSION,
                "you": {
                    "user": peer.principal.username,
                    "as": peer.role,
                    "site_id": peer.site_id,
                    "can_chair": access.chair,
                },
                "server_time": self.clock(),
            }
            if self.ice_config is not None:
                welcome.update(self.ice_config(peer.site_id, peer.principal.user_id))
            deltas = room.live.deltas_since(hello.resume_from) if hello.resume_from is not None else None
            if deltas is not None:
                welcome["version"] = room.live.version
                welcome["deltas"] = deltas
            else:
                welcome["version"] = room.live.version
                welcome["snapshot"] = room.live.snapshot(self.clock())
            await peer.conn.send_text(p.dumps(welcome))
            if peer.role == "site" and peer.site_id is not None and room.site_tabs(peer.site_id) == 1:
                await self._apply(
                    room, Record("site.connected", self.clock(), peer.site_id, peer.principal.username)
                )
        return room, welcome

    async def bye(self, room: Room, peer: Peer, *, dropped: bool) -> None:
        async with room.lock:
            room.peers.discard(peer)
            last_tab = peer.role == "site" and peer.site_id is not None and room.site_tabs(peer.site_id) == 0
            if room.stage is not None:
                try:
                    unpublished = await room.stage.peer_gone(peer.key, peer.site_id, last_tab)
                except Exception:
                    log.exception("media clean-up of %s", peer.key)
                    unpublished = False
                if unpublished and not last_tab and peer.site_id is not None:
                    await self._publishing(room, peer.site_id, False)
            if last_tab:
                try:
                    await self._apply(
                        room,
                        Record(
                            "site.disconnected",
                            self.clock(),
                            peer.site_id,
                            peer.principal.username,
                            {"dropped": dropped},
                        ),
                    )
                except LiveError:
                    log.exception("disconnect of %s", peer.key)

    async def message(self, room: Room, peer: Peer, raw: str) -> None:
        """Handle one tab message; always answers with ack or error."""
        msg_id: int | None = None
        try:
            msg = p.parse(raw)
            msg_id = msg.id
            if msg.id <= peer.last_id:
                raise p.ProtocolError(
                    "stale_id", "Mã thông điệp phải tăng dần (thông điệp lặp lại hoặc sai thứ tự).", msg.id
                )
            peer.last_id = msg.id
            async with room.lock:
                if room.closed:
                    raise p.ProtocolError("meeting_closed", "Hội nghị đã kết thúc.", msg.id)
                result = await self._dispatch(room, peer, msg)
            reply: dict[str, Any] = {"type": "ack", "id": msg.id}
            if result is not None:
                reply["result"] = result
            await peer.conn.send_text(p.dumps(reply))
        except p.ProtocolError as exc:
            await self._error(peer, exc.msg_id if exc.msg_id is not None else msg_id, exc.code, exc.message)
        except LiveError as exc:
            await self._error(peer, msg_id, exc.code, exc.message)
        except MediaFailure as exc:
            await self._error(peer, msg_id, exc.code, exc.message)

    async def _error(self, peer: Peer, msg_id: int | None, code: str, message: str) -> None:
        await peer.conn.send_text(p.dumps({"type": "error", "id": msg_id, "code": code, "message": message}))

    def _need(
        self, ok: bool, code: str = "forbidden", message: str = "Bạn không có quyền thực hiện thao tác này."
    ) -> None:
        if not ok:
            raise p.ProtocolError(code, message)

    async def _dispatch(self, room: Room, peer: Peer, msg: Any) -> Any:
        now = self.clock()
        user = peer.principal.username
        access = peer.access
        assert access is not None
        as_site = peer.role == "site"
        match msg:
            case p.Ping():
                return {"server_time": now}
            case p.Hello():
                raise p.ProtocolError("already_joined", "Đã bắt tay; mở kết nối mới để đổi vai trò.")
            case p.FloorRequest():
                self._need(as_site)
                await self._apply(room, Record("floor.request", now, peer.site_id, user, {"kind": msg.kind}))
            case p.FloorCancel():
                self._need(as_site)
                await self._apply(room, Record("floor.cancel", now, peer.site_id, user))
            case p.FloorGrant():
                self._need(access.chair)
                await self._apply(
                    room,
                    Record("floor.grant", now, None, user, {"site_id": msg.site_id, "seconds": msg.seconds}),
                )
            case p.FloorRevoke():
                self._need(access.chair)
                await self._apply(room, Record("floor.revoke", now, None, user, {"site_id": msg.site_id}))
            case p.FloorDecline():
                self._need(access.chair)
                await self._apply(room, Record("floor.decline", now, None, user, {"site_id": msg.site_id}))
            case p.FloorExtend():
                self._need(access.chair)
                await self._apply(
                    room,
                    Record("floor.extend", now, None, user, {"site_id": msg.site_id, "seconds": msg.seconds}),
                )
            case p.FloorConfig():
                self._need(access.chair)
                await self._apply(
                    room, Record("floor.config", now, None, user, {"max_holders": msg.max_holders})
                )
            case p.CheckIn():
                self._need(as_site)
                await self._apply(
                    room,
                    Record(
                        "checkin", now, peer.site_id, user, {"delegates": msg.delegates, "names": msg.names}
                    ),
                )
            case p.ChatSend():
                if isinstance(msg.to, int):
                    self._need(peer.role == "console", message="Chỉ phòng điều hành nhắn riêng cho điểm cầu.")
                elif msg.to == "control":
                    self._need(as_site, message="Phòng điều hành nhắn riêng bằng mã điểm cầu.")
                await self._apply(
                    room,
                    Record(
                        "chat",
                        now,
                        peer.site_id if as_site else None,
                        user,
                        {
                            "to": msg.to,
                            "text": msg.text,
                            "name": peer.principal.full_name or user,
                            "unit": access.person_unit,
                        },
                    ),
                )
            case p.MediaPublish() | p.MediaUnpublish():
                self._need(as_site, message="Chỉ điểm cầu được phát hình và tiếng.")
                stage = self._stage(room)
                assert peer.site_id is not None
                if isinstance(msg, p.MediaUnpublish):
                    if await stage.unpublish(peer.site_id):
                        await self._publishing(room, peer.site_id, False)
                    return None
                # "publishing" turns true when Janus reports the site's PeerConnection up.
                try:
                    return await stage.publish(peer.key, peer.site_id, msg.jsep.model_dump())
                except MediaFailure:
                    if not stage.has_publisher(peer.site_id):  # a refused republish: the old one is gone
                        await self._publishing(room, peer.site_id, False)
                    raise
            case p.MediaSubscribe():
                site = peer.site_id if as_site else None
                return await self._stage(room).subscribe(peer.key, site, active=msg.active)
            case p.MediaView():
                # Only the tab's own view (made by its media.subscribe): nothing more to authorize.
                await self._stage(room).view_on(peer.key, msg.on)
            case p.MediaWall():
                self._need(peer.role == "console", message="Chỉ phòng điều hành xem tường hình các điểm cầu.")
                return await self._stage(room).wall(peer.key, msg.page, renew=msg.renew)
            case p.MediaStart():
                await self._stage(room).start(peer.key, msg.jsep.model_dump(), msg.target)
            case p.MediaRestart():
                if msg.target == "wall":
                    self._need(
                        peer.role == "console", message="Chỉ phòng điều hành xem tường hình các điểm cầu."
                    )
                if msg.target == "publisher":
                    self._need(as_site, message="Chỉ điểm cầu được phát hình và tiếng.")
                jsep = msg.jsep.model_dump() if msg.jsep is not None else None
                stage = self._stage(room)
                try:
                    return await stage.restart(peer.key, peer.site_id, msg.target, jsep)
                except MediaFailure:
                    site_id = peer.site_id if msg.target == "publisher" else None
                    if site_id is not None and not stage.has_publisher(site_id):  # dropped: republish
                        await self._publishing(room, site_id, False)
                    raise
            case p.MediaTrickle():
                candidate = None if msg.candidate is None else msg.candidate.model_dump(exclude_none=True)
                await self._stage(room).trickle(peer.key, peer.site_id, msg.target, candidate)
            case _:
                raise p.ProtocolError("unknown_type", "Loại thông điệp không được hỗ trợ.")
        return None

    def _stage(self, room: Room) -> Stage:
        if room.stage is None:
            raise MediaFailure("media_unavailable", "Máy chủ media chưa sẵn sàng cho hội nghị này.")
        return room.stage
