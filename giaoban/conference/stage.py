"""The media side of a live meeting: one Janus VideoRoom, the sites' publishers, everyone's view.

Floor control is enforced here, on Janus, never trusted to the browser:
- every site but the host and the floor holders has its audio blocked with VideoRoom ``moderate``,
  applied before Janus's SDP answer goes back to the site (so no packet of a new PeerConnection is
  ever forwarded unmoderated; Janus forgets moderation on republish, and every publish goes
  through here);
- each tab's view is one subscription with fixed slots: the host (video + audio) and
  ``SPEAKER_SLOTS`` speaker slots (video + audio). Speaker slots carry only holders; a floor change
  is a ``switch`` of those slots (no renegotiation), and an empty slot is paused (``send: false``).
  A site never receives its own audio back (no echo at the host or at the speaking site).
- the console's wall is a second subscription of ``WALL_PAGE`` video slots (low simulcast layer);
  turning the page switches the slots to the next sites.

Janus only lets a feed be subscribed or switched to once its PeerConnection is up ("webrtcup"), so
publishers are tracked from their handles' events; a slot whose site is not up yet stays paused
and is switched in when it comes up. Subscriptions are made with ``autoupdate: false``: when a
feed goes away its slots are parked on another feed first (planned departures) or go inactive
(crashes); switching an inactive slot makes Janus send a new offer, which is relayed to the tab
(``media.offer``) and answered with ``media.start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from giaoban.conference.hub import MediaFailure, StageEvent
from giaoban.conference.live import LiveMeeting
from giaoban.media.client import JanusClientError, JanusPluginError, JanusSession, JsonDict
from giaoban.media.service import MediaService
from giaoban.media.videoroom import RoomOptions, VideoRoom, VideoRoomPublisher, VideoRoomSubscriber

log = logging.getLogger(__name__)

ERR_ID_EXISTS = 436  # VideoRoom: "User ID already exists"
SPEAKER_SLOTS = 4  # the most simultaneous holders a discussion may have
WALL_PAGE = 24  # sites per page of the console's wall
WALL_LAYER = {"substream": 0}  # the wall shows the lowest simulcast layer

Send = Callable[[str, dict[str, Any]], Awaitable[None]]
Listener = Callable[[StageEvent], None]


@dataclass
class Publisher:
    site_id: int
    owner: str  # the tab (peer key) that publishes
    handle: VideoRoomPublisher
    audio_mids: list[str] = field(default_factory=list)
    video_mids: list[str] = field(default_factory=list)
    muted: bool = False
    started: bool = False  # Janus's PeerConnection with the site is up: it can be subscribed to


@dataclass
class Stream:
    """One m-line of a subscription: the site whose stream feeds it, and whether Janus sends it."""

    mid: str
    kind: str  # "audio" | "video"
    feed: int | None  # None: inactive (its site went away without being parked first)
    send: bool = True


@dataclass
class Slot:
    video: Stream
    audio: Stream
    site_id: int | None = None  # the site it shows; None: empty (paused)

    def json(self) -> dict[str, Any]:
        return {"site_id": self.site_id, "video": self.video.mid, "audio": self.audio.mid}


@dataclass
class View:
    """A tab's view: the host and the speakers."""

    peer: str
    site_id: int | None  # the viewing site (None: the console)
    handle: VideoRoomSubscriber
    host: Slot
    speakers: list[Slot]
    started: bool = False
    shown: dict[str, Any] | None = None  # the last media.slots sent to the tab

    def streams(self) -> list[Stream]:
        return [s for slot in (self.host, *self.speakers) for s in (slot.video, slot.audio)]

    def slots_json(self) -> dict[str, Any]:
        return {"host": self.host.json(), "speakers": [s.json() for s in self.speakers]}


@dataclass
class Wall:
    """The console's wall: video tiles of one page of sites."""

    peer: str
    handle: VideoRoomSubscriber
    tiles: list[Stream]
    sites: list[int | None]
    page: int = 1
    started: bool = False
    shown: dict[str, Any] | None = None


@dataclass
class _Want:
    stream: Stream
    feed: int | None
    send: bool
    extra: dict[str, Any] = field(default_factory=dict)


def _mids(streams: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    audio = [str(s["mid"]) for s in streams if s.get("type") == "audio" and not s.get("disabled")]
    video = [str(s["mid"]) for s in streams if s.get("type") == "video" and not s.get("disabled")]
    return audio, video


class JanusStage:
    def __init__(
        self,
        media: MediaService,
        node: str,
        room: int,
        secret: str,
        session: JanusSession,
        order: list[int] | None = None,
    ) -> None:
        self.media = media
        self.node = node
        self.room = room
        self.secret = secret
        self.session = session
        self.publishers: dict[int, Publisher] = {}
        self.views: dict[str, View] = {}
        self.walls: dict[str, Wall] = {}
        self.audible: frozenset[int] = frozenset()
        self.holders: list[int] = []
        self.host_site_id = 0
        self.order: list[int] = list(order or [])  # the sites in wall order
        self.listener: Listener | None = None
        self.send: Send | None = None

    @classmethod
    async def open(cls, media: MediaService, meeting_id: int, live: LiveMeeting) -> JanusStage:
        options = RoomOptions(
            description=f"giaoban meeting {meeting_id}",
            secret=secrets.token_urlsafe(18),
            publishers=max(150, len(live.sites) + 10),
            audiocodec="opus",
            videocodec="vp8",
            audiolevel_event=True,
            audio_active_packets=50,
            notify_joining=False,
        )
        try:
            node, room = await media.create_room(options)
            session = await media.client(node).create_session()
        except (JanusClientError, KeyError, RuntimeError) as exc:
            raise MediaFailure(
                "media_unavailable", f"Không tạo được phòng họp trên máy chủ media: {exc}"
            ) from exc
        stage = cls(media, node, room, options.secret or "", session, order=live.order)
        stage.host_site_id = live.host_site_id
        stage.audible = live.floor.audible()
        stage.holders = live.floor.holder_ids()
        return stage

    def bind(self, listener: Listener, send: Send) -> None:
        """``listener`` gets Janus's events about our handles (called from the Janus reader: it must
        not block); ``send`` pushes a message to one tab."""
        self.listener = listener
        self.send = send

    @property
    def control(self) -> VideoRoom:
        return self.media.control(self.node)

    def _emit(self, event: StageEvent) -> None:
        if self.listener is not None:
            self.listener(event)

    async def _push(self, peer: str, message: dict[str, Any]) -> None:
        if self.send is not None:
            await self.send(peer, message)

    # -- who is up -------------------------------------------------------------------------

    def _live(self, site_id: int | None, kind: str = "both") -> bool:
        pub = self.publishers.get(site_id) if site_id is not None else None
        if pub is None or not pub.started:
            return False
        if kind == "video":
            return bool(pub.video_mids)
        return bool(pub.video_mids) and bool(pub.audio_mids)

    def _mid(self, site_id: int, kind: str) -> str:
        pub = self.publishers[site_id]
        return (pub.video_mids if kind == "video" else pub.audio_mids)[0]

    def _placeholder(self, kind: str, exclude: int | None = None) -> int | None:
        """A live feed to park paused streams on: the host when possible."""
        candidates = [self.host_site_id, *self.publishers]
        for site_id in candidates:
            if site_id != exclude and self._live(site_id, "video" if kind == "video" else "both"):
                return site_id
        return None

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, peer: str, site_id: int, jsep: dict[str, Any]) -> dict[str, Any]:
        old = self.publishers.get(site_id)
        if old is not None:
            await self._drop_publisher(old)
        handle = await VideoRoomPublisher.attach(self.session, opaque_id=f"site-{site_id}")
        joined = False
        try:
            try:
                await handle.join(self.room, id=site_id, display=str(site_id))
            except JanusPluginError as exc:
                if exc.code != ERR_ID_EXISTS:
                    raise
                # A participant of this site that Janus still holds (a handle being torn down):
                # the site is publishing anew, so the old one goes.
                await self.control.kick(self.room, self.secret, site_id)
                await handle.join(self.room, id=site_id, display=str(site_id))
            joined = True
            response = await handle.publish(jsep)
            if response.jsep is None:
                raise MediaFailure("publish_failed", "Janus không trả lời SDP.")
        except (JanusClientError, MediaFailure) as exc:
            if joined:
                with contextlib.suppress(JanusClientError):
                    await handle.leave()
            await self._detach(handle.handle)
            if isinstance(exc, MediaFailure):
                raise
            raise MediaFailure("publish_failed", f"Janus từ chối phát: {exc}") from exc
        audio, video = _mids(list(response.data.get("streams") or []))
        pub = Publisher(site_id, peer, handle, audio, video)
        # Moderation is lost on every new PeerConnection: apply the policy before the answer leaves.
        await self._moderate(pub, mute=site_id not in self.audible)
        self.publishers[site_id] = pub
        handle.handle.add_callback(lambda msg: self._publisher_event(pub, msg))
        return {"jsep": response.jsep}

    def _publisher_event(self, pub: Publisher, msg: JsonDict) -> None:
        kind = msg.get("janus")
        if kind == "webrtcup":
            self._emit(StageEvent("publisher_up", site_id=pub.site_id, handle_id=pub.handle.handle.id))
        elif kind == "hangup":
            self._emit(StageEvent("publisher_down", site_id=pub.site_id, handle_id=pub.handle.handle.id))

    async def publisher_up(self, site_id: int, handle_id: int | None) -> bool:
        """The site's PeerConnection is up: show it wherever it belongs. True if that is news."""
        pub = self.publishers.get(site_id)
        if pub is None or pub.handle.handle.id != handle_id or pub.started:
            return False
        pub.started = True
        await self._refresh_all()
        return True

    async def publisher_down(self, site_id: int, handle_id: int | None) -> bool:
        """Janus hung up the site's PeerConnection (ICE or DTLS failed, the browser closed it)."""
        pub = self.publishers.get(site_id)
        if pub is None or pub.handle.handle.id != handle_id or not pub.started:
            return False
        pub.started = False
        self._gone(site_id)  # Janus has already detached it from every subscription
        await self._refresh_all()
        return True

    def has_publisher(self, site_id: int) -> bool:
        return site_id in self.publishers

    async def unpublish(self, site_id: int) -> bool:
        pub = self.publishers.get(site_id)
        if pub is None:
            return False
        await self._drop_publisher(pub)
        await self._refresh_all()
        return True

    async def _drop_publisher(self, pub: Publisher) -> None:
        """Park every stream it feeds on another feed, then let it go."""
        was_live = pub.started
        pub.started = False
        if was_live:
            await self._park_all(pub.site_id)
        if self.publishers.get(pub.site_id) is pub:
            del self.publishers[pub.site_id]
        with contextlib.suppress(JanusClientError):
            await pub.handle.leave()
        await self._detach(pub.handle.handle)
        self._gone(pub.site_id)

    def _gone(self, site_id: int) -> None:
        for stream in self._all_streams():
            if stream.feed == site_id:
                stream.feed = None

    def _all_streams(self) -> list[Stream]:
        return [s for v in self.views.values() for s in v.streams()] + [
            t for w in self.walls.values() for t in w.tiles
        ]

    async def _moderate(self, pub: Publisher, *, mute: bool) -> None:
        for mid in pub.audio_mids:
            try:
                await self.control.moderate(self.room, self.secret, pub.site_id, mid, mute)
            except JanusPluginError as exc:
                log.warning("moderate %s mid %s: %s", pub.site_id, mid, exc)
        pub.muted = mute

    # -- subscribing -----------------------------------------------------------------------

    async def _join(
        self, peer: str, streams: list[dict[str, Any]], opaque: str
    ) -> tuple[VideoRoomSubscriber, JsonDict, list[dict[str, Any]]]:
        handle = await VideoRoomSubscriber.attach(self.session, opaque_id=opaque)
        body = {
            "request": "join",
            "ptype": "subscriber",
            "room": self.room,
            "streams": streams,
            "autoupdate": False,
        }
        try:
            response = await handle.handle.message(body)
        except JanusClientError as exc:
            await self._detach(handle.handle)
            raise MediaFailure("subscribe_failed", f"Janus từ chối nhận: {exc}") from exc
        got = list(response.data.get("streams") or [])
        if len(got) != len(streams) or response.jsep is None:
            await self._detach(handle.handle)
            raise MediaFailure("subscribe_failed", "Janus trả về luồng không như yêu cầu.")
        handle.room = self.room
        return handle, response.jsep, got

    async def subscribe(self, peer: str, site_id: int | None) -> dict[str, Any]:
        """A tab's view: host + speaker slots; the answer goes back with ``start``."""
        old = self.views.pop(peer, None)
        if old is not None:
            await self._detach(old.handle.handle)
        if not self._live(self.host_site_id):
            raise MediaFailure("host_not_ready", "Điểm cầu chính chưa phát hình; sẽ thử lại khi có tín hiệu.")
        host = self.host_site_id
        requested: list[dict[str, Any]] = []
        for _slot in range(1 + SPEAKER_SLOTS):
            requested += [
                {"feed": host, "mid": self._mid(host, "video")},
                {"feed": host, "mid": self._mid(host, "audio")},
            ]
        handle, jsep, got = await self._join(peer, requested, f"view-{site_id or 'console'}-{peer}")
        streams = [Stream(str(s["mid"]), "video" if i % 2 == 0 else "audio", host) for i, s in enumerate(got)]
        slots = [Slot(streams[2 * i], streams[2 * i + 1]) for i in range(1 + SPEAKER_SLOTS)]
        view = View(peer, site_id, handle, slots[0], slots[1:])
        self.views[peer] = view
        handle_id = handle.handle.id
        handle.handle.add_callback(lambda msg: self._subscriber_event(peer, "view", handle_id, msg))
        # Pause what must not play before the browser even answers (the speaker placeholders, and
        # the host's own audio at the host).
        await self._refresh_view(view, push=False)
        view.shown = view.slots_json()
        return {"jsep": jsep, "slots": view.shown}

    async def wall(self, peer: str, page: int, *, renew: bool = False) -> dict[str, Any]:
        """The console's wall at ``page``: a new subscription the first time (or when ``renew``),
        a switch of the tiles afterwards."""
        pages = max(1, math.ceil(len(self.order) / WALL_PAGE))
        if page > pages:
            raise MediaFailure("no_such_page", f"Tường hình chỉ có {pages} trang.")
        if renew and peer in self.walls:
            await self._detach(self.walls.pop(peer).handle.handle)
        wall = self.walls.get(peer)
        if wall is not None:
            wall.page = page
            await self._refresh_wall(wall, push=False)
            wall.shown = self._wall_json(wall)
            return wall.shown
        placeholder = self._placeholder("video")
        if placeholder is None:
            raise MediaFailure("no_video", "Chưa có điểm cầu nào phát hình.")
        count = min(WALL_PAGE, len(self.order))
        requested = [
            {"feed": placeholder, "mid": self._mid(placeholder, "video"), **WALL_LAYER} for _ in range(count)
        ]
        handle, jsep, got = await self._join(peer, requested, f"wall-{peer}")
        tiles = [Stream(str(s["mid"]), "video", placeholder) for s in got]
        wall = Wall(peer, handle, tiles, [None] * count, page)
        self.walls[peer] = wall
        handle_id = handle.handle.id
        handle.handle.add_callback(lambda msg: self._subscriber_event(peer, "wall", handle_id, msg))
        await self._refresh_wall(wall, push=False)
        wall.shown = self._wall_json(wall)
        return {**wall.shown, "jsep": jsep}

    def _wall_json(self, wall: Wall) -> dict[str, Any]:
        return {
            "page": wall.page,
            "pages": max(1, math.ceil(len(self.order) / WALL_PAGE)),
            "tiles": [
                {"site_id": site, "mid": t.mid, "video": site is not None and t.feed == site and t.send}
                for t, site in zip(wall.tiles, wall.sites, strict=True)
            ],
        }

    async def start(self, peer: str, jsep: dict[str, Any], target: str = "view") -> None:
        sub: View | Wall | None = self.views.get(peer) if target == "view" else self.walls.get(peer)
        if sub is None:
            raise MediaFailure("not_subscribed", "Chưa đăng ký nhận hình.")
        try:
            await sub.handle.start(jsep)
        except JanusClientError as exc:
            raise MediaFailure("start_failed", f"Janus từ chối SDP: {exc}") from exc
        sub.started = True

    def _subscriber_event(self, peer: str, target: str, handle_id: int, msg: JsonDict) -> None:
        jsep = msg.get("jsep")
        if isinstance(jsep, dict) and jsep.get("type") == "offer":
            self._emit(StageEvent("offer", peer=peer, target=target, handle_id=handle_id, jsep=jsep))

    def current(self, peer: str, target: str, handle_id: int | None) -> bool:
        """Whether ``handle_id`` is still the tab's subscription (events of replaced ones are stale)."""
        sub: View | Wall | None = self.views.get(peer) if target == "view" else self.walls.get(peer)
        return sub is not None and sub.handle.handle.id == handle_id

    async def trickle(
        self, peer: str, site_id: int | None, target: str, candidate: dict[str, Any] | None
    ) -> None:
        handle = None
        if target == "publisher":
            pub = self.publishers.get(site_id) if site_id is not None else None
            handle = pub.handle.handle if pub is not None and pub.owner == peer else None
        elif target == "subscriber":
            view = self.views.get(peer)
            handle = view.handle.handle if view is not None else None
        else:
            wall = self.walls.get(peer)
            handle = wall.handle.handle if wall is not None else None
        if handle is None:
            raise MediaFailure("no_peer_connection", "Không có kết nối media tương ứng.")
        try:
            if candidate is None or candidate.get("completed") or not candidate.get("candidate"):
                await handle.trickle(completed=True)
            else:
                await handle.trickle(candidate)
        except JanusClientError as exc:
            raise MediaFailure("trickle_failed", str(exc)) from exc

    # -- keeping every view right ----------------------------------------------------------

    async def enforce(self, audible: frozenset[int], holders: list[int]) -> None:
        """Make Janus match the floor: moderation first, then every view's speaker slots."""
        self.audible, self.holders = audible, list(holders)
        for pub in list(self.publishers.values()):
            mute = pub.site_id not in audible
            if pub.muted != mute:
                await self._moderate(pub, mute=mute)
        await self._refresh_all()

    async def _refresh_all(self) -> None:
        """Every subscription at once: each is its own Janus handle, so a floor change costs about one
        round trip for all the tabs rather than one per tab."""
        await asyncio.gather(
            *(self._refresh_view(view) for view in list(self.views.values())),
            *(self._refresh_wall(wall) for wall in list(self.walls.values())),
        )

    def _park(self, stream: Stream, exclude: int | None = None) -> _Want:
        """Pause ``stream``; keep it on a live feed so that it never goes inactive."""
        feed = stream.feed
        if feed is None or feed == exclude or not self._live(feed, stream.kind):
            feed = self._placeholder(stream.kind, exclude) if stream.feed is not None else None
        return _Want(stream, feed, False)

    async def _park_all(self, site_id: int) -> None:
        """Before ``site_id`` goes away, move every stream it feeds to another feed."""
        for view in list(self.views.values()):
            wants = [self._park(s, exclude=site_id) for s in view.streams() if s.feed == site_id]
            await self._sync(view.handle, wants, view.peer, "view")
        for wall in list(self.walls.values()):
            wants = [self._park(t, exclude=site_id) for t in wall.tiles if t.feed == site_id]
            await self._sync(wall.handle, wants, wall.peer, "wall")

    async def _refresh_view(self, view: View, *, push: bool = True) -> None:
        wants: list[_Want] = []
        host = self.host_site_id if self._live(self.host_site_id) else None
        view.host.site_id = host
        if host is None:
            wants += [self._park(view.host.video), self._park(view.host.audio)]
        else:
            wants += [_Want(view.host.video, host, True), _Want(view.host.audio, host, view.site_id != host)]
        # Holders keep their slot while they hold the floor; a new holder takes a free slot.
        live = [h for h in self.holders if self._live(h)]
        assigned: list[int | None] = [s.site_id if s.site_id in live else None for s in view.speakers]
        for site_id in live:
            if site_id not in assigned and None in assigned:
                assigned[assigned.index(None)] = site_id
        for slot, given in zip(view.speakers, assigned, strict=True):
            slot.site_id = holder = given
            if holder is None:
                wants += [self._park(slot.video), self._park(slot.audio)]
            else:
                wants += [_Want(slot.video, holder, True), _Want(slot.audio, holder, holder != view.site_id)]
        await self._sync(view.handle, wants, view.peer, "view")
        shown = view.slots_json()
        if push and view.started and shown != view.shown:
            view.shown = shown
            await self._push(view.peer, {"type": "media.slots", **shown})

    def _page_sites(self, page: int) -> list[int]:
        return self.order[(page - 1) * WALL_PAGE : page * WALL_PAGE]

    async def _refresh_wall(self, wall: Wall, *, push: bool = True) -> None:
        sites = self._page_sites(wall.page)
        wants: list[_Want] = []
        for i, tile in enumerate(wall.tiles):
            site = sites[i] if i < len(sites) else None
            wall.sites[i] = site
            if site is not None and self._live(site, "video"):
                wants.append(_Want(tile, site, True, dict(WALL_LAYER)))
            else:
                wants.append(self._park(tile))
        await self._sync(wall.handle, wants, wall.peer, "wall")
        shown = self._wall_json(wall)
        if push and wall.started and shown != wall.shown:
            wall.shown = shown
            await self._push(wall.peer, {"type": "media.wall", **shown})

    async def _sync(self, handle: VideoRoomSubscriber, wants: list[_Want], peer: str, target: str) -> None:
        """Switch streams to their wanted feeds, then set what Janus sends (one request each).

        Switching a stream that went inactive (its feed left without being parked) makes Janus
        renegotiate: the answer to the switch is then an "updated" event with a new offer, which
        goes to the tab (``media.offer``); the stream carries media once the tab has answered."""
        switch = [
            {"feed": w.feed, "mid": self._mid(w.feed, w.stream.kind), "sub_mid": w.stream.mid}
            for w in wants
            if w.feed is not None and w.feed != w.stream.feed and self._live(w.feed, w.stream.kind)
        ]
        switched: set[str] = set()
        try:
            if switch:
                response = await handle.switch(switch)
                if response.jsep is not None and response.jsep.get("type") == "offer":
                    await self._push(peer, {"type": "media.offer", "target": target, "jsep": response.jsep})
                # Janus skips a feed that just went down: believe its summary, not our wish.
                by_mid = {str(s.get("mid")): s for s in response.data.get("streams") or []}
                for w in wants:
                    info = by_mid.get(w.stream.mid)
                    if info is None or not any(s["sub_mid"] == w.stream.mid for s in switch):
                        continue
                    feed = info.get("feed_id") if info.get("active") else None
                    w.stream.feed = int(feed) if feed is not None else None
                    w.stream.send = True  # a switch always resumes sending
                    switched.add(w.stream.mid)
            configure = []
            for w in wants:
                # A switch resumes sending and resets the simulcast layer: set what differs.
                redo = w.stream.mid in switched and (not w.send or bool(w.extra))
                if redo or w.stream.send != w.send:
                    configure.append({"mid": w.stream.mid, "send": w.send, **(w.extra if w.send else {})})
                    w.stream.send = w.send
            if configure:
                await handle.configure(configure)
        except JanusClientError as exc:
            log.warning("updating the view of %s failed: %s", peer, exc)

    # -- leaving ---------------------------------------------------------------------------

    async def peer_gone(self, peer: str, site_id: int | None, last_tab: bool) -> bool:
        """The tab left: its subscriptions go, and its site's publisher if this tab published it.
        True when a publisher went away."""
        view = self.views.pop(peer, None)
        if view is not None:
            await self._detach(view.handle.handle)
        wall = self.walls.pop(peer, None)
        if wall is not None:
            await self._detach(wall.handle.handle)
        if site_id is not None:
            pub = self.publishers.get(site_id)
            if pub is not None and pub.owner == peer:
                await self._drop_publisher(pub)
                await self._refresh_all()
                return True
        return False

    async def _detach(self, handle: Any) -> None:
        with contextlib.suppress(JanusClientError):
            await handle.detach()

    async def close(self) -> None:
        self.listener = None
        self.send = None
        for view in list(self.views.values()):
            await self._detach(view.handle.handle)
        for wall in list(self.walls.values()):
            await self._detach(wall.handle.handle)
        for pub in list(self.publishers.values()):
            await self._detach(pub.handle.handle)
        self.views.clear()
        self.walls.clear()
        self.publishers.clear()
        try:
            await self.media.destroy_room(self.node, self.room)
        except (JanusClientError, KeyError) as exc:
            log.warning("destroying room %s: %s", self.room, exc)
        with contextlib.suppress(JanusClientError, AttributeError):
            await self.session.destroy()


def stage_factory(media: MediaService) -> Any:
    async def make(meeting_id: int, live: LiveMeeting) -> JanusStage:
        return await JanusStage.open(media, meeting_id, live)

    return make
