"""Janus in a lab network namespace: the namespace and its link, and settings for one more Janus there.

Used by the test fixtures (tests/lab/fixtures.py), the load tests and the benchmarks (bench/). No pytest
here; the fixtures that build a namespace and start a shared Janus stay in tests/lab.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from giaoban.lab.netns import Link, missing_requirements
from giaoban.media.config import JanusSettings, load_janus_settings

# Each Janus of a process gets its own ports, so several can share the namespace.
_ports = itertools.count(0)


def janus_lab_missing() -> str | None:
    """Why Janus cannot run in a lab here; None when it can (root, iproute2, janus)."""
    reason = missing_requirements()
    if reason:
        return reason
    if shutil.which("janus") is None:
        return "janus is not installed (apt-get install janus)"
    return None


@dataclass(slots=True)
class JanusNamespace:
    """The namespace Janus runs in and the link that reaches it from the root namespace."""

    name: str
    link: Link

    @property
    def address(self) -> str:
        """Janus's address (namespace end of the link)."""
        return self.link.addr_b

    @property
    def host_address(self) -> str:
        """The root-namespace end of the link (where test servers listen for Janus, e.g. events)."""
        return self.link.addr_a


class LabJanusSettings(JanusSettings):
    """Settings from keywords only, so a developer's GIAOBAN_JANUS_* env cannot leak into the lab."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def lab_janus_settings(ns: JanusNamespace, data_dir: Path, **overrides: Any) -> JanusSettings:
    """Settings for one more Janus inside ``ns``: unique ports, secrets kept in ``data_dir``."""
    n = next(_ports)
    base: dict[str, Any] = {
        "mode": "local",
        "netns": ns.name,
        "bind_address": ns.address,
        "ws_port": 18000 + 2 * n,
        "admin_port": 18001 + 2 * n,
        "rtp_port_min": 20000 + 1000 * n,
        "rtp_port_max": 20999 + 1000 * n,
        "reclaim_session_timeout": 20,
        "debug_level": 4,
        "restart_backoff_initial": 0.2,
        "start_timeout": 10.0,
    }
    base.update(overrides)
    return load_janus_settings(data_dir, LabJanusSettings(**base))
