"""HTTPS: the self-signed LAN certificate, the checks on a configured pair, `giaoban serve` over https,
and Chromium getting a secure context (camera allowed) at a non-localhost lab address."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from giaoban.context import AppContext
from giaoban.web.tls import (
    TlsError,
    check_pair,
    ensure_self_signed,
    fingerprint,
    generate_self_signed,
    load_cert,
    machine_names,
    resolve_tls,
    spki_hash,
    subject_names,
)
from tests.conftest import in_ci

LAN_IP = ipaddress.ip_address("10.77.0.5")


def test_self_signed_names_this_machine(tmp_path: Path) -> None:
    files = ensure_self_signed(tmp_path, extra_names=["giaoban.tinh.vn"], extra_ips=[LAN_IP])
    cert = load_cert(files.cert)
    names, ips = subject_names(cert)
    _, host_ips = machine_names()
    assert "giaoban.tinh.vn" in names and "localhost" in names and socket.gethostname() in names
    assert LAN_IP in ips and ipaddress.ip_address("127.0.0.1") in ips
    assert set(host_ips) <= set(ips)
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)
    check_pair(files.cert, files.key)
    assert len(fingerprint(cert).split(":")) == 32


def test_self_signed_is_kept_until_it_must_change(tmp_path: Path) -> None:
    first = ensure_self_signed(tmp_path, extra_ips=[LAN_IP])
    fp = fingerprint(load_cert(first.cert))
    assert fingerprint(load_cert(ensure_self_signed(tmp_path).cert)) == fp, "kept: still valid, same names"
    new_ip = ipaddress.ip_address("10.77.0.6")
    renamed = ensure_self_signed(tmp_path, extra_ips=[new_ip])
    assert fingerprint(load_cert(renamed.cert)) != fp, "remade: a new address must be named"
    names, ips = machine_names()
    generate_self_signed(first.cert, first.key, names, ips, days=10)  # about to expire
    assert load_cert(ensure_self_signed(tmp_path).cert).not_valid_after_utc > dt.datetime.now(
        dt.UTC
    ) + dt.timedelta(days=100)


def test_bad_pairs_are_refused_clearly(tmp_path: Path) -> None:
    a = ensure_self_signed(tmp_path / "a")
    b = ensure_self_signed(tmp_path / "b", force=True)
    with pytest.raises(TlsError, match="không khớp"):
        check_pair(a.cert, b.key)
    with pytest.raises(TlsError, match="Không đọc được"):
        check_pair(tmp_path / "missing.pem", a.key)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsError, match="không phải chứng chỉ"):
        check_pair(tmp_path / "junk.pem", a.key)
    with pytest.raises(TlsError, match="không phải khóa"):
        check_pair(a.cert, tmp_path / "junk.pem")
    names, ips = machine_names()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=900)
    generate_self_signed(tmp_path / "old.pem", tmp_path / "old.key", names, ips, valid_from=long_ago)
    with pytest.raises(TlsError, match="hết hạn"):
        check_pair(tmp_path / "old.pem", tmp_path / "old.key")
    with pytest.raises(TlsError, match="cả GIAOBAN_TLS_CERT"):
        resolve_tls(tmp_path, a.cert, None, False)
    assert resolve_tls(tmp_path, None, None, False) is None
    assert resolve_tls(tmp_path, a.cert, a.key, True) is not None


def test_cli_selfsigned_prints_the_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from giaoban.cli import main
    from giaoban.settings import get_settings

    monkeypatch.setenv("GIAOBAN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["tls", "selfsigned", "--ip", "10.77.0.9", "--name", "gb.local"]) == 0
        out = capsys.readouterr().out
        cert = load_cert(tmp_path / "tls" / "cert.pem")
        assert fingerprint(cert) in out and "10.77.0.9" in out and "gb.local" in out
        assert main(["tls", "selfsigned", "--ip", "10.77.0.999"]) == 2
        assert "không hợp lệ" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_serve_answers_https_with_the_generated_certificate(tmp_path: Path) -> None:
    """`GIAOBAN_TLS_SELF_SIGNED=1 giaoban serve`: https with a certificate a client can pin; http refused."""
    port = _free_port("127.0.0.1")
    env = {
        **os.environ,
        "GIAOBAN_DATA_DIR": str(tmp_path),
        "GIAOBAN_PORT": str(port),
        "GIAOBAN_TLS_SELF_SIGNED": "1",
    }
    env.pop("GIAOBAN_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "giaoban.cli", "serve", "--migrate", "--no-media"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        cert = tmp_path / "tls" / "cert.pem"
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if cert.exists():
                    ctx = ssl.create_default_context(cafile=str(cert))
                    health = httpx.get(
                        f"https://127.0.0.1:{port}/healthz", verify=ctx, trust_env=False
                    ).json()
                    break
            except (httpx.HTTPError, ssl.SSLError):
                pass
            time.sleep(0.2)
        assert health is not None and health["database"] == "ok", "no https answer"
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused by default
            httpx.get(f"https://127.0.0.1:{port}/healthz", trust_env=False)
        with pytest.raises(httpx.HTTPError):  # no plain http on the https port
            httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False, timeout=3)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"https://127.0.0.1:{port}/" in out


# -- a real browser at a LAN address -------------------------------------------------------------------


def _serve(app: Any, host: str, **ssl_kw: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **ssl_kw))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    return server, thread, int(sock.getsockname()[1])


@pytest.fixture
def lan_address() -> Iterator[str]:
    """A non-localhost address of this machine: the root end of a lab link (traffic stays local)."""
    from giaoban.lab.netns import NetLab, missing_requirements

    reason = missing_requirements()
    if reason:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    with NetLab() as lab:
        link = lab.link(None, lab.netns("tls"))
        yield link.addr_a


@pytest.mark.browser
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_chromium_gets_a_secure_context_at_a_lan_address(
    ctx: AppContext, lan_address: str, tmp_path: Path
) -> None:
    from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        (pytest.fail if in_ci() else pytest.skip)(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    from giaoban.web.app import create_app

    files = ensure_self_signed(tmp_path, extra_ips=[ipaddress.ip_address(lan_address)])
    assert ipaddress.ip_address(lan_address) in subject_names(load_cert(files.cert))[1]
    app = create_app(ctx)
    https, https_thread, https_port = _serve(
        app, lan_address, ssl_certfile=str(files.cert), ssl_keyfile=str(files.key)
    )
    plain, plain_thread, plain_port = _serve(app, lan_address)
    probe = """async () => {
      const out = {secure: window.isSecureContext, media: !!navigator.mediaDevices, tracks: []};
      if (out.media) {
        const s = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
        out.tracks = s.getTracks().map((t) => t.kind + ":" + t.readyState);
        s.getTracks().forEach((t) => t.stop());
      }
      return out;
    }"""
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    *CHROMIUM_ARGS,
                    "--use-fake-device-for-media-stream",
                    "--use-fake-ui-for-media-stream",
                    # Trust exactly this certificate's key (as a site that imported it), nothing else.
                    f"--ignore-certificate-errors-spki-list={spki_hash(load_cert(files.cert))}",
                ],
            )
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="vi-VN")
                page.goto(f"https://{lan_address}:{https_port}/login")
                secure = page.evaluate(probe)
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "tls-login-lan.png"))
                page.goto(f"http://{lan_address}:{plain_port}/login")
                insecure = page.evaluate(probe)
            finally:
                browser.close()
    finally:
        for server in (https, plain):
            server.should_exit = True
        https_thread.join(15)
        plain_thread.join(15)
    assert secure == {"secure": True, "media": True, "tracks": ["audio:live", "video:live"]}, secure
    # The same page over plain http at a LAN address: no secure context, no camera.
    assert insecure == {"secure": False, "media": False, "tracks": []}, insecure
