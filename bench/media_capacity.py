"""Janus capacity for the briefing topology, N = 8 … 150 sites (run on demand as root; prints a table).

    .venv/bin/python bench/media_capacity.py [--sites 8,24,48,71,100,150] [--duration 10]
        [--configs reference,goal] [--nice -10] [--json-out FILE]

Each point is one `giaoban loadtest media --json` run in a fresh process (own namespace lab, Janus
pinned to CPU 0, the bots to CPU 1). Two configurations:

* ``reference``: the topology of perf-notes.md — sites publish one 360p layer, the host's wall takes
  every site at full rate;
* ``goal``: sites publish simulcast (180p + 360p), the host's wall is one page of 24 sites at the low
  layer (issue 3's target design);
* ``lean``: ``goal`` + the sites that do not hold the floor (all but the speaker) send what a muted
  browser would: Opus DTX (one packet per 400 ms) and only the low simulcast layer.

A point counts as "under budget" when Janus stays under 85 % of its core with < 1 % subscriber loss and
the generator did not limit the run (not CPU-bound, not late, no drops in its own sockets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "reference": ["--wall", "full", "--no-simulcast"],
    "goal": ["--wall", "paged", "--page", "24"],
    "lean": ["--wall", "paged", "--page", "24", "--lean"],
}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_point(sites: int, config: str, duration: float, nice: int, event_loops: int = 0) -> dict[str, Any]:
    argv = [sys.executable, "-m", "giaoban.cli", "loadtest", "media", "--sites", str(sites)]
    argv += ["--duration", str(duration), "--json", "--nice", str(nice), *CONFIGS[config]]
    argv += ["--event-loops", str(event_loops)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"sites": sites, "errors": -1, "error_messages": [proc.stderr.strip()[-300:]]}
    result["config"] = config
    result["run_s"] = round(time.monotonic() - t0, 1)
    result["load_avg"] = Path("/proc/loadavg").read_text().split()[0]
    return result


def under_budget(r: dict[str, Any]) -> bool:
    return (
        r.get("errors") == 0
        and (r.get("janus_cpu_pct") or 100) < 85
        and r.get("loss_pct", 100) < 1
        and not r.get("generator_limited", True)
    )


def fmt(value: Any, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| config | sites | Janus CPU % | RSS MB | pkt/s out | pkt/s in | µs/pkt | loss % (host wall) "
        "| join p50/p95 ms | gen CPU % | gen late ms | own-socket drops | cores busy/softirq % (J, G) | errors | load avg |"
    )
    out = [head, "|" + "---|" * 15]
    for r in results:
        out.append(
            f"| {r['config']} | {r['sites']} | {fmt(r.get('janus_cpu_pct'))} | {fmt(r.get('janus_rss_mb'), '.0f')} "
            f"| {fmt(r.get('packets_per_s'), ',.0f')} | {fmt(r.get('packets_in_per_s'), ',.0f')} "
            f"| {fmt(r.get('us_per_packet'))} | {fmt(r.get('loss_pct'), '.2f')} ({fmt(r.get('host_loss_pct'), '.2f')}) "
            f"| {fmt(r.get('join_p50_ms'), '.0f')}/{fmt(r.get('join_p95_ms'), '.0f')} "
            f"| {fmt(r.get('generator_cpu_pct'))} | {fmt(r.get('generator_late_ms'), '.0f')} "
            f"| {r.get('bot_socket_drops', 'n/a')} "
            f"| {fmt(r.get('janus_core_busy_pct'), '.0f')}/{fmt(r.get('janus_core_softirq_pct'), '.0f')}, "
            f"{fmt(r.get('generator_core_busy_pct'), '.0f')}/{fmt(r.get('generator_core_softirq_pct'), '.0f')} "
            f"| {r.get('errors')} | {r.get('load_avg')} |"
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", default="8,24,48,71,100,150")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--configs", default="reference,goal,lean")
    parser.add_argument("--nice", type=int, default=-10, help="priority of the runs on a shared machine")
    parser.add_argument("--event-loops", type=int, default=0, help="Janus static event loops (0: per handle)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespace lab)", file=sys.stderr)
        return 2
    sites = [int(s) for s in args.sites.split(",")]
    configs = [c for c in args.configs.split(",") if c]
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()}, {cpu_model()}, "
        f"event_loops {args.event_loops}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    for config in configs:
        for n in sites:
            r = run_point(n, config, args.duration, args.nice, args.event_loops)
            results.append(r)
            print(
                f"{config:9s} {n:4d}: janus {fmt(r.get('janus_cpu_pct'))} %, loss {fmt(r.get('loss_pct'), '.2f')} %, "
                f"gen {fmt(r.get('generator_cpu_pct'))} %, errors {r.get('errors')}",
                flush=True,
            )
            if args.json_out:
                args.json_out.write_text(json.dumps(results, indent=1))
    print()
    print(table(results))
    print()
    for config in configs:
        ok = [r["sites"] for r in results if r["config"] == config and under_budget(r)]
        costs = [r["us_per_packet"] for r in results if r["config"] == config and r.get("us_per_packet")]
        print(
            f"{config}: largest N under 85 % of a core with < 1 % loss: {max(ok) if ok else 'none'}; "
            f"Janus CPU-µs per forwarded packet: {', '.join(f'{c:.1f}' for c in costs)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
