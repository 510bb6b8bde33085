"""A client of the live-meeting protocol (docs/protocol.md) for scripts: bots, benchmarks, tests.

One ``LiveClient`` is one tab: it logs in with a bearer token, says hello, and keeps the sites and
floor from the deltas it receives and every other push. Media are the caller's business (aiortc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any


class LiveClient:
    def __init__(self, ws: Any, *, timeout: float = 15.0) -> None:
        self.ws = ws
        self.timeout = timeout
        self.next_id = 2
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.sites: dict[str, Any] = {}
        self.floor: dict[str, Any] = {}
        self.pushes: list[dict[str, Any]] = []
        self.reader: asyncio.Task[None] | None = None
        self.on_offer: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.tasks: set[asyncio.Future[None]] = set()
        self.hello_at = 0.0  # monotonic time the hello was sent (join timing of load tests)

    @classmethod
    async def open(
        cls, base: str, username: str, meeting_id: int, *, password: str, timeout: float = 15.0, **hello: Any
    ) -> LiveClient:
        """Log in at ``base`` (http://host:port), open the meeting's WebSocket and say hello."""
        import httpx
        import websockets

        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=timeout) as http:
            r = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
            token = r.json()["token"]
        url = base.replace("http://", "ws://") + f"/ws/meetings/{meeting_id}"
        ws = await websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None
        )
        client = cls(ws, timeout=timeout)
        client.hello_at = time.monotonic()
        await ws.send(json.dumps({"type": "hello", "id": 1, "protocol": 1, **hello}))
        welcome = json.loads(await ws.recv())
        if welcome["type"] != "welcome":
            raise RuntimeError(f"{username}: {welcome}")
        client.sites = welcome["snapshot"]["sites"]
        client.floor = welcome["snapshot"]["floor"]
        client.reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg["type"] in ("ack", "error") and msg.get("id") in self.pending:
                    self.pending.pop(msg["id"]).set_result(msg)
                elif msg["type"] == "delta":
                    for change in msg["changes"]:
                        if change["path"].startswith("sites."):
                            self.sites[change["path"][6:]] = change["value"]
                        elif change["path"] == "floor":
                            self.floor = change["value"]
                else:
                    self.pushes.append(msg)
                    if msg["type"] == "media.offer" and self.on_offer is not None:
                        self.tasks.add(asyncio.ensure_future(self.on_offer(msg)))

    async def call(self, type: str, **payload: Any) -> dict[str, Any]:
        """Send one message; return its whole ack or error."""
        msg_id = self.next_id
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        await self.ws.send(json.dumps({"type": type, "id": msg_id, **payload}))
        return await asyncio.wait_for(future, self.timeout)

    async def ok(self, type: str, **payload: Any) -> Any:
        """Send one message; return the ack's result, or raise if the server answered an error."""
        reply = await self.call(type, **payload)
        if reply["type"] != "ack":
            raise RuntimeError(f"{type}: {reply}")
        return reply.get("result")

    def slots(self) -> dict[str, Any] | None:
        """The latest ``media.slots`` push (which feed each slot of this tab's view carries)."""
        pushed = [m for m in self.pushes if m["type"] == "media.slots"]
        return pushed[-1] if pushed else None

    async def close(self) -> None:
        await self.ws.close()
        if self.reader:
            await self.reader
