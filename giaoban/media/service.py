"""The media plane as the web app sees it: one object to start, stop, health-check and feed events to.

Wiring (done by the app, see docs/media.md)::

    media = MediaService.from_env(settings.data_dir, event_backend_url="http://127.0.0.1:8000/internal/janus/events")
    await media.start()          # lifespan startup; never raises for an unreachable node
    await media.health()         # /healthz: {"status": "ok"|"degraded"|"down", "nodes": [...]}
    media.ingest_events(body)    # POST /internal/janus/events (check media.check_event_auth first)
    await media.stop()           # lifespan shutdown
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from giaoban.media.client import (
    ClientEvent,
    JanusAdminClient,
    JanusClient,
    JanusClientError,
    JanusSession,
)
from giaoban.media.config import JanusNode, JanusSettings, load_janus_settings
from giaoban.media.events import EventStore, HandleState
from giaoban.media.supervisor import JanusStartError, JanusSupervisor, read_rss_mb
from giaoban.media.videoroom import RoomOptions, VideoRoom

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0
EVENTS_USER = "janus"


@dataclass(slots=True)
class MediaEvent:
    """Something callers must react to.

    ``kind``: ``node_down`` (connection to a node lost), ``node_up`` (connected/reconnected),
    ``node_restarted`` (the supervisor restarted the local Janus; ``restarts`` is the counter),
    ``sessions_lost`` (``sessions``), ``rooms_lost`` (``rooms``: rooms created through this service that
    the node no longer has; recreate them and rejoin their sites).
    """

    kind: Literal["node_down", "node_up", "node_restarted", "sessions_lost", "rooms_lost"]
    node: str
    rooms: list[int] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    restarts: int = 0
    reason: str = ""


MediaListener = Callable[[MediaEvent], Awaitable[None] | None]


@dataclass(slots=True)
class NodeRuntime:
    """A node plus our connections to it and the rooms we placed on it."""

    node: JanusNode
    client: JanusClient
    admin: JanusAdminClient | None
    control_session: JanusSession | None = None
    control: VideoRoom | None = None
    rooms: dict[int, str | None] = field(default_factory=dict)
    connect_task: asyncio.Task[None] | None = None
    last_error: str = ""
    # Set once connected with a live control session and the rooms checked (see ``MediaService.ready``);
    # cleared when the connection drops.
    up: asyncio.Event = field(default_factory=asyncio.Event)
    restore_task: asyncio.Task[None] | None = None


class MediaService:
    """Owns the local Janus (if any), one API client per node, room placement and event state."""

    def __init__(
        self,
        settings: JanusSettings,
        data_dir: Path,
        *,
        event_backend_url: str | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.event_backend_url = event_backend_url
        self.events = EventStore()
        self.supervisor: JanusSupervisor | None = None
        if settings.mode == "local":
            self.supervisor = JanusSupervisor(
                settings, data_dir, event_backend_url=event_backend_url, on_restart=self._on_restart
            )
        self.nodes: dict[str, NodeRuntime] = {}
        self._client_options = client_options or {}
        self._listeners: list[MediaListener] = []
        self._start_error: str = ""
        self._retry_task: asyncio.Task[None] | None = None
        self._started = False

    @classmethod
    def from_env(cls, data_dir: Path, *, event_backend_url: str | None = None) -> MediaService:
        """Build from ``GIAOBAN_JANUS_*`` with secrets kept in ``data_dir`` (see load_janus_settings)."""
        return cls(load_janus_settings(data_dir), data_dir, event_backend_url=event_backend_url)

    def add_listener(self, listener: MediaListener) -> None:
        """Register ``listener(MediaEvent)`` (function or coroutine)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: MediaListener) -> None:
        """Unregister a listener added with :meth:`add_listener` (no error if it is not there)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def _emit(self, event: MediaEvent) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("media listener failed")

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self, *, wait: float = 5.0) -> None:
        """Start the local Janus (local mode) and connect to every node.

        Failing nodes do not make this raise: the app must come up and report media as down in its
        health; connections keep being retried in the background. Waits up to ``wait`` seconds for the
        first connections.
        """
        if self._started:
            return
        self._started = True
        if self.supervisor is not None:
            try:
                await self.supervisor.start()
            except JanusStartError as exc:
                self._start_error = str(exc)
                log.error("local janus failed to start (retrying in the background): %s", exc)
                self._retry_task = asyncio.create_task(self._retry_local_start(), name="media-janus-retry")
        for node in self.settings.effective_nodes():
            client = JanusClient(
                node.ws_url,
                api_secret=node.api_secret,
                request_timeout=self.settings.request_timeout,
                keepalive_interval=self.settings.keepalive_interval,
                name=node.name,
                **self._client_options,
            )
            admin = (
                JanusAdminClient(node.admin_url, admin_secret=node.admin_secret) if node.admin_url else None
            )
            rt = NodeRuntime(node=node, client=client, admin=admin)
            client.add_listener(self._client_listener(rt))
            self.nodes[node.name] = rt
            rt.connect_task = asyncio.create_task(
                self._connect_forever(rt), name=f"media-connect {node.name}"
            )
        tasks = [rt.connect_task for rt in self.nodes.values() if rt.connect_task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=wait)

    async def _retry_local_start(self) -> None:
        assert self.supervisor is not None
        delay = self.settings.restart_backoff_initial
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.restart_backoff_max)
            try:
                await self.supervisor.start()
            except JanusStartError as exc:
                self._start_error = str(exc)
                continue
            self._start_error = ""
            return

    async def stop(self) -> None:
        """Disconnect from every node and stop the local Janus."""
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None
        for rt in self.nodes.values():
            for task in (rt.connect_task, rt.restore_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await rt.client.close()
            if rt.admin is not None:
                await rt.admin.close()
        self.nodes.clear()
        if self.supervisor is not None:
            await self.supervisor.stop()
        self._started = False

    async def _connect_forever(self, rt: NodeRuntime) -> None:
        delay = 0.2
        while True:
            try:
                await rt.client.connect()
                await self._setup_control(rt)
                rt.last_error = ""
                rt.up.set()
                await self._emit(MediaEvent("node_up", rt.node.name))
                return
            except JanusClientError as exc:
                rt.last_error = str(exc)
                log.info("media node %s not reachable yet: %s", rt.node.name, exc)
                if rt.client.connected:
                    await rt.client.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _setup_control(self, rt: NodeRuntime) -> None:
        rt.control_session = await rt.client.create_session()
        rt.control = await VideoRoom.attach(rt.control_session, opaque_id=f"giaoban-control-{rt.node.name}")
        rt.control.created = dict(rt.rooms)

    def _client_listener(self, rt: NodeRuntime) -> Callable[[ClientEvent], Awaitable[None]]:
        async def listener(event: ClientEvent) -> None:
            await self._on_client_event(rt, event)

        return listener

    async def _on_client_event(self, rt: NodeRuntime, event: ClientEvent) -> None:
        if event.kind == "disconnected":
            rt.up.clear()
            await self._emit(MediaEvent("node_down", rt.node.name, reason=event.reason))
        elif event.kind == "reconnected":
            if event.lost:
                await self._emit(MediaEvent("sessions_lost", rt.node.name, sessions=list(event.lost)))
            if not await self._restore(rt) and (rt.restore_task is None or rt.restore_task.done()):
                rt.restore_task = asyncio.create_task(
                    self._restore_forever(rt), name=f"media-restore {rt.node.name}"
                )

    async def _restore(self, rt: NodeRuntime) -> bool:
        """After a reconnect: a new control session if ours was lost, the rooms checked (``rooms_lost``),
        then the node counts as up again (``node_up``). False (logged) when a request failed."""
        try:
            if rt.control_session is None or rt.control_session.lost:
                await self._setup_control(rt)
            await self._check_rooms(rt)
        except JanusClientError as exc:
            rt.last_error = str(exc)
            log.warning("media node %s: recovery after reconnect failed: %s", rt.node.name, exc)
            return False
        rt.last_error = ""
        rt.up.set()
        await self._emit(MediaEvent("node_up", rt.node.name))
        return True

    async def _restore_forever(self, rt: NodeRuntime) -> None:
        """Retry ``_restore`` with backoff while connected (a new drop starts over on its reconnect)."""
        delay = 0.2
        while rt.client.connected and not rt.up.is_set():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            if rt.client.connected and await self._restore(rt):
                return

    def ready(self, node: str) -> bool:
        """Whether ``node`` is usable for rooms: connected, with a live control session, its rooms
        checked since the last reconnect (a room's recovery waits for this, ``wait_ready``)."""
        rt = self.nodes.get(node)
        return (
            rt is not None
            and rt.up.is_set()
            and rt.client.connected
            and rt.control is not None
            and rt.control_session is not None
            and not rt.control_session.lost
        )

    async def wait_ready(self, node: str, timeout: float) -> bool:
        """Wait at most ``timeout`` s for :meth:`ready`; True when it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready(node):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            rt = self.nodes.get(node)
            if rt is None or rt.up.is_set():
                await asyncio.sleep(min(0.1, remaining))  # up, but not usable (yet): look again soon
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rt.up.wait(), remaining)
        return True

    async def _check_rooms(self, rt: NodeRuntime) -> None:
        if rt.control is None or not rt.rooms:
            return
        rt.control.created = dict(rt.rooms)
        lost = await rt.control.missing_rooms()
        for room in lost:
            rt.rooms.pop(room, None)
        if lost:
            await self._emit(MediaEvent("rooms_lost", rt.node.name, rooms=lost))

    async def _on_restart(self, restarts: int) -> None:
        await self._emit(MediaEvent("node_restarted", "local", restarts=restarts))

    # -- rooms and clients -----------------------------------------------------------------------------

    def pick_node(self) -> str:
        """The connected node with the most free capacity (rooms placed / capacity)."""
        candidates = [rt for rt in self.nodes.values() if rt.client.connected and rt.control is not None]
        if not candidates:
            raise JanusClientError("no media node is available")
        best = min(candidates, key=lambda rt: len(rt.rooms) / rt.node.capacity)
        return best.node.name

    def client(self, node: str) -> JanusClient:
        """The API client of a node (for publisher/subscriber sessions)."""
        return self.nodes[node].client

    def control(self, node: str) -> VideoRoom:
        """The VideoRoom control helper of a node (room management requests)."""
        ctl = self.nodes[node].control
        if ctl is None:
            raise JanusClientError(f"media node {node} is not connected")
        return ctl

    async def create_room(
        self, options: RoomOptions, *, room: int | None = None, node: str | None = None
    ) -> tuple[str, int]:
        """Create a room on ``node`` (least loaded if None); tracked so its loss is reported."""
        name = node or self.pick_node()
        rt = self.nodes[name]
        room_id = await self.control(name).create(room, options)
        rt.rooms[room_id] = options.secret
        return name, room_id

    def track_room(self, node: str, room: int, secret: str | None) -> None:
        """Count ``room`` as placed on ``node`` again (after recreating it), so its loss is reported."""
        rt = self.nodes.get(node)
        if rt is not None:
            rt.rooms[room] = secret
            if rt.control is not None:
                rt.control.created[room] = secret

    async def destroy_room(self, node: str, room: int) -> None:
        """Destroy a room created with :meth:`create_room`."""
        rt = self.nodes[node]
        await self.control(node).destroy(room, rt.rooms.get(room))
        rt.rooms.pop(room, None)

    # -- events ----------------------------------------------------------------------------------------

    def check_event_auth(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the event handler's basic-auth credentials."""
        secret = self.settings.events_secret
        if not secret:
            return True
        expected = "Basic " + base64.b64encode(f"{EVENTS_USER}:{secret}".encode()).decode()
        return authorization is not None and hmac.compare_digest(authorization.encode(), expected.encode())

    def ingest_events(self, events: list[dict[str, Any]] | dict[str, Any]) -> int:
        """Feed a POSTed event-handler payload (an event or a list); return how many were used."""
        return self.events.ingest(events)

    def site_state(self, opaque_id: str) -> list[HandleState]:
        """Latest state of every live handle attached with this ``opaque_id``."""
        return self.events.for_opaque_id(opaque_id)

    # -- health ----------------------------------------------------------------------------------------

    async def _node_health(self, rt: NodeRuntime) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": rt.node.name,
            "status": "down",
            "url": rt.node.ws_url,
            "connected": rt.client.connected,
            "capacity": rt.node.capacity,
            "rooms": len(rt.rooms),
            "reconnects": rt.client.reconnects,
        }
        if rt.node.name == "local" and self.supervisor is not None:
            sup = self.supervisor
            entry.update(
                state=sup.state,
                pid=sup.pid,
                restarts=sup.restarts,
                last_exit_code=sup.last_exit_code,
                rss_mb=round(rss, 1) if (sup.pid and (rss := read_rss_mb(sup.pid)) is not None) else None,
                uptime_s=round(time.monotonic() - sup.started_at, 1) if sup.started_at and sup.pid else None,
            )
        if rt.client.connected:
            t0 = time.monotonic()
            try:
                info = await rt.client.info(timeout=HEALTH_TIMEOUT)
                entry["latency_ms"] = round((time.monotonic() - t0) * 1000, 1)
                entry["version"] = info.get("version_string")
                entry["status"] = "ok"
            except JanusClientError as exc:
                entry["error"] = str(exc)
        elif rt.last_error:
            entry["error"] = rt.last_error
        local = rt.node.name == "local" and self.supervisor is not None
        if local and self._start_error and self.supervisor is not None and self.supervisor.state != "running":
            entry["error"] = self._start_error[:500]
        return entry

    async def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded"|"down", "nodes": [{"name", "status", ...}]}``.

        ``ok``: every node answers; ``degraded``: some do; ``down``: none does (or none configured).
        """
        nodes = list(await asyncio.gather(*(self._node_health(rt) for rt in self.nodes.values())))
        up = sum(1 for n in nodes if n["status"] == "ok")
        status = "ok" if nodes and up == len(nodes) else "degraded" if up else "down"
        return {"status": status, "nodes": nodes}
