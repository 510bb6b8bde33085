"""`giaoban loadtest media`: a host + N synthetic sites in one Janus room, measured (see loadrun.py).

The command's options and entry point. Only the standard library (and the light :mod:`giaoban.lab.measure`)
is imported here, so ``--help`` and bad options answer without aiortc; :mod:`giaoban.lab.loadrun` (the
run itself: bots, aiortc) is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from giaoban.lab.measure import log_warnings, run_and_report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `giaoban loadtest media`."""
    parser.add_argument("--sites", type=int, default=8, help="synthetic sites besides the host (default 8)")
    parser.add_argument("--duration", type=float, default=10.0, help="steady-state window in seconds")
    parser.add_argument("--janus", metavar="URL", help="target a running Janus (ws://…) instead of a lab")
    parser.add_argument("--api-secret", help="API secret of --janus")
    parser.add_argument(
        "--janus-pid", type=int, help="with --janus on this machine: pid to read CPU/RSS from"
    )
    parser.add_argument("--local-address", help="with --janus: address the bots gather ICE candidates on")
    parser.add_argument(
        "--wall",
        choices=("paged", "full", "none"),
        default="paged",
        help="host's wall: a page of sites at the low layer (default), every site at full rate, or none",
    )
    parser.add_argument("--page", type=int, default=24, help="sites per wall page (default 24)")
    parser.add_argument("--no-simulcast", action="store_true", help="sites publish one 360p layer only")
    parser.add_argument(
        "--lean",
        action="store_true",
        help="sites without the floor send a muted mic (Opus DTX) and only the low simulcast layer",
    )
    parser.add_argument("--publish-mode", choices=("raw", "aiortc"), default="raw")
    parser.add_argument("--subscribe-mode", choices=("header", "rtp", "decode"), default="header")
    parser.add_argument("--join-concurrency", type=int, default=8)
    parser.add_argument("--event-loops", type=int, default=0, help="Janus static event loops (0: per handle)")
    parser.add_argument("--janus-cpu", type=int, default=0, help="CPU Janus is pinned to (own lab)")
    parser.add_argument("--generator-cpu", type=int, default=1, help="CPU the bots are pinned to")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="own lab: nice value for Janus and the bots (e.g. -10 on a busy shared machine; root)",
    )
    parser.add_argument("--cache-dir", type=Path, help="where the encoded clips are kept")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_cli(args: argparse.Namespace) -> int:
    """Run the load test; exit 0 when it ran without errors, 1 otherwise, 2 when it could not run."""
    from giaoban.lab.loadrun import LoadConfig, format_table, run_load, time_budget

    log_warnings()
    config = LoadConfig(
        sites=args.sites,
        duration=args.duration,
        janus_url=args.janus,
        api_secret=args.api_secret,
        janus_pid=args.janus_pid,
        local_address=args.local_address,
        wall=args.wall,
        page=args.page,
        simulcast=not args.no_simulcast,
        lean=args.lean,
        publish_mode=args.publish_mode,
        subscribe_mode=args.subscribe_mode,
        join_concurrency=args.join_concurrency,
        janus_cpu=args.janus_cpu,
        generator_cpu=args.generator_cpu,
        event_loops=args.event_loops,
        nice=args.nice,
        cache_dir=args.cache_dir,
    )
    if config.sites < 1 or config.duration <= 0:
        print("--sites must be >= 1 and --duration > 0", file=sys.stderr)
        return 2
    if not config.janus_url and os.geteuid() != 0:
        print("without --janus the load test builds a network lab and needs root", file=sys.stderr)
        return 2
    return run_and_report(
        lambda: run_load(config),
        budget=time_budget(config),
        nice=0 if config.janus_url else config.nice,
        generator_cpu=config.generator_cpu,
        as_json=args.json,
        table=format_table,
    )
