"""Briefing load test: a host + N synthetic sites in one VideoRoom, measured (``giaoban loadtest media``).

Topology (docs/media.md "Briefing media topology"): every site publishes the pre-encoded clip (VP8 360p
~500 kbit/s + Opus; with ``simulcast`` also a 180p layer); every site subscribes to the host and to one
speaker (audio + video); the host subscribes to the speaker's audio and to the **wall** of site videos:
``full`` (every site, top layer, as in the reference measurement of perf-notes.md), ``paged`` (one page of
``page`` sites at the lowest simulcast layer) or ``none``.

Without ``janus_url`` (root only) it builds its own lab: a network namespace with Janus pinned to one CPU
(``taskset``) and this process (the generator: every bot) pinned to another. Figures are taken over a
steady-state window after every subscription delivered media: Janus CPU from ``/proc/<pid>/stat``,
generator CPU from this process's CPU time, packets and loss (sequence gaps) counted at the subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aioice.ice

from giaoban.lab.bots import ClipSet, PublisherBot, SubscriberBot
from giaoban.lab.janus_ns import LabJanusSettings
from giaoban.lab.measure import (
    cpu_seconds,
    cpu_times,
    local_ports,
    percentile,
    udp_rcvbuf_errors,
    udp_socket_drops,
)
from giaoban.lab.netns import NetLab, missing_requirements
from giaoban.lab.rtpfast import CountSnapshot, PacketPump, window_loss
from giaoban.media.client import JanusClient, JanusSession, JsonDict
from giaoban.media.config import load_janus_settings
from giaoban.media.supervisor import JanusSupervisor, read_rss_mb
from giaoban.media.videoroom import RoomOptions, VideoRoom

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class LoadConfig:
    """What to run; see the module docstring."""

    sites: int = 8
    duration: float = 10.0
    janus_url: str | None = None
    api_secret: str | None = None
    janus_pid: int | None = None  # with janus_url: a local Janus whose CPU/RSS to read
    local_address: str | None = None  # with janus_url: the address bots gather ICE candidates on
    wall: str = "paged"  # full | paged | none
    page: int = 24
    simulcast: bool = True
    lean: bool = False  # sites without the floor: muted mic with DTX and (simulcast) low layer only
    publish_mode: str = "raw"
    subscribe_mode: str = "header"
    join_concurrency: int = 8
    janus_cpu: int = 0
    generator_cpu: int = 1
    event_loops: int = 0
    nice: int = 0  # own lab: scheduling priority of Janus and the generator (negative = favoured)
    warmup_timeout: float = 20.0
    cache_dir: Path | None = None


@dataclass(slots=True)
class LoadResult:
    """The figures; ``to_json()`` has the keys the CLI's ``--json`` promises (and a few more)."""

    sites: int
    join_p50_ms: float | None = None
    join_p95_ms: float | None = None
    join_all_p50_ms: float | None = None
    join_all_p95_ms: float | None = None
    janus_cpu_pct: float | None = None
    janus_rss_mb: float | None = None
    packets_per_s: float = 0.0
    expected_packets_per_s: float = 0.0
    packets_in_per_s: float = 0.0
    loss_pct: float = 0.0
    host_loss_pct: float = 0.0
    generator_cpu_pct: float = 0.0
    generator_late_ms: float = 0.0
    us_per_packet: float | None = None
    # Datagrams the kernel dropped on the subscribers' own sockets (the generator did not read in time):
    # they show in loss_pct as sequence gaps too, but are the generator's fault, not Janus's.
    # Whole cores during the window (own lab): busy = every non-idle jiffy (other processes of a shared
    # machine included); softirq = network processing, which /proc/<pid>/stat does not charge to Janus
    # or to the generator (veth delivery runs in softirq on the sending core).
    janus_core_busy_pct: float | None = None
    janus_core_softirq_pct: float | None = None
    generator_core_busy_pct: float | None = None
    generator_core_softirq_pct: float | None = None
    bot_socket_drops: int | None = None
    janus_socket_drops: int | None = None  # the same in Janus's namespace (own lab only)
    window_s: float = 0.0
    setup_s: float = 0.0
    wall: str = "paged"
    wall_streams: int = 0
    simulcast: bool = True
    lean: bool = False
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)

    @property
    def generator_limited(self) -> bool:
        """Whether the generator, not Janus, may have limited the run (CPU-bound or sending late)."""
        return self.generator_cpu_pct > 90 or self.generator_late_ms > 500 or bool(self.bot_socket_drops)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["generator_limited"] = self.generator_limited
        return out


def _core_pct(
    before: tuple[int, int, int] | None, after: tuple[int, int, int] | None
) -> tuple[float, float] | None:
    if before is None or after is None or after[2] == before[2]:
        return None
    span = after[2] - before[2]
    return round(100 * (after[0] - before[0]) / span, 1), round(100 * (after[1] - before[1]) / span, 1)


class MediaLab:
    """The Janus to load: our own (namespace + pinned supervised Janus) or an external one."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.netlab: NetLab | None = None
        self.supervisor: JanusSupervisor | None = None
        self.data_dir: Path | None = None
        self.url = config.janus_url or ""
        self.api_secret = config.api_secret
        self.pid = config.janus_pid
        self.local_address = config.local_address
        self.netns: str | None = None

    async def __aenter__(self) -> MediaLab:
        if self.config.janus_url:
            return self
        reason = missing_requirements()
        if reason or shutil.which("janus") is None:
            raise RuntimeError(
                f"cannot build the lab: {reason or 'janus is not installed'} (or pass --janus URL)"
            )
        try:
            self.netlab = NetLab()
            ns = self.netns = self.netlab.netns("janus")
            link = self.netlab.link(None, ns)
            self.data_dir = Path(tempfile.mkdtemp(prefix="giaoban-loadtest-"))
            pin = self.config.janus_cpu if (os.cpu_count() or 1) > 1 else None
            explicit = LabJanusSettings(
                mode="local",
                netns=ns,
                bind_address=link.addr_b,
                ws_port=8188,
                admin_port=7188,
                rtp_port_min=20000,
                rtp_port_max=40000,
                debug_level=3,
                reclaim_session_timeout=0,
                session_timeout=180,
                cpu_affinity=str(pin) if pin is not None else None,
                event_loops=self.config.event_loops,
                start_timeout=15.0,
            )
            settings = load_janus_settings(self.data_dir, explicit)
            self.supervisor = JanusSupervisor(settings, self.data_dir)
            await self.supervisor.start()
        except BaseException:
            await self.__aexit__()
            raise
        self.url = settings.local_ws_url
        self.api_secret = settings.api_secret
        self.pid = self.supervisor.pid
        if self.config.nice and self.pid:
            # Every thread of Janus: the priority of a Linux thread is its own.
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), self.config.nice)
        self.local_address = link.addr_a
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.supervisor is not None:
            with contextlib.suppress(Exception):
                await self.supervisor.stop(timeout=3.0)
        if self.netlab is not None:
            self.netlab.close()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


async def _limited(sem: asyncio.Semaphore, coro: Awaitable[T]) -> T:
    async with sem:
        return await coro


@dataclass
class _Site:
    index: int
    session: JanusSession
    pub: PublisherBot
    sub: SubscriberBot | None = None


class BriefingLoad:
    """One run: set up the room and bots, measure a steady window, tear down (bounded in time)."""

    def __init__(self, config: LoadConfig, lab: MediaLab, clips: ClipSet) -> None:
        self.config = config
        self.lab = lab
        self.clips = clips
        self.pump = PacketPump()
        self.client: JanusClient | None = None
        self.vr: VideoRoom | None = None
        self.room: int | None = None
        self.secret = f"lt-{random.getrandbits(48):x}"
        self.host: _Site | None = None
        self.sites: list[_Site] = []
        self.wall: SubscriberBot | None = None
        self.result = LoadResult(
            sites=config.sites, wall=config.wall, simulcast=config.simulcast, lean=config.lean
        )

    def _error(self, what: str, exc: BaseException) -> None:
        self.result.errors += 1
        if len(self.result.error_messages) < 10:
            self.result.error_messages.append(f"{what}: {type(exc).__name__}: {exc}")
        log.warning("%s failed: %s", what, exc)

    async def _publisher(self, name: str, index: int, simulcast: bool, lean: bool = False) -> _Site | None:
        assert self.client is not None and self.room is not None
        try:
            session = await self.client.create_session()
            pub = PublisherBot(
                session,
                clip=self.clips.high,
                opaque_id=name,
                local_address=self.lab.local_address,
                mode=self.config.publish_mode,  # type: ignore[arg-type]
                clips=self.clips,
                pump=self.pump,
                simulcast=simulcast and self.config.publish_mode == "raw",
                audio_dtx=lean,
                send_high=not (lean and simulcast),
            )
            site = _Site(index, session, pub)
            await pub.join_and_publish(self.room, display=name, timeout=20.0)
            return site
        except Exception as exc:
            self._error(f"publish {name}", exc)
            return None

    async def _subscribe(
        self, session: JanusSession, name: str, streams: list[JsonDict], *, rcvbuf: int = 4 << 20
    ) -> SubscriberBot | None:
        assert self.room is not None
        sub = SubscriberBot(
            session,
            opaque_id=name,
            local_address=self.lab.local_address,
            mode=self.config.subscribe_mode,  # type: ignore[arg-type]
            rcvbuf=rcvbuf,
        )
        try:
            await sub.subscribe(self.room, streams, timeout=20.0)
            return sub
        except Exception as exc:
            self._error(f"subscribe {name}", exc)
            with contextlib.suppress(Exception):
                await sub.close()
            return None

    async def setup(self) -> None:
        cfg = self.config
        t0 = time.monotonic()
        self.client = JanusClient(
            self.lab.url, api_secret=self.lab.api_secret, request_timeout=20.0, keepalive_interval=10.0
        )
        await self.client.connect()
        control = await self.client.create_session()
        self.vr = await VideoRoom.attach(control)
        options = RoomOptions(
            secret=self.secret,
            publishers=cfg.sites + 5,
            audiocodec="opus",
            videocodec="vp8",
            description="giaoban loadtest",
        )
        self.room = await self.vr.create(options=options)
        sem = asyncio.Semaphore(max(1, cfg.join_concurrency))
        self.host = await self._publisher("host", -1, simulcast=False)
        if self.host is None:
            raise RuntimeError("the host could not publish: " + "; ".join(self.result.error_messages))
        made = await asyncio.gather(
            *(
                _limited(
                    sem, self._publisher(f"site-{i + 1}", i, simulcast=cfg.simulcast, lean=cfg.lean and i > 0)
                )
                for i in range(cfg.sites)
            )
        )
        self.sites = [s for s in made if s is not None]
        speaker = self.sites[0] if self.sites else None
        host_id = self.host.pub.id

        async def subscribe_site(site: _Site) -> None:
            streams: list[JsonDict] = [{"feed": host_id}]
            if speaker is not None and site is not speaker:
                streams.append({"feed": speaker.pub.id})
            site.sub = await self._subscribe(site.session, f"site-{site.index + 1}-view", streams)

        await asyncio.gather(*(_limited(sem, subscribe_site(s)) for s in self.sites))
        # The host's view: the speaker's audio and the wall of site videos.
        wall_sites = [] if cfg.wall == "none" else self.sites
        if cfg.wall == "paged":
            wall_sites = self.sites[: cfg.page]
        streams = [{"feed": speaker.pub.id, "mid": "0"}] if speaker is not None else []
        streams += [{"feed": s.pub.id, "mid": "1"} for s in wall_sites]
        self.result.wall_streams = len(wall_sites)
        if streams:
            self.wall = await self._subscribe(self.host.session, "host-wall", streams, rcvbuf=16 << 20)
        if self.wall is not None and cfg.wall == "paged" and cfg.simulcast and self.wall.subscriber:
            video_mids = [m for m, kind in self.wall.mids.items() if kind == "video"]
            try:
                await self.wall.subscriber.configure([{"mid": m, "substream": 0} for m in video_mids])
            except Exception as exc:
                self._error("wall low layer", exc)
        await self._warm_up()
        self.result.setup_s = time.monotonic() - t0
        # A full collection over hundreds of thousands of aiortc objects stalls the loop for hundreds of
        # ms (late packets, full sockets): move what exists now out of the collector's sight.
        gc.collect()
        gc.freeze()

    def _subscribers(self) -> list[SubscriberBot]:
        subs = [s.sub for s in self.sites if s.sub is not None]
        return subs + ([self.wall] if self.wall is not None else [])

    async def _warm_up(self) -> None:
        deadline = time.monotonic() + self.config.warmup_timeout
        subs = self._subscribers()
        while time.monotonic() < deadline:
            if all(s.all_streams_ms() is not None for s in subs):
                break
            await asyncio.sleep(0.1)
        silent = [s.opaque_id for s in subs if s.all_streams_ms() is None]
        if silent:
            self._error(
                "media", RuntimeError(f"{len(silent)} subscriptions silent on a stream: {silent[:5]}")
            )
        await asyncio.sleep(1.0)  # let the low-layer switch and join bursts settle

    def _expected_rate(self) -> float:
        tracks = self.clips.tracks
        audio, video = tracks["audio"].packets_per_second, tracks["video"].packets_per_second
        low = tracks["video-low"].packets_per_second
        rate = 0.0
        for site in self.sites:
            if site.sub is not None:
                rate += (audio + video) * (1 if site is self.sites[0] else 2)
        if self.wall is not None:
            layer = low if (self.config.wall == "paged" and self.config.simulcast) else video
            rate += audio + layer * self.result.wall_streams
        return rate

    async def measure(self) -> None:
        cfg, res = self.config, self.result
        subs = self._subscribers()
        pid = self.lab.pid

        def pumped() -> int:
            return sum(st.packets for s in [self.host, *self.sites] if s for st in s.pub.streams.values())

        before: list[CountSnapshot] = [s.counter.snapshot() for s in subs]
        janus0 = cpu_seconds(pid) if pid else None
        gen0, t0, in0 = time.process_time(), time.monotonic(), pumped()
        ports: set[int] = set()
        for sub in subs:
            ports |= local_ports(sub.pc)
        bot_drops0 = udp_socket_drops(ports)
        janus_drops0 = udp_rcvbuf_errors(self.lab.netns) if self.lab.netns else None
        cores0 = [cpu_times(cfg.janus_cpu), cpu_times(cfg.generator_cpu)] if self.lab.supervisor else []
        self.pump.late_max = 0.0
        gc.disable()  # per-packet garbage is freed by reference counting; no cycle scans mid-window
        try:
            await asyncio.sleep(cfg.duration)
        finally:
            gc.enable()
        res.bot_socket_drops = udp_socket_drops(ports) - bot_drops0
        janus_drops1 = udp_rcvbuf_errors(self.lab.netns) if self.lab.netns else None
        if janus_drops0 is not None and janus_drops1 is not None:
            res.janus_socket_drops = janus_drops1 - janus_drops0
        janus1 = cpu_seconds(pid) if pid else None
        if cores0:
            j = _core_pct(cores0[0], cpu_times(cfg.janus_cpu))
            g = _core_pct(cores0[1], cpu_times(cfg.generator_cpu))
            if j is not None:
                res.janus_core_busy_pct, res.janus_core_softirq_pct = j
            if g is not None:
                res.generator_core_busy_pct, res.generator_core_softirq_pct = g
        gen1, t1, in1 = time.process_time(), time.monotonic(), pumped()
        after = [s.counter.snapshot() for s in subs]
        window = t1 - t0
        res.window_s = round(window, 2)
        received = lost = host_received = host_lost = 0
        stalled = []
        for sub, b, a in zip(subs, before, after, strict=True):
            r, lo = window_loss(b, a)
            if set(sub.mids) - {m for m, n in a.by_mid.items() if n > b.by_mid.get(m, 0)}:
                stalled.append(sub.opaque_id)
            received += r
            lost += lo
            if sub is self.wall:
                host_received, host_lost = r, lo
        if stalled:
            self._error(
                "media", RuntimeError(f"{len(stalled)} subscriptions stalled in the window: {stalled[:5]}")
            )
        res.packets_per_s = round(received / window, 1)
        res.packets_in_per_s = round((in1 - in0) / window, 1)
        res.expected_packets_per_s = round(self._expected_rate(), 1)
        res.loss_pct = round(100 * lost / max(1, received + lost), 3)
        res.host_loss_pct = round(100 * host_lost / max(1, host_received + host_lost), 3)
        res.generator_cpu_pct = round(100 * (gen1 - gen0) / window, 1)
        res.generator_late_ms = round(self.pump.late_max * 1000, 1)
        if janus0 is not None and janus1 is not None:
            janus_s = janus1 - janus0
            res.janus_cpu_pct = round(100 * janus_s / window, 1)
            if received:
                res.us_per_packet = round(janus_s * 1e6 / received, 1)
        if pid:
            rss = read_rss_mb(pid)
            res.janus_rss_mb = round(rss, 1) if rss is not None else None
        joins = [ms for s in subs if (ms := s.first_rtp_ms()) is not None]
        joins_all = [ms for s in subs if (ms := s.all_streams_ms()) is not None]
        for name, values in (("join", joins), ("join_all", joins_all)):
            p50, p95 = percentile(values, 50), percentile(values, 95)
            setattr(res, f"{name}_p50_ms", round(p50, 1) if p50 is not None else None)
            setattr(res, f"{name}_p95_ms", round(p95, 1) if p95 is not None else None)

    async def teardown(self) -> None:
        await self.pump.close()
        if self.lab.supervisor is not None and self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(destroy_sessions=False), 5)
        if self.lab.supervisor is not None:
            # Our own Janus: stopping it ends every session at once; the PCs then close locally.
            with contextlib.suppress(Exception):
                await self.lab.supervisor.stop(timeout=3.0)
        elif self.vr is not None and self.room is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.vr.destroy(self.room, self.secret), 5)
        pcs = [b.pc for b in self._subscribers() if b.pc is not None]
        pcs += [s.pub.pc for s in [self.host, *self.sites] if s is not None and s.pub.pc is not None]
        if pcs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True), 15
                )
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(destroy_sessions=self.lab.supervisor is None), 10)


async def run_load(config: LoadConfig) -> LoadResult:
    """Build (or reach) the lab, run the briefing load, return the figures; always tears down."""
    if config.sites < 1:
        raise ValueError("sites must be >= 1")
    if config.wall not in ("full", "paged", "none"):
        raise ValueError("wall must be full, paged or none")
    clips = await asyncio.get_running_loop().run_in_executor(None, ClipSet.ensure, config.cache_dir)
    # ICE consent (RFC 7675) expires after 6 unanswered checks 5 s apart: with hundreds of connections
    # and a setup of minutes on a loaded machine, aioice closed many of them and media stopped. A load
    # generator has no use for consent expiry: keep the checks, never give up.
    aioice.ice.CONSENT_FAILURES = 1 << 30
    async with MediaLab(config) as lab:
        load = BriefingLoad(config, lab, clips)
        try:
            await load.setup()
            await load.measure()
        finally:
            await load.teardown()
        return load.result


def time_budget(config: LoadConfig) -> float:
    """An upper bound for the whole run (setup grows with the number of sites)."""
    return 120.0 + config.warmup_timeout + config.duration + 3.0 * config.sites


def format_table(result: LoadResult) -> str:
    """The human-readable table printed by the CLI."""

    def fmt(value: object, unit: str = "") -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:,.1f}{unit}"
        return f"{value}{unit}"

    wall = f"{result.wall} ({result.wall_streams} streams{', low layer' if result.wall == 'paged' and result.simulcast else ''})"
    rows = [
        ("sites (+ host)", fmt(result.sites)),
        ("wall", wall),
        ("simulcast (sites)", "yes" if result.simulcast else "no"),
        ("lean sites (muted: DTX audio, low layer only)", "yes" if result.lean else "no"),
        (
            "join p50 / p95 (request → first RTP)",
            f"{fmt(result.join_p50_ms, ' ms')} / {fmt(result.join_p95_ms, ' ms')}",
        ),
        (
            "join p50 / p95 (→ every stream)",
            f"{fmt(result.join_all_p50_ms, ' ms')} / {fmt(result.join_all_p95_ms, ' ms')}",
        ),
        ("Janus CPU (% of one core)", fmt(result.janus_cpu_pct, " %")),
        ("Janus RSS", fmt(result.janus_rss_mb, " MB")),
        ("packets/s forwarded (counted at subscribers)", fmt(result.packets_per_s)),
        ("packets/s expected", fmt(result.expected_packets_per_s)),
        ("packets/s published (into Janus)", fmt(result.packets_in_per_s)),
        ("Janus CPU-µs per forwarded packet", fmt(result.us_per_packet)),
        ("subscriber loss (all / host wall)", f"{result.loss_pct:.3f} % / {result.host_loss_pct:.3f} %"),
        ("generator CPU (% of one core)", fmt(result.generator_cpu_pct, " %")),
        (
            "cores busy / softirq (Janus's, generator's)",
            f"{fmt(result.janus_core_busy_pct, ' %')} / {fmt(result.janus_core_softirq_pct, ' %')}, "
            f"{fmt(result.generator_core_busy_pct, ' %')} / {fmt(result.generator_core_softirq_pct, ' %')}",
        ),
        ("generator worst lateness", fmt(result.generator_late_ms, " ms")),
        (
            "UDP drops (bot sockets / Janus netns)",
            f"{fmt(result.bot_socket_drops)} / {fmt(result.janus_socket_drops)}",
        ),
        ("steady window / setup", f"{result.window_s:.1f} s / {result.setup_s:.1f} s"),
        ("errors", fmt(result.errors)),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if result.generator_limited:
        lines.append(
            "note: the generator was saturated, late or dropped packets in its own sockets: "
            "figures may be limited by it, not by Janus"
        )
    lines += [f"error: {m}" for m in result.error_messages]
    return "\n".join(lines)
