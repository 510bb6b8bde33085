"""Settings from environment variables (prefix ``GIAOBAN_``).

Every setting has an embedded default so that ``make run`` works on a bare machine: a SQLite file
and a generated secret key, both kept in the data directory.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
