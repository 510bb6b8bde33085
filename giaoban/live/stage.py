"""The media side of a live meeting: one Janus VideoRoom, the sites' publishers, everyone's view.

Floor control is enforced here, on Janus, never trusted to the browser:
- every audio stream of every site but the host and the floor holders is blocked with VideoRoom
  ``moderate``, applied before Janus's SDP answer goes back to the site (so no packet of a new
  PeerConnection is ever forwarded unmoderated; Janus forgets moderation on republish, and every
  publish goes through here). After any (re)negotiation of a publisher the audio mids are the ones
  Janus reports for the feed, each brought to the floor (``_negotiated``); an ICE restart may not
  change the m-lines (giaoban/live/muting.py);
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

from giaoban.live import layers, muting
from giaoban.live.events import MediaFailure, StageEvent
from giaoban.live.state import LiveMeeting
from giaoban.media.client import JanusClientError, JanusPluginError, JanusSession, JsonDict
from giaoban.media.service import MediaEvent, MediaService
from giaoban.media.videoroom import RoomOptions, VideoRoom, VideoRoomPublisher, VideoRoomSubscriber
from giaoban.meetings.order import wall_order

log = logging.getLogger(__name__)

ERR_ID_EXISTS = 436  # VideoRoom: "User ID already exists"
ERR_ROOM_EXISTS = 427  # VideoRoom: "Room already exists"
ERR_NO_SUCH = 428  # VideoRoom: "No such feed" / "No such mid ... in subscription"
# Keeping views right in the background (see ``enforce``): no tab and no Janus request may hold up
# the others, so every wait is bounded and a failure is retried rather than given up on.
JANUS_TIMEOUT = 3.0  # s: one switch/configure of a subscription, one moderate
PUSH_TIMEOUT = 2.0  # s: one message to one tab
SETTLE_TIMEOUT = 1.0  # s: how long a change of publishers/subscriptions waits for the views' updates
SWITCH_CONCURRENCY = 128  # views updated at once: a whole room (Janus works through them in turn)
SHOW_DEFER = 0.5  # s: at most this long a tab's ``media.slots`` waits for the other views' switches
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # s: a view whose update failed is tried again after these
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
    audio_mids: list[str] = field(default_factory=list)  # as Janus reported them last
    video_mids: list[str] = field(default_factory=list)
    started: bool = False  # Janus's PeerConnection with the site is up: it can be subscribed to
    offer: str = ""  # the SDP offer Janus accepted last: an ICE restart is checked against it
    # mid -> muted, as Janus is known to have it (a mid missing: new or unknown, always sent)
    moderated: dict[str, bool] = field(default_factory=dict)

    @property
    def muted(self) -> bool:
        """Janus blocks every audio stream of the site."""
        return bool(self.audio_mids) and all(self.moderated.get(mid) is True for mid in self.audio_mids)


@dataclass
class Stream:
    """One m-line of a subscription: the site whose stream feeds it, and whether Janus sends it."""

    mid: str
    kind: str  # "audio" | "video"
    feed: int | None  # None: inactive (its site went away without being parked first)
    send: bool = True
    layer: int | None = None  # simulcast substream set on Janus (None: Janus's default, the top)


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
    down: bool = False  # Janus hung up its PeerConnection: skipped until it is up again or replaced
    # False: pre-warmed (the room page before "Vào phòng họp"): every stream keeps its feed but is
    # not sent (``send: false``) until ``view_on``; the floor still picks what each slot shows.
    active: bool = True
    shown: dict[str, Any] | None = None  # the last media.slots sent to the tab
    keeper: _Keeper = field(default_factory=lambda: _Keeper(), repr=False, compare=False)
    # Simulcast layer of its video slots (giaoban/live/layers.py): starts low, steps up once
    # the PeerConnection is up and clean, down when the site's downstream loses packets.
    layer_state: layers.LayerState = field(default_factory=lambda: layers.initial(0.0), compare=False)
    media_up: bool = False  # Janus reported "webrtcup": the layer policy runs
    layer_timer: asyncio.TimerHandle | None = field(default=None, repr=False, compare=False)

    def streams(self) -> list[Stream]:
        return [s for slot in (self.host, *self.speakers) for s in (slot.video, slot.audio)]

    def slots_json(self) -> dict[str, Any]:
        return {
            "host": self.host.json(),
            "speakers": [s.json() for s in self.speakers],
            "layer": self.layer_state.layer,
        }


@dataclass
class Wall:
    """The console's wall: video tiles of one page of sites."""

    peer: str
    handle: VideoRoomSubscriber
    tiles: list[Stream]
    sites: list[int | None]
    page: int = 1
    started: bool = False
    down: bool = False
    shown: dict[str, Any] | None = None
    keeper: _Keeper = field(default_factory=lambda: _Keeper(), repr=False, compare=False)


@dataclass
class _Keeper:
    """The background updates of one subscription (``JanusStage._keep``)."""

    task: asyncio.Task[None] | None = None  # the update running now
    again: bool = False  # the floor changed during it: one more round
    dirty: bool = False  # a request failed or timed out: Janus's state is unknown, resend it all
    failures: int = 0  # consecutive failed updates (picks the retry delay)
    retry: asyncio.TimerHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one update of it at a time


@dataclass
class _Want:
    stream: Stream
    feed: int | None
    send: bool
    extra: dict[str, Any] = field(default_factory=dict)
    layer: int | None = None  # the simulcast substream wanted (views' video; None: leave it)


def _layer_of(stream: Stream) -> int:
    """The substream Janus targets for ``stream`` (its default after a join or switch: the top)."""
    return layers.TOP_LAYER if stream.layer is None else stream.layer


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
        self.order: list[int] = list(order or [])  # the sites in the meeting's order (wall_sites)
        self.listener: Listener | None = None
        self.send: Send | None = None
        # Views are brought to the floor in the background (see ``enforce``), a few at a time.
        self._gate = asyncio.Semaphore(SWITCH_CONCURRENCY)
        # Subscriptions waiting for or inside the gate; ``_switched`` is set when there are none.
        self._syncing = 0
        self._switched = asyncio.Event()
        self._switched.set()
        self._closed = False
        self._moderation_retry: asyncio.TimerHandle | None = None
        self._moderation_task: asyncio.Future[bool] | None = None
        # Recovery after a Janus restart (see ``reset``): how the room was made, and our listener.
        self.options: RoomOptions | None = None
        self._media_listener: Callable[[MediaEvent], None] | None = None
        self.layer_policy = layers.DEFAULT_POLICY

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
        stage.options = options
        stage.watch_media()
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

    async def _push(self, peer: str, message: dict[str, Any]) -> bool:
        """Send ``message`` to one tab; False (logged) when the tab does not take it within
        ``PUSH_TIMEOUT``: a slow or stuck tab must hold up nobody else."""
        if self.send is None:
            return True
        try:
            await asyncio.wait_for(self.send(peer, message), PUSH_TIMEOUT)
        except TimeoutError:
            log.warning(
                "room %s: %s to %s not sent within %.1f s", self.room, message.get("type"), peer, PUSH_TIMEOUT
            )
            return False
        return True

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
        await self.settle()
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
        pub = Publisher(site_id, peer, handle, offer=str(jsep.get("sdp") or ""))
        # Moderation is lost on every new PeerConnection: apply the policy before the answer leaves.
        if not await self._negotiated(pub, response.data.get("streams")):
            with contextlib.suppress(JanusClientError):
                await handle.leave()
            await self._detach(handle.handle)
            raise MediaFailure(
                "publish_failed", "Máy chủ media chưa chặn được tiếng của điểm cầu; hãy thử lại."
            )
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
        await self.settle()
        pub = self.publishers.get(site_id)
        if pub is None or pub.handle.handle.id != handle_id or pub.started:
            return False
        pub.started = True
        await self._refresh_all()
        return True

    async def publisher_down(self, site_id: int, handle_id: int | None) -> bool:
        """Janus hung up the site's PeerConnection (ICE or DTLS failed, the browser closed it)."""
        await self.settle()
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
        await self.settle()
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

    async def _negotiated(self, pub: Publisher, streams: list[dict[str, Any]] | None) -> bool:
        """After any (re)negotiation of ``pub`` (publish, ICE restart): take the audio and video mids
        Janus now reports for the feed (the ``streams`` of its ``configured`` event; kept as they
        were if it sent none), forget what was known of their moderation, and bring every audio mid
        to the floor. False when a site without the floor could not be muted on every mid."""
        if streams:
            pub.audio_mids = muting.audio_mids(streams)
            pub.video_mids = muting.video_mids(streams)
        pub.moderated.clear()
        mute = pub.site_id not in self.audible
        return await self._moderate(pub, mute=mute) or not mute

    async def _moderate(self, pub: Publisher, *, mute: bool) -> bool:
        """Bring every audio mid of the site to ``mute`` on Janus (``muting.moderation_changes``;
        each request: one try and one retry, each at most ``JANUS_TIMEOUT``). True when done;
        otherwise logged, and a failed mid counts as unknown so that ``_moderate_all`` sends it
        again."""
        done = True
        for mid, want in muting.moderation_changes(pub.audio_mids, pub.moderated, mute):
            for attempt in (1, 2):
                try:
                    await asyncio.wait_for(
                        self.control.moderate(self.room, self.secret, pub.site_id, mid, want), JANUS_TIMEOUT
                    )
                    pub.moderated[mid] = want
                    break
                except (JanusClientError, TimeoutError) as exc:
                    reason = str(exc) or f"no answer within {JANUS_TIMEOUT:.1f} s"
                    if attempt == 2:
                        log.error(
                            "room %s: %s site %s (mid %s) failed: %s",
                            self.room,
                            "muting" if want else "unmuting",
                            pub.site_id,
                            mid,
                            reason,
                        )
                        pub.moderated.pop(mid, None)
                        done = False
                    else:
                        log.warning(
                            "room %s: moderate %s mid %s: %s; again", self.room, pub.site_id, mid, reason
                        )
        return done

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

    async def subscribe(self, peer: str, site_id: int | None, *, active: bool = True) -> dict[str, Any]:
        """A tab's view: host + speaker slots; the answer goes back with ``start``. ``active``
        False: pre-warmed, nothing is sent on it until ``view_on``."""
        await self.settle()
        old = self.views.pop(peer, None)
        if old is not None:
            self._stop_layer_timer(old)
            await self._detach(old.handle.handle)
        if not self._live(self.host_site_id):
            raise MediaFailure("host_not_ready", "Điểm cầu chính chưa phát hình; sẽ thử lại khi có tín hiệu.")
        host = self.host_site_id
        start = self.layer_policy.start  # video starts on the low layer: a small first keyframe
        requested: list[dict[str, Any]] = []
        for _slot in range(1 + SPEAKER_SLOTS):
            requested += [
                {"feed": host, "mid": self._mid(host, "video"), "substream": start},
                {"feed": host, "mid": self._mid(host, "audio")},
            ]
        handle, jsep, got = await self._join(peer, requested, f"view-{site_id or 'console'}-{peer}")
        streams = [
            Stream(str(s["mid"]), "video", host, layer=start)
            if i % 2 == 0
            else Stream(str(s["mid"]), "audio", host)
            for i, s in enumerate(got)
        ]
        slots = [Slot(streams[2 * i], streams[2 * i + 1]) for i in range(1 + SPEAKER_SLOTS)]
        view = View(peer, site_id, handle, slots[0], slots[1:], active=active)
        view.layer_state = layers.initial(self._now(), self.layer_policy)
        self.views[peer] = view
        handle_id = handle.handle.id
        handle.handle.add_callback(lambda msg: self._subscriber_event(peer, "view", handle_id, msg))
        # Pause what must not play before the browser even answers (the speaker placeholders, and
        # the host's own audio at the host).
        await self._refresh_view(view, push=False)
        view.shown = view.slots_json()
        return {"jsep": jsep, "slots": view.shown}

    async def view_on(self, peer: str, on: bool) -> None:
        """Turn the tab's view on (Janus sends what the floor wants on it) or off (nothing)."""
        view = self.views.get(peer)
        if view is None:
            raise MediaFailure("not_subscribed", "Chưa đăng ký nhận hình.")
        if view.active == on:
            return
        view.active = on
        self._stop_layer_timer(view)
        if on:
            # Media starts now: on the low layer (a small first keyframe), clean time from here.
            view.layer_state = layers.initial(self._now(), self.layer_policy)
        await self._refresh_view(view)
        self._plan_layer(view)

    async def wall(self, peer: str, page: int, *, renew: bool = False) -> dict[str, Any]:
        """The console's wall at ``page``: a new subscription the first time (or when ``renew``),
        a switch of the tiles afterwards."""
        await self.settle()
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
        kind = msg.get("janus")
        if kind in ("hangup", "webrtcup"):
            sub: View | Wall | None = self.views.get(peer) if target == "view" else self.walls.get(peer)
            if sub is None or sub.handle.handle.id != handle_id:
                return
            if kind == "webrtcup" and isinstance(sub, View) and not sub.media_up:
                # Media flows from now on: the layer policy's clean time starts here.
                sub.media_up = True
                sub.layer_state = layers.initial(self._now(), self.layer_policy)
                self._plan_layer(sub)
            if kind == "hangup":
                # Janus closed its PeerConnection and dropped its streams (1.1.x): updates would
                # fail with 428, so it is skipped until it is up again or the tab subscribes anew.
                sub.down = True
                log.info(
                    "room %s: the %s of %s is down (Janus: %s)", self.room, target, peer, msg.get("reason")
                )
            elif sub.down:
                # Up again after all: resend everything it should carry.
                sub.down = False
                sub.keeper.dirty = True
                log.info("room %s: the %s of %s is up again", self.room, target, peer)
                self._kick(sub)
            return
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
        """Make Janus match the floor.

        Moderation is awaited: when this returns, Janus forwards the audio of nobody outside
        ``audible`` (each ``moderate`` is retried once; one that still fails is logged as an error
        and retried in the background, see ``_moderate_all``). Unmuting goes first (the new holder is
        heard as soon as a slot carries it) and every ``moderate`` is sent at once.

        The views' speaker slots are switched in the background (``_refresh_later``: about one
        ``switch`` per tab, ``SWITCH_CONCURRENCY`` at a time so that the ack and the other tabs'
        messages are not queued behind 70 of them): a slot may show a new holder some tens of ms
        after this returns, but it only ever carries what moderation lets through. A change of the
        queue alone (same holders, same audible sites) costs nothing here."""
        holders = list(holders)
        floor_changed = audible != self.audible or holders != self.holders
        self.audible, self.holders = audible, holders
        moderating = asyncio.ensure_future(self._moderate_all())
        if floor_changed:
            # Two turns of the loop: ``_moderate_all`` starts its requests, which then go out; the
            # views' switches follow them, so Janus unmutes the new holder before it works through them.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self._refresh_later()
        await moderating

    async def _moderate_all(self) -> bool:
        """Bring every publisher's moderation to ``audible`` (unmutes first, all at once); True when
        all of them are. A failure is tried again in the background (a Janus restart, an overloaded
        Janus: the next floor change or this retry puts it right)."""
        changes = [
            (pub, mute)
            for pub in self.publishers.values()
            if muting.moderation_changes(
                pub.audio_mids, pub.moderated, mute := pub.site_id not in self.audible
            )
        ]
        if not changes:
            return True
        changes.sort(key=lambda change: change[1])  # unmute before mute
        done = await asyncio.gather(*(self._moderate(pub, mute=mute) for pub, mute in changes))
        if all(done):
            return True
        if self._moderation_retry is None and not self._closed:

            def again() -> None:
                self._moderation_retry = None
                if not self._closed:
                    self._moderation_task = asyncio.ensure_future(self._moderate_all())

            self._moderation_retry = asyncio.get_running_loop().call_later(RETRY_DELAYS[1], again)
        return False

    # The background updates: each subscription has its own keeper (``_Keeper``), so one slow tab or
    # one Janus request that gets no answer delays that tab alone, never the others or a later floor.

    def _subs(self) -> list[View | Wall]:
        return [*self.views.values(), *self.walls.values()]

    def _current(self, sub: View | Wall) -> bool:
        return (self.views.get(sub.peer) if isinstance(sub, View) else self.walls.get(sub.peer)) is sub

    def _refresh_later(self) -> None:
        """Bring every live view and wall to the current floor in the background."""
        for sub in self._subs():
            self._kick(sub)

    def _kick(self, sub: View | Wall) -> None:
        keeper = sub.keeper
        if self._closed or sub.down or not self._current(sub):
            return
        if keeper.retry is not None:
            keeper.retry.cancel()
            keeper.retry = None
        if keeper.task is not None and not keeper.task.done():
            keeper.again = True  # the running update ends with another round at the latest floor
            return
        keeper.task = asyncio.ensure_future(self._keep(sub))

    async def _keep(self, sub: View | Wall) -> None:
        keeper = sub.keeper
        try:
            while True:
                keeper.again = False
                ok = await self._update(sub)
                if self._closed or sub.down or not self._current(sub):
                    return
                if not ok:
                    self._retry_later(sub)
                    return
                keeper.failures = 0
                if not keeper.again:
                    return
        except asyncio.CancelledError:
            keeper.dirty = True  # cut short (``settle``, ``close``): where it got to is unknown
            raise
        except Exception:
            keeper.dirty = True
            log.exception("room %s: updating the %s of %s", self.room, self._target(sub), sub.peer)
            self._retry_later(sub)

    def _retry_later(self, sub: View | Wall) -> None:
        keeper = sub.keeper
        keeper.failures += 1
        if self._closed or keeper.retry is not None:
            return
        delay = RETRY_DELAYS[min(keeper.failures, len(RETRY_DELAYS)) - 1]
        keeper.retry = asyncio.get_running_loop().call_later(delay, self._retry_now, sub)

    def _retry_now(self, sub: View | Wall) -> None:
        sub.keeper.retry = None
        self._kick(sub)

    @staticmethod
    def _target(sub: View | Wall) -> str:
        return "view" if isinstance(sub, View) else "wall"

    async def _update(self, sub: View | Wall) -> bool:
        """One round for one subscription: Janus first (a few subscriptions at a time), then the tab.

        The tab is told (``media.slots``) once no other subscription is waiting for its switch, or
        after ``SHOW_DEFER``: at a floor change the app's time goes to Janus's ~70 switches first —
        each site hears the new holder when its switch is done, the message only relabels the slot."""
        self._syncing += 1
        self._switched.clear()
        try:
            async with self._gate, sub.keeper.lock:
                if self._closed or sub.down or not self._current(sub):
                    return True
                if isinstance(sub, View):
                    synced = await self._sync(sub, self._view_wants(sub), "view")
                else:
                    synced = await self._sync(sub, self._wall_wants(sub), "wall")
        finally:
            self._syncing -= 1
            if self._syncing == 0:
                self._switched.set()
        if not self._switched.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._switched.wait(), SHOW_DEFER)
        return await self._show(sub) and synced

    async def _show(self, sub: View | Wall) -> bool:
        """Tell the tab what its slots (or tiles) now carry, if that changed; False if it would not
        take it (it is told again with the retry)."""
        if isinstance(sub, View):
            shown, kind = sub.slots_json(), "media.slots"
        else:
            shown, kind = self._wall_json(sub), "media.wall"
        if not sub.started or shown == sub.shown:
            return True
        sub.shown = shown
        if await self._push(sub.peer, {"type": kind, **shown}):
            return True
        sub.shown = None  # unknown at the tab: send it again
        return False

    async def settle(self) -> None:
        """Let the background updates finish before publishers or subscriptions change: everything
        that adds, replaces or drops one calls this first (under the hub's room lock, so no floor
        change starts new ones meanwhile). Waits at most ``SETTLE_TIMEOUT``; what is still running
        then is cancelled (those subscriptions are resent in full afterwards, see ``_Keeper.dirty``)."""
        tasks = {t for sub in self._subs() if (t := sub.keeper.task) is not None and not t.done()}
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=SETTLE_TIMEOUT)
        if pending:
            log.warning(
                "room %s: %d view updates still running after %.1f s, restarted later",
                self.room,
                len(pending),
                SETTLE_TIMEOUT,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            for sub in self._subs():
                if sub.keeper.dirty and sub.keeper.retry is None and not sub.down:
                    self._retry_later(sub)

    @staticmethod
    def _forget(sub: View | Wall) -> None:
        """``sub`` is no longer the tab's: no retry of it (a running update stops by itself)."""
        JanusStage._stop_layer_timer(sub)
        if sub.keeper.retry is not None:
            sub.keeper.retry.cancel()
            sub.keeper.retry = None

    async def _stop_keepers(self) -> None:
        """Cancel every background update and retry (the stage closes or starts again)."""
        if self._moderation_retry is not None:
            self._moderation_retry.cancel()
            self._moderation_retry = None
        tasks: set[asyncio.Future[Any]] = set()
        if self._moderation_task is not None and not self._moderation_task.done():
            self._moderation_task.cancel()
            tasks.add(self._moderation_task)
        for sub in self._subs():
            self._stop_layer_timer(sub)
            keeper = sub.keeper
            if keeper.retry is not None:
                keeper.retry.cancel()
                keeper.retry = None
            if keeper.task is not None and not keeper.task.done():
                keeper.task.cancel()
                tasks.add(keeper.task)
        if tasks:
            await asyncio.wait(tasks)

    async def _refresh_all(self) -> None:
        """Every live view and wall to the current publishers and floor, in the background."""
        self._refresh_later()

    def _park(self, stream: Stream, exclude: int | None = None) -> _Want:
        """Pause ``stream``; keep it on a live feed so that it never goes inactive."""
        feed = stream.feed
        if feed is None or feed == exclude or not self._live(feed, stream.kind):
            feed = self._placeholder(stream.kind, exclude) if stream.feed is not None else None
        return _Want(stream, feed, False)

    async def _park_all(self, site_id: int) -> None:
        """Before ``site_id`` goes away, move every stream it feeds to another feed (every
        subscription at once)."""

        async def park(sub: View | Wall) -> None:
            async with sub.keeper.lock:
                streams = sub.streams() if isinstance(sub, View) else sub.tiles
                wants = [self._park(s, exclude=site_id) for s in streams if s.feed == site_id]
                synced = (
                    not wants or sub.down or await self._sync(sub, wants, self._target(sub), partial=True)
                )
                if not synced:
                    self._retry_later(sub)

        await asyncio.gather(*(park(sub) for sub in self._subs()))

    def _view_wants(self, view: View) -> list[_Want]:
        """What each stream of ``view`` should carry now (and updates which site each slot shows)."""
        wants: list[_Want] = []
        layer = view.layer_state.layer
        host = self.host_site_id if self._live(self.host_site_id) else None
        view.host.site_id = host
        if host is None:
            wants += [self._park(view.host.video), self._park(view.host.audio)]
        else:
            wants += [
                _Want(view.host.video, host, True, layer=layer),
                _Want(view.host.audio, host, view.site_id != host),
            ]
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
            elif holder == view.site_id:
                # A site never hears itself: its own slot's audio stays parked where it was.
                wants += [_Want(slot.video, holder, True, layer=layer), self._park(slot.audio)]
            else:
                wants += [_Want(slot.video, holder, True, layer=layer), _Want(slot.audio, holder, True)]
        if not view.active:
            # Pre-warmed: the same feeds, none of them sent (switching on is then ``send`` only).
            wants = [_Want(w.stream, w.feed, False) for w in wants]
        return wants

    async def _refresh_view(self, view: View, *, push: bool = True) -> bool:
        """Update ``view`` now (in the caller's task); False when Janus or the tab failed (logged; the
        view is then retried in the background)."""
        async with view.keeper.lock:
            ok = await self._sync(view, self._view_wants(view), "view")
        if push:
            ok = await self._show(view) and ok
        if not ok:
            self._retry_later(view)
        return ok

    def wall_sites(self) -> list[int]:
        """The wall's order now: host, floor holders, sites sending a picture, then the others."""
        live = [s for s in self.order if self._live(s, "video")]
        return wall_order(self.order, host_site_id=self.host_site_id, speaking=self.holders, live=live)

    def _page_sites(self, page: int) -> list[int]:
        return self.wall_sites()[(page - 1) * WALL_PAGE : page * WALL_PAGE]

    def _wall_wants(self, wall: Wall) -> list[_Want]:
        sites = self._page_sites(wall.page)
        wants: list[_Want] = []
        for i, tile in enumerate(wall.tiles):
            site = sites[i] if i < len(sites) else None
            wall.sites[i] = site
            if site is not None and self._live(site, "video"):
                wants.append(_Want(tile, site, True, dict(WALL_LAYER)))
            else:
                wants.append(self._park(tile))
        return wants

    async def _refresh_wall(self, wall: Wall, *, push: bool = True) -> bool:
        async with wall.keeper.lock:
            ok = await self._sync(wall, self._wall_wants(wall), "wall")
        if push:
            ok = await self._show(wall) and ok
        if not ok:
            self._retry_later(wall)
        return ok

    async def _sync(
        self, sub: View | Wall, wants: list[_Want], target: str, *, partial: bool = False
    ) -> bool:
        """Switch streams to their wanted feeds, then set what Janus sends (one request each); True
        when Janus did both. Each request waits at most ``JANUS_TIMEOUT``.

        Switching a stream that went inactive (its feed left without being parked) makes Janus
        renegotiate: the answer to the switch is then an "updated" event with a new offer, which
        goes to the tab (``media.offer``); the stream carries media once the tab has answered.

        After a failure (an error, no answer in time, cut short) Janus's state of the subscription
        is unknown (``_Keeper.dirty``): the next round sends every stream's feed and ``send``.
        ``partial``: ``wants`` covers some of the streams only (it cannot make a dirty one clean)."""
        handle, peer, keeper = sub.handle, sub.peer, sub.keeper
        was_dirty = keeper.dirty
        full = was_dirty and not partial
        switch = [
            {"feed": w.feed, "mid": self._mid(w.feed, w.stream.kind), "sub_mid": w.stream.mid}
            for w in wants
            if w.feed is not None and (full or w.feed != w.stream.feed) and self._live(w.feed, w.stream.kind)
        ]
        switched: set[str] = set()
        keeper.dirty = True  # until both requests are answered
        try:
            if switch:
                response = await asyncio.wait_for(handle.switch(switch), JANUS_TIMEOUT)
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
                    w.stream.layer = None  # ... and targets the top layer
                    switched.add(w.stream.mid)
            configure = []
            for w in wants:
                # A switch resumes sending and resets the simulcast layer: set what differs (all of
                # it after a failure: Janus skips a switch to the feed a stream already has).
                relayer = w.send and w.layer is not None and _layer_of(w.stream) != w.layer
                redo = w.stream.mid in switched and (not w.send or bool(w.extra))
                if full or redo or relayer or w.stream.send != w.send:
                    body = {"mid": w.stream.mid, "send": w.send, **(w.extra if w.send else {})}
                    if w.send and w.layer is not None:
                        body["substream"] = w.stream.layer = w.layer
                    configure.append(body)
                    w.stream.send = w.send
            if configure:
                await asyncio.wait_for(handle.configure(configure), JANUS_TIMEOUT)
        except TimeoutError:
            log.warning(
                "room %s: updating the %s of %s: no answer from Janus within %.1f s",
                self.room,
                target,
                peer,
                JANUS_TIMEOUT,
            )
            return False
        except JanusPluginError as exc:
            # 428 "No such mid ... in subscription": Janus dropped the streams with the
            # PeerConnection (its "hangup" marks the view down) — or it is something passing: retried.
            log.warning("room %s: updating the %s of %s failed: %s", self.room, target, peer, exc)
            return False
        except JanusClientError as exc:
            log.warning("room %s: updating the %s of %s failed: %s", self.room, target, peer, exc)
            return False
        keeper.dirty = was_dirty and partial
        return True

    # -- simulcast layer of each view (giaoban/live/layers.py) ------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _set_layers(self, view: View, state: layers.LayerState) -> None:
        """Adopt ``state``; a new layer goes to Janus (and to the tab in ``media.slots``) through the
        view's keeper, like a floor change."""
        changed = state.layer != view.layer_state.layer
        view.layer_state = state
        if changed:
            log.info("room %s: the view of %s goes to layer %d", self.room, view.peer, state.layer)
            self._kick(view)
        self._plan_layer(view)

    def _plan_layer(self, view: View) -> None:
        """(Re)arm the view's timer for its next step up (none at the top)."""
        if view.layer_timer is not None:
            view.layer_timer.cancel()
            view.layer_timer = None
        due = layers.next_change(view.layer_state, self.layer_policy)
        running = view.media_up and view.active  # a pre-warmed view carries nothing to judge
        if due is None or self._closed or not running or not self._current(view):
            return
        loop = asyncio.get_running_loop()
        view.layer_timer = loop.call_at(max(due, loop.time()) + 0.01, self._layer_due, view)

    def _layer_due(self, view: View) -> None:
        view.layer_timer = None
        if self._closed or not self._current(view):
            return
        self._set_layers(view, layers.step(view.layer_state, self._now(), None, self.layer_policy))

    def downstream_loss(self, loss_by_site: dict[int, float]) -> None:
        """New downstream (Janus → site) loss figures, % per site (the quality monitor, every sample
        whose counters moved): each of the site's views steps its layer down or stays."""
        if self._closed:
            return
        now = self._now()
        for view in list(self.views.values()):
            loss = loss_by_site.get(view.site_id) if view.site_id is not None else None
            if loss is None or not view.media_up or not view.active:
                continue
            self._set_layers(view, layers.step(view.layer_state, now, loss, self.layer_policy))

    @staticmethod
    def _stop_layer_timer(sub: View | Wall) -> None:
        if isinstance(sub, View) and sub.layer_timer is not None:
            sub.layer_timer.cancel()
            sub.layer_timer = None

    # -- leaving ---------------------------------------------------------------------------

    async def peer_gone(self, peer: str, site_id: int | None, last_tab: bool) -> bool:
        """The tab left: its subscriptions go, and its site's publisher if this tab published it.
        True when a publisher went away."""
        await self.settle()
        view = self.views.pop(peer, None)
        if view is not None:
            self._forget(view)
            await self._detach(view.handle.handle)
        wall = self.walls.pop(peer, None)
        if wall is not None:
            self._forget(wall)
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
        if self._media_listener is not None:
            self.media.remove_listener(self._media_listener)
            self._media_listener = None
        self.listener = None
        self.send = None
        self._closed = True
        await self._stop_keepers()
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

    # -- recovery (Janus restarted, our session lost, a tab's ICE failed) ---------------------

    def watch_media(self) -> None:
        """Turn what the media service says about our node into a ``reset`` stage event (the hub
        then runs its one recovery path, see ``Hub._recover``): the connection to the node dropped,
        the supervisor restarted Janus, our session or the meeting's room is lost. Any of them, in
        any order and any number of times: the recovery checks what is really lost (``recover``)."""

        def on_media(event: MediaEvent) -> None:
            if event.node != self.node or self._closed:
                return
            ours = (
                event.kind in ("node_down", "node_restarted")
                or (event.kind == "rooms_lost" and self.room in event.rooms)
                or (event.kind == "sessions_lost" and self.session.id in event.sessions)
            )
            if ours:
                self._emit(StageEvent("reset", target=event.kind))

        self._media_listener = on_media
        self.media.add_listener(on_media)

    async def wait_media(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until the media service is back on our node: connected, its
        control session rebuilt, its rooms checked. True when it is."""
        return await self.media.wait_ready(self.node, timeout)

    async def recover(self) -> bool:
        """Start the media side again if Janus lost it: the same room id and secret, a new session,
        no publishers, views or walls (every tab republishes and resubscribes: the hub tells them
        with ``media.reset``). The floor (``audible``, ``holders``) is kept, so each publisher that
        comes back is moderated before its answer leaves, as on any publish.

        Idempotent: True only when something was lost and has been rebuilt now; False when our
        session and the room are in place (a dropped connection whose sessions were claimed, or a
        loss already recovered). ``MediaFailure`` when the media service is not back yet or a
        request failed: the caller tries again later."""
        if not self.media.ready(self.node):
            raise MediaFailure("media_unavailable", "Máy chủ media chưa sẵn sàng trở lại.")
        try:
            session_lost = self.session.lost
            room_there = await self.control.exists(self.room)
            if room_there and not session_lost:
                self.media.track_room(self.node, self.room, self.secret)
                return False
            await self._stop_keepers()
            handles = [
                *(p.handle.handle for p in self.publishers.values()),
                *(v.handle.handle for v in self.views.values()),
                *(w.handle.handle for w in self.walls.values()),
            ]
            self.publishers.clear()
            self.views.clear()
            self.walls.clear()
            if not session_lost:  # the room went, our session did not: its handles are useless now
                for handle in handles:
                    await self._detach(handle)
            if not room_there:
                try:
                    options = self.options or RoomOptions(secret=self.secret)
                    await self.media.create_room(options, room=self.room, node=self.node)
                except JanusPluginError as exc:
                    if exc.code != ERR_ROOM_EXISTS:
                        raise
            self.media.track_room(self.node, self.room, self.secret)
            if session_lost:
                self.session = await self.media.client(self.node).create_session()
        except (JanusClientError, KeyError) as exc:
            raise MediaFailure(
                "media_unavailable", f"Không dựng lại được phòng họp trên máy chủ media: {exc}"
            ) from exc
        lost = [w for w, gone in (("session", session_lost), ("room", not room_there)) if gone]
        log.info("meeting room %s on %s rebuilt (lost: %s)", self.room, self.node, " and ".join(lost))
        return True

    async def restart(
        self, peer: str, site_id: int | None, target: str, jsep: dict[str, Any] | None
    ) -> dict[str, Any]:
        """ICE restart of a tab's PeerConnection, keeping the handle: the publisher renegotiates
        with its new offer (``configure`` + offer made with ``iceRestart``; moderation applied again
        to every audio mid Janus then reports, before the answer leaves; an offer that is not a pure
        ICE restart — other m-lines, the old ICE credentials — is refused: ``restart_refused``); a subscription asks Janus for a new offer (``configure`` with
        ``restart: true``), answered by the tab with ``media.start``. A PeerConnection Janus has
        already hung up cannot be restarted (``no_peer_connection``): publish or subscribe again."""
        await self.settle()
        if target == "publisher":
            pub = self.publishers.get(site_id) if site_id is not None else None
            if pub is None or pub.owner != peer or not pub.started:
                raise MediaFailure("no_peer_connection", "Không có kết nối media tương ứng; hãy phát lại.")
            if jsep is None or jsep.get("type") != "offer":
                raise MediaFailure("invalid", "Khởi động lại ICE của luồng phát cần một SDP offer.")
            offer = str(jsep.get("sdp") or "")
            refusal = muting.restart_refusal(pub.offer, offer)
            if refusal is not None:
                raise MediaFailure("restart_refused", refusal)  # nothing sent to Janus
            try:
                response = await pub.handle.configure(jsep=jsep)
            except JanusClientError as exc:
                raise MediaFailure("restart_failed", f"Janus từ chối khởi động lại ICE: {exc}") from exc
            if response.jsep is None:
                raise MediaFailure("restart_failed", "Janus không trả lời SDP.")
            pub.offer = offer
            if not await self._negotiated(pub, response.data.get("streams")):
                # Janus took the offer but a stream of a site without the floor is not blocked: the
                # publisher goes; the tab publishes anew (moderated before that answer leaves).
                await self._drop_publisher(pub)
                await self._refresh_all()
                raise MediaFailure(
                    "restart_failed", "Máy chủ media chưa chặn được tiếng của điểm cầu; hãy phát lại."
                )
            return {"jsep": response.jsep}
        sub: View | Wall | None = self.views.get(peer) if target == "view" else self.walls.get(peer)
        if sub is None or sub.down:
            raise MediaFailure(
                "no_peer_connection", "Không có kết nối media tương ứng; hãy đăng ký nhận lại."
            )
        try:
            response = await sub.handle.configure([], restart=True)
        except JanusClientError as exc:
            raise MediaFailure("restart_failed", f"Janus từ chối khởi động lại ICE: {exc}") from exc
        if response.jsep is None:
            raise MediaFailure("restart_failed", "Janus không gửi SDP mới.")
        return {"jsep": response.jsep}


def stage_factory(media: MediaService) -> Any:
    async def make(meeting_id: int, live: LiveMeeting) -> JanusStage:
        return await JanusStage.open(media, meeting_id, live)

    return make
