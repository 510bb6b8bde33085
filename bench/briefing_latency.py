"""Floor grant latency in a live briefing (issue 4), through our own signalling (run on demand as root).

    .venv/bin/python bench/briefing_latency.py --sites 71 --grants 50 [--budget 900]

Builds its own lab (a namespace for Janus, a veth link), a SQLite database with the demo org and an
open briefing of every site, and serves the real app with its media plane in a child process (as
``tests/conference/media_app.py`` does: Janus in the namespace, the app on loopback + the link). In
this process: the chair's console tab, the host (TW) and ``--sites`` site bots, each a WebSocket tab of
protocol v1. Every bot publishes (``media.publish``; the pre-packetized clip, audio + video, sent raw
as in ``giaoban loadtest media``) and subscribes (``media.subscribe`` / ``media.start``: host + speaker
slots), and counts RTP per mid from the packet headers.

For each grant (bots in turn: ``floor.request``, then the console sends ``floor.grant``; the turn is
revoked afterwards and the speaker slots must be silent again before the next grant), from sending
``floor.grant``:

* ack — the server's ack arrives at the console;
* unmuted — first RTP on a speaker slot's audio at any subscriber (Janus forwards the holder);
* all switched — every subscriber (every bot but the holder) has received the holder's audio on its
  speaker slot.

Prints p50/p95/max of each. Everything is torn down at the end (also on errors and on the time budget).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402

from giaoban.conference.client import LiveClient as Tab  # noqa: E402
from giaoban.media.bots import ClipSet, PublisherBot, SilentTrack, host_candidates_only, wait_connected  # noqa: E402
from giaoban.media.netlab import NetLab, missing_requirements  # noqa: E402
from giaoban.media.rtpfast import PacketPump, RtpCounter, parse_sections  # noqa: E402
from tests.lab.fixtures import JanusNamespace  # noqa: E402

PASSWORD = "Demo-password-2017"
NO_STUN = RTCConfiguration(iceServers=[])
GRANT_TIMEOUT = 5.0  # s: a subscriber that did not hear the holder by then counts as a miss


# -- the app, in a child process ------------------------------------------------------------------


def _open_meeting(ctx: Any, live: bool = False) -> tuple[int, list[tuple[str, int]]]:
    from sqlalchemy import select

    from giaoban.audit.log import Actor
    from giaoban.conference import meetings as svc
    from giaoban.conference.lifecycle import MeetingStatus
    from giaoban.context import Tx
    from giaoban.org.models import Site, Unit, User

    with ctx.db.session() as s:
        tx = Tx(s, ctx.audit, Actor.system("bench"))
        sites = [(str(c), int(i)) for c, i in s.execute(select(Site.code, Site.id).order_by(Site.id))]
        tw_unit = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        now = datetime.now()
        meeting = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Đo độ trễ trao quyền phát biểu",
                kind="briefing",
                starts_at=now + timedelta(minutes=5),
                ends_at=now + timedelta(hours=1),
                owner_unit_id=tw_unit,
                host_site_id=dict(sites)["TW"],
                chair_user_id=s.execute(select(User.id).where(User.username == "chutri")).scalar_one(),
                invite=svc.InviteSpec(under_unit_ids=[tw_unit]),
            ),
        )
        svc.transition(tx, meeting.id, MeetingStatus.open)
        if live:
            svc.transition(tx, meeting.id, MeetingStatus.live)
        return meeting.id, sites


def _serve(
    conn: multiprocessing.connection.Connection,
    ns: JanusNamespace,
    work: Path,
    live: bool = False,
    extra_plugins: tuple[str, ...] = (),
    log_file: str | None = None,
) -> None:
    """Child process: database + demo + open briefing, then the app with Janus until told to stop."""
    if log_file:  # the app's own log (giaoban.*, DEBUG) for diagnosing a run
        import logging

        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        app_log = logging.getLogger("giaoban")
        app_log.setLevel(logging.DEBUG)
        app_log.addHandler(handler)
    from argon2 import PasswordHasher

    from giaoban.audit.log import AuditLog
    from giaoban.context import AppContext
    from giaoban.db import Database
    from giaoban.demo import load_demo
    from giaoban.migrate import upgrade
    from giaoban.org import accounts
    from giaoban.settings import Settings
    from tests.conference import media_app
    from tests.conference.media_app import serve_with_media

    if extra_plugins:  # e.g. bench/join_time.py's echotest, on the same Janus
        settings_for = media_app.lab_janus_settings

        def with_plugins(*a: Any, **kw: Any) -> Any:
            return settings_for(*a, extra_plugins=list(extra_plugins), **kw)

        media_app.lab_janus_settings = with_plugins

    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # ~75 logins
    url = f"sqlite:///{work / 'bench.sqlite3'}"
    upgrade(url)
    settings = Settings(
        data_dir=work / "var",
        database_url=url,
        secret_key="bench-secret-key-0123456789",
        demo_password=PASSWORD,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    ctx = AppContext(settings=settings, db=db, audit=AuditLog(settings.resolved_secret_key))
    try:
        load_demo(ctx, password=PASSWORD)
        meeting_id, sites = _open_meeting(ctx, live)
        with serve_with_media(ctx, ns, work / "janus") as served:
            conn.send(
                {
                    "base": served.base,
                    "meeting": meeting_id,
                    "sites": sites,
                    "janus_url": served.janus_url,
                    "api_secret": served.api_secret,
                }
            )
            conn.poll(None)  # until the parent says stop (or dies: EOF)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send({"error": repr(exc)})
        raise
    finally:
        db.dispose()


# -- the bots ---


@dataclass
class Bot:
    name: str
    site_id: int
    tab: Any = None
    pub_pc: RTCPeerConnection | None = None
    view: RTCPeerConnection | None = None
    counter: RtpCounter | None = None
    speaker_audio: set[str] = field(default_factory=set)
    last_speaker: float = 0.0  # monotonic time of the last packet on a speaker slot's audio
    first_after: float | None = None  # first such packet since the grant (armed)
    armed: bool = False

    def on_packet(self, data: bytes) -> None:
        assert self.counter is not None
        mid = self.counter.ssrc_mid.get(int.from_bytes(data[8:12], "big"))
        if mid in self.speaker_audio:
            now = time.monotonic()
            self.last_speaker = now
            if self.armed and self.first_after is None:
                self.first_after = now


async def publish(bot: Bot, clips: ClipSet, pump: PacketPump, address: str) -> None:
    """``media.publish`` a PeerConnection whose RTP (the clip, audio + video) is sent raw."""
    pc = RTCPeerConnection(NO_STUN)
    pc.addTrack(SilentTrack("audio"))
    pc.addTrack(SilentTrack("video"))
    with host_candidates_only(address):
        await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    own = next(s for s in parse_sections(offer) if s.kind == "video").ssrcs[0]
    result = await bot.tab.ok("media.publish", jsep={"type": "offer", "sdp": offer})
    await pc.setRemoteDescription(RTCSessionDescription(**result["jsep"]))
    bot.pub_pc = pc
    await wait_connected(pc, 30)
    # PublisherBot's raw sender, without its Janus handle (our server holds the publisher handle).
    raw = PublisherBot(session=cast(Any, None), clips=clips, pump=pump)
    raw._start_raw(pc, offer, result["jsep"]["sdp"], [own])


async def subscribe(bot: Bot, address: str) -> None:
    """``media.subscribe`` + ``media.start``; renegotiate on ``media.offer`` as the browser does."""
    result = await bot.tab.ok("media.subscribe")
    bot.speaker_audio = {s["audio"] for s in result["slots"]["speakers"]}
    counter = RtpCounter()
    counter.map_mids(result["jsep"]["sdp"])
    original = counter.on_rtp

    def on_rtp(data: bytes) -> None:
        original(data)
        bot.on_packet(data)

    setattr(counter, "on_rtp", on_rtp)  # noqa: B010  (read by hook())
    bot.counter = counter
    pc = bot.view = RTCPeerConnection(NO_STUN)
    with host_candidates_only(address):
        await pc.setRemoteDescription(RTCSessionDescription(**result["jsep"]))
        await pc.setLocalDescription(await pc.createAnswer())
    counter.hook(pc, rcvbuf=None)
    await bot.tab.ok("media.start", jsep={"type": "answer", "sdp": pc.localDescription.sdp})

    async def renegotiate(msg: dict[str, Any]) -> None:
        counter.map_mids(msg["jsep"]["sdp"])
        slots = bot.tab.slots()
        if slots is not None and "speakers" in slots:
            bot.speaker_audio = {s["audio"] for s in slots["speakers"]}
        await pc.setRemoteDescription(RTCSessionDescription(**msg["jsep"]))
        await pc.setLocalDescription(await pc.createAnswer())
        await bot.tab.ok("media.start", jsep={"type": "answer", "sdp": pc.localDescription.sdp})

    bot.tab.on_offer = renegotiate


async def until(check: Any, what: str, timeout: float, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


@dataclass
class Results:
    ack: list[float] = field(default_factory=list)
    unmuted: list[float] = field(default_factory=list)
    switched: list[float] = field(default_factory=list)
    misses: int = 0  # subscribers that did not hear the holder within GRANT_TIMEOUT (sum over grants)
    errors: list[str] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    setup_s: float = 0.0
    sites: int = 0
    listeners: int = 0


async def scenario(info: dict[str, Any], args: argparse.Namespace, ns: JanusNamespace, res: Results) -> None:
    base, meeting = info["base"], info["meeting"]
    sites: list[tuple[str, int]] = info["sites"]
    address = ns.host_address
    t_setup = time.monotonic()
    res.loads.append(loadavg())
    clips = ClipSet.ensure()
    pump = PacketPump()
    host = Bot("dc-tw", dict(sites)["TW"])
    bots = [Bot(f"dc-{c.lower()}", i) for c, i in sites if c != "TW"][: args.sites]
    res.sites = len(bots)
    chair: Any = None
    opened: list[Bot] = []

    async def keep_alive() -> None:
        # The server closes a tab that says nothing for a minute (giaoban/web/ws.py), as browsers ping.
        while True:
            await asyncio.sleep(20)
            tabs = [chair, *(b.tab for b in opened)]
            await asyncio.gather(*(t.call("ping") for t in tabs if t is not None), return_exceptions=True)

    pinger = asyncio.ensure_future(keep_alive())
    try:
        chair = await Tab.open(base, "chutri", meeting, password=PASSWORD, timeout=30, **{"as": "console"})
        if args.max_holders:
            await chair.ok("floor.config", max_holders=args.max_holders)
        host.tab = await Tab.open(
            base, host.name, meeting, password=PASSWORD, timeout=30, **{"as": "site", "site_id": host.site_id}
        )
        opened.append(host)
        await publish(host, clips, pump, address)
        await until(lambda: chair.sites[str(host.site_id)]["publishing"], "the host publishing", 30)
        gate = asyncio.Semaphore(args.parallel)
        joined: list[Bot] = []

        async def join(bot: Bot) -> None:
            async with gate:
                for attempt in range(3):  # a busy shared machine: the login may time out (5 s)
                    try:
                        bot.tab = await Tab.open(
                            base,
                            bot.name,
                            meeting,
                            password=PASSWORD,
                            timeout=30,
                            **{"as": "site", "site_id": bot.site_id},
                        )
                        break
                    except Exception as exc:  # httpx.ConnectTimeout and the like
                        if attempt == 2 or "Timeout" not in type(exc).__name__:
                            raise
                        print(f"  {bot.name}: {exc!r}, again", flush=True)
                opened.append(bot)
                await publish(bot, clips, pump, address)
                await subscribe(bot, address)
                joined.append(bot)
                if len(joined) % 10 == 0:
                    print(f"  {len(joined)} sites joined ({time.monotonic() - t_setup:.0f} s)", flush=True)

        await asyncio.gather(*(join(b) for b in bots))
        await until(
            lambda: all(chair.sites[str(b.site_id)]["publishing"] for b in bots), "every site publishing", 60
        )
        # Every view delivers the host (some packets on some mid) before we start.
        await until(lambda: all(b.counter and b.counter.packets > 0 for b in bots), "media at every bot", 60)
        res.setup_s = time.monotonic() - t_setup
        print(f"setup: {len(bots)} sites joined, published, subscribed in {res.setup_s:.1f} s", flush=True)
        res.loads.append(loadavg())

        for n in range(args.grants):
            holder = bots[n % len(bots)]
            listeners = [b for b in bots if b is not holder]
            res.listeners = len(listeners)
            # Silence on every speaker slot (the previous turn is over) before the clock starts.
            with contextlib.suppress(TimeoutError):
                await until(
                    lambda: all(time.monotonic() - b.last_speaker > 0.3 for b in bots), "quiet slots", 5, 0.02
                )
            await holder.tab.ok("floor.request")
            for b in listeners:
                b.first_after, b.armed = None, True
            t0 = time.monotonic()
            reply = await chair.call("floor.grant", site_id=holder.site_id, seconds=120)
            t_ack = time.monotonic()
            if reply["type"] != "ack":
                res.errors.append(f"grant {n}: {reply.get('code')}")
                for b in listeners:
                    b.armed = False
                with contextlib.suppress(Exception):
                    await holder.tab.call("floor.cancel")
                continue
            res.ack.append((t_ack - t0) * 1000)
            deadline = t0 + GRANT_TIMEOUT
            while time.monotonic() < deadline and any(b.first_after is None for b in listeners):
                await asyncio.sleep(0.005)
            firsts = [b.first_after for b in listeners if b.first_after is not None]
            missed = len(listeners) - len(firsts)
            res.misses += missed
            if firsts:
                res.unmuted.append((min(firsts) - t0) * 1000)
            if firsts and not missed:
                res.switched.append((max(firsts) - t0) * 1000)
            for b in listeners:
                b.armed = False
            print(
                f"grant {n + 1:3d} to {holder.name}: ack {(t_ack - t0) * 1000:6.1f} ms, "
                + (f"unmuted {(min(firsts) - t0) * 1000:6.1f} ms, " if firsts else "unmuted –, ")
                + (
                    f"all {(max(firsts) - t0) * 1000:6.1f} ms"
                    if firsts and not missed
                    else f"{missed} missed"
                ),
                flush=True,
            )
            if missed:
                print(
                    f"    holder {holder.name} (site {holder.site_id}) publishing: "
                    f"{chair.sites[str(holder.site_id)].get('publishing')}, floor {chair.floor.get('holders')}; "
                    f"missed: {', '.join(b.name for b in listeners if b.first_after is None)[:300]}",
                    flush=True,
                )
            if n % 10 == 9:
                res.loads.append(loadavg())
            await chair.ok("floor.revoke", site_id=holder.site_id)
        res.loads.append(loadavg())
    finally:
        pinger.cancel()
        await pump.close()
        for b in opened:
            for pc in (b.view, b.pub_pc):
                if pc is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pc.close(), 5)
        for tab in [chair, *(b.tab for b in opened)]:
            if tab is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(tab.close(), 5)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def table(res: Results, grants: int) -> str:
    lines = [
        "| from floor.grant sent to | p50 ms | p95 ms | max ms | grants measured |",
        "|---|---|---|---|---|",
    ]
    for label, values in (
        ("server ack (console)", res.ack),
        ("holder unmuted (first holder RTP at a subscriber's speaker slot)", res.unmuted),
        (f"every subscriber's speaker slot switched ({res.listeners} subscribers)", res.switched),
    ):
        if values:
            row = f"{pct(values, 0.5):.1f} | {pct(values, 0.95):.1f} | {max(values):.1f}"
        else:
            row = "– | – | –"
        lines.append(f"| {label} | {row} | {len(values)}/{grants} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sites", type=int, default=71, help="site bots besides the host (the demo has 70)")
    parser.add_argument("--grants", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=6, help="bots joining at once during setup")
    parser.add_argument("--max-holders", type=int, default=0, help="floor.config before the run (0: keep)")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument("--log", default=None, help="write the app's log (giaoban.*, DEBUG) to this file")
    args = parser.parse_args()
    reason = missing_requirements() or (None if shutil.which("janus") else "janus is not installed")
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    started = time.monotonic()
    res = Results()
    failure: str | None = None
    work = Path(tempfile.mkdtemp(prefix="gb-bench-latency-"))
    lab = NetLab("bench")
    child: Any = None
    parent_end, child_end = multiprocessing.Pipe()
    try:
        name = lab.netns("janus")
        ns = JanusNamespace(name=name, link=lab.link(None, name))
        child = multiprocessing.get_context("fork").Process(
            target=_serve, args=(child_end, ns, work), kwargs={"log_file": args.log}, daemon=True
        )
        child.start()
        if not parent_end.poll(120):
            raise TimeoutError("the app did not start within 120 s")
        info = parent_end.recv()
        if "error" in info:
            raise RuntimeError(f"the app failed: {info['error']}")
        remaining = args.budget - (time.monotonic() - started)
        try:
            asyncio.run(asyncio.wait_for(scenario(info, args, ns, res), remaining))
        except TimeoutError:
            failure = f"time budget of {args.budget:.0f} s reached"
        except Exception as exc:
            failure = repr(exc)
    finally:
        with contextlib.suppress(Exception):
            parent_end.send("stop")
        if child is not None:
            child.join(60)
            if child.is_alive():
                child.terminate()
                child.join(10)
            if child.is_alive():
                child.kill()
        lab.close()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"sites {res.sites} (+ host), grants {args.grants}, setup {res.setup_s:.1f} s, nproc {os.cpu_count()}"
    )
    print(f"load average (1 min) during the run: {', '.join(res.loads)}")
    print(f"subscribers that missed the holder within {GRANT_TIMEOUT:.0f} s (sum over grants): {res.misses}")
    if res.errors:
        print(f"errors: {'; '.join(res.errors[:5])}{' …' if len(res.errors) > 5 else ''}")
    if failure:
        print(f"run stopped early: {failure}")
    print(table(res, args.grants))
    return 0 if failure is None and res.ack else 1


if __name__ == "__main__":
    sys.exit(main())
