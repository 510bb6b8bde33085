"""Media-plane settings (env prefix ``GIAOBAN_JANUS_``).

Two modes:

* ``local`` (default): the app writes a Janus config into ``<data_dir>/janus/`` and supervises its own
  Janus process, optionally inside a network namespace (``netns``).
* ``external``: the app connects to the Janus nodes listed in ``nodes`` and runs no process itself.

Secrets left unset are generated once and kept in ``<data_dir>/janus-secrets.json`` (mode 0600), so a
restart of the app keeps talking to a Janus that outlived it and ``make run`` needs no configuration.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from giaoban.media.process import check_netns_name

SECRETS_FILE = "janus-secrets.json"


class JanusNode(BaseModel):
    """One Janus instance the app signals to."""

    name: str = Field(min_length=1, max_length=64)
    ws_url: str = Field(description="Janus API over WebSocket, e.g. ws://10.0.0.5:8188")
    admin_url: str | None = Field(
        default=None, description="Admin API over WebSocket, e.g. ws://10.0.0.5:7188"
    )
    api_secret: str | None = Field(default=None, repr=False)
    admin_secret: str | None = Field(default=None, repr=False)
    capacity: int = Field(default=100, ge=1, description="Sites this node may carry (placement weight).")

    @field_validator("ws_url", "admin_url")
    @classmethod
    def _ws_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("Janus URLs must be ws:// or wss://")
        return value


class JanusSettings(BaseSettings):
    """Everything the media plane needs; see the module docstring for the two modes."""

    model_config = SettingsConfigDict(env_prefix="GIAOBAN_JANUS_", extra="ignore")

    mode: Literal["local", "external"] = "local"
    nodes: list[JanusNode] = Field(default_factory=list, description="External nodes (JSON in the env).")

    # Local Janus process
    binary: str = "janus"
    lib_dir: Path | None = Field(default=None, description="Janus plugin/transport root; autodetected.")
    netns: str | None = Field(default=None, description="Run the local Janus inside this network namespace.")
    bind_address: str = Field(default="127.0.0.1", description="WS + admin API address (private only).")
    ws_port: int = Field(default=8188, ge=1, le=65535)
    admin_port: int = Field(default=7188, ge=1, le=65535)
    rtp_port_min: int = Field(default=20000, ge=1024, le=65535)
    rtp_port_max: int = Field(default=40000, ge=1024, le=65535)
    api_secret: str | None = Field(default=None, repr=False)
    admin_secret: str | None = Field(default=None, repr=False)
    events_secret: str | None = Field(default=None, repr=False, description="HTTP basic password of evh.")
    session_timeout: int = Field(default=60, ge=0)
    reclaim_session_timeout: int = Field(default=30, ge=0)
    stats_period: int = Field(default=5, ge=0, description="Seconds between media stats events; 0 = off.")
    debug_level: int = Field(default=4, ge=0, le=7)
    server_name: str = "giaoban-media"
    local_capacity: int = Field(default=100, ge=1)
    extra_plugins: list[str] = Field(default_factory=list, description="e.g. ['echotest', 'streaming'].")
    cpu_affinity: str | None = Field(
        default=None, description="Pin the local Janus to these CPUs (taskset list, e.g. '0' or '0-1')."
    )
    # A small fixed pool of event-loop threads measured ~25 % cheaper than Janus's default thread
    # per handle at 71 sites (docs/benchmarks.md); 0 restores the default.
    event_loops: int = Field(
        default=2, ge=0, le=64, description="Janus static event loops (0 = one thread per handle)."
    )
    ice_enforce_list: str | None = None
    ice_ignore_list: str | None = "vmnet"
    nat_1_1_mapping: str | None = None
    stun_server: str | None = None

    # Supervision and client behaviour
    start_timeout: float = Field(default=10.0, gt=0)
    restart_backoff_initial: float = Field(default=0.5, gt=0)
    restart_backoff_max: float = Field(default=30.0, gt=0)
    request_timeout: float = Field(default=10.0, gt=0)
    keepalive_interval: float = Field(default=25.0, gt=0)

    @field_validator("netns")
    @classmethod
    def _netns_name(cls, value: str | None) -> str | None:
        return check_netns_name(value)

    @field_validator("cpu_affinity")
    @classmethod
    def _cpu_list(cls, value: str | None) -> str | None:
        if value is not None and (not value or not set(value) <= set("0123456789,-")):
            raise ValueError("cpu_affinity must be a CPU list such as '0', '0,1' or '0-3'")
        return value

    @field_validator("bind_address")
    @classmethod
    def _bind_ip(cls, value: str) -> str:
        ip = ipaddress.ip_address(value)
        if ip.is_unspecified:
            # The API must never face sites: an unspecified address would bind every interface.
            raise ValueError("bind_address must be a specific private address, not 0.0.0.0/::")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JanusSettings:
        if self.rtp_port_min >= self.rtp_port_max:
            raise ValueError("rtp_port_min must be below rtp_port_max")
        if self.ws_port == self.admin_port:
            raise ValueError("ws_port and admin_port must differ")
        if self.mode == "external" and not self.nodes:
            raise ValueError("mode 'external' needs at least one entry in nodes")
        names = [n.name for n in self.nodes]
        if len(names) != len(set(names)):
            raise ValueError("node names must be unique")
        return self

    @property
    def rtp_port_range(self) -> str:
        """The range in Janus's ``min-max`` notation."""
        return f"{self.rtp_port_min}-{self.rtp_port_max}"

    def _host(self) -> str:
        return f"[{self.bind_address}]" if ":" in self.bind_address else self.bind_address

    @property
    def local_ws_url(self) -> str:
        """URL of the local Janus API (valid in local mode)."""
        return f"ws://{self._host()}:{self.ws_port}"

    @property
    def local_admin_url(self) -> str:
        """URL of the local Janus admin API (valid in local mode)."""
        return f"ws://{self._host()}:{self.admin_port}"

    def effective_nodes(self) -> list[JanusNode]:
        """The nodes the app talks to: the supervised local one, or the configured external ones."""
        if self.mode == "external":
            return list(self.nodes)
        return [
            JanusNode(
                name="local",
                ws_url=self.local_ws_url,
                admin_url=self.local_admin_url,
                api_secret=self.api_secret,
                admin_secret=self.admin_secret,
                capacity=self.local_capacity,
            )
        ]


def _load_or_create_secrets(path: Path) -> dict[str, str]:
    """Read the kept secrets, adding any missing one; the file is created 0600 before a byte is written."""
    stored: dict[str, str] = {}
    if path.exists():
        stored = {k: str(v) for k, v in json.loads(path.read_text()).items()}
    wanted = ("api_secret", "admin_secret", "events_secret")
    if all(stored.get(k) for k in wanted):
        return stored
    for key in wanted:
        stored.setdefault(key, secrets.token_urlsafe(32))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(stored, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return stored


def load_janus_settings(data_dir: Path, settings: JanusSettings | None = None) -> JanusSettings:
    """Return media settings (from the environment unless given) with every local secret filled in.

    Secrets that are unset are generated once and kept in ``data_dir/janus-secrets.json`` (0600); explicit
    settings always win over kept ones.
    """
    base = settings if settings is not None else JanusSettings()
    if base.mode == "external" and base.events_secret:
        return base
    kept = _load_or_create_secrets(data_dir / SECRETS_FILE)
    return base.model_copy(
        update={
            "api_secret": base.api_secret or kept["api_secret"],
            "admin_secret": base.admin_secret or kept["admin_secret"],
            "events_secret": base.events_secret or kept["events_secret"],
        }
    )
