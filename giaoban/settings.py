"""Settings from environment variables (prefix ``GIAOBAN_``).

Every setting has an embedded default so that ``make run`` works on a bare machine: a SQLite file
and a generated secret key, both kept in the data directory.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from giaoban.thresholds import Thresholds


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GIAOBAN_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Where the SQLite file, secret key, logs live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    secret_key: str | None = Field(default=None, description="Signs sessions and keys the audit chain.")
    host: str = "127.0.0.1"
    port: int = 8000
    # Accounts
    admin_totp_required: bool = Field(default=False, description="System admins must use a TOTP code.")
    session_hours: int = 12
    login_max_failures: int = 5
    login_window_seconds: int = 900
    lock_after_failures: int = 20
    cookie_secure: bool = False
    default_locale: str = "vi"
    extra_unit_kinds: list[str] = Field(
        default_factory=list, description="Unit kinds beyond the built-in ones."
    )
    demo_password: str | None = None
    metrics_token: str | None = Field(
        default=None, description="Bearer token for /metrics from beyond loopback (docs/operations.md)."
    )
    janus_events_host: str | None = Field(
        default=None,
        description="Address Janus uses to reach our event endpoint (default: the host we listen on).",
    )
    # HTTPS (giaoban.web.tls, docs/deploy.md): a certificate + key, or a generated self-signed one.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = Field(default=False, description="Serve https with a generated LAN certificate.")
    # Reverse proxies (docs/deploy.md, "Behind nginx"): only a peer in this list is believed about
    # the client's address (X-Forwarded-For). Comma-separated addresses or CIDRs; empty trusts none.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Addresses/CIDRs of reverse proxies whose X-Forwarded-For counts."
    )

    # What a client may send (giaoban.web.limits, docs/api.md): a request body or one WebSocket
    # message; the import routes take a spreadsheet of up to 20 MiB (giaoban.org.io.MAX_BYTES).
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=4096, le=1024**3, description="Largest request body or WebSocket message."
    )
    max_upload_bytes: int = Field(
        default=21 * 1024 * 1024, ge=4096, le=1024**3, description="Largest body of an import (file upload)."
    )

    # The control room's colours and alerts (docs/operations.md): ``loss_alert=12,rtt_alert=900`` or a
    # JSON object; names are those of giaoban.thresholds.Thresholds.
    quality_thresholds: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="Overrides of the control room's thresholds."
    )

    @field_validator("quality_thresholds", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: Any) -> Any:

        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                value = json.loads(text)
            else:
                value = {}
                for item in (i for i in text.split(",") if i.strip()):
                    name, sep, number = item.partition("=")
                    if not sep:
                        raise ValueError(f"expected name=value, got {item.strip()!r}")
                    value[name.strip()] = number.strip()
        if isinstance(value, dict):
            Thresholds.with_overrides(value)  # ValueError: the offending name or pair
            return {str(k): float(v) for k, v in value.items()}
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        """``127.0.0.1, 10.0.0.0/8`` or a JSON list; every entry must be an address or a network."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if isinstance(value, list):
            out = []
            for item in value:
                entry = str(item).strip()
                ipaddress.ip_network(entry, strict=False)  # ValueError: not an address or network
                out.append(entry)
            return out
        return value

    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(v, strict=False) for v in self.trusted_proxies]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'giaoban.sqlite3').resolve()}"

    @property
    def resolved_secret_key(self) -> str:
        """The configured secret, or one generated once and kept in the data dir (mode 0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
