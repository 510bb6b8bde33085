"""Keep one local server process alive: what the Janus and coturn supervisors share.

A :class:`ProcessSupervisor` writes the program's config, kills a copy left behind by a crashed app,
starts the program with its output appended to a log file (rotated when large), waits until it is
ready, restarts it with exponential backoff when it dies (the backoff starts again after a long, healthy
run) and stops it (SIGTERM, SIGKILL after a timeout). Subclasses say how: the command, the config, the
readiness check and the wording of errors (see giaoban.media.supervisor and giaoban.media.turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar, Generic, Literal, Protocol, TypeVar

LOG_ROTATE_BYTES = 10 * 1024 * 1024
# A run this long counts as healthy: the restart backoff starts again from its initial value.
STABLE_RUN_SECONDS = 60.0
READY_POLL_SECONDS = 0.05

ProcessState = Literal["stopped", "starting", "running", "restarting", "stopping"]
RestartCallback = Callable[[int], Awaitable[None] | None]
ExitCallback = Callable[[int | None], Awaitable[None] | None]


class SupervisedSettings(Protocol):
    """The settings every supervised program has (JanusSettings, TurnSettings)."""

    @property
    def start_timeout(self) -> float: ...

    @property
    def restart_backoff_initial(self) -> float: ...

    @property
    def restart_backoff_max(self) -> float: ...


S = TypeVar("S", bound=SupervisedSettings)

# Namespace names end up in `ip` command lines; keep them boring.
_NETNS_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_netns_name(value: str | None) -> str | None:
    """A network namespace to run the program in (``ip netns exec NAME``): a short plain name, or None."""
    if value is not None and (not value or len(value) > 64 or not set(value) <= _NETNS_CHARS):
        raise ValueError("netns must be a short name of letters, digits, '-', '_' or '.'")
    return value


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make it 0700: it holds secrets."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_private_file(path: Path, content: str) -> None:
    """Replace ``path`` atomically with ``content``, readable by its owner only (0600)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.replace(tmp, path)


def set_parent_death_signal() -> None:
    """In the child before exec: get SIGTERM if the app dies, so no orphan keeps the ports."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def kill_stale_process(pid_path: Path, marker: bytes, what: str, logger: logging.Logger) -> None:
    """SIGKILL the pid in ``pid_path`` if its command line has the argument ``marker`` (our config),
    and wait up to 1 s for it to be gone; a pid of another program is left alone."""
    try:
        pid = int(pid_path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if marker in cmdline:
        logger.warning("killing stale %s pid %s", what, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.01)


class ProcessSupervisor(Generic[S]):
    """Runs one local program: writes its config, starts it, restarts it when it dies, stops it.

    ``on_restart(n)`` is called after the n-th restart once the program is ready again; ``on_exit(code)``
    as soon as an unexpected exit is seen. Both may be plain functions or coroutines.

    Subclasses set ``name`` (for logs and messages), ``start_error`` (raised when a start fails), ``log``
    (their module's logger) and implement :meth:`command`, :meth:`write_config`, :meth:`is_ready` and
    :meth:`not_ready_message`.
    """

    name: ClassVar[str]
    start_error: ClassVar[type[RuntimeError]]
    log: ClassVar[logging.Logger]

    def __init__(
        self,
        settings: S,
        conf_dir: Path,
        *,
        log_path: Path,
        pid_path: Path,
        kill_with_parent: bool = True,
        on_restart: RestartCallback | None = None,
        on_exit: ExitCallback | None = None,
    ) -> None:
        self.settings = settings
        self.conf_dir = conf_dir
        self.log_path = log_path
        self.pid_path = pid_path
        self.kill_with_parent = kill_with_parent
        self.on_restart = on_restart
        self.on_exit = on_exit
        self.state: ProcessState = "stopped"
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.started_at: float | None = None
        self.startup_seconds: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._running = asyncio.Event()

    # -- what subclasses provide ------------------------------------------------------------------

    def command(self) -> list[str]:
        """The argv that starts the program."""
        raise NotImplementedError

    def write_config(self) -> None:
        """Write the program's config (called at every start)."""
        raise NotImplementedError

    def stale_marker(self) -> Path:
        """An argument of :meth:`command` that identifies our copy of the program (its config)."""
        return self.conf_dir

    async def is_ready(self, log_offset: int) -> bool:
        """One readiness check; ``log_offset`` is where this run's output starts in the log file."""
        raise NotImplementedError

    def not_ready_message(self) -> str:
        """Why a start timed out (the log tail is appended)."""
        raise NotImplementedError

    def spawn_failed_message(self, exc: OSError) -> str:
        """Why the program could not be executed at all."""
        return f"cannot start {self.name}: {exc}"

    # -- public API -------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Pid of the running program, if any."""
        if self._proc is not None and self._proc.returncode is None:
            return self._proc.pid
        return None

    async def start(self) -> None:
        """Write the config, start the program and wait until it is ready; raise ``start_error`` otherwise."""
        if self._monitor is not None:
            return
        self._stopping = False
        self.state = "starting"
        self.write_config()
        kill_stale_process(self.pid_path, str(self.stale_marker()).encode(), self.name, self.log)
        try:
            await self._spawn_and_wait()
        except BaseException:
            await self._terminate()
            self.state = "stopped"
            raise
        self._monitor = asyncio.create_task(self._watch(), name=f"{self.name}-supervisor")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the program (SIGTERM, SIGKILL after ``timeout``) and the supervision."""
        self._stopping = True
        self.state = "stopping"
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        await self._terminate(timeout)
        self._running.clear()
        self.state = "stopped"

    async def wait_running(self, timeout: float) -> None:
        """Wait until the program is ready (after a start or a restart)."""
        await asyncio.wait_for(self._running.wait(), timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the program's output (for error messages)."""
        try:
            data = self.log_path.read_bytes()[-8192:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    # -- internals --------------------------------------------------------------------------------

    def _rotate_log(self) -> None:
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path.with_suffix(".log.1"))

    async def _call(self, callback: Callable[..., Awaitable[None] | None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.log.exception("%s supervisor callback failed", self.name)

    async def _spawn_and_wait(self) -> None:
        self._rotate_log()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        t0 = time.monotonic()
        with open(self.log_path, "ab") as logfile:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=asyncio.subprocess.STDOUT,
                    preexec_fn=set_parent_death_signal if self.kill_with_parent else None,
                )
            except OSError as exc:
                raise self.start_error(self.spawn_failed_message(exc)) from exc
        self.pid_path.write_text(str(self._proc.pid))
        deadline = t0 + self.settings.start_timeout
        while True:
            if self._proc.returncode is not None:
                raise self.start_error(
                    f"{self.name} exited with {self._proc.returncode} while starting:\n{self.log_tail()}"
                )
            if await self.is_ready(offset):
                break
            if time.monotonic() > deadline:
                raise self.start_error(f"{self.not_ready_message()}:\n{self.log_tail()}")
            await asyncio.sleep(READY_POLL_SECONDS)
        self.startup_seconds = time.monotonic() - t0
        self.started_at = time.monotonic()
        self.state = "running"
        self._running.set()
        self.log.info("%s pid %s answers after %.2fs", self.name, self._proc.pid, self.startup_seconds)

    async def _terminate(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._proc = None
        with contextlib.suppress(OSError):
            self.pid_path.unlink()

    async def _watch(self) -> None:
        backoff = self.settings.restart_backoff_initial
        while not self._stopping:
            proc = self._proc
            if proc is None:
                return
            code = await proc.wait()
            if self._stopping:
                return
            self._running.clear()
            self.state = "restarting"
            self.last_exit_code = code
            ran = time.monotonic() - (self.started_at or time.monotonic())
            self.log.error("%s pid %s exited with %s after %.1fs; restarting", self.name, proc.pid, code, ran)
            await self._call(self.on_exit, code)
            if ran > STABLE_RUN_SECONDS:
                backoff = self.settings.restart_backoff_initial
            while not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.restart_backoff_max)
                try:
                    await self._spawn_and_wait()
                    break
                except self.start_error as exc:
                    self.log.error("%s restart failed: %s", self.name, exc)
                    await self._terminate(1.0)
            self.restarts += 1
            await self._call(self.on_restart, self.restarts)
