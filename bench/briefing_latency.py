"""Floor grant latency in a live briefing (issue 4), through our own signalling (run on demand as root).

    .venv/bin/python bench/briefing_latency.py [--sites 71,30] [--grants 50] [--runs 2] [--json-out FILE]

Each point is one ``giaoban loadtest briefing --json`` run in a fresh process: its own namespace lab,
Janus pinned to CPU 0, the real app as a separate ``giaoban serve`` process, the chair's console tab,
the host and the site bots (raw RTP publishers, header-counting subscribers) on CPU 1, all through
our WebSocket. The site counts alternate within a round (71, 30, 71, 30, …) so that the ratio between
them is measured under the same machine load.

For each grant (``floor.request`` by the next bot, ``floor.grant`` by the console, revoked afterwards),
from sending ``floor.grant``:

* ack — the server's ack arrives at the console;
* unmuted — first RTP of the holder's audio on a speaker slot at any other site (Janus forwards it);
* switched — every other site has received the holder's audio on its speaker slot (the goal figure:
  p95 ≤ 150 ms with host + 70 sites).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_point(sites: int, grants: int, nice: int) -> dict[str, Any]:
    duration = max(30.0, grants * 3.0)  # about 3 s per turn: grant, hear, revoke, silence
    argv = [sys.executable, "-m", "giaoban.cli", "loadtest", "briefing", "--sites", str(sites)]
    argv += ["--grants", str(grants), "--duration", str(duration), "--nice", str(nice), "--json"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=1800, check=False)
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {"sites": sites, "errors": -1, "error_messages": [proc.stderr.strip()[-400:]]}
    result["run_s"] = round(time.monotonic() - t0, 1)
    result["load_end"] = Path("/proc/loadavg").read_text().split()[0]
    return result


def fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| sites | grants measured | ack p50/p95 ms | unmuted p50/p95 ms | switched p50/p95 ms "
        "| app CPU % steady | Janus CPU % | errors | load avg (start…end) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        load = r.get("load_average") or []
        rows.append(
            f"| {r.get('sites')} | {r.get('grants_measured', 0)}/{r.get('grants_requested', 0)} "
            f"| {fmt(r.get('grant_ack_p50_ms'))}/{fmt(r.get('grant_ack_p95_ms'))} "
            f"| {fmt(r.get('grant_unmuted_p50_ms'))}/{fmt(r.get('grant_unmuted_p95_ms'))} "
            f"| {fmt(r.get('grant_p50_ms'))}/{fmt(r.get('grant_p95_ms'))} "
            f"| {r.get('app_cpu_steady_pct')} | {r.get('janus_cpu_pct')} | {r.get('errors')} "
            f"| {load[0] if load else '?'}…{r.get('load_end')} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", default="71,30", help="site counts (host included), alternated")
    parser.add_argument("--grants", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2, help="rounds over the site counts")
    parser.add_argument("--nice", type=int, default=-10, help="priority of the runs on a shared machine")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (it builds a network namespace lab)", file=sys.stderr)
        return 2
    counts = [int(s) for s in args.sites.split(",") if s.strip()]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, nproc {os.cpu_count()}, grants {args.grants}", flush=True)
    results: list[dict[str, Any]] = []
    for _ in range(args.runs):
        for sites in counts:
            r = run_point(sites, args.grants, args.nice)
            results.append(r)
            print(
                f"{sites:4d} sites: switched p95 {fmt(r.get('grant_p95_ms'))} ms, "
                f"errors {r.get('errors')} ({r['run_s']} s)",
                flush=True,
            )
    print()
    print(table(results))
    if len(counts) > 1:
        for i in range(0, len(results) - len(counts) + 1, len(counts)):
            big, small = results[i], results[i + len(counts) - 1]
            if big.get("grant_p95_ms") and small.get("grant_p95_ms"):
                ratio = big["grant_p95_ms"] / small["grant_p95_ms"]
                print(f"switched p95 ratio {big['sites']}/{small['sites']} sites, same round: {ratio:.2f}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0 if all(r.get("errors") == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
