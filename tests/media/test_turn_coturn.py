"""The real coturn under our supervisor, in the lab: it relays to Janus's address and to nothing else.

Lab: coturn in the root namespace listens on the root end of a link to namespace "peer" and relays from
that address; a UDP echo server runs in "peer" (the stand-in for Janus's media address, the one allowed
peer) and another in namespace "other" (any other host on the machine's networks). A TURN client
(aioice) in the root namespace allocates with credentials from ``issue_credential``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from giaoban.lab.netns import Link, NetLab
from giaoban.media.turn import (
    TurnService,
    TurnSettings,
    issue_credential,
    stun_binding,
    write_turnserver_conf,
)
from tests.lab.fixtures import LoopThread
from tests.lab.turn import lab_turn_settings

pytestmark = pytest.mark.janus

ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((sys.argv[1],int(sys.argv[2])))\n"
    "while True:\n d,a=s.recvfrom(2048);s.sendto(b'echo:'+d,a)\n"
)
ECHO_PORT = 47001
TURN_PORT = 34780


@dataclass
class CoturnLab:
    service: TurnService
    settings: TurnSettings
    allowed: Link  # coturn listens/relays on allowed.addr_a; the allowed peer is allowed.addr_b
    other: Link  # a host the relay must not reach: other.addr_b

    @property
    def server(self) -> tuple[str, int]:
        return (self.allowed.addr_a, TURN_PORT)


@pytest.fixture(scope="module")
def coturn(
    netlab: NetLab, loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoturnLab]:
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed (apt-get install coturn)")
    peer_ns, other_ns = netlab.netns("peer"), netlab.netns("other")
    allowed, other = netlab.link(None, peer_ns), netlab.link(None, other_ns)
    for link, ns in ((allowed, peer_ns), (other, other_ns)):
        netlab.spawn(ns, [sys.executable, "-c", ECHO, link.addr_b, str(ECHO_PORT)])
    data_dir = tmp_path_factory.mktemp("coturn")
    settings = lab_turn_settings(
        data_dir,
        listening_ip=allowed.addr_a,
        peers=[allowed.addr_b],
        port=TURN_PORT,
        relay_ports=(51000, 51099),
        credential_ttl=600,
        restart_backoff_initial=0.1,
    )
    service = TurnService(settings, data_dir)
    loop_thread.run(service.start())
    assert service.health()["status"] == "ok", service.health()
    try:
        yield CoturnLab(service, settings, allowed, other)
    finally:
        loop_thread.run(service.stop())


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))


async def _allocate(server: tuple[str, int], username: str, password: str) -> Any:
    from aioice.turn import TurnClientUdpProtocol

    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server, username=username, password=password, lifetime=600, channel_refresh_time=500
        ),
        remote_addr=server,
    )
    try:
        await asyncio.wait_for(proto.connect(), 5)
    except BaseException:
        transport.close()
        raise
    return transport, proto


def _cred(lab: CoturnLab, ttl: int = 600, now: float | None = None) -> tuple[str, str]:
    assert lab.settings.shared_secret
    cred = issue_credential(lab.settings.shared_secret, "site-1", ttl, now)
    return cred.username, cred.credential


def test_stun_answers_and_health(coturn: CoturnLab) -> None:
    mapped = stun_binding(*coturn.server)
    assert mapped is not None and mapped[0] == coturn.allowed.addr_a  # we are on the same link
    health = coturn.service.health()
    assert health["status"] == "ok" and health["state"] == "running" and health["pid"]
    assert f"turn:{coturn.allowed.addr_a}:{TURN_PORT}?transport=udp" in health["urls"]


def test_relays_to_janus_address_only(coturn: CoturnLab, loop_thread: LoopThread) -> None:
    from aioice.stun import TransactionFailed

    async def run() -> dict[str, Any]:
        transport, proto = await _allocate(coturn.server, *_cred(coturn))
        inbox = _Inbox()
        proto.receiver = inbox
        out: dict[str, Any] = {"relayed": proto.relayed_address}
        try:
            await proto.send_data(b"hello", (coturn.allowed.addr_b, ECHO_PORT))
            out["echo"] = await asyncio.wait_for(inbox.queue.get(), 5)
            for name, peer in (
                ("other", (coturn.other.addr_b, ECHO_PORT)),
                ("loopback", ("127.0.0.1", ECHO_PORT)),
                ("turn itself", (coturn.allowed.addr_a, TURN_PORT)),
            ):
                try:
                    await proto.channel_bind(0x4100 + len(out), peer)
                    out[name] = "bound"
                except TransactionFailed as exc:
                    out[name] = exc.response.attributes["ERROR-CODE"][0]
        finally:
            await proto.delete()
            transport.close()
        return out

    out = loop_thread.run(run())
    relay_ip, relay_port = out["relayed"]
    assert relay_ip == coturn.allowed.addr_a and 51000 <= relay_port <= 51099
    assert out["echo"] == (b"echo:hello", (coturn.allowed.addr_b, ECHO_PORT))
    assert out["other"] == 403, "the relay must not reach other hosts"
    assert out["loopback"] == 403
    assert out["turn itself"] == 403


@pytest.mark.parametrize("case", ["wrong secret", "expired", "tampered name"])
def test_bad_credentials_get_no_allocation(coturn: CoturnLab, loop_thread: LoopThread, case: str) -> None:
    from aioice.stun import TransactionFailed

    from giaoban.media.turn import issue_credential as issue

    assert coturn.settings.shared_secret
    if case == "wrong secret":
        cred = issue("not-the-secret", "site-1", 600)
        username, password = cred.username, cred.credential
    elif case == "expired":
        username, password = _cred(coturn, ttl=60, now=1_000_000_000)  # expired in 2001
    else:
        username, password = _cred(coturn)
        username = username.replace("site-1", "site-2")

    async def run() -> int:
        try:
            transport, proto = await _allocate(coturn.server, username, password)
        except TransactionFailed as exc:
            return int(exc.response.attributes["ERROR-CODE"][0])
        await proto.delete()
        transport.close()
        return 200

    assert loop_thread.run(run()) == 401


def test_restarted_after_it_dies(coturn: CoturnLab, loop_thread: LoopThread) -> None:
    sup = coturn.service.supervisor
    assert sup is not None and sup.pid is not None
    before, restarts = sup.pid, sup.restarts
    os.kill(before, signal.SIGKILL)

    async def wait() -> None:
        while sup.restarts == restarts:
            await asyncio.sleep(0.05)
        await sup.wait_running(10)

    loop_thread.run(wait(), timeout=20)
    assert sup.pid not in (None, before)
    assert stun_binding(*coturn.server) is not None
    assert coturn.service.health()["restarts"] == restarts + 1


def test_stale_coturn_of_a_crashed_app_is_replaced(
    netlab: NetLab, loop_thread: LoopThread, tmp_path: Path, coturn: CoturnLab
) -> None:
    """An app killed without stopping coturn leaves it running; the next start kills it first."""
    link = netlab.link(None, netlab.netns("stale"))
    settings = lab_turn_settings(
        tmp_path, listening_ip=link.addr_a, peers=[link.addr_b], port=TURN_PORT, relay_ports=(51100, 51199)
    )
    # What a crashed app leaves: coturn running on our config, its pid in our pid file.
    second = TurnService(settings, tmp_path)
    sup = second.supervisor
    assert sup is not None
    write_turnserver_conf(settings, sup.conf_dir)
    orphan = subprocess.Popen(sup.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sup.pid_path.write_text(str(orphan.pid))
    try:
        for _ in range(100):
            if stun_binding(link.addr_a, TURN_PORT, 0.1) is not None:
                break
        loop_thread.run(second.start())
        assert second.health()["status"] == "ok", second.health()
        assert sup.pid != orphan.pid
        assert orphan.wait(5) == -signal.SIGKILL
    finally:
        loop_thread.run(second.stop())
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
