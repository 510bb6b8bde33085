"""TURN without coturn: credentials (HMAC, expiry), settings validation, the rendered turnserver.conf,
the ICE servers a tab is given, and the welcome carrying them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from giaoban.media.turn import (
    TurnService,
    TurnSettings,
    check_credential,
    issue_credential,
    janus_media_addresses,
    load_turn_settings,
    peer_range,
    render_turnserver_conf,
    write_turnserver_conf,
)
from tests.live.test_ws import meeting, open_tab  # noqa: F401  (meeting is a fixture)


class _Settings(TurnSettings):
    """Keywords only: a developer's GIAOBAN_TURN_* cannot leak into these tests."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def local(**kw: Any) -> TurnSettings:
    base: dict[str, Any] = {
        "mode": "local",
        "listening_ip": "10.70.1.1",
        "shared_secret": "s3cret",
        "peer_addresses": ["10.70.2.2"],
    }
    base.update(kw)
    return _Settings(**base)


# -- credentials --------------------------------------------------------------------------------


def test_credential_is_the_rest_api_hmac() -> None:
    cred = issue_credential("s3cret", "site-12", 3600, now=1_700_000_000)
    assert cred.username == "1700003600:site-12"
    assert cred.expires_at == 1_700_003_600
    expected = base64.b64encode(hmac.new(b"s3cret", b"1700003600:site-12", hashlib.sha1).digest()).decode()
    assert cred.credential == expected


def test_credential_checks_secret_and_expiry() -> None:
    cred = issue_credential("s3cret", "user-5", 600, now=1000)
    assert check_credential("s3cret", cred.username, cred.credential, now=1000)
    assert check_credential("s3cret", cred.username, cred.credential, now=1600)
    assert not check_credential("s3cret", cred.username, cred.credential, now=1601), "expired"
    assert not check_credential("other", cred.username, cred.credential, now=1000), "wrong secret"
    assert not check_credential("s3cret", "1600:user-6", cred.credential, now=1000), "username changed"
    assert not check_credential("s3cret", "user-5", cred.credential, now=1000), "no expiry"


@pytest.mark.parametrize("who", ["", "a:b", "site 1", "x" * 65, "sitè"])
def test_credential_refuses_odd_names(who: str) -> None:
    with pytest.raises(ValueError):
        issue_credential("s", who, 60)


def test_credential_refuses_non_positive_ttl() -> None:
    with pytest.raises(ValueError):
        issue_credential("s", "site-1", 0)


# -- settings -----------------------------------------------------------------------------------


def test_default_is_off_and_gives_no_ice_servers(tmp_path: Path) -> None:
    service = TurnService(_Settings(), tmp_path)
    assert not service.enabled
    assert service.ice_config(1, 2) == {}
    assert service.health() == {"mode": "off", "status": "off"}


@pytest.mark.parametrize(
    "kw",
    [
        {"listening_ip": None},
        {"listening_ip": "0.0.0.0"},
        {"relay_ip": "::"},
        {"relay_port_min": 60000, "relay_port_max": 50000},
        {"port": 5349},
        {"tls_cert": "/x/cert.pem"},
        {"netns": "bad name"},
        {"urls": ["http://example"]},
        {"peer_addresses": ["10.0.0.0/8"]},
        {"peer_addresses": ["127.0.0.1"]},
        {"peer_addresses": ["0.0.0.0"]},
        {"peer_addresses": ["10.0.0.9-10.0.0.1"]},
        {"peer_addresses": ["not-an-ip"]},
        {"credential_ttl": 10},
    ],
)
def test_bad_local_settings_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        local(**kw)


def test_external_needs_urls_and_secret() -> None:
    with pytest.raises(ValidationError, match="turn: URLs"):
        _Settings(mode="external", shared_secret="x", urls=["stun:turn.example.vn:3478"])
    with pytest.raises(ValidationError, match="shared_secret"):
        _Settings(mode="external", urls=["turn:turn.example.vn:3478"])
    ok = _Settings(mode="external", shared_secret="x", urls=["turn:turn.example.vn:3478?transport=udp"])
    assert ok.client_urls() == ([], ["turn:turn.example.vn:3478?transport=udp"])


def test_peer_ranges() -> None:
    assert peer_range("10.1.2.3") == ("10.1.2.3", "10.1.2.3")
    assert peer_range("10.1.2.0/24") == ("10.1.2.0", "10.1.2.255")
    assert peer_range("10.1.2.3 - 10.1.2.9") == ("10.1.2.3", "10.1.2.9")
    assert peer_range("2001:db8::5") == ("2001:db8::5", "2001:db8::5")
    with pytest.raises(ValueError, match="too wide"):
        peer_range("10.0.0.0-10.2.0.0")


def test_janus_media_addresses_come_from_its_nat_settings() -> None:
    assert janus_media_addresses("203.0.113.7", None) == ["203.0.113.7"]
    assert janus_media_addresses(None, "eth0,10.0.0.5,127.0.0.1") == ["10.0.0.5"]
    assert janus_media_addresses(None, None) == []


def test_local_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    base = local(shared_secret=None)
    first = load_turn_settings(tmp_path, base)
    second = load_turn_settings(tmp_path, base)
    assert first.shared_secret and first.shared_secret == second.shared_secret
    assert stat.S_IMODE(os.stat(tmp_path / "turn-secret").st_mode) == 0o600
    assert load_turn_settings(tmp_path, local(shared_secret="given")).shared_secret == "given"


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIAOBAN_TURN_MODE", "local")
    monkeypatch.setenv("GIAOBAN_TURN_LISTENING_IP", "10.70.1.1")
    monkeypatch.setenv("GIAOBAN_TURN_PEER_ADDRESSES", '["10.70.2.2"]')
    monkeypatch.setenv("GIAOBAN_TURN_FORCE_RELAY", "1")
    settings = TurnSettings()
    assert settings.mode == "local" and settings.peer_addresses == ["10.70.2.2"] and settings.force_relay


# -- turnserver.conf ----------------------------------------------------------------------------


def conf_lines(settings: TurnSettings, tmp_path: Path) -> list[str]:
    return render_turnserver_conf(settings, tmp_path).splitlines()


def test_conf_is_private_authenticated_and_not_an_open_relay(tmp_path: Path) -> None:
    lines = conf_lines(local(peer_addresses=["10.70.2.2", "10.70.3.0/30"]), tmp_path)
    for expected in (
        "listening-ip=10.70.1.1",
        "relay-ip=10.70.1.1",
        "listening-port=3478",
        "min-port=49152",
        "max-port=65535",
        "realm=giaoban",
        "use-auth-secret",
        "static-auth-secret=s3cret",
        "fingerprint",
        "no-cli",
        "no-tls",
        "no-dtls",
        "no-tcp-relay",
        "no-multicast-peers",
        "denied-peer-ip=0.0.0.0-255.255.255.255",
        "denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "allowed-peer-ip=10.70.2.2",
        "allowed-peer-ip=10.70.3.0-10.70.3.3",
    ):
        assert expected in lines, expected
    assert not any(line.startswith(("allow-loopback-peers", "web-admin", "lt-cred-mech")) for line in lines)
    assert not any("0.0.0.0" in line and line.startswith("listening-ip") for line in lines)


def test_conf_with_tls_nat_and_quotas(tmp_path: Path) -> None:
    settings = local(
        relay_ip="10.70.9.1",
        external_ip="203.0.113.7",
        tls_cert=Path("/etc/giaoban/tls/cert.pem"),
        tls_key=Path("/etc/giaoban/tls/key.pem"),
        user_quota=10,
        total_quota=500,
        relay_port_min=50000,
        relay_port_max=50999,
    )
    lines = conf_lines(settings, tmp_path)
    for expected in (
        "relay-ip=10.70.9.1",
        "external-ip=203.0.113.7",
        "tls-listening-port=5349",
        "cert=/etc/giaoban/tls/cert.pem",
        "pkey=/etc/giaoban/tls/key.pem",
        "user-quota=10",
        "total-quota=500",
        "min-port=50000",
        "max-port=50999",
    ):
        assert expected in lines, expected
    assert "no-tls" not in lines


def test_conf_needs_peers_and_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="peer_addresses"):
        render_turnserver_conf(local(peer_addresses=[]), tmp_path)
    with pytest.raises(ValueError, match="shared_secret"):
        render_turnserver_conf(local(shared_secret=None), tmp_path)
    with pytest.raises(ValueError, match="newlines"):
        render_turnserver_conf(local(realm="a\nallow-loopback-peers"), tmp_path)


def test_conf_file_is_private(tmp_path: Path) -> None:
    path = write_turnserver_conf(local(), tmp_path / "turn")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "turn").st_mode) == 0o700
    assert "static-auth-secret=s3cret" in path.read_text()


# -- ICE servers for a tab ----------------------------------------------------------------------


def test_ice_config_for_a_site_tab(tmp_path: Path) -> None:
    service = TurnService(local(credential_ttl=600), tmp_path)
    config = service.ice_config(12, 7, now=1000)
    assert config["ice_transport_policy"] == "all"
    stun, turn = config["ice_servers"]
    assert stun == {"urls": ["stun:10.70.1.1:3478"]}
    assert turn["urls"] == ["turn:10.70.1.1:3478?transport=udp", "turn:10.70.1.1:3478?transport=tcp"]
    assert turn["username"] == "1600:site-12"
    assert check_credential("s3cret", turn["username"], turn["credential"], now=1000)
    console = service.ice_config(None, 7, now=1000)["ice_servers"][1]
    assert console["username"] == "1600:user-7"


def test_ice_config_public_host_tls_and_forced_relay(tmp_path: Path) -> None:
    settings = local(
        public_host="turn.tinh.example.vn",
        tls_cert=Path("/c.pem"),
        tls_key=Path("/k.pem"),
        force_relay=True,
    )
    config = TurnService(settings, tmp_path).ice_config(1, 1)
    assert config["ice_transport_policy"] == "relay"
    assert "turns:turn.tinh.example.vn:5349?transport=tcp" in config["ice_servers"][1]["urls"]


def test_health_of_a_local_turn_that_did_not_start(tmp_path: Path) -> None:
    import asyncio

    service = TurnService(local(binary=str(tmp_path / "no-such-turnserver")), tmp_path)
    asyncio.run(service.start())
    health = service.health()
    assert health["status"] == "down"
    assert "cannot start coturn" in health["error"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_welcome_carries_per_tab_ice_servers(demo: Any, meeting: dict[str, int], tmp_path: Path) -> None:  # noqa: F811
    """The meeting WebSocket's welcome gives each tab fresh TURN credentials named after it."""
    import time

    from fastapi.testclient import TestClient

    from giaoban.web.app import create_app

    settings = _Settings(
        mode="external",
        shared_secret="ext-secret",
        urls=["stun:turn.example.vn:3478", "turn:turn.example.vn:3478?transport=udp"],
        credential_ttl=3600,
    )
    app = create_app(demo.ctx, turn=TurnService(settings, tmp_path))
    with TestClient(app) as client:
        for site in open_tab(client, meeting["id"], "dc-01", **{"as": "site", "site_id": meeting["site_01"]}):
            welcome = site.welcome  # type: ignore[attr-defined]
        for console in open_tab(client, meeting["id"], "chutri", **{"as": "console"}):
            console_welcome = console.welcome  # type: ignore[attr-defined]
    assert welcome["ice_transport_policy"] == "all"
    stun, turn = welcome["ice_servers"]
    assert stun == {"urls": ["stun:turn.example.vn:3478"]}
    assert turn["urls"] == ["turn:turn.example.vn:3478?transport=udp"]
    expiry, _, who = turn["username"].partition(":")
    assert who == f"site-{meeting['site_01']}"
    assert 3590 <= int(expiry) - time.time() <= 3600
    assert check_credential("ext-secret", turn["username"], turn["credential"])
    assert console_welcome["ice_servers"][1]["username"].endswith(":user-" + str(_user_id(demo, "chutri")))


def _user_id(demo: Any, username: str) -> int:
    from sqlalchemy import select

    from giaoban.org.models import User

    with demo.ctx.db.session() as s:
        return int(s.execute(select(User.id).where(User.username == username)).scalar_one())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_welcome_without_turn_has_no_ice_fields(client: Any, meeting: dict[str, int]) -> None:  # noqa: F811
    for site in open_tab(client, meeting["id"], "dc-01", **{"as": "site", "site_id": meeting["site_01"]}):
        assert "ice_servers" not in site.welcome  # type: ignore[attr-defined]
