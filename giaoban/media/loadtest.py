"""`giaoban loadtest media` (placeholder: being built)."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sites", type=int, default=8)


def run_cli(args: argparse.Namespace) -> int:
    raise SystemExit("not implemented yet")
