"""The `giaoban` command: every subcommand parses, and the ones that need no server run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from giaoban.cli import build_parser, main


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--demo", "--no-media", "--port", "8123"],
        ["db", "upgrade"],
        ["demo", "load", "--if-empty"],
        ["user", "create", "x", "--role", "admin@TW"],
        ["user", "passwd", "x", "--unlock"],
        ["units", "import", "f.tsv", "--with-sites", "--effective", "2025-07-01", "--dry-run"],
        ["units", "export", "--format", "xlsx", "--as-of", "2024-12-31"],
        ["sites", "import", "f.csv"],
        ["sites", "export", "--format", "csv"],
        ["audit", "verify"],
        ["audit", "verify", "--anchor", "neo.json"],
        ["audit", "anchor", "--output", "neo.json"],
        ["loadtest", "media", "--sites", "3"],
    ],
)
def test_every_subcommand_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.func)
    # Every option the handler reads is defined (a missing one would fail only at run time).
    assert vars(args)


def test_serve_options_reach_the_handler() -> None:
    args = build_parser().parse_args(["serve", "--no-media"])
    assert args.no_media is True and args.demo is False


def test_unknown_command_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_serve_with_demo_from_an_empty_data_dir(tmp_path: pytest.TempPathFactory) -> None:
    """What `make run` does after setup: migrate, load the demo, serve, print the logins."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "GIAOBAN_DATA_DIR": str(tmp_path),
        "GIAOBAN_DEMO_PASSWORD": "Demo-password-2017",
        "GIAOBAN_PORT": str(port),
    }
    env.pop("GIAOBAN_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "giaoban.cli", "serve", "--migrate", "--demo", "--no-media"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2, trust_env=False).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health is not None, "server did not answer"
        assert health["database"] == "ok"
        token = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            json={"username": "admin", "password": "Demo-password-2017"},
            trust_env=False,
        ).json()["token"]
        sites = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/sites",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        ).json()
        assert sites["total"] == 71
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "admin" in out and "dc-01" in out and "tochuc-79" in out
    assert (tmp_path / "giaoban.sqlite3").exists() and (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GIAOBAN_QUALITY_THRESHOLDS", "rtt_amber=900", "rtt_amber (900) above rtt_red (500)"),
        ("GIAOBAN_QUALITY_THRESHOLDS", "loss_alarm=3", "unknown quality threshold 'loss_alarm'"),
        ("GIAOBAN_PORT", "abc", "valid integer"),
    ],
)
def test_a_nonsense_setting_is_named_without_a_traceback(
    variable: str,
    value: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from giaoban.settings import get_settings

    monkeypatch.setenv("GIAOBAN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        assert main(["serve", "--no-media", "--port", "8123"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert f"Lỗi cấu hình {variable}:" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "var").exists()  # nothing was set up


ROOT = Path(__file__).resolve().parents[1]


def _cli(tmp_path: Path, *argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    env = {**os.environ, "GIAOBAN_DATA_DIR": str(tmp_path)}
    env.pop("GIAOBAN_DATABASE_URL", None)
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "giaoban.cli", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def _password_ok(tmp_path: Path, username: str, password: str) -> bool:
    from giaoban.db import Database
    from giaoban.org import accounts

    db = Database(f"sqlite:///{tmp_path / 'giaoban.sqlite3'}")
    try:
        with db.session() as session:
            user = accounts.get_user_by_name(session, username)
            return user is not None and accounts._verify_password(user.password_hash, password)
    finally:
        db.dispose()


def test_user_create_without_a_terminal_reads_stdin_or_says_why_not(tmp_path: Path) -> None:
    """No terminal: one line of standard input is the password; none at all is a clear error
    (exit 2), never an EOFError traceback. With stdin empty, closed, or piped."""
    import os

    assert _cli(tmp_path, "db", "upgrade").returncode == 0
    for how in ({"stdin": subprocess.DEVNULL}, {"input": "\n"}, {"preexec_fn": lambda: os.close(0)}):
        r = _cli(tmp_path, "user", "create", "nguyenvana", **how)
        assert r.returncode == 2, (how, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "EOFError" not in r.stderr, r.stderr
        assert "Không có mật khẩu" in r.stderr and "--password-stdin" in r.stderr, r.stderr
    assert not _password_ok(tmp_path, "nguyenvana", "")

    r = _cli(tmp_path, "user", "create", "nguyenvana", input="Mat-khau-dai-2025\n")
    assert r.returncode == 0 and "Đã tạo người dùng nguyenvana" in r.stdout, r.stderr
    assert _password_ok(tmp_path, "nguyenvana", "Mat-khau-dai-2025")
    r = _cli(tmp_path, "user", "passwd", "nguyenvana", "--password-stdin", input="Mat-khau-moi-2026\r\n")
    assert r.returncode == 0, r.stderr
    assert _password_ok(tmp_path, "nguyenvana", "Mat-khau-moi-2026")
    # A weak password is refused with the reason, exit 2, again without a traceback.
    r = _cli(tmp_path, "user", "create", "tranthib", "--password-stdin", input="ngan\n")
    assert r.returncode == 2 and "Mật khẩu phải có ít nhất" in r.stderr and "Traceback" not in r.stderr
