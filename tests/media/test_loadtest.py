"""`giaoban loadtest media`: light import, a short real run with sane figures, teardown on Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from giaoban.lab import loadtest
from giaoban.lab.loadrun import LoadResult, format_table
from giaoban.lab.measure import percentile
from tests.lab.fixtures import lab_skip_reason

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "sites",
    "join_p50_ms",
    "join_p95_ms",
    "janus_cpu_pct",
    "janus_rss_mb",
    "packets_per_s",
    "loss_pct",
    "generator_cpu_pct",
    "errors",
}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "giaoban.cli", "loadtest", "media", *args]


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _leftovers(pid: int) -> list[str]:
    """Namespaces/links/Janus processes a lab of process ``pid`` would have created."""
    prefix = f"gb{pid:x}x"
    found = [ns for ns in _netns() if ns.startswith(prefix)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if f" {prefix}" in line]
    ps = subprocess.run(["pgrep", "-af", "janus"], capture_output=True, text=True, check=False).stdout
    found += [line for line in ps.splitlines() if "giaoban-loadtest-" in line and str(pid) in line]
    return found


def test_parser_defaults_and_light_import() -> None:
    parser = argparse.ArgumentParser()
    loadtest.configure_parser(parser)
    args = parser.parse_args(["--sites", "5", "--json"])
    assert args.sites == 5 and args.duration == 10.0 and args.json and args.wall == "paged"
    # cli.py builds its parser without the lab; the command module parses its options without aiortc.
    code = (
        "import sys, giaoban.cli as c; c.build_parser(); print('giaoban.lab' in sys.modules); "
        "import giaoban.lab.loadtest; print('aiortc' in sys.modules, 'av' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_table_and_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile(list(range(1, 101)), 95) == 95
    text = format_table(LoadResult(sites=3, join_p50_ms=12.0, janus_cpu_pct=5.5, errors=0))
    assert "Janus CPU (% of one core)" in text and "5.5 %" in text


@pytest.mark.janus
@pytest.mark.timeout(150)
def test_loadtest_runs_and_reports_sane_json() -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        _cli("--sites", "3", "--duration", "3", "--json"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=140,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) >= KEYS
    assert result["sites"] == 3 and result["errors"] == 0, result
    assert (
        result["packets_per_s"] > 0
        and result["join_p50_ms"] > 0
        and result["join_p95_ms"] >= result["join_p50_ms"]
    )
    assert 0 < result["janus_cpu_pct"] < 100 and 10 < result["janus_rss_mb"] < 500
    assert 0 <= result["loss_pct"] < 5 and 0 < result["generator_cpu_pct"] < 100
    # 3 sites: 2 x (host + speaker) + speaker's host + wall (speaker audio + 3 low layers) ≈ 700 pkt/s
    assert (
        0.5 * result["expected_packets_per_s"]
        < result["packets_per_s"]
        < 1.5 * result["expected_packets_per_s"]
    )


@pytest.mark.janus
@pytest.mark.timeout(90)
def test_loadtest_tears_its_lab_down_on_ctrl_c() -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    proc = subprocess.Popen(
        _cli("--sites", "2", "--duration", "60"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    prefix = f"gb{proc.pid:x}x"
    try:
        deadline = time.monotonic() + 40
        while not any(ns.startswith(prefix) for ns in _netns()):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the lab never came up"
            time.sleep(0.1)
        time.sleep(3)  # bots joining / media flowing
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 130
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _leftovers(proc.pid) == []
