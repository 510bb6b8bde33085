"""Whether a WebSocket comes from one of our own pages (cookies ride along on cross-site sockets)."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import WebSocket


def same_origin(ws: WebSocket) -> bool:
    """The socket's ``Origin`` names the host it connected to (no Origin: refused)."""
    origin = ws.headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc == ws.headers.get("host", "")
