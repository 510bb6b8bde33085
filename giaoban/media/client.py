"""Asyncio client for the Janus API and admin API over WebSocket.

Janus answers every request with the same ``transaction``; asynchronous plugin requests answer ``ack``
first and then an ``event`` carrying that transaction. Errors come in two shapes that we normalize:

* core errors: ``{"janus": "error", "error": {"code", "reason"}}`` → :class:`JanusError`;
* plugin errors: a ``success``/``event`` whose ``plugindata.data`` has ``error_code`` (admin API:
  ``response.error_code``) → :class:`JanusPluginError`.

A :class:`JanusClient` reconnects by itself after the WebSocket drops and ``claim``s its sessions on the
new connection; sessions Janus no longer knows (it restarted, or ``reclaim_session_timeout`` passed) are
reported as lost to the listeners (see :class:`ClientEvent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

API_PROTOCOL = Subprotocol("janus-protocol")
ADMIN_PROTOCOL = Subprotocol("janus-admin-protocol")

# Janus core error codes the callers branch on.
ERR_UNAUTHORIZED = 403
ERR_SESSION_NOT_FOUND = 458
ERR_HANDLE_NOT_FOUND = 459


class JanusClientError(Exception):
    """Base of everything this module raises."""


class JanusError(JanusClientError):
    """An error answered by Janus itself (``"janus": "error"``), e.g. 403 wrong secret, 458 no session."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


class JanusPluginError(JanusError):
    """A plugin refused a request (e.g. VideoRoom 426 no such room, 428 no such feed, 433 unauthorized)."""

    def __init__(self, code: int, reason: str, plugin: str | None = None) -> None:
        super().__init__(code, reason)
        self.plugin = plugin
        self.args = (f"{plugin or 'plugin'} error {code}: {reason}",)


class JanusConnectionError(JanusClientError):
    """No connection to Janus, or it dropped before the answer came."""


class JanusTimeoutError(JanusClientError, TimeoutError):
    """Janus did not answer a transaction in time."""


class JanusSessionLostError(JanusClientError):
    """The session (and its handles) no longer exists on Janus."""


@dataclass(slots=True)
class ClientEvent:
    """Something that happened to the connection or to a session, for listeners.

    ``kind``: ``disconnected`` (WebSocket dropped; reconnecting), ``reconnected`` (``claimed`` and ``lost``
    list session ids), ``session_lost`` (``session_id``; ``reason`` says why), ``session_reclaimed``.
    """

    kind: Literal["disconnected", "reconnected", "session_lost", "session_reclaimed"]
    session_id: int | None = None
    reason: str = ""
    claimed: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


ClientListener = Callable[[ClientEvent], Awaitable[None] | None]
HandleCallback = Callable[[JsonDict], Awaitable[None] | None]


@dataclass(slots=True)
class PluginResponse:
    """The answer to a plugin ``message``: plugin ``data``, optional ``jsep`` and the raw Janus message."""

    data: JsonDict
    jsep: JsonDict | None
    raw: JsonDict


def _plugin_error(msg: JsonDict) -> JanusPluginError | None:
    plugindata = msg.get("plugindata")
    if isinstance(plugindata, dict):
        data = plugindata.get("data") or {}
        if isinstance(data, dict) and "error_code" in data:
            return JanusPluginError(
                int(data["error_code"]), str(data.get("error", "")), plugindata.get("plugin")
            )
    response = msg.get("response")
    if isinstance(response, dict) and "error_code" in response:
        return JanusPluginError(int(response["error_code"]), str(response.get("error", "")))
    return None


def _core_error(msg: JsonDict) -> JanusError:
    err = msg.get("error") or {}
    return JanusError(int(err.get("code", 0)), str(err.get("reason", "unknown error")))


async def _notify(callback: Callable[..., Awaitable[None] | None], *args: object) -> None:
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("janus listener failed")


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[JsonDict]
    wait_event: bool


class _JanusSocket:
    """One WebSocket with transaction bookkeeping; subclasses route unsolicited messages."""

    subprotocol: Subprotocol = API_PROTOCOL

    def __init__(
        self,
        url: str,
        *,
        request_timeout: float = 10.0,
        open_timeout: float = 5.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
    ) -> None:
        self.url = url
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self._tx_prefix = secrets.token_hex(4)
        self._tx_counter = itertools.count(1)
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the WebSocket is open right now."""
        return self._ws is not None and self._reader is not None and not self._reader.done()

    async def _open(self) -> None:
        try:
            self._ws = await connect(
                self.url,
                subprotocols=[self.subprotocol],
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=1.0,
                # Janus is on loopback or a private address: never go through an HTTP(S)_PROXY from env.
                proxy=None,
                compression=None,
                max_size=16 * 1024 * 1024,
            )
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise JanusConnectionError(f"cannot connect to {self.url}: {exc}") from exc
        self._reader = asyncio.create_task(self._read_loop(self._ws), name=f"janus-reader {self.url}")

    async def _close_socket(self) -> None:
        ws, reader = self._ws, self._reader
        self._ws = None
        if ws is not None:
            await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        self._reader = None
        self._fail_pending(JanusConnectionError("connection closed"))

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(exc)

    def _auth(self, payload: JsonDict) -> None:
        """Add the credentials a request needs; subclasses know which."""

    async def request(
        self, payload: JsonDict, *, timeout: float | None = None, wait_event: bool = False
    ) -> JsonDict:
        """Send one request and return its final answer; raise on error, timeout or lost connection."""
        ws = self._ws
        if ws is None or not self.connected:
            raise JanusConnectionError(f"not connected to {self.url}")
        tx = f"{self._tx_prefix}-{next(self._tx_counter)}"
        msg = {**payload, "transaction": tx}
        self._auth(msg)
        future: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._pending[tx] = _Pending(future, wait_event)
        try:
            await ws.send(json.dumps(msg))
            return await asyncio.wait_for(future, timeout or self.request_timeout)
        except TimeoutError:
            raise JanusTimeoutError(
                f"no answer to {payload.get('janus')} within {timeout or self.request_timeout}s"
            ) from None
        except ConnectionClosed as exc:
            raise JanusConnectionError(f"connection to {self.url} closed: {exc}") from exc
        finally:
            self._pending.pop(tx, None)

    def _resolve(self, msg: JsonDict) -> bool:
        tx = msg.get("transaction")
        pending = self._pending.get(tx) if isinstance(tx, str) else None
        if pending is None or pending.future.done():
            return False
        kind = msg.get("janus")
        if kind == "ack" and pending.wait_event:
            return True
        if kind == "error":
            pending.future.set_exception(_core_error(msg))
        elif (perr := _plugin_error(msg)) is not None:
            pending.future.set_exception(perr)
        else:
            pending.future.set_result(msg)
        return True

    async def _read_loop(self, ws: ClientConnection) -> None:
        error: BaseException | None = None
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    log.warning("janus sent invalid JSON: %.200r", raw)
                    continue
                if not isinstance(msg, dict):
                    continue
                if not self._resolve(msg) and msg.get("janus") != "ack":
                    await self._unsolicited(msg)
        except ConnectionClosed as exc:
            error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a handler must not leave the reader silently dead
            log.exception("janus reader crashed")
            error = exc
        self._fail_pending(JanusConnectionError(f"connection to {self.url} lost: {error}"))
        if self._ws is ws and not self._closing:
            asyncio.get_running_loop().call_soon(self._connection_lost, error)

    async def _unsolicited(self, msg: JsonDict) -> None:
        """Route a message that answers no pending transaction."""

    def _connection_lost(self, error: BaseException | None) -> None:
        """Called once when the socket drops without close() having been asked for."""


async def janus_info(url: str, *, timeout: float = 2.0, api_secret: str | None = None) -> JsonDict:
    """One-shot ``info`` request on a fresh connection (a readiness probe); raise if Janus does not answer."""
    sock = _JanusSocket(url, request_timeout=timeout, open_timeout=timeout, ping_interval=None)
    await sock._open()
    try:
        return await sock.request({"janus": "info"}, timeout=timeout)
    finally:
        sock._closing = True
        await sock._close_socket()


class JanusHandle:
    """A plugin handle: send ``message``s, receive its unsolicited events (queue and/or callbacks)."""

    def __init__(self, session: JanusSession, handle_id: int, plugin: str, opaque_id: str | None) -> None:
        self.session = session
        self.id = handle_id
        self.plugin = plugin
        self.opaque_id = opaque_id
        self.detached = False
        # Bounded so that a handle nobody reads cannot grow without limit; oldest events are dropped.
        self.events: asyncio.Queue[JsonDict] = asyncio.Queue(maxsize=1000)
        self._callbacks: list[HandleCallback] = []

    def __repr__(self) -> str:
        return f"<JanusHandle {self.id} {self.plugin} opaque={self.opaque_id!r}>"

    def add_callback(self, callback: HandleCallback) -> None:
        """Call ``callback(msg)`` for every unsolicited event of this handle (besides queueing it)."""
        self._callbacks.append(callback)

    async def _dispatch(self, msg: JsonDict) -> None:
        if self.events.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.events.get_nowait()
        self.events.put_nowait(msg)
        for cb in list(self._callbacks):
            await _notify(cb, msg)

    async def next_event(
        self, predicate: Callable[[JsonDict], bool] | None = None, *, timeout: float = 10.0
    ) -> JsonDict:
        """The next queued event (matching ``predicate``, others are dropped); JanusTimeoutError if none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise JanusTimeoutError(f"no matching event on handle {self.id} within {timeout}s")
            try:
                msg = await asyncio.wait_for(self.events.get(), remaining)
            except TimeoutError:
                continue
            if predicate is None or predicate(msg):
                return msg

    async def message(
        self, body: JsonDict, jsep: JsonDict | None = None, *, timeout: float | None = None
    ) -> PluginResponse:
        """Send a plugin request; return the synchronous answer or the asynchronous event that follows."""
        payload: JsonDict = {
            "janus": "message",
            "session_id": self.session.id,
            "handle_id": self.id,
            "body": body,
        }
        if jsep is not None:
            payload["jsep"] = jsep
        msg = await self.session.client._session_request(
            self.session, payload, timeout=timeout, wait_event=True
        )
        data = (msg.get("plugindata") or {}).get("data") or {}
        return PluginResponse(data=data, jsep=msg.get("jsep"), raw=msg)

    async def trickle(
        self,
        candidate: JsonDict | None = None,
        *,
        candidates: list[JsonDict] | None = None,
        completed: bool = False,
    ) -> None:
        """Send ICE candidates (one, several, or the end-of-candidates marker)."""
        payload: JsonDict = {"janus": "trickle", "session_id": self.session.id, "handle_id": self.id}
        if completed:
            payload["candidate"] = {"completed": True}
        elif candidates is not None:
            payload["candidates"] = candidates
        elif candidate is not None:
            payload["candidate"] = candidate
        else:
            raise ValueError("give a candidate, candidates or completed=True")
        await self.session.client._session_request(self.session, payload)

    async def hangup(self) -> None:
        """Tear down the handle's PeerConnection, keeping the handle."""
        await self.session.client._session_request(
            self.session, {"janus": "hangup", "session_id": self.session.id, "handle_id": self.id}
        )

    async def detach(self) -> None:
        """Detach from the plugin (the handle is unusable afterwards)."""
        if self.detached:
            return
        try:
            await self.session.client._session_request(
                self.session, {"janus": "detach", "session_id": self.session.id, "handle_id": self.id}
            )
        finally:
            self.detached = True
            self.session.handles.pop(self.id, None)


class JanusSession:
    """A Janus session: owns handles; kept alive by the client's keepalives and reclaimed on reconnect."""

    def __init__(self, client: JanusClient, session_id: int) -> None:
        self.client = client
        self.id = session_id
        self.handles: dict[int, JanusHandle] = {}
        self.lost = False
        self.lost_reason = ""
        self._callbacks: list[HandleCallback] = []

    def __repr__(self) -> str:
        return f"<JanusSession {self.id}{' lost' if self.lost else ''}>"

    def add_callback(self, callback: HandleCallback) -> None:
        """Call ``callback(msg)`` for session-level events (``timeout``) and events of unknown handles."""
        self._callbacks.append(callback)

    async def attach(self, plugin: str, opaque_id: str | None = None) -> JanusHandle:
        """Attach a handle to ``plugin``; ``opaque_id`` is echoed in event-handler events (site mapping)."""
        payload: JsonDict = {"janus": "attach", "session_id": self.id, "plugin": plugin}
        if opaque_id is not None:
            payload["opaque_id"] = opaque_id
        msg = await self.client._session_request(self, payload)
        handle = JanusHandle(self, int(msg["data"]["id"]), plugin, opaque_id)
        self.handles[handle.id] = handle
        return handle

    async def keepalive(self) -> None:
        """Tell Janus the session is still in use."""
        await self.client._session_request(self, {"janus": "keepalive", "session_id": self.id})

    async def destroy(self) -> None:
        """Destroy the session and all its handles on Janus."""
        try:
            if not self.lost and self.client.connected:
                await self.client._session_request(self, {"janus": "destroy", "session_id": self.id})
        finally:
            self.client.sessions.pop(self.id, None)
            self.lost = True
            self.lost_reason = "destroyed"


class JanusClient(_JanusSocket):
    """Janus API client: sessions, handles, keepalives, event dispatch, reconnect + claim.

    ``listeners`` receive :class:`ClientEvent`s; use them to learn that sessions (and so the handles and the
    rooms they held, if Janus restarted) are gone.
    """

    subprotocol = API_PROTOCOL

    def __init__(
        self,
        url: str,
        *,
        api_secret: str | None = None,
        token: str | None = None,
        request_timeout: float = 10.0,
        keepalive_interval: float | None = 25.0,
        reconnect: bool = True,
        reconnect_delay_max: float = 5.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
        name: str = "janus",
    ) -> None:
        super().__init__(
            url, request_timeout=request_timeout, ping_interval=ping_interval, ping_timeout=ping_timeout
        )
        self.api_secret = api_secret
        self.token = token
        self.name = name
        self.keepalive_interval = keepalive_interval
        self.reconnect = reconnect
        self.reconnect_delay_max = reconnect_delay_max
        self.sessions: dict[int, JanusSession] = {}
        self.reconnects = 0
        self._listeners: list[ClientListener] = []
        self._keepalive_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connected_event = asyncio.Event()

    def add_listener(self, listener: ClientListener) -> None:
        """Register ``listener(ClientEvent)`` (function or coroutine)."""
        self._listeners.append(listener)

    def _auth(self, payload: JsonDict) -> None:
        if self.api_secret is not None:
            payload["apisecret"] = self.api_secret
        if self.token is not None:
            payload["token"] = self.token

    async def connect(self) -> None:
        """Open the WebSocket (raise JanusConnectionError if Janus is unreachable)."""
        self._closing = False
        await self._open()
        self._connected_event.set()
        if self.keepalive_interval and self._keepalive_task is None:
            self._keepalive_task = asyncio.create_task(
                self._keepalive_loop(), name=f"janus-keepalive {self.name}"
            )

    async def close(self, *, destroy_sessions: bool = True) -> None:
        """Stop reconnecting, optionally destroy our sessions, and close the WebSocket."""
        self._closing = True
        for task in (self._reconnect_task, self._keepalive_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reconnect_task = self._keepalive_task = None
        if destroy_sessions and self.connected:
            for session in list(self.sessions.values()):
                with contextlib.suppress(JanusClientError):
                    await session.destroy()
        self._connected_event.clear()
        await self._close_socket()

    async def __aenter__(self) -> JanusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the WebSocket is up (after a reconnect)."""
        await asyncio.wait_for(self._connected_event.wait(), timeout)

    async def info(self, *, timeout: float | None = None) -> JsonDict:
        """Janus ``info`` (server_info: version, plugins, transports…)."""
        return await self.request({"janus": "info"}, timeout=timeout)

    async def create_session(self) -> JanusSession:
        """Create a session (JanusError 403 if the api secret/token is wrong)."""
        msg = await self.request({"janus": "create"})
        session = JanusSession(self, int(msg["data"]["id"]))
        self.sessions[session.id] = session
        return session

    async def _session_request(
        self,
        session: JanusSession,
        payload: JsonDict,
        *,
        timeout: float | None = None,
        wait_event: bool = False,
    ) -> JsonDict:
        if session.lost:
            raise JanusSessionLostError(f"session {session.id} is lost: {session.lost_reason}")
        try:
            return await self.request(payload, timeout=timeout, wait_event=wait_event)
        except JanusError as exc:
            if exc.code == ERR_SESSION_NOT_FOUND and not isinstance(exc, JanusPluginError):
                await self._mark_lost(session, "janus does not know the session")
            raise

    async def _mark_lost(self, session: JanusSession, reason: str) -> None:
        if session.lost:
            return
        session.lost = True
        session.lost_reason = reason
        self.sessions.pop(session.id, None)
        lost_event: JsonDict = {"janus": "session_lost", "session_id": session.id, "reason": reason}
        for handle in list(session.handles.values()):
            handle.detached = True
            await handle._dispatch({**lost_event, "sender": handle.id})
        await self._emit(ClientEvent("session_lost", session_id=session.id, reason=reason))

    async def _emit(self, event: ClientEvent) -> None:
        for listener in list(self._listeners):
            await _notify(listener, event)

    async def _unsolicited(self, msg: JsonDict) -> None:
        session = self.sessions.get(msg.get("session_id") or 0)
        if session is None:
            return
        kind = msg.get("janus")
        if kind == "timeout":
            await self._mark_lost(session, "session timed out on janus")
            return
        handle = session.handles.get(msg.get("sender") or 0)
        if handle is None:
            for cb in list(session._callbacks):
                await _notify(cb, msg)
            return
        if kind == "detached":
            handle.detached = True
            session.handles.pop(handle.id, None)
        await handle._dispatch(msg)

    def _connection_lost(self, error: BaseException | None) -> None:
        self._connected_event.clear()
        log.warning("janus %s: connection lost (%s)", self.name, error)
        if self._closing or (self._reconnect_task is not None and not self._reconnect_task.done()):
            return
        self._reconnect_task = asyncio.get_running_loop().create_task(
            self._after_disconnect(str(error or "closed")), name=f"janus-reconnect {self.name}"
        )

    async def _after_disconnect(self, reason: str) -> None:
        await self._emit(ClientEvent("disconnected", reason=reason))
        if self.reconnect:
            await self._reconnect_loop()
        else:
            for session in list(self.sessions.values()):
                await self._mark_lost(session, "connection lost")

    async def _reconnect_loop(self) -> None:
        delay = 0.1
        claimed: list[int] = []
        lost: list[int] = []
        while not self._closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_delay_max)
            try:
                await self._open()
            except JanusConnectionError as exc:
                log.info("janus %s: reconnect failed: %s", self.name, exc)
                continue
            if await self._claim_all(claimed, lost):
                break
        if self._closing:
            return
        self.reconnects += 1
        claimed = sorted(set(claimed) - set(lost))
        self._connected_event.set()
        log.info("janus %s: reconnected; claimed %s, lost %s", self.name, claimed, lost)
        await self._emit(ClientEvent("reconnected", claimed=claimed, lost=lost))

    async def _claim_all(self, claimed: list[int], lost: list[int]) -> bool:
        """Claim every session on the new socket; False when the socket died meanwhile (retry)."""
        for session in list(self.sessions.values()):
            try:
                await self.request({"janus": "claim", "session_id": session.id})
            except JanusError as exc:
                await self._mark_lost(session, f"claim refused: {exc.reason}")
                lost.append(session.id)
                continue
            except JanusClientError as exc:
                log.warning("janus %s: claim interrupted: %s", self.name, exc)
                return False
            claimed.append(session.id)
            await self._emit(ClientEvent("session_reclaimed", session_id=session.id))
        return True

    async def _keepalive_loop(self) -> None:
        assert self.keepalive_interval
        while True:
            await asyncio.sleep(self.keepalive_interval)
            if not self.connected:
                continue
            # Concurrently: one slow answer must not delay the other sessions past their timeout
            # (a client carrying hundreds of sessions, e.g. the load generator).
            await asyncio.gather(*(self._keepalive_one(s) for s in list(self.sessions.values())))

    async def _keepalive_one(self, session: JanusSession) -> None:
        try:
            await session.keepalive()
        except JanusClientError as exc:
            log.info("janus %s: keepalive of session %s failed: %s", self.name, session.id, exc)


class JanusAdminClient(_JanusSocket):
    """Janus admin API client; (re)connects lazily, so it survives Janus restarts."""

    subprotocol = ADMIN_PROTOCOL

    def __init__(self, url: str, *, admin_secret: str | None = None, request_timeout: float = 10.0) -> None:
        super().__init__(url, request_timeout=request_timeout)
        self.admin_secret = admin_secret

    def _auth(self, payload: JsonDict) -> None:
        if self.admin_secret is not None:
            payload["admin_secret"] = self.admin_secret

    async def close(self) -> None:
        """Close the WebSocket."""
        self._closing = True
        await self._close_socket()

    async def __aenter__(self) -> JanusAdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(
        self, kind: str, fields: JsonDict | None = None, *, timeout: float | None = None
    ) -> JsonDict:
        """Run one admin request (``{"janus": kind, **fields}``), connecting first if needed."""
        if not self.connected:
            self._closing = False
            await self._close_socket()
            await self._open()
        return await self.request({"janus": kind, **(fields or {})}, timeout=timeout)

    async def info(self) -> JsonDict:
        """Server info (needs no secret)."""
        return await self.call("info")

    async def ping(self) -> None:
        """Round trip without side effects."""
        await self.call("ping")

    async def list_sessions(self) -> list[int]:
        """Ids of every session on this Janus."""
        return [int(s) for s in (await self.call("list_sessions")).get("sessions", [])]

    async def list_handles(self, session_id: int) -> list[int]:
        """Ids of the handles of one session."""
        return [
            int(h) for h in (await self.call("list_handles", {"session_id": session_id})).get("handles", [])
        ]

    async def handle_info(self, session_id: int, handle_id: int) -> JsonDict:
        """Janus's full internal state of one handle (ICE, DTLS, streams, plugin-specific)."""
        msg = await self.call("handle_info", {"session_id": session_id, "handle_id": handle_id})
        info: JsonDict = msg.get("info", {})
        return info

    async def set_session_timeout(self, seconds: int) -> None:
        """Change the session timeout at run time."""
        await self.call("set_session_timeout", {"timeout": seconds})

    async def message_plugin(
        self, plugin: str, request: JsonDict, *, timeout: float | None = None
    ) -> JsonDict:
        """Run a synchronous plugin request without a session; plugin errors raise JanusPluginError."""
        msg = await self.call("message_plugin", {"plugin": plugin, "request": request}, timeout=timeout)
        response: JsonDict = msg.get("response", {})
        return response
