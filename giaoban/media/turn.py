"""TURN for sites that cannot reach Janus directly: settings, a supervised local coturn, credentials.

Three modes (env prefix ``GIAOBAN_TURN_``):

* ``off`` (default): browsers get no ICE servers; media goes straight to Janus's candidates.
* ``local``: ``giaoban serve`` writes ``<data_dir>/turn/turnserver.conf`` and supervises its own coturn
  (``turnserver``), optionally inside a network namespace (``netns``), restarting it when it dies.
* ``external``: an existing coturn (``use-auth-secret`` with the same ``shared_secret``) at ``urls``.

Credentials follow the TURN REST API convention coturn implements with ``use-auth-secret``:
``username = "<expiry unix time>:<who>"`` and ``credential = base64(HMAC-SHA1(secret, username))``.
The server needs no database of users and a credential stops working for *new* allocations after its
expiry (coturn checks the time when an allocation is made; a running allocation is not cut).

Security: a TURN server relays UDP to any address its clients name, so an unrestricted one is an open
relay into the machine's networks (a way past a firewall to internal services). The generated config
denies every peer address and allows back only ``peer_addresses`` — Janus's media address(es) — so the
relay can reach nothing but our SFU; loopback and multicast peers stay refused, TCP relays are off, and
the CLI/web admin are off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from giaoban.media.process import (
    ProcessState,
    ProcessSupervisor,
    check_netns_name,
    make_private_dir,
    write_private_file,
)

log = logging.getLogger(__name__)

SECRET_FILE = "turn-secret"
# Peers wider than this are refused: listing a whole private range would re-open the relay.
MAX_PEER_PREFIX = {4: 16, 6: 48}
_WHO_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@")

# What health() reports: the supervisor's state, or the mode when there is no local coturn.
TurnState = Literal["off", "external"] | ProcessState


class TurnStartError(RuntimeError):
    """coturn did not come up (binary missing, address not ours, port taken…); the message has the log."""


class TurnSettings(BaseSettings):
    """Everything TURN needs; see the module docstring for the modes."""

    model_config = SettingsConfigDict(env_prefix="GIAOBAN_TURN_", extra="ignore")

    mode: Literal["off", "local", "external"] = "off"
    urls: list[str] = Field(
        default_factory=list,
        description="What browsers are told (stun:/turn:/turns: URLs). Required for external; "
        "derived from public_host and the ports for local.",
    )
    shared_secret: str | None = Field(
        default=None, repr=False, description="coturn static-auth-secret; generated when local and unset."
    )
    realm: str = Field(default="giaoban", min_length=1, max_length=128)
    credential_ttl: int = Field(
        default=12 * 3600, ge=60, le=7 * 86400, description="Seconds a credential can open allocations."
    )
    force_relay: bool = Field(
        default=False, description="Tell browsers to use relayed candidates only (iceTransportPolicy relay)."
    )

    # Local coturn
    binary: str = "turnserver"
    netns: str | None = Field(default=None, description="Run the local coturn inside this network namespace.")
    listening_ip: str | None = Field(default=None, description="Address sites reach coturn on (not 0.0.0.0).")
    relay_ip: str | None = Field(
        default=None, description="Address relayed traffic leaves from (default listening_ip)."
    )
    external_ip: str | None = Field(default=None, description="Public address when behind 1:1 NAT.")
    public_host: str | None = Field(
        default=None, description="Host name/IP in the URLs (default external_ip or listening_ip)."
    )
    port: int = Field(default=3478, ge=1, le=65535)
    tls_port: int = Field(default=5349, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    relay_port_min: int = Field(default=49152, ge=1024, le=65535)
    relay_port_max: int = Field(default=65535, ge=1024, le=65535)
    peer_addresses: list[str] = Field(
        default_factory=list,
        description="Janus media address(es) the relay may reach: IPs, a-b ranges or CIDRs (≤ /16).",
    )
    user_quota: int = Field(default=0, ge=0, description="Allocations per credential (0 = unlimited).")
    total_quota: int = Field(default=0, ge=0, description="Allocations in total (0 = unlimited).")
    start_timeout: float = Field(default=10.0, gt=0)
    restart_backoff_initial: float = Field(default=0.5, gt=0)
    restart_backoff_max: float = Field(default=30.0, gt=0)

    @field_validator("netns")
    @classmethod
    def _netns_name(cls, value: str | None) -> str | None:
        return check_netns_name(value)

    @field_validator("listening_ip", "relay_ip", "external_ip")
    @classmethod
    def _specific_ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        ip = ipaddress.ip_address(value)
        if ip.is_unspecified or ip.is_multicast:
            raise ValueError("must be one specific address of this machine, not 0.0.0.0/::")
        return value

    @field_validator("urls")
    @classmethod
    def _url_schemes(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("stun:", "turn:", "turns:")) or any(c in url for c in " \n\r\t\"'"):
                raise ValueError(f"not a stun:/turn:/turns: URL: {url!r}")
        return value

    @field_validator("peer_addresses")
    @classmethod
    def _peers(cls, value: list[str]) -> list[str]:
        for entry in value:
            peer_range(entry)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TurnSettings:
        if self.relay_port_min >= self.relay_port_max:
            raise ValueError("relay_port_min must be below relay_port_max")
        if self.port == self.tls_port:
            raise ValueError("port and tls_port must differ")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.mode == "external":
            if not any(u.startswith(("turn:", "turns:")) for u in self.urls):
                raise ValueError("mode 'external' needs turn: URLs in urls")
            if not self.shared_secret:
                raise ValueError("mode 'external' needs the coturn's shared_secret")
        if self.mode == "local" and self.listening_ip is None:
            raise ValueError("mode 'local' needs listening_ip (the address sites reach coturn on)")
        return self

    @property
    def host_for_urls(self) -> str:
        host = self.public_host or self.external_ip or self.listening_ip or ""
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    def client_urls(self) -> tuple[list[str], list[str]]:
        """``(stun urls, turn urls)`` given to browsers."""
        urls = self.urls
        if not urls and self.mode == "local":
            host = self.host_for_urls
            urls = [
                f"stun:{host}:{self.port}",
                f"turn:{host}:{self.port}?transport=udp",
                f"turn:{host}:{self.port}?transport=tcp",
            ]
            if self.tls_cert is not None:
                urls.append(f"turns:{host}:{self.tls_port}?transport=tcp")
        stun = [u for u in urls if u.startswith("stun:")]
        turn = [u for u in urls if not u.startswith("stun:")]
        return stun, turn


def peer_range(entry: str) -> tuple[str, str]:
    """``"10.0.0.5"``, ``"10.0.0.5-10.0.0.9"`` or ``"10.0.0.0/24"`` → (first, last); ValueError if too wide."""
    entry = entry.strip()
    if "/" in entry:
        net = ipaddress.ip_network(entry, strict=False)
        if net.prefixlen < MAX_PEER_PREFIX[net.version]:
            raise ValueError(f"peer range {entry} is too wide: list Janus's media addresses, not a network")
        first, last = net[0], net[-1]
    elif "-" in entry:
        a, _, b = entry.partition("-")
        first, last = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"bad peer range {entry!r}")
        span = int(last) - int(first) + 1
        if span > 2 ** ((32 if first.version == 4 else 128) - MAX_PEER_PREFIX[first.version]):
            raise ValueError(f"peer range {entry} is too wide: list Janus's media addresses, not a network")
    else:
        first = last = ipaddress.ip_address(entry)
    for ip in (first, last):
        if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
            raise ValueError(f"peer address {entry} cannot be loopback, multicast or unspecified")
    return str(first), str(last)


def janus_media_addresses(nat_1_1_mapping: str | None, ice_enforce_list: str | None) -> list[str]:
    """The IPs Janus is configured to offer (``nat_1_1_mapping``, IP entries of ``ice_enforce_list``)."""
    found: list[str] = []
    for value in (nat_1_1_mapping, ice_enforce_list):
        for item in (value or "").split(","):
            with contextlib.suppress(ValueError):
                ip = ipaddress.ip_address(item.strip())
                if not (ip.is_loopback or ip.is_unspecified) and str(ip) not in found:
                    found.append(str(ip))
    return found


# -- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: int


def turn_password(secret: str, username: str) -> str:
    """coturn's REST API password: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def issue_credential(secret: str, who: str, ttl: int, now: float | None = None) -> TurnCredential:
    """A credential for ``who`` (e.g. ``site-12``) usable for ``ttl`` seconds from ``now``."""
    if not who or len(who) > 64 or not set(who) <= _WHO_CHARS:
        raise ValueError("who must be a short name of letters, digits, '-', '_', '.', '@' (no ':')")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    expires = int(now if now is not None else time.time()) + ttl
    username = f"{expires}:{who}"
    return TurnCredential(username, turn_password(secret, username), expires)


def check_credential(secret: str, username: str, credential: str, now: float | None = None) -> bool:
    """What coturn checks (for tests and diagnostics): the HMAC matches and the expiry is not past."""
    expiry, sep, _ = username.partition(":")
    if not sep or not expiry.isdigit():
        return False
    if int(expiry) < int(now if now is not None else time.time()):
        return False
    return hmac.compare_digest(turn_password(secret, username), credential)


def load_or_create_secret(data_dir: Path) -> str:
    """The shared secret kept in ``data_dir/turn-secret`` (0600), created once."""
    path = data_dir / SECRET_FILE
    with contextlib.suppress(OSError):
        value = path.read_text().strip()
        if value:
            return value
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    write_private_file(path, value)
    return value


def load_turn_settings(data_dir: Path, settings: TurnSettings | None = None) -> TurnSettings:
    """Settings (from the environment unless given) with the local shared secret filled in."""
    base = settings if settings is not None else TurnSettings()
    if base.mode == "local" and not base.shared_secret:
        return base.model_copy(update={"shared_secret": load_or_create_secret(data_dir)})
    return base


# -- coturn config ----------------------------------------------------------------------------


def _conf_value(value: str) -> str:
    if any(c in value for c in "\n\r\0") or value != value.strip():
        raise ValueError("coturn config values cannot contain newlines or surrounding spaces")
    return value


def render_turnserver_conf(settings: TurnSettings, conf_dir: Path) -> str:
    """The whole ``turnserver.conf`` for the local coturn; pure, for tests and dry runs."""
    if settings.listening_ip is None:
        raise ValueError("listening_ip must be set")
    if not settings.shared_secret:
        raise ValueError("shared_secret must be set (use load_turn_settings)")
    if not settings.peer_addresses:
        raise ValueError(
            "peer_addresses must list Janus's media address(es): the relay may reach nothing else"
        )
    lines = [
        "# Written by giaoban.media.turn at every start: edit the GIAOBAN_TURN_* settings, not this file.",
        f"listening-ip={settings.listening_ip}",
        f"listening-port={settings.port}",
        f"relay-ip={settings.relay_ip or settings.listening_ip}",
    ]
    if settings.external_ip:
        lines.append(f"external-ip={settings.external_ip}")
    lines += [
        f"min-port={settings.relay_port_min}",
        f"max-port={settings.relay_port_max}",
        f"realm={_conf_value(settings.realm)}",
        "use-auth-secret",
        f"static-auth-secret={_conf_value(settings.shared_secret)}",
        "fingerprint",
        "stale-nonce=600",
        "no-cli",
        "no-tcp-relay",
        "no-multicast-peers",
        "no-rfc5780",
        "no-stun-backward-compatibility",
        "no-software-attribute",
        "no-dtls",
    ]
    if settings.tls_cert is not None and settings.tls_key is not None:
        lines += [
            f"tls-listening-port={settings.tls_port}",
            f"cert={_conf_value(str(settings.tls_cert))}",
            f"pkey={_conf_value(str(settings.tls_key))}",
            "no-tlsv1",
            "no-tlsv1_1",
        ]
    else:
        lines.append("no-tls")
    if settings.user_quota:
        lines.append(f"user-quota={settings.user_quota}")
    if settings.total_quota:
        lines.append(f"total-quota={settings.total_quota}")
    # Not an open relay: deny every peer, then allow Janus's media address(es) back (coturn checks the
    # allowed list first). Loopback peers are refused by coturn's default (no allow-loopback-peers).
    lines += [
        "denied-peer-ip=0.0.0.0-255.255.255.255",
        "denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    for entry in settings.peer_addresses:
        first, last = peer_range(entry)
        lines.append(f"allowed-peer-ip={first}" if first == last else f"allowed-peer-ip={first}-{last}")
    lines += [
        f"userdb={conf_dir / 'turndb'}",
        f"pidfile={conf_dir / 'turnserver.pid'}",
        "log-file=stdout",
        "simple-log",
    ]
    return "\n".join(lines) + "\n"


def write_turnserver_conf(settings: TurnSettings, conf_dir: Path) -> Path:
    """Write ``turnserver.conf`` (dir 0700, file 0600: it holds the secret); return its path."""
    content = render_turnserver_conf(settings, conf_dir)
    make_private_dir(conf_dir)
    path = conf_dir / "turnserver.conf"
    write_private_file(path, content)
    return path


# -- readiness probe --------------------------------------------------------------------------

_MAGIC = 0x2112A442


def stun_binding(host: str, port: int, timeout: float = 0.5) -> tuple[str, int] | None:
    """One STUN Binding request over UDP; the XOR-MAPPED-ADDRESS answered, or None."""
    txid = secrets.token_bytes(12)
    request = (0x0001).to_bytes(2, "big") + (0).to_bytes(2, "big") + _MAGIC.to_bytes(4, "big") + txid
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return None
    if len(data) < 20 or data[:2] != b"\x01\x01" or data[8:20] != txid:
        return None
    pos, end = 20, 20 + int.from_bytes(data[2:4], "big")
    while pos + 4 <= min(end, len(data)):
        kind, length = (
            int.from_bytes(data[pos : pos + 2], "big"),
            int.from_bytes(data[pos + 2 : pos + 4], "big"),
        )
        value = data[pos + 4 : pos + 4 + length]
        if kind == 0x0020 and len(value) >= 8 and value[1] == 1:  # XOR-MAPPED-ADDRESS, IPv4
            xport = int.from_bytes(value[2:4], "big") ^ (_MAGIC >> 16)
            xaddr = int.from_bytes(value[4:8], "big") ^ _MAGIC
            return str(ipaddress.IPv4Address(xaddr)), xport
        pos += 4 + length + (-length % 4)
    return ("", 0)


# -- supervisor -------------------------------------------------------------------------------


class TurnSupervisor(ProcessSupervisor[TurnSettings]):
    """Runs one local coturn: writes its config, starts it, restarts it when it dies, stops it.

    Ready means it answers a STUN Binding request on ``listening_ip:port`` (``probe=False`` trusts the
    log instead, for a coturn in a namespace this process cannot reach).
    """

    name = "coturn"
    start_error = TurnStartError
    log = logging.getLogger(__name__)

    def __init__(
        self, settings: TurnSettings, data_dir: Path, *, probe: bool = True, kill_with_parent: bool = True
    ) -> None:
        conf_dir = data_dir / "turn"
        # coturn writes its own pidfile too (same path, same pid); ours is there from the start.
        super().__init__(
            settings,
            conf_dir,
            log_path=conf_dir / "turn.log",
            pid_path=conf_dir / "turnserver.pid",
            kill_with_parent=kill_with_parent,
        )
        self.probe = probe

    def command(self) -> list[str]:
        # -c replaces /etc/turnserver.conf: only the options of our file apply.
        argv = [self.settings.binary, "-c", str(self.conf_dir / "turnserver.conf")]
        if self.settings.netns:
            argv = ["ip", "netns", "exec", self.settings.netns, *argv]
        return argv

    def write_config(self) -> None:
        write_turnserver_conf(self.settings, self.conf_dir)

    def stale_marker(self) -> Path:
        return self.conf_dir / "turnserver.conf"

    async def is_ready(self, log_offset: int) -> bool:
        if not self.probe:
            return self._ready_in_log(log_offset)
        assert self.settings.listening_ip is not None
        answer = await asyncio.to_thread(stun_binding, self.settings.listening_ip, self.settings.port, 0.2)
        return answer is not None

    def not_ready_message(self) -> str:
        return (
            f"coturn did not answer on {self.settings.listening_ip}:{self.settings.port} within "
            f"{self.settings.start_timeout}s"
        )

    def spawn_failed_message(self, exc: OSError) -> str:
        return f"cannot start coturn ({self.settings.binary}): {exc}"

    def _ready_in_log(self, offset: int) -> bool:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return False
        return "listener opened on" in text or "IPv4. UDP listener opened" in text


# -- what the app owns ------------------------------------------------------------------------


class TurnService:
    """ICE servers for browsers, and (local mode) the coturn process.

    ``ice_config(site_id, user_id)`` is what goes into the meeting WebSocket's ``welcome``.
    """

    def __init__(self, settings: TurnSettings, data_dir: Path, *, probe: bool = True) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.supervisor: TurnSupervisor | None = None
        self.error = ""
        if settings.mode == "local":
            self.supervisor = TurnSupervisor(settings, data_dir, probe=probe)

    @classmethod
    def from_env(cls, data_dir: Path, *, default_peers: list[str] | None = None) -> TurnService:
        """From ``GIAOBAN_TURN_*``; ``default_peers`` (Janus's known media addresses) fill an empty peer list."""
        settings = load_turn_settings(data_dir)
        if settings.mode == "local" and not settings.peer_addresses and default_peers:
            settings = settings.model_copy(update={"peer_addresses": default_peers})
        return cls(settings, data_dir)

    @property
    def enabled(self) -> bool:
        return self.settings.mode != "off"

    async def start(self) -> None:
        """Start the local coturn; a failure is logged and shown by health(), never raised."""
        if self.supervisor is None:
            return
        try:
            await self.supervisor.start()
            self.error = ""
        except (TurnStartError, ValueError, OSError) as exc:
            self.error = str(exc)
            log.error("TURN not available: %s", exc)

    async def stop(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop()

    def ice_config(self, site_id: int | None, user_id: int, now: float | None = None) -> dict[str, Any]:
        """``{"ice_servers": [...], "ice_transport_policy": "all"|"relay"}`` for one tab; {} when off."""
        if not self.enabled:
            return {}
        stun, turn = self.settings.client_urls()
        servers: list[dict[str, Any]] = []
        if stun:
            servers.append({"urls": stun})
        if turn:
            assert self.settings.shared_secret
            who = f"site-{site_id}" if site_id is not None else f"user-{user_id}"
            cred = issue_credential(self.settings.shared_secret, who, self.settings.credential_ttl, now)
            servers.append({"urls": turn, "username": cred.username, "credential": cred.credential})
        return {
            "ice_servers": servers,
            "ice_transport_policy": "relay" if self.settings.force_relay else "all",
        }

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.settings.mode}
        if self.settings.mode == "off":
            out["status"] = "off"
            return out
        out["urls"] = [u for pair in self.settings.client_urls() for u in pair]
        if self.supervisor is None:
            out["status"] = "ok"  # external: nothing of ours to check
            return out
        sup = self.supervisor
        out.update(
            status="ok" if sup.state == "running" else "down",
            state=sup.state,
            pid=sup.pid,
            restarts=sup.restarts,
            last_exit_code=sup.last_exit_code,
        )
        if self.error:
            out["error"] = self.error
        return out
