"""TURN settings for a coturn in the lab (tests/media/test_turn_coturn.py, tests/e2e/test_turn.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from giaoban.media.turn import TurnSettings, load_turn_settings


def lab_turn_settings(
    data_dir: Path,
    *,
    listening_ip: str,
    peers: list[str],
    port: int,
    relay_ports: tuple[int, int],
    **overrides: Any,
) -> TurnSettings:
    """A local coturn on ``listening_ip:port`` (TLS port ``port + 1``, unused without a certificate),
    relaying from ``relay_ports`` to ``peers`` only; its shared secret kept in ``data_dir``."""
    return load_turn_settings(
        data_dir,
        TurnSettings(
            mode="local",
            listening_ip=listening_ip,
            port=port,
            tls_port=port + 1,
            relay_port_min=relay_ports[0],
            relay_port_max=relay_ports[1],
            peer_addresses=peers,
            **overrides,
        ),
    )
