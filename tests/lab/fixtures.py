"""Pytest fixtures: network namespaces, veth links, link shaping, Janus running inside a namespace, and
"site" namespaces (a site behind a bad link, with Chromium inside).

Everything is torn down by finalizers, by an atexit hook of the lab (interrupts, crashes), and by a sweep
of leftovers of dead runs when the next lab starts. Tests only ever talk to addresses of links the lab
created (or loopback).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from giaoban.lab.janus_ns import JanusNamespace, lab_janus_settings
from giaoban.lab.janus_ns import janus_lab_missing as lab_skip_reason
from giaoban.lab.netns import Link, NetLab
from giaoban.media.config import JanusSettings
from giaoban.media.supervisor import JanusSupervisor

__all__ = [
    "JanusNamespace",
    "LoopThread",
    "RunningJanus",
    "SiteNamespace",
    "janus_ns",
    "janus_server",
    "lab_janus_settings",
    "lab_skip_reason",
    "loop_thread",
    "netem",
    "netlab",
    "site_factory",
]

T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread, for session-long async objects (the shared Janus supervisor)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lab-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the thread's loop and wait for its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def close(self) -> None:
        """Stop the loop and the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass(slots=True)
class RunningJanus:
    """A supervised Janus in the lab namespace."""

    settings: JanusSettings
    supervisor: JanusSupervisor
    data_dir: Path
    ns: JanusNamespace

    @property
    def url(self) -> str:
        return self.settings.local_ws_url

    @property
    def admin_url(self) -> str:
        return self.settings.local_admin_url

    @property
    def api_secret(self) -> str:
        assert self.settings.api_secret
        return self.settings.api_secret

    @property
    def admin_secret(self) -> str:
        assert self.settings.admin_secret
        return self.settings.admin_secret


@pytest.fixture(scope="session")
def netlab() -> Iterator[NetLab]:
    """The run's lab; skipped (with the reason) when not root or tools are missing."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="session")
def janus_ns(netlab: NetLab) -> JanusNamespace:
    """A namespace for Janus, linked to the root namespace (clients stay in the root namespace)."""
    name = netlab.netns("janus")
    return JanusNamespace(name=name, link=netlab.link(None, name))


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    """A background event loop living for the whole session."""
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@pytest.fixture(scope="session")
def janus_server(
    janus_ns: JanusNamespace, loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningJanus]:
    """One Janus for the session (tests that kill or reconfigure Janus start their own)."""
    data_dir = tmp_path_factory.mktemp("janus-shared")
    settings = lab_janus_settings(janus_ns, data_dir)
    supervisor = JanusSupervisor(settings, data_dir)
    loop_thread.run(supervisor.start())
    try:
        yield RunningJanus(settings, supervisor, data_dir, janus_ns)
    finally:
        loop_thread.run(supervisor.stop())


class Shaper:
    """Shapes lab links for one test and clears them afterwards."""

    def __init__(self, lab: NetLab) -> None:
        self.lab = lab
        self._touched: list[Link] = []

    def shape(self, link: Link, **kwargs: Any) -> None:
        """NetLab.shape on ``link`` (loss_pct, delay_ms, jitter_ms, rate_kbit, both): netem, or the relay
        of an impairable link on kernels without netem."""
        self._touched.append(link)
        self.lab.shape(link, **kwargs)

    def outage(self, link: Link) -> None:
        """Drop everything on ``link`` until :meth:`end_outage` or :meth:`restore`."""
        self._touched.append(link)
        self.lab.outage(link)

    def end_outage(self, link: Link) -> None:
        """End the outage; the shaping asked for before it is in force again."""
        self.lab.end_outage(link)

    def restore(self, link: Link) -> None:
        """Remove the shaping of ``link``."""
        self.lab.unshape(link)

    def clear(self) -> None:
        for link in self._touched:
            self.lab.unshape(link)
        self._touched.clear()


@pytest.fixture
def netem(netlab: NetLab) -> Iterator[Shaper]:
    """Link shaping that is always undone at the end of the test."""
    shaper = Shaper(netlab)
    try:
        yield shaper
    finally:
        shaper.clear()


CHROMIUM = Path(os.environ.get("GIAOBAN_CHROMIUM", "/usr/bin/chromium"))


@dataclass(slots=True)
class SiteNamespace:
    """A site's own network namespace: its own Chromium, behind links that can be made bad.

    Topology (made by :func:`site_factory`)::

        root namespace (the app) ── app_link ── SITE ── janus_link ── Janus namespace
                  (.1, app_address)         (.2)   (.2)          (.1, janus_address)

    * ``app_link`` (a = the site, b = the root namespace): the app under test must listen on
      ``app_address`` (the root end; never 0.0.0.0), the site's browser opens ``http://app_address:PORT``.
    * ``janus_link`` (a = the site, b = the Janus namespace; None when made with ``janus=None``): Janus
      gathers host candidates on every interface of its namespace, so it offers ``janus_address`` and the
      site reaches it directly. A site made without it has no route to Janus at all (the TURN-only case:
      give it another link, e.g. ``site.lab.link(site.name, turn_ns, impairable=True)``).
    * Nothing is routed through the site or the root namespace (no forwarding, the root's sysctls are
      untouched): each namespace only reaches the /24 of the links it sits on.
    * Both links are impairable (unless ``impairable=False``): :meth:`shape`, :meth:`outage`,
      :meth:`end_outage`, :meth:`unshape` act on both links (or on those passed as ``links=``); values are
      per direction (``delay_ms=200`` both ways = 400 ms round trip). Shaping one link alone:
      ``site.lab.shape(site.janus_link, ...)`` (and ``site.lab.outage(site.app_link)``, ...).
    * Chromium inside: ``browser_type.launch(executable_path=str(site.chromium_executable(dir)),
      args=[..., *site.chromium_args(origin)])`` — a wrapper script runs ``ip netns exec SITE chromium``;
      the args let getUserMedia work on the plain-http origin (not a secure context otherwise).

    Removed at the end of the test (namespace, links, relays and every process inside, Chromium too).
    """

    lab: NetLab
    name: str
    app_link: Link
    janus_link: Link | None = None

    @property
    def address(self) -> str:
        """The site's address on the app link."""
        return self.app_link.addr_a

    @property
    def app_address(self) -> str:
        """Root-namespace end of the app link: where the app must listen for this site."""
        return self.app_link.addr_b

    @property
    def janus_address(self) -> str:
        """Janus's address on the site's media link."""
        if self.janus_link is None:
            raise ValueError(f"site {self.name} has no link to Janus")
        return self.janus_link.addr_b

    @property
    def links(self) -> list[Link]:
        return [self.app_link] + ([self.janus_link] if self.janus_link else [])

    def shape(self, links: list[Link] | None = None, **kwargs: Any) -> None:
        """NetLab.shape on each link (loss_pct, delay_ms, jitter_ms, rate_kbit, both)."""
        for link in links or self.links:
            self.lab.shape(link, **kwargs)

    def outage(self, links: list[Link] | None = None) -> None:
        """Cut the links silently (carrier stays up) until :meth:`end_outage`."""
        for link in links or self.links:
            self.lab.outage(link)

    def end_outage(self, links: list[Link] | None = None) -> None:
        """End the cut; the shaping from before it is in force again."""
        for link in links or self.links:
            self.lab.end_outage(link)

    def unshape(self, links: list[Link] | None = None) -> None:
        for link in links or self.links:
            self.lab.unshape(link)

    def chromium_executable(self, directory: Path, chromium: Path = CHROMIUM) -> Path:
        """Write (in ``directory``) an executable that runs Chromium inside this namespace."""
        ip = shutil.which("ip") or "/usr/sbin/ip"
        script = directory / f"chromium-{self.name}"
        script.write_text(f'#!/bin/sh\nexec {ip} netns exec {self.name} {chromium} "$@"\n')
        script.chmod(0o755)
        return script

    @staticmethod
    def chromium_args(origin: str) -> list[str]:
        """Flags that make ``origin`` (``http://ADDR:PORT``) a secure context, so getUserMedia works."""
        return [f"--unsafely-treat-insecure-origin-as-secure={origin}"]

    def close(self) -> None:
        """Remove the namespace, its links and relays, and every process in it."""
        if self.name in self.lab.namespaces:
            self.lab.remove_netns(self.name)


@pytest.fixture
def site_factory(netlab: NetLab) -> Iterator[Callable[..., SiteNamespace]]:
    """``site_factory(role="site", janus=None, impairable=True) -> SiteNamespace``; see SiteNamespace.

    Pass ``janus=janus_ns`` for a media link to the Janus namespace. Every site is removed at the end
    of the test.
    """
    made: list[SiteNamespace] = []

    def make(
        role: str = "site", *, janus: JanusNamespace | None = None, impairable: bool = True
    ) -> SiteNamespace:
        name = netlab.netns(role)
        site = SiteNamespace(netlab, name, netlab.link(name, None, impairable=impairable))
        made.append(site)
        if janus is not None:
            site.janus_link = netlab.link(name, janus.name, impairable=impairable)
        return site

    try:
        yield make
    finally:
        for site in made:
            site.close()
