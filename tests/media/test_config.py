"""Settings, secrets and the Janus config writer (no Janus needed)."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from giaoban.media.config import SECRETS_FILE, JanusNode, JanusSettings, load_janus_settings
from giaoban.media.service import MediaService
from giaoban.media.supervisor import (
    JanusStartError,
    JanusSupervisor,
    jcfg_quote,
    render_janus_config,
    write_janus_config,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("GIAOBAN_JANUS_"):
            monkeypatch.delenv(key)


def test_defaults_are_local_and_private(tmp_path: Path) -> None:
    s = load_janus_settings(tmp_path)
    assert s.mode == "local"
    assert s.bind_address == "127.0.0.1"
    assert s.local_ws_url == "ws://127.0.0.1:8188"
    assert s.rtp_port_range == "20000-40000"
    [node] = s.effective_nodes()
    assert node.name == "local" and node.api_secret == s.api_secret


def test_secrets_generated_once_kept_0600(tmp_path: Path) -> None:
    first = load_janus_settings(tmp_path)
    path = tmp_path / SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.api_secret and first.admin_secret and first.events_secret
    assert len({first.api_secret, first.admin_secret, first.events_secret}) == 3
    second = load_janus_settings(tmp_path)
    assert (second.api_secret, second.admin_secret) == (first.api_secret, first.admin_secret)
    assert first.api_secret in path.read_text()


def test_explicit_secret_wins(tmp_path: Path) -> None:
    s = load_janus_settings(tmp_path, JanusSettings(api_secret="given"))
    assert s.api_secret == "given"
    assert s.admin_secret  # still generated
    assert "given" not in repr(s)


def test_env_external_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [
        {"name": "a", "ws_url": "ws://10.0.0.5:8188", "api_secret": "s", "capacity": 80},
        {"name": "b", "ws_url": "ws://10.0.0.6:8188", "admin_url": "ws://10.0.0.6:7188"},
    ]
    monkeypatch.setenv("GIAOBAN_JANUS_MODE", "external")
    monkeypatch.setenv("GIAOBAN_JANUS_NODES", json.dumps(nodes))
    s = load_janus_settings(tmp_path)
    assert [n.name for n in s.effective_nodes()] == ["a", "b"]
    assert s.effective_nodes()[0].capacity == 80


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bind_address": "0.0.0.0"},
        {"bind_address": "::"},
        {"bind_address": "not-an-ip"},
        {"mode": "external"},
        {"rtp_port_min": 30000, "rtp_port_max": 20000},
        {"ws_port": 7000, "admin_port": 7000},
        {"netns": "bad name; rm -rf"},
        {
            "mode": "external",
            "nodes": [{"name": "x", "ws_url": "ws://a"}, {"name": "x", "ws_url": "ws://b"}],
        },
    ],
)
def test_invalid_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JanusSettings(**kwargs)  # type: ignore[arg-type]


def test_node_url_scheme() -> None:
    with pytest.raises(ValidationError):
        JanusNode(name="x", ws_url="http://10.0.0.1:8188")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, **kw: object) -> JanusSettings:
    # Loopback with ports nobody listens on: a test that ends up connecting reaches nothing else.
    kw = {"bind_address": "127.0.0.1", "ws_port": _free_port(), "admin_port": _free_port(), **kw}
    return load_janus_settings(tmp_path, JanusSettings(**kw))  # type: ignore[arg-type]


def test_render_main_config(tmp_path: Path) -> None:
    s = _settings(
        tmp_path, reclaim_session_timeout=42, stats_period=7, rtp_port_min=30000, rtp_port_max=30100
    )
    files = render_janus_config(
        s, tmp_path / "janus", event_backend_url="http://10.9.8.2:8000/internal/janus/events"
    )
    main = files["janus.jcfg"]
    assert f'api_secret = "{s.api_secret}"' in main
    assert f'admin_secret = "{s.admin_secret}"' in main
    assert "reclaim_session_timeout = 42" in main
    assert 'rtp_port_range = "30000-30100"' in main
    assert "broadcast = true" in main and "stats_period = 7" in main
    transports = next(line for line in main.splitlines() if "libjanus_http.so" in line)
    assert "libjanus_websockets.so" not in transports
    plugins = next(line for line in main.splitlines() if "libjanus_audiobridge.so" in line)
    assert "libjanus_videoroom.so" not in plugins
    events = next(line for line in main.splitlines() if "libjanus_wsevh.so" in line)
    assert "libjanus_sampleevh.so" not in events
    assert 'disable = "libjanus_jsonlog.so"' in main


def test_render_transport_binds_private_address_only(tmp_path: Path) -> None:
    # Rendered only: nothing connects to this address.
    s = _settings(tmp_path, bind_address="10.9.8.1", ws_port=9100, admin_port=9101)
    ws = render_janus_config(s, tmp_path)["janus.transport.websockets.jcfg"]
    assert 'ws_ip = "10.9.8.1"' in ws and "ws_port = 9100" in ws
    assert 'admin_ws_ip = "10.9.8.1"' in ws and "admin_ws_port = 9101" in ws
    assert "wss = false" in ws


def test_render_event_handler(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    url = "http://10.9.8.2:8000/internal/janus/events"
    files = render_janus_config(s, tmp_path, event_backend_url=url)
    evh = files["janus.eventhandler.sampleevh.jcfg"]
    assert "enabled = true" in evh and f'backend = "{url}"' in evh
    assert 'json = "compact"' in evh and "grouping = true" in evh
    assert f'backend_pwd = "{s.events_secret}"' in evh
    assert '"jsep' not in evh  # SDPs are not worth shipping to ourselves


def test_render_without_events(tmp_path: Path) -> None:
    files = render_janus_config(_settings(tmp_path), tmp_path)
    assert "janus.eventhandler.sampleevh.jcfg" not in files
    assert "broadcast = false" in files["janus.jcfg"]
    assert "libjanus_sampleevh.so" in files["janus.jcfg"]


def test_render_needs_secrets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="secret"):
        render_janus_config(JanusSettings(), tmp_path)


def test_jcfg_quoting() -> None:
    assert jcfg_quote('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        jcfg_quote("a\nb")


def test_write_config_permissions_and_stale_files(tmp_path: Path) -> None:
    conf = tmp_path / "janus"
    conf.mkdir()
    (conf / "janus.plugin.audiobridge.jcfg").write_text("stale")
    main = write_janus_config(_settings(tmp_path), conf)
    assert main == conf / "janus.jcfg"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o700
    names = sorted(p.name for p in conf.iterdir())
    assert names == ["janus.jcfg", "janus.plugin.videoroom.jcfg", "janus.transport.websockets.jcfg"]
    for p in conf.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_supervisor_command_in_netns(tmp_path: Path) -> None:
    sup = JanusSupervisor(_settings(tmp_path, netns="gbtest"), tmp_path)
    argv = sup.command()
    assert argv[:4] == ["ip", "netns", "exec", "gbtest"]
    assert argv[4:] == ["janus", "-F", str(tmp_path / "janus"), "-C", str(tmp_path / "janus" / "janus.jcfg")]


def test_supervisor_pins_janus_and_sets_event_loops(tmp_path: Path) -> None:
    settings = _settings(tmp_path, netns="gbtest", cpu_affinity="0", event_loops=2)
    argv = JanusSupervisor(settings, tmp_path).command()
    assert argv[:7] == ["ip", "netns", "exec", "gbtest", "taskset", "-c", "0"]
    assert argv[7] == "janus"
    assert "event_loops = 2" in render_janus_config(settings, tmp_path / "janus")["janus.jcfg"]
    with pytest.raises(ValueError):
        _settings(tmp_path, cpu_affinity="0; rm -rf /")


def test_supervisor_start_failure_is_clear(tmp_path: Path) -> None:
    sup = JanusSupervisor(_settings(tmp_path, binary="/nonexistent/janus"), tmp_path)
    with pytest.raises(JanusStartError, match="cannot start janus"):
        asyncio.run(sup.start())
    assert sup.state == "stopped" and sup.pid is None


def test_service_reports_down_when_janus_cannot_start(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        svc = MediaService(_settings(tmp_path, binary="/nonexistent/janus"), tmp_path)
        await svc.start(wait=0.3)
        try:
            return await svc.health()
        finally:
            await svc.stop()

    health = asyncio.run(scenario())
    assert health["status"] == "down"
    [node] = health["nodes"]
    assert node["name"] == "local" and node["status"] == "down"
    assert "cannot start janus" in node["error"]
