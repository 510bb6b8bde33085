"""`giaoban loadtest media`: a host + N synthetic sites in one Janus room, measured (see loadrun.py).

cli.py imports this module when it builds its parser, so only the standard library is imported here;
aiortc and the bots are imported when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-len(ordered) * pct // 100)) - 1))
    return ordered[rank]


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


def log_warnings(fmt: str | None = None) -> None:
    """A load test's logging: warnings and errors on stderr; aioice's and aiortc's errors only."""
    if fmt:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=fmt)
    else:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("aioice").setLevel(logging.ERROR)
    logging.getLogger("aiortc").setLevel(logging.ERROR)


def run_cli(args: argparse.Namespace) -> int:
    """Run the load test; exit 0 when it ran without errors, 1 otherwise, 2 when it could not run."""
    from giaoban.media.loadrun import LoadConfig, format_table, run_load, time_budget

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


class Report(Protocol):
    """What a load run returns: its error count and its figures as JSON."""

    errors: int

    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Report)


def run_and_report(
    main: Callable[[], Awaitable[R]],
    *,
    budget: float,
    nice: int,
    generator_cpu: int,
    as_json: bool,
    table: Callable[[R], str],
) -> int:
    """Run a load test's coroutine within ``budget`` seconds and print its result (a table, or one JSON
    object); the exit code of ``giaoban loadtest …``: 0 without errors, 1 with errors or out of time,
    2 when it could not run, 130 when interrupted.

    ``nice`` (when not 0) is applied to this process and its session, so the lab processes it starts
    inherit it; the generator (this process) runs on ``generator_cpu`` when the machine has several."""
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        # With sched_autogroup, nice only ranks processes inside one session: set the session's too.
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(nice))
    previous = None
    if (os.cpu_count() or 1) > 1:
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {generator_cpu})

    async def bounded() -> R:
        return await asyncio.wait_for(main(), budget)

    try:
        result = asyncio.run(bounded())
    except TimeoutError:
        print(f"load test did not finish within {budget:.0f} s", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("load test interrupted; its lab was torn down", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as exc:
        print(f"load test failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print(table(result))
    return 0 if result.errors == 0 else 1
