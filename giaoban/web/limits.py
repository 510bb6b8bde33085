"""How much a client may send: request bodies and WebSocket messages, limited by the app itself.

A pure ASGI middleware, so the limit holds with nginx in front or without it, whatever the server:

- a request whose ``Content-Length`` is over the limit is answered 413 before a byte of its body is
  read; one without ``Content-Length`` (chunked) is counted while it streams in and answered 413 the
  moment it passes the limit, whatever the route was doing with it;
- the limit is ``GIAOBAN_MAX_BODY_BYTES`` (1 MiB: JSON and forms), and ``GIAOBAN_MAX_UPLOAD_BYTES``
  on the import routes that take a spreadsheet;
- a WebSocket message over ``GIAOBAN_MAX_BODY_BYTES`` closes the socket with 1009 ("message too
  big"). ``giaoban serve`` also gives uvicorn that limit (``ws_max_size``), so such a message is
  refused while it arrives rather than after.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from giaoban.web.errors import error_response

WS_TOO_BIG = 1009


def human_size(n: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} byte"


class _TooLarge(Exception):
    """Raised out of ``receive`` into the app; whatever it answers is replaced by the 413."""


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int,
        upload_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_paths = frozenset(upload_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def limit_for(self, path: str) -> int:
        return self.max_upload_bytes if path in self.upload_paths else self.max_body_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, limit: int) -> None:
        if status == 413:
            response = error_response(
                413,
                "body_too_large",
                f"Nội dung yêu cầu quá lớn (tối đa {human_size(limit)}).",
                {"max_bytes": limit},
                headers={"Connection": "close"},
            )
        else:
            response = error_response(
                400, "bad_content_length", "Content-Length không hợp lệ.", headers={"Connection": "close"}
            )
        await response(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope.get("path", ""))
        declared = [v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"]
        if declared:
            value = declared[0].strip()
            if len(declared) > 1 or not value.isdigit() or any(v.strip() != value for v in declared):
                await self._refuse(scope, receive, send, 400, limit)
                return
            if int(value) > limit:
                await self._refuse(scope, receive, send, 413, limit)
                return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it could not have: ours is sent below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, 413, limit)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        closed = False

        async def limited_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive" and _ws_size(message, limit) > limit:
                if not closed:
                    closed = True
                    await send({"type": "websocket.close", "code": WS_TOO_BIG, "reason": "message too big"})
                return {"type": "websocket.disconnect", "code": WS_TOO_BIG}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _ws_size(message: Message, limit: int) -> int:
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text") or ""
    if len(text) > limit or 4 * len(text) <= limit:
        return len(text)  # a UTF-8 character is 1 to 4 bytes: no need to encode to decide
    return len(text.encode("utf-8", "surrogatepass"))
