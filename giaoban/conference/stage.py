"""The media side of a live meeting: one Janus VideoRoom, the sites' publishers, everyone's view.

Floor control is enforced here, on Janus, never trusted to the browser:
- every site but the host and the floor holders has its audio blocked with VideoRoom ``moderate``
  (applied again whenever the site publishes anew, since Janus forgets it on republish);
- each tab's subscription has fixed slots: the host (video + audio) and ``SPEAKER_SLOTS`` speaker
  slots (video + audio). Speaker slots carry only holders; a floor change is a ``switch`` of those
  slots (no renegotiation), and an empty slot is paused with ``send: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from giaoban.conference.hub import MediaFailure
from giaoban.conference.live import LiveMeeting
from giaoban.media.client import JanusClientError, JanusPluginError, JanusSession
from giaoban.media.service import MediaService
from giaoban.media.videoroom import RoomOptions, VideoRoom, VideoRoomPublisher, VideoRoomSubscriber

log = logging.getLogger(__name__)

SPEAKER_SLOTS = 4  # the most simultaneous holders a discussion may have


@dataclass
class Publisher:
    site_id: int
    owner: str  # the tab (peer key) that publishes
    handle: VideoRoomPublisher
    audio_mids: list[str] = field(default_factory=list)
    video_mids: list[str] = field(default_factory=list)
    muted: bool = False


@dataclass
class Slot:
    """One (video, audio) pair of mids in a subscription, and the feed it carries now."""

    video: str
    audio: str
    feed: int | None = None
    sending: bool = True


@dataclass
class Subscription:
    peer: str
    site_id: int | None
    handle: VideoRoomSubscriber
    host: Slot
    speakers: list[Slot]
    started: bool = False


def _mids(streams: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    audio = [str(s["mid"]) for s in streams if s.get("type") == "audio" and not s.get("disabled")]
    video = [str(s["mid"]) for s in streams if s.get("type") == "video" and not s.get("disabled")]
    return audio, video


class JanusStage:
    def __init__(self, media: MediaService, node: str, room: int, secret: str, session: JanusSession) -> None:
        self.media = media
        self.node = node
        self.room = room
        self.secret = secret
        self.session = session
        self.publishers: dict[int, Publisher] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.audible: frozenset[int] = frozenset()
        self.holders: list[int] = []
        self.host_site_id = 0

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
        stage = cls(media, node, room, options.secret or "", session)
        stage.host_site_id = live.host_site_id
        stage.audible = live.floor.audible()
        stage.holders = live.floor.holder_ids()
        return stage

    @property
    def control(self) -> VideoRoom:
        return self.media.control(self.node)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, peer: str, site_id: int, jsep: dict[str, Any]) -> dict[str, Any]:
        old = self.publishers.pop(site_id, None)
        if old is not None:
            await self._drop_publisher(old)
        handle = await VideoRoomPublisher.attach(self.session, opaque_id=f"site-{site_id}")
        try:
            await handle.join(self.room, id=site_id, display=str(site_id))
            response = await handle.publish(jsep)
        except JanusClientError as exc:
            await self._detach(handle.handle)
            raise MediaFailure("publish_failed", f"Janus từ chối phát: {exc}") from exc
        if response.jsep is None:
            await self._detach(handle.handle)
            raise MediaFailure("publish_failed", "Janus không trả lời SDP.")
        audio, video = _mids(list(response.data.get("streams") or []))
        pub = Publisher(site_id, peer, handle, audio, video)
        self.publishers[site_id] = pub
        # Moderation is lost on every new PeerConnection: apply the policy to the new one now.
        await self._moderate(pub, mute=site_id not in self.audible)
        if site_id == self.host_site_id or site_id in self.holders:
            await self._refresh_all()
        return {"jsep": response.jsep}

    async def unpublish(self, site_id: int) -> None:
        pub = self.publishers.pop(site_id, None)
        if pub is not None:
            await self._drop_publisher(pub)

    async def _drop_publisher(self, pub: Publisher) -> None:
        with contextlib.suppress(JanusClientError):
            await pub.handle.leave()
        await self._detach(pub.handle.handle)

    async def _moderate(self, pub: Publisher, *, mute: bool) -> None:
        for mid in pub.audio_mids:
            try:
                await self.control.moderate(self.room, self.secret, pub.site_id, mid, mute)
            except JanusPluginError as exc:
                log.warning("moderate %s mid %s: %s", pub.site_id, mid, exc)
        pub.muted = mute

    # -- subscribing -----------------------------------------------------------------------

    def _feed_streams(self, site_id: int) -> tuple[str, str] | None:
        pub = self.publishers.get(site_id)
        if pub is None or not pub.video_mids or not pub.audio_mids:
            return None
        return pub.video_mids[0], pub.audio_mids[0]

    async def subscribe(self, peer: str, site_id: int | None) -> dict[str, Any]:
        old = self.subscriptions.pop(peer, None)
        if old is not None:
            await self._detach(old.handle.handle)
        host = self._feed_streams(self.host_site_id)
        if host is None:
            raise MediaFailure("host_not_ready", "Điểm cầu chính chưa phát hình; sẽ thử lại khi có tín hiệu.")
        streams: list[dict[str, Any]] = [
            {"feed": self.host_site_id, "mid": host[0]},
            {"feed": self.host_site_id, "mid": host[1]},
        ]
        placeholders: list[int] = []
        for i in range(SPEAKER_SLOTS):
            holder = self.holders[i] if i < len(self.holders) else None
            feed = holder if holder is not None and self._feed_streams(holder) else self.host_site_id
            placeholders.append(feed)
            mids = self._feed_streams(feed)
            assert mids is not None
            streams += [{"feed": feed, "mid": mids[0]}, {"feed": feed, "mid": mids[1]}]
        handle = await VideoRoomSubscriber.attach(
            self.session, opaque_id=f"view-{site_id or 'console'}-{peer}"
        )
        try:
            response = await handle.join(self.room, streams)
        except JanusClientError as exc:
            await self._detach(handle.handle)
            raise MediaFailure("subscribe_failed", f"Janus từ chối nhận: {exc}") from exc
        sub_mids = [str(s["mid"]) for s in response.data.get("streams") or []]
        if len(sub_mids) != len(streams) or response.jsep is None:
            await self._detach(handle.handle)
            raise MediaFailure("subscribe_failed", "Janus trả về luồng không như yêu cầu.")
        host_slot = Slot(sub_mids[0], sub_mids[1], self.host_site_id)
        speakers = [
            Slot(sub_mids[2 + 2 * i], sub_mids[3 + 2 * i], placeholders[i]) for i in range(SPEAKER_SLOTS)
        ]
        self.subscriptions[peer] = Subscription(peer, site_id, handle, host_slot, speakers)
        return {
            "jsep": response.jsep,
            "slots": {
                "host": {"video": host_slot.video, "audio": host_slot.audio},
                "speakers": [{"video": s.video, "audio": s.audio} for s in speakers],
            },
        }

    async def start(self, peer: str, jsep: dict[str, Any]) -> None:
        sub = self.subscriptions.get(peer)
        if sub is None:
            raise MediaFailure("not_subscribed", "Chưa đăng ký nhận hình.")
        try:
            await sub.handle.start(jsep)
        except JanusClientError as exc:
            raise MediaFailure("start_failed", f"Janus từ chối SDP: {exc}") from exc
        sub.started = True
        await self._refresh(sub)

    async def trickle(self, peer: str, site_id: int | None, target: str, candidate: Any) -> None:
        if target == "publisher":
            pub = self.publishers.get(site_id) if site_id is not None else None
            handle = pub.handle.handle if pub is not None and pub.owner == peer else None
        else:
            sub = self.subscriptions.get(peer)
            handle = sub.handle.handle if sub is not None else None
        if handle is None:
            raise MediaFailure("no_peer_connection", "Không có kết nối media tương ứng.")
        try:
            if candidate is None or candidate.get("completed"):
                await handle.trickle(completed=True)
            else:
                await handle.trickle(candidate)
        except JanusClientError as exc:
            raise MediaFailure("trickle_failed", str(exc)) from exc

    # -- floor enforcement -----------------------------------------------------------------

    async def enforce(self, audible: frozenset[int], holders: list[int]) -> None:
        """Make Janus match the floor: moderation first, then every view's speaker slots."""
        self.audible, self.holders = audible, list(holders)
        for pub in list(self.publishers.values()):
            mute = pub.site_id not in audible
            if pub.muted != mute:
                await self._moderate(pub, mute=mute)
        await self._refresh_all()

    async def _refresh_all(self) -> None:
        subs = [s for s in self.subscriptions.values() if s.started]
        await asyncio.gather(*(self._refresh(s) for s in subs))

    async def _refresh(self, sub: Subscription) -> None:
        """Point each speaker slot at its holder (switch) or pause it; re-point the host slot."""
        switch: list[dict[str, Any]] = []
        configure: list[dict[str, Any]] = []
        host = self._feed_streams(self.host_site_id)
        if host is not None and sub.host.feed != self.host_site_id:
            switch += [
                {"feed": self.host_site_id, "mid": host[0], "sub_mid": sub.host.video},
                {"feed": self.host_site_id, "mid": host[1], "sub_mid": sub.host.audio},
            ]
            sub.host.feed = self.host_site_id
        for i, slot in enumerate(sub.speakers):
            holder = self.holders[i] if i < len(self.holders) else None
            mids = self._feed_streams(holder) if holder is not None else None
            if holder is not None and mids is not None:
                if slot.feed != holder:
                    switch += [
                        {"feed": holder, "mid": mids[0], "sub_mid": slot.video},
                        {"feed": holder, "mid": mids[1], "sub_mid": slot.audio},
                    ]
                    slot.feed = holder
                if not slot.sending:
                    configure += [{"mid": slot.video, "send": True}, {"mid": slot.audio, "send": True}]
                    slot.sending = True
            elif slot.sending:
                configure += [{"mid": slot.video, "send": False}, {"mid": slot.audio, "send": False}]
                slot.sending = False
        try:
            if switch:
                await sub.handle.switch(switch)
            if configure:
                await sub.handle.configure(configure)
        except JanusClientError as exc:
            log.warning("refresh of %s failed: %s", sub.peer, exc)

    # -- leaving ---------------------------------------------------------------------------

    async def peer_gone(self, peer: str, site_id: int | None, last_tab: bool) -> None:
        sub = self.subscriptions.pop(peer, None)
        if sub is not None:
            await self._detach(sub.handle.handle)
        if site_id is not None:
            pub = self.publishers.get(site_id)
            if pub is not None and pub.owner == peer:
                self.publishers.pop(site_id, None)
                await self._drop_publisher(pub)

    async def _detach(self, handle: Any) -> None:
        with contextlib.suppress(JanusClientError):
            await handle.detach()

    async def close(self) -> None:
        for sub in list(self.subscriptions.values()):
            await self._detach(sub.handle.handle)
        for pub in list(self.publishers.values()):
            await self._detach(pub.handle.handle)
        self.subscriptions.clear()
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
