"""`giaoban loadtest briefing`: a live briefing under load, through our own signalling path (issue 5).

    giaoban loadtest briefing --sites 71 --duration 300 --grants 50 [--json]

As root (without ``--url``) it builds its own lab: a network namespace and a veth link, and **the app as
a separate process** (``giaoban serve --migrate --demo`` on a temporary data dir with SQLite and the demo
org; its media plane is a Janus it supervises inside the namespace, pinned to one CPU with
``GIAOBAN_JANUS_CPU_AFFINITY``). The app listens on the root end of the link (Janus posts its events
there; nothing listens on another interface). With ``--url`` it targets a running app instead.

Then, as people would: the central operator (``dieuhanh``) schedules a briefing of ``--sites`` sites —
the host (TW) and the next sites of the org — over the REST API (``/api/v1/meetings``; the pages' form
endpoints when the API is not mounted), opens and starts it; the chair (``chutri``) opens the console
tab; the host and every site operator (``dc-<code>``) log in and join over the meeting WebSocket
(:class:`~giaoban.lab.client.LiveClient`), publish the pre-packetized clip sent raw (as
``giaoban loadtest media``) and subscribe to their view, counting RTP from packet headers. Every tab
pings every 20 s, as ``live.js`` does.

During ``--duration`` seconds the chair grants and revokes the floor ``--grants`` times, evenly spread
(a site sends ``floor.request``, the console ``floor.grant``; then ``floor.revoke``). Measured:

* join: a site tab's ``hello`` sent → first RTP of the host's video in its view (every site, host
  included: the host's view carries its own video);
* grant latency, from sending ``floor.grant`` (``bench/briefing_latency.py`` runs this command for
  issue 4's benchmark): the console's ack;
  "unmuted", the holder's first audio on a speaker slot at any other site; "switched" (the headline
  ``grant_*`` figures), every other site's speaker slot delivered the holder's audio;
* app and Janus CPU (Δ utime+stime from ``/proc/<pid>/stat``, % of one core) and RSS — overall and at
  steady state (the windows between grants, from 1 s after a turn ended to the next grant);
* subscriber loss (sequence gaps, every view, whole duration); errors: every ``error`` reply, timeout,
  unexpected disconnect, failed renegotiation, or a site that did not hear the holder within 5 s.

The command's options are parsed before aiortc and the bots are imported (they are, inside the functions
that use them): ``--help`` and bad options answer without them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from giaoban.lab.measure import cpu_seconds, local_ports, log_warnings, run_and_report, udp_socket_drops
from giaoban.lab.measure import percentile as nearest_rank
from giaoban.media.supervisor import read_rss_mb

log = logging.getLogger(__name__)

DEMO_PASSWORD = "Demo-password-2017"
GRANT_TIMEOUT = 5.0  # s: a site that did not hear the holder by then is an error
PING_INTERVAL = 20.0  # s, as live.js
SETTLE = 1.0  # s after a turn ended before a steady-state window opens
QUIET = 0.3  # s of silence on every speaker slot before a grant's clock starts


# -- configuration and result -------------------------------------------------------------------


@dataclass(slots=True)
class BriefConfig:
    """What to run; see the module docstring."""

    sites: int = 71  # sites in the briefing, the host included
    duration: float = 300.0
    grants: int = 50
    url: str | None = None  # a running app instead of our own lab
    password: str = DEMO_PASSWORD  # every demo login's password
    manager: str = "dieuhanh"  # schedules, opens and starts the meeting
    chair: str = "chutri"  # the console tab that grants and revokes
    host_code: str = "TW"
    local_address: str | None = None  # with url: the address the bots gather ICE candidates on
    app_pid: int | None = None  # with url: a local app process to read CPU/RSS from
    janus_pid: int | None = None  # with url: a local Janus process to read CPU/RSS from
    join_concurrency: int = 6
    janus_cpu: int = 0
    generator_cpu: int = 1
    app_cpus: str | None = None  # taskset list for the app (own lab); None: every CPU
    stats_period: int | None = None  # own lab: GIAOBAN_JANUS_STATS_PERIOD (None: the app's default)
    nice: int = 0
    cache_dir: Path | None = None
    keep_logs: Path | None = None  # own lab: copy the app's and Janus's logs here at the end


@dataclass(slots=True)
class BriefResult:
    """The figures; ``to_json()`` has the keys the CLI's ``--json`` promises (and more)."""

    sites: int
    join_p50_ms: float | None = None
    join_p95_ms: float | None = None
    grant_p50_ms: float | None = None  # floor.grant sent → every other site hears the holder
    grant_p95_ms: float | None = None
    grant_ack_p50_ms: float | None = None
    grant_ack_p95_ms: float | None = None
    grant_unmuted_p50_ms: float | None = None
    grant_unmuted_p95_ms: float | None = None
    janus_cpu_pct: float | None = None  # whole duration
    janus_cpu_steady_pct: float | None = None
    janus_rss_mb: float | None = None
    app_cpu_pct: float | None = None  # whole duration
    app_cpu_steady_pct: float | None = None
    app_rss_mb: float | None = None
    generator_cpu_pct: float | None = None
    loss_pct: float = 0.0  # every view, every stream
    host_loss_pct: float = 0.0  # the host's slot (continuous streams) in every view
    speaker_loss_pct: float = 0.0  # the speaker slots (switched between holders)
    packets_per_s: float = 0.0
    bot_socket_drops: int | None = None  # datagrams the kernel dropped on the views' own sockets
    joins_measured: int = 0
    grants_requested: int = 0
    grants_measured: int = 0
    steady_s: float = 0.0
    duration_s: float = 0.0
    setup_s: float = 0.0
    load_average: list[float] = field(default_factory=list)
    meeting_id: int | None = None
    meeting_via: str = ""  # "api" or "pages"
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile, to 0.1 (None for no values)."""
    value = nearest_rank(values, pct)
    return None if value is None else round(value, 1)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- processes ------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    kids = [int(k) for k in (task / "children").read_text().split()]
                    out += kids
                    todo += kids
    return out


def find_janus(app_pid: int) -> int | None:
    """The Janus the app supervises (a descendant whose command is ``janus``)."""
    for pid in descendants(app_pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "janus":
                return pid
    return None


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


class Target:
    """The app under load: our own (lab + ``giaoban serve`` child) or a running one (``--url``)."""

    def __init__(self, config: BriefConfig) -> None:
        self.config = config
        self.base = config.url.rstrip("/") if config.url else ""
        self.local_address = config.local_address
        self.app_pid = config.app_pid
        self.janus_pid = config.janus_pid
        self.netlab: Any = None
        self.work: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    async def __aenter__(self) -> Target:
        if self.config.url:
            return self
        try:
            self._start_lab()  # in the main thread: NetLab installs its SIGTERM handler there
            await self._wait_ready()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _start_lab(self) -> None:
        from giaoban.lab.janus_ns import janus_lab_missing
        from giaoban.lab.netns import NetLab

        reason = janus_lab_missing()
        if reason:
            raise RuntimeError(f"cannot build the lab: {reason} (or pass --url)")
        self.netlab = NetLab("brief")
        ns = self.netlab.netns("janus")
        link = self.netlab.link(None, ns)
        self.local_address = link.addr_a
        self.work = Path(tempfile.mkdtemp(prefix="giaoban-loadbrief-"))
        port = _free_port(link.addr_a)
        self.base = f"http://{link.addr_a}:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIAOBAN_")}
        env.update(
            GIAOBAN_DATA_DIR=str(self.work / "var"),
            GIAOBAN_DEMO_PASSWORD=self.config.password,
            GIAOBAN_HOST=link.addr_a,
            GIAOBAN_PORT=str(port),
            GIAOBAN_JANUS_NETNS=ns,
            GIAOBAN_JANUS_BIND_ADDRESS=link.addr_b,
            GIAOBAN_JANUS_START_TIMEOUT="20",
        )
        if (os.cpu_count() or 1) > 1:
            env["GIAOBAN_JANUS_CPU_AFFINITY"] = str(self.config.janus_cpu)
        if self.config.stats_period is not None:
            env["GIAOBAN_JANUS_STATS_PERIOD"] = str(self.config.stats_period)
        cpus = self.config.app_cpus or f"0-{(os.cpu_count() or 1) - 1}"
        argv = ["taskset", "-c", cpus, sys.executable, "-m", "giaoban.cli", "serve", "--migrate", "--demo"]
        self.log_path = self.work / "app.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.work
            )
        self.app_pid = self.proc.pid  # taskset execs the interpreter: same pid

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def _wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base, trust_env=False, timeout=5) as http:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"the app exited ({self.proc.returncode}):\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    health = (await http.get("/healthz")).json()
                    if health.get("status") == "ok":
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the app was not healthy within {timeout:.0f} s:\n{self.log_tail()}")
                await asyncio.sleep(0.2)
        assert self.app_pid is not None
        for _ in range(50):
            self.janus_pid = find_janus(self.app_pid)
            if self.janus_pid:
                break
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # uvicorn shuts down; the media service stops its Janus
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), 20)
            except TimeoutError:
                self.proc.kill()
                await loop.run_in_executor(None, self.proc.wait)
        if self.netlab is not None:
            self.netlab.close()  # kills whatever is left in our namespace
        if self.work is not None and self.config.keep_logs is not None:
            self.config.keep_logs.mkdir(parents=True, exist_ok=True)
            for log_file in [*self.work.glob("*.log"), *self.work.glob("var/**/*.log")]:
                shutil.copy(log_file, self.config.keep_logs / log_file.name)
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


# -- the meeting, scheduled as a central operator would ----------------------------------------


async def login(http: Any, username: str, password: str) -> str:
    r = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
    if r.status_code != 200:
        raise RuntimeError(f"login of {username} failed: {r.status_code} {r.text[:200]}")
    token: str = r.json()["token"]
    return token


async def schedule_briefing(config: BriefConfig, base: str) -> tuple[int, list[tuple[str, int]], str]:
    """Schedule, open and start a briefing of ``config.sites`` sites; (meeting id, [(code, site id)], via).

    The host comes first in the list. Over ``/api/v1/meetings`` when mounted, else the pages' forms
    (same service, bearer-authenticated: no CSRF token needed).
    """
    import httpx

    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=60) as http:
        token = await login(http, config.manager, config.password)
        http.headers["Authorization"] = f"Bearer {token}"
        r = await http.get("/api/v1/sites", params={"limit": 500})
        r.raise_for_status()
        items = sorted(r.json()["items"], key=lambda s: s["id"])
        host = next((s for s in items if s["code"] == config.host_code), None)
        if host is None:
            raise RuntimeError(f"no site with code {config.host_code}")
        others = [s for s in items if s is not host]
        if config.sites - 1 > len(others):
            raise ValueError(f"--sites {config.sites}: the org has only {len(others) + 1} sites")
        chosen = [host, *others[: config.sites - 1]]
        now = datetime.now(UTC)
        body = {
            "title": "Kiểm tra tải giao ban",
            "kind": "briefing",
            "starts_at": (now + timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(hours=3)).isoformat(),
            "owner_unit_id": host["unit_id"],
            "host_site_id": host["id"],
            "invite": {"site_ids": [s["id"] for s in chosen]},
        }
        r = await http.post("/api/v1/meetings", json=body)
        via = "api"
        if r.status_code in (404, 405):
            via = "pages"
            start = now.astimezone(_vn()) + timedelta(minutes=5)
            if start.hour >= 21:  # the form's times are within one day: tomorrow morning then
                start = (start + timedelta(days=1)).replace(hour=8, minute=0)
            form = {
                "title": body["title"],
                "kind": "briefing",
                "day": start.date().isoformat(),
                "start": start.strftime("%H:%M"),
                "end": (start + timedelta(hours=2)).strftime("%H:%M"),
                "owner": str(host["unit_id"]),
                "host": str(host["id"]),
                "site_ids": [str(s["id"]) for s in chosen],
            }
            r = await http.post("/meetings/new", data=form, follow_redirects=False)
            location = r.headers.get("location", "")
            if r.status_code != 303 or not location.startswith("/meetings/"):
                raise RuntimeError(f"scheduling failed: {r.status_code} {r.text[:300]}")
            meeting_id = int(location.split("/")[2].split("?")[0])
        elif r.status_code == 201:
            meeting_id = int(r.json()["id"])
        else:
            raise RuntimeError(f"scheduling failed: {r.status_code} {r.text[:300]}")
        for status in ("open", "live"):
            if via == "api":
                r = await http.post(f"/api/v1/meetings/{meeting_id}/status", json={"status": status})
                ok = r.status_code == 200
            else:
                r = await http.post(
                    f"/meetings/{meeting_id}/status", data={"status": status}, follow_redirects=False
                )
                ok = r.status_code == 303
            if not ok:
                raise RuntimeError(f"status {status} refused: {r.status_code} {r.text[:300]}")
    return meeting_id, [(str(s["code"]), int(s["id"])) for s in chosen], via


def _vn() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Ho_Chi_Minh")


# -- one site: a WebSocket tab, a raw publisher, a header-counting view --------------------------


@dataclass(eq=False)
class SiteBot:
    """One site's room tab (or the chair's console, without media)."""

    name: str
    site_id: int
    tab: Any = None
    pub_pc: Any = None
    view: Any = None
    counter: Any = None
    host_video: str | None = None  # mid of the host's video in the view
    host_mids: set[str] = field(default_factory=set)  # the host slot's mids
    speaker_audio: set[str] = field(default_factory=set)
    last_speaker: float = 0.0  # monotonic time of the last packet on a speaker slot's audio
    first_after: float | None = None  # first such packet since a grant (while armed)
    armed: bool = False
    closing: bool = False

    def on_packet(self, data: bytes) -> None:
        mid = self.counter.ssrc_mid.get(int.from_bytes(data[8:12], "big"))
        if mid in self.speaker_audio:
            now = time.monotonic()
            self.last_speaker = now
            if self.armed and self.first_after is None:
                self.first_after = now

    def join_ms(self) -> float | None:
        """hello sent → first RTP of the host's video in the view."""
        if self.counter is None or self.host_video is None or self.tab is None:
            return None
        first = self.counter.first_rtp_all([self.host_video])
        return None if first is None else (first - self.tab.hello_at) * 1000


class Run:
    """One load run against a target; collects errors, runs the grants, measures."""

    def __init__(self, config: BriefConfig, target: Target, clips: Any) -> None:
        from giaoban.lab.rtpfast import PacketPump

        self.config = config
        self.target = target
        self.clips = clips
        self.pump = PacketPump()
        self.result = BriefResult(sites=config.sites, grants_requested=config.grants)
        self.chair: SiteBot | None = None
        self.host: SiteBot | None = None
        self.bots: list[SiteBot] = []  # every site, host first
        self.opened: list[SiteBot] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ack: list[float] = []
        self.unmuted: list[float] = []
        self.switched: list[float] = []
        self.meeting_id = 0

    def error(self, what: str) -> None:
        self.result.errors += 1
        if len(self.result.error_messages) < 20:
            self.result.error_messages.append(what)
        log.warning("error: %s", what)

    async def checked(self, bot: SiteBot, type: str, **payload: Any) -> dict[str, Any] | None:
        """Send one message; an error reply, a timeout or a closed socket is an error (None back)."""
        try:
            reply: dict[str, Any] = await bot.tab.call(type, **payload)
        except Exception as exc:
            self.error(f"{bot.name} {type}: {type_name(exc)}")
            return None
        if reply["type"] != "ack":
            self.error(f"{bot.name} {type}: {reply.get('code')} {reply.get('message', '')}")
            return None
        return reply

    # -- joining --

    async def open_tab(self, bot: SiteBot, **hello: Any) -> None:
        from giaoban.lab.client import LiveClient

        username = bot.name
        bot.tab = await LiveClient.open(
            self.target.base, username, self.meeting_id, password=self.config.password, timeout=30, **hello
        )
        self.opened.append(bot)

    async def publish(self, bot: SiteBot) -> None:
        """``media.publish`` a PeerConnection whose RTP (the clip, audio + video) is sent raw."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from giaoban.lab.bots import PublisherBot, SilentTrack, host_candidates_only, wait_connected
        from giaoban.lab.rtpfast import parse_sections

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        bot.pub_pc = pc
        pc.addTrack(SilentTrack("audio"))
        pc.addTrack(SilentTrack("video"))
        with host_candidates_only(self.target.local_address):
            await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        own = next(s for s in parse_sections(offer) if s.kind == "video").ssrcs[0]
        result = await bot.tab.ok("media.publish", jsep={"type": "offer", "sdp": offer})
        await pc.setRemoteDescription(RTCSessionDescription(**result["jsep"]))
        await wait_connected(pc, 30)
        # PublisherBot's raw sender, without its Janus handle (our server holds the publisher handle).
        raw = PublisherBot(session=None, clips=self.clips, pump=self.pump)  # type: ignore[arg-type]
        raw._start_raw(pc, offer, result["jsep"]["sdp"], [own])

    async def subscribe(self, bot: SiteBot) -> None:
        """``media.subscribe`` + ``media.start``; renegotiate on ``media.offer`` as the browser does."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from giaoban.lab.bots import host_candidates_only
        from giaoban.lab.rtpfast import RtpCounter

        for attempt in range(5):
            reply = await bot.tab.call("media.subscribe")
            if reply["type"] == "ack":
                break
            # As the room page: host_not_ready means subscribe again once the host publishes.
            self.error(f"{bot.name} media.subscribe: {reply.get('code')}")
            if reply.get("code") != "host_not_ready" or attempt == 4:
                raise RuntimeError(f"media.subscribe: {reply.get('code')}")
            with contextlib.suppress(TimeoutError):
                await self.until(self.host_publishing, "the host publishing", 30)
        result = reply["result"]
        slots = result["slots"]
        bot.host_video = slots["host"]["video"]
        bot.host_mids = {slots["host"]["video"], slots["host"]["audio"]}
        bot.speaker_audio = {s["audio"] for s in slots["speakers"]}

        class ViewCounter(RtpCounter):
            def on_rtp(self, data: bytes) -> None:
                RtpCounter.on_rtp(self, data)
                bot.on_packet(data)

        counter = bot.counter = ViewCounter()
        counter.map_mids(result["jsep"]["sdp"])
        pc = bot.view = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        with host_candidates_only(self.target.local_address):
            await pc.setRemoteDescription(RTCSessionDescription(**result["jsep"]))
            await pc.setLocalDescription(await pc.createAnswer())
        counter.hook(pc, rcvbuf=1 << 20)
        await bot.tab.ok("media.start", jsep={"type": "answer", "sdp": pc.localDescription.sdp})

        async def renegotiate(msg: dict[str, Any]) -> None:
            try:
                if msg.get("target", "view") != "view":
                    return
                counter.map_mids(msg["jsep"]["sdp"])
                latest = bot.tab.slots()
                if latest is not None and "speakers" in latest:
                    bot.speaker_audio = {s["audio"] for s in latest["speakers"]}
                await pc.setRemoteDescription(RTCSessionDescription(**msg["jsep"]))
                await pc.setLocalDescription(await pc.createAnswer())
                await bot.tab.ok("media.start", jsep={"type": "answer", "sdp": pc.localDescription.sdp})
            except Exception as exc:
                if not bot.closing:
                    self.error(f"{bot.name} renegotiation: {type_name(exc)}")

        bot.tab.on_offer = renegotiate

    def host_publishing(self) -> bool:
        assert self.chair is not None and self.host is not None
        return bool(self.chair.tab.sites[str(self.host.site_id)]["publishing"])

    async def until(self, check: Any, what: str, timeout: float, step: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(step)

    async def setup(self) -> None:
        cfg = self.config
        t0 = time.monotonic()
        self.meeting_id, sites, self.result.meeting_via = await schedule_briefing(cfg, self.target.base)
        self.result.meeting_id = self.meeting_id
        self.bots = [SiteBot(f"dc-{code.lower()}", site_id) for code, site_id in sites]
        self.host = self.bots[0]
        self.chair = SiteBot(cfg.chair, 0)
        await self.open_tab(self.chair, **{"as": "console"})
        chair_tab = self.chair.tab
        host = self.host
        await self.open_tab(host, **{"as": "site", "site_id": host.site_id})
        await self.publish(host)
        await self.until(lambda: chair_tab.sites[str(host.site_id)]["publishing"], "the host publishing", 30)
        await self.subscribe(host)
        gate = asyncio.Semaphore(max(1, cfg.join_concurrency))
        failed: list[str] = []

        async def join(bot: SiteBot) -> None:
            async with gate:
                try:
                    await self.open_tab(bot, **{"as": "site", "site_id": bot.site_id})
                    await self.publish(bot)
                    await self.subscribe(bot)
                except Exception as exc:
                    failed.append(bot.name)
                    self.error(f"{bot.name} join: {type_name(exc)}")

        await asyncio.gather(*(join(b) for b in self.bots[1:]))
        if len(failed) == len(self.bots) - 1:
            raise RuntimeError("no site could join")
        # The run goes on with the sites that joined (the others are errors already).
        self.bots = [b for b in self.bots if b.name not in failed]
        budget = 30 + cfg.sites
        await self.until(
            lambda: all(chair_tab.sites[str(b.site_id)]["publishing"] for b in self.bots),
            "every site publishing",
            budget,
        )
        await self.until(
            lambda: all(b.join_ms() is not None for b in self.bots), "the host at every site", budget
        )
        self.result.setup_s = round(time.monotonic() - t0, 1)
        joins = [ms for b in self.bots if (ms := b.join_ms()) is not None]
        self.result.joins_measured = len(joins)
        self.result.join_p50_ms = percentile(joins, 50)
        self.result.join_p95_ms = percentile(joins, 95)

    # -- the measured phase --

    async def pinger(self, bot: SiteBot, offset: float) -> None:
        await asyncio.sleep(offset)
        while True:
            await self.checked(bot, "ping")
            await asyncio.sleep(PING_INTERVAL)

    def disconnected(self) -> list[SiteBot]:
        tabs = [self.chair, *self.bots]
        return [b for b in tabs if b is not None and b.tab is not None and b.tab.reader.done()]

    async def grant(self, n: int) -> None:
        holder = self.bots[1 + n % (len(self.bots) - 1)]
        listeners = [b for b in self.bots if b is not holder]
        assert self.chair is not None
        with contextlib.suppress(TimeoutError):
            await self.until(
                lambda: all(time.monotonic() - b.last_speaker > QUIET for b in self.bots), "quiet", 5, 0.02
            )
        if await self.checked(holder, "floor.request") is None:
            return
        for b in listeners:
            b.first_after, b.armed = None, True
        t0 = time.monotonic()
        reply = await self.checked(self.chair, "floor.grant", site_id=holder.site_id, seconds=120)
        t_ack = time.monotonic()
        if reply is None:
            for b in listeners:
                b.armed = False
            with contextlib.suppress(Exception):
                await holder.tab.call("floor.cancel")
            return
        self.ack.append((t_ack - t0) * 1000)
        deadline = t0 + GRANT_TIMEOUT
        while time.monotonic() < deadline and any(b.first_after is None for b in listeners):
            await asyncio.sleep(0.005)
        firsts = [b.first_after for b in listeners if b.first_after is not None]
        missed = [b.name for b in listeners if b.first_after is None]
        for b in listeners:
            b.armed = False
        if firsts:
            self.unmuted.append((min(firsts) - t0) * 1000)
        if missed:
            self.error(f"grant {n + 1} to {holder.name}: {len(missed)} sites did not hear it: {missed[:5]}")
        elif firsts:
            self.switched.append((max(firsts) - t0) * 1000)
        await self.checked(self.chair, "floor.revoke", site_id=holder.site_id)

    async def measure(self) -> None:
        cfg, res = self.config, self.result
        views = [b for b in self.bots if b.counter is not None]
        app, janus = self.target.app_pid, self.target.janus_pid
        gc.collect()
        gc.freeze()  # see loadrun.py: no full collections over the aiortc objects mid-run
        tabs = [b for b in [self.chair, *self.bots] if b is not None]
        for i, bot in enumerate(tabs):
            task = asyncio.create_task(self.pinger(bot, PING_INTERVAL * i / len(tabs)))
            self.tasks.add(task)
        before = [per_ssrc(b.counter) for b in views]
        ports: set[int] = set()
        for b in views:
            ports |= local_ports(b.view)
        drops0 = udp_socket_drops(ports)
        t_start, app0, janus0, gen0 = (
            time.monotonic(),
            cpu_seconds(app),
            cpu_seconds(janus),
            time.process_time(),
        )
        steady = [0.0, 0.0, 0.0]  # seconds, app CPU s, Janus CPU s
        window: tuple[float, float | None, float | None] | None = (t_start, app0, janus0)

        def close_window() -> None:
            nonlocal window
            if window is None:
                return
            t, a, j = window
            window = None
            span = time.monotonic() - t
            a1, j1 = cpu_seconds(app), cpu_seconds(janus)
            if span >= 0.5:
                steady[0] += span
                if a is not None and a1 is not None:
                    steady[1] += a1 - a
                if j is not None and j1 is not None:
                    steady[2] += j1 - j

        res.load_average.append(loadavg())
        interval = cfg.duration / cfg.grants if cfg.grants else cfg.duration
        seen_down: set[str] = set()
        for n in range(cfg.grants):
            due = t_start + (n + 0.5) * interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            close_window()
            await self.grant(n)
            # The turn is over once the speaker slots are silent again; a steady window opens SETTLE later.
            with contextlib.suppress(TimeoutError):
                await self.until(
                    lambda: all(time.monotonic() - b.last_speaker > QUIET for b in self.bots),
                    "quiet",
                    5,
                    0.02,
                )
            next_due = t_start + (n + 1.5) * interval if n + 1 < cfg.grants else t_start + cfg.duration
            if time.monotonic() + SETTLE < next_due:
                await asyncio.sleep(SETTLE)
                window = (time.monotonic(), cpu_seconds(app), cpu_seconds(janus))
            for bot in self.disconnected():
                if bot.name not in seen_down:
                    seen_down.add(bot.name)
                    self.error(f"{bot.name}: disconnected")
            if n % 10 == 9:
                res.load_average.append(loadavg())
        await asyncio.sleep(max(0.0, t_start + cfg.duration - time.monotonic()))
        close_window()
        t_end, app1, janus1, gen1 = (
            time.monotonic(),
            cpu_seconds(app),
            cpu_seconds(janus),
            time.process_time(),
        )
        after = [per_ssrc(b.counter) for b in views]
        res.bot_socket_drops = udp_socket_drops(ports) - drops0
        res.load_average.append(loadavg())
        for bot in self.disconnected():
            if bot.name not in seen_down:
                self.error(f"{bot.name}: disconnected")
        span = t_end - t_start
        res.duration_s = round(span, 1)
        res.steady_s = round(steady[0], 1)
        if app0 is not None and app1 is not None:
            res.app_cpu_pct = round(100 * (app1 - app0) / span, 2)
            if steady[0]:
                res.app_cpu_steady_pct = round(100 * steady[1] / steady[0], 2)
        if janus0 is not None and janus1 is not None:
            res.janus_cpu_pct = round(100 * (janus1 - janus0) / span, 1)
            if steady[0]:
                res.janus_cpu_steady_pct = round(100 * steady[2] / steady[0], 1)
        res.generator_cpu_pct = round(100 * (gen1 - gen0) / span, 1)
        for name, pid in (("app", app), ("janus", janus)):
            rss = read_rss_mb(pid) if pid else None
            setattr(res, f"{name}_rss_mb", None if rss is None else round(rss, 1))
        totals = {"host": [0, 0], "speaker": [0, 0]}  # received, lost
        for bot, snap0, snap1 in zip(views, before, after, strict=True):
            for ssrc, (mid, packets, expected) in snap1.items():
                _, packets0, expected0 = snap0.get(ssrc, (mid, 0, 0))  # new in the window: from its first
                got = packets - packets0
                slot = totals["host" if mid in bot.host_mids else "speaker"]
                slot[0] += got
                slot[1] += max(0, (expected - expected0) - got)
        received = totals["host"][0] + totals["speaker"][0]
        lost = totals["host"][1] + totals["speaker"][1]
        res.packets_per_s = round(received / span, 1)
        res.loss_pct = round(100 * lost / max(1, received + lost), 3)
        for name, (r, lo) in totals.items():
            setattr(res, f"{name}_loss_pct", round(100 * lo / max(1, r + lo), 3))
        res.grants_measured = len(self.switched)
        for name, values in (
            ("grant", self.switched),
            ("grant_ack", self.ack),
            ("grant_unmuted", self.unmuted),
        ):
            setattr(res, f"{name}_p50_ms", percentile(values, 50))
            setattr(res, f"{name}_p95_ms", percentile(values, 95))

    async def teardown(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for bot in self.opened:
            bot.closing = True
        await self.pump.close()
        pcs = [pc for b in self.opened for pc in (b.view, b.pub_pc) if pc is not None]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True), 20)
        tabs = [b.tab for b in self.opened if b.tab is not None]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(t.close() for t in tabs), return_exceptions=True), 10)


def per_ssrc(counter: Any) -> dict[int, tuple[str | None, int, int]]:
    """(mid, packets, expected) of every SSRC a view's counter has seen."""
    return {ssrc: (c.mid, c.packets, c.expected) for ssrc, c in counter.by_ssrc.items()}


def type_name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def run_brief(config: BriefConfig) -> BriefResult:
    """Build (or reach) the app, run the briefing load, return the figures; always tears down."""
    import aioice.ice

    from giaoban.lab.bots import ClipSet

    if config.sites < 2:
        raise ValueError("--sites must be >= 2 (the host and at least one site)")
    if config.duration <= 0 or config.grants < 0:
        raise ValueError("--duration must be > 0 and --grants >= 0")
    clips = await asyncio.get_running_loop().run_in_executor(None, ClipSet.ensure, config.cache_dir)
    aioice.ice.CONSENT_FAILURES = 1 << 30  # see loadrun.py: a load generator never gives up on consent
    async with Target(config) as target:
        run = Run(config, target, clips)
        try:
            await run.setup()
            await run.measure()
        except Exception as exc:
            run.error(f"run stopped: {type_name(exc)}")
        finally:
            await run.teardown()
        return run.result


def time_budget(config: BriefConfig) -> float:
    """An upper bound for the whole run."""
    return 180.0 + 4.0 * config.sites + config.duration + 8.0 * config.grants


# -- output and CLI ----------------------------------------------------------------------------


def format_table(r: BriefResult) -> str:
    def fmt(value: object, unit: str = "") -> str:
        if value is None:
            return "n/a"
        return f"{value}{unit}"

    def pair(a: object, b: object, unit: str) -> str:
        return f"{fmt(a, unit)} / {fmt(b, unit)}"

    rows = [
        ("sites (host included)", fmt(r.sites)),
        ("meeting (scheduled via)", f"{r.meeting_id} ({r.meeting_via})"),
        (
            "join p50 / p95 (hello → host video)",
            pair(r.join_p50_ms, r.join_p95_ms, " ms") + f"  ({r.joins_measured})",
        ),
        (
            "grant p50 / p95 (→ every site hears)",
            pair(r.grant_p50_ms, r.grant_p95_ms, " ms") + f"  ({r.grants_measured}/{r.grants_requested})",
        ),
        ("grant ack p50 / p95 (console)", pair(r.grant_ack_p50_ms, r.grant_ack_p95_ms, " ms")),
        ("grant unmuted p50 / p95 (first site)", pair(r.grant_unmuted_p50_ms, r.grant_unmuted_p95_ms, " ms")),
        ("app CPU, overall / steady (% core)", pair(r.app_cpu_pct, r.app_cpu_steady_pct, " %")),
        ("app RSS", fmt(r.app_rss_mb, " MB")),
        ("Janus CPU, overall / steady (% core)", pair(r.janus_cpu_pct, r.janus_cpu_steady_pct, " %")),
        ("Janus RSS", fmt(r.janus_rss_mb, " MB")),
        ("generator CPU (% core)", fmt(r.generator_cpu_pct, " %")),
        (
            "subscriber loss (all / host slot / speakers)",
            f"{r.loss_pct:.3f} % / {r.host_loss_pct:.3f} % / {r.speaker_loss_pct:.3f} % of {r.packets_per_s} packets/s",
        ),
        ("UDP drops on the views' sockets", fmt(r.bot_socket_drops)),
        ("duration / steady / setup", f"{r.duration_s} s / {r.steady_s} s / {r.setup_s} s"),
        ("load average (1 min)", ", ".join(f"{x:.1f}" for x in r.load_average)),
        ("errors", fmt(r.errors)),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"error: {m}" for m in r.error_messages]
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `giaoban loadtest briefing`."""
    parser.add_argument("--sites", type=int, default=71, help="sites in the briefing, the host included")
    parser.add_argument("--duration", type=float, default=300.0, help="measured seconds (grants within)")
    parser.add_argument("--grants", type=int, default=50, help="floor grants (and revokes) in the duration")
    parser.add_argument("--url", help="a running app (http://…) instead of our own lab")
    parser.add_argument(
        "--password",
        default=os.environ.get("GIAOBAN_DEMO_PASSWORD", DEMO_PASSWORD),
        help="every demo login's password (default: GIAOBAN_DEMO_PASSWORD, else the lab's own)",
    )
    parser.add_argument("--manager", default="dieuhanh", help="login that schedules and starts the meeting")
    parser.add_argument("--chair", default="chutri", help="login of the console tab")
    parser.add_argument("--local-address", help="with --url: address the bots gather ICE candidates on")
    parser.add_argument("--app-pid", type=int, help="with --url on this machine: app pid for CPU/RSS")
    parser.add_argument("--janus-pid", type=int, help="with --url on this machine: Janus pid for CPU/RSS")
    parser.add_argument("--join-concurrency", type=int, default=6)
    parser.add_argument("--janus-cpu", type=int, default=0, help="CPU the lab Janus is pinned to")
    parser.add_argument("--generator-cpu", type=int, default=1, help="CPU the bots are pinned to")
    parser.add_argument("--app-cpus", help="taskset list for the app (default: every CPU)")
    parser.add_argument("--stats-period", type=int, help="lab Janus media stats period (default: app's)")
    parser.add_argument(
        "--nice", type=int, default=0, help="nice value for the run, the app and Janus (root)"
    )
    parser.add_argument("--cache-dir", type=Path, help="where the encoded clips are kept")
    parser.add_argument("--keep-logs", type=Path, help="own lab: copy the app's and Janus's logs here")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_cli(args: argparse.Namespace) -> int:
    """Exit 0 when the run had no errors, 1 otherwise, 2 when it could not run."""
    log_warnings("%(levelname)s %(name)s: %(message)s")
    config = BriefConfig(
        sites=args.sites,
        duration=args.duration,
        grants=args.grants,
        url=args.url,
        password=args.password,
        manager=args.manager,
        chair=args.chair,
        local_address=args.local_address,
        app_pid=args.app_pid,
        janus_pid=args.janus_pid,
        join_concurrency=args.join_concurrency,
        janus_cpu=args.janus_cpu,
        generator_cpu=args.generator_cpu,
        app_cpus=args.app_cpus,
        stats_period=args.stats_period,
        nice=args.nice,
        cache_dir=args.cache_dir,
        keep_logs=args.keep_logs,
    )
    if config.sites < 2 or config.duration <= 0 or config.grants < 0:
        print("--sites must be >= 2, --duration > 0 and --grants >= 0", file=sys.stderr)
        return 2
    if not config.url and os.geteuid() != 0:
        print("without --url the load test builds a network lab and needs root", file=sys.stderr)
        return 2
    if config.url and not config.local_address:
        print("--url needs --local-address (where the bots' media leave from)", file=sys.stderr)
        return 2
    # The app and Janus inherit the nice value; the app gets its own CPU list through taskset.
    return run_and_report(
        lambda: run_brief(config),
        budget=time_budget(config),
        nice=config.nice,
        generator_cpu=config.generator_cpu,
        as_json=args.json,
        table=format_table,
    )
