"""Write a Janus config from our settings and keep a local Janus process alive.

The config dir (``<data_dir>/janus/``) is rewritten at every start, so it always matches the settings;
it holds secrets and is therefore 0700 with 0600 files. Janus's output goes to ``janus.log`` beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from giaoban.media.client import janus_info
from giaoban.media.config import JanusSettings
from giaoban.media.process import (
    ExitCallback,
    ProcessState,
    ProcessSupervisor,
    RestartCallback,
    make_private_dir,
    write_private_file,
)

log = logging.getLogger(__name__)

# Everything Debian's janus 1.1.2 ships; used when the library dir cannot be listed.
KNOWN_MODULES: dict[str, tuple[str, ...]] = {
    "plugins": (
        "audiobridge",
        "duktape",
        "echotest",
        "lua",
        "nosip",
        "recordplay",
        "sip",
        "streaming",
        "textroom",
        "videocall",
        "videoroom",
        "voicemail",
    ),
    "transports": ("http", "mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets"),
    "events": ("gelfevh", "mqttevh", "nanomsgevh", "rabbitmqevh", "sampleevh", "wsevh"),
    "loggers": ("jsonlog",),
}
WANTED_TRANSPORTS = ("websockets",)
WANTED_EVENTS = ("sampleevh",)
# Event types the control room uses; "jsep" (whole SDPs) and "transports" would only cost bandwidth.
EVENT_MASK = "sessions,handles,webrtc,media,plugins,core"

JcfgValue = str | int | float | bool | list[str]
JcfgDoc = Mapping[str, Mapping[str, JcfgValue]]

SupervisorState = ProcessState


class JanusStartError(RuntimeError):
    """Janus did not come up (binary missing, bad config, port taken…); the message has the log tail."""


def find_lib_dir(settings: JanusSettings) -> Path | None:
    """The directory holding Janus's ``plugins/``, ``transports/``… folders, if it can be found."""
    if settings.lib_dir is not None:
        return settings.lib_dir
    candidates = [*sorted(Path("/usr/lib").glob("*/janus")), Path("/usr/lib/janus")]
    candidates += [Path("/usr/local/lib/janus"), Path("/opt/janus/lib/janus")]
    for path in candidates:
        if (path / "plugins").is_dir() and (path / "transports").is_dir():
            return path
    return None


def _available(lib_dir: Path | None, kind: str) -> list[str]:
    if lib_dir is not None and (lib_dir / kind).is_dir():
        names = sorted(
            p.name.removeprefix("libjanus_").removesuffix(".so")
            for p in (lib_dir / kind).glob("libjanus_*.so")
        )
        if names:
            return names
    return list(KNOWN_MODULES[kind])


def _disable_list(lib_dir: Path | None, kind: str, wanted: tuple[str, ...] | list[str]) -> str:
    return ",".join(f"libjanus_{n}.so" for n in _available(lib_dir, kind) if n not in wanted)


def jcfg_quote(value: str) -> str:
    """Quote a string for libconfig (Janus's .jcfg format)."""
    if any(c in value for c in "\n\r\0"):
        raise ValueError("jcfg strings cannot contain newlines or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _jcfg_value(value: JcfgValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(jcfg_quote(v) for v in value) + "]"
    return jcfg_quote(value)


def render_jcfg(doc: JcfgDoc) -> str:
    """Serialize ``{section: {key: value}}`` as a libconfig document."""
    out = ["# Written by giaoban.media.supervisor at every start: edit the settings, not this file.\n"]
    for section, items in doc.items():
        out.append(f"{section}: {{\n")
        for key, value in items.items():
            out.append(f"\t{key} = {_jcfg_value(value)}\n")
        out.append("}\n")
    return "".join(out)


def render_janus_config(
    settings: JanusSettings, conf_dir: Path, *, event_backend_url: str | None = None
) -> dict[str, str]:
    """Every file of the Janus config dir, as ``{file name: content}``; pure, for tests and dry runs.

    ``event_backend_url`` is where the sample event handler POSTs JSON arrays of events (our own
    ``/internal/janus/events``); without it event handlers stay off.
    """
    if not settings.api_secret or not settings.admin_secret:
        raise ValueError("api_secret and admin_secret must be set (use load_janus_settings)")
    lib_dir = find_lib_dir(settings)
    # echotest: the sites' tech check loops their media back through Janus (giaoban.live.techcheck).
    plugins = list(dict.fromkeys(["videoroom", "echotest", *settings.extra_plugins]))
    general: dict[str, JcfgValue] = {
        "configs_folder": str(conf_dir),
        "debug_level": settings.debug_level,
        "debug_timestamps": True,
        "debug_colors": False,
        "server_name": settings.server_name,
        "api_secret": settings.api_secret,
        "admin_secret": settings.admin_secret,
        "session_timeout": settings.session_timeout,
        "reclaim_session_timeout": settings.reclaim_session_timeout,
        "hide_dependencies": True,
    }
    if settings.event_loops:
        general["event_loops"] = settings.event_loops
    if lib_dir is not None:
        for kind in ("plugins", "transports", "events", "loggers"):
            general[f"{kind}_folder"] = str(lib_dir / kind)
    nat: dict[str, JcfgValue] = {"nice_debug": False}
    if settings.ice_ignore_list:
        nat["ice_ignore_list"] = settings.ice_ignore_list
    if settings.ice_enforce_list:
        nat["ice_enforce_list"] = settings.ice_enforce_list
    if settings.nat_1_1_mapping:
        nat["nat_1_1_mapping"] = settings.nat_1_1_mapping
    if settings.stun_server:
        host, _, port = settings.stun_server.rpartition(":")
        nat["stun_server"] = host or settings.stun_server
        nat["stun_port"] = int(port) if host and port.isdigit() else 3478
    events_on = event_backend_url is not None
    events: dict[str, JcfgValue] = {
        "broadcast": events_on,
        "stats_period": settings.stats_period,
        "disable": _disable_list(lib_dir, "events", WANTED_EVENTS if events_on else ()),
    }
    doc: dict[str, dict[str, JcfgValue]] = {
        "general": general,
        "certificates": {},
        "media": {"rtp_port_range": settings.rtp_port_range},
        "nat": nat,
        "plugins": {"disable": _disable_list(lib_dir, "plugins", plugins)},
        "transports": {"disable": _disable_list(lib_dir, "transports", WANTED_TRANSPORTS)},
        "loggers": {"disable": _disable_list(lib_dir, "loggers", ())},
        "events": events,
    }
    files = {"janus.jcfg": render_jcfg(doc)}
    files["janus.transport.websockets.jcfg"] = render_jcfg(
        {
            "general": {
                "json": "compact",
                "ws": True,
                "ws_port": settings.ws_port,
                "ws_ip": settings.bind_address,
                "wss": False,
            },
            "admin": {
                "admin_ws": True,
                "admin_ws_port": settings.admin_port,
                "admin_ws_ip": settings.bind_address,
                "admin_wss": False,
            },
        }
    )
    files["janus.plugin.videoroom.jcfg"] = render_jcfg(
        # No static rooms: every room is created by the app for a meeting and described by it.
        {"general": {"string_ids": False, "events": True}}
    )
    if "streaming" in plugins:
        files["janus.plugin.streaming.jcfg"] = render_jcfg({"general": {"events": True}})
    if events_on:
        assert event_backend_url is not None
        evh: dict[str, JcfgValue] = {
            "enabled": True,
            "events": EVENT_MASK,
            "grouping": True,
            "json": "compact",
            "backend": event_backend_url,
            "max_retransmissions": 5,
            "retransmissions_backoff": 100,
        }
        if settings.events_secret:
            evh["backend_user"] = "janus"
            evh["backend_pwd"] = settings.events_secret
        files["janus.eventhandler.sampleevh.jcfg"] = render_jcfg({"general": evh})
    return files


def write_janus_config(
    settings: JanusSettings, conf_dir: Path, *, event_backend_url: str | None = None
) -> Path:
    """Write the config dir (0700, files 0600, stale ``*.jcfg`` removed); return the main config file."""
    files = render_janus_config(settings, conf_dir, event_backend_url=event_backend_url)
    make_private_dir(conf_dir)
    for stale in conf_dir.glob("*.jcfg"):
        if stale.name not in files:
            stale.unlink()
    for name, content in files.items():
        write_private_file(conf_dir / name, content)
    return conf_dir / "janus.jcfg"


def read_rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB, from /proc (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class JanusSupervisor(ProcessSupervisor[JanusSettings]):
    """Runs one local Janus: writes its config, starts it, restarts it when it dies, stops it.

    ``on_restart(n)`` is called after the n-th restart once Janus answers again; ``on_exit(code)`` as soon
    as an unexpected exit is seen. Both may be plain functions or coroutines. Ready means Janus answers
    an ``info`` request on its WebSocket.
    """

    name = "janus"
    start_error = JanusStartError
    log = logging.getLogger(__name__)

    def __init__(
        self,
        settings: JanusSettings,
        data_dir: Path,
        *,
        event_backend_url: str | None = None,
        on_restart: RestartCallback | None = None,
        on_exit: ExitCallback | None = None,
        kill_with_parent: bool = True,
    ) -> None:
        conf_dir = data_dir / "janus"
        super().__init__(
            settings,
            conf_dir,
            log_path=conf_dir / "janus.log",
            pid_path=conf_dir / "janus.pid",
            kill_with_parent=kill_with_parent,
            on_restart=on_restart,
            on_exit=on_exit,
        )
        self.data_dir = data_dir
        self.event_backend_url = event_backend_url

    def command(self) -> list[str]:
        """The argv used to start Janus (with ``ip netns exec`` when a namespace is configured)."""
        argv = [self.settings.binary, "-F", str(self.conf_dir), "-C", str(self.conf_dir / "janus.jcfg")]
        if self.settings.cpu_affinity:
            # taskset execs Janus in place too: every thread Janus creates inherits the CPU list.
            argv = ["taskset", "-c", self.settings.cpu_affinity, *argv]
        if self.settings.netns:
            # `ip netns exec` execs the program in place, so the pid we hold is Janus itself.
            argv = ["ip", "netns", "exec", self.settings.netns, *argv]
        return argv

    def write_config(self) -> None:
        write_janus_config(self.settings, self.conf_dir, event_backend_url=self.event_backend_url)

    async def is_ready(self, log_offset: int) -> bool:
        try:
            await janus_info(self.settings.local_ws_url, timeout=1.0, api_secret=self.settings.api_secret)
        except Exception:
            return False
        return True

    def not_ready_message(self) -> str:
        return f"janus did not answer on {self.settings.local_ws_url} within {self.settings.start_timeout}s"
