"""The app with a local coturn for a site that reaches the server only through TURN (tests/e2e/test_turn.py).

Topology (every address is on a link the lab made; the root namespace does not forward):

    Janus ns  J.b ──── J.a  root: app (events), coturn relay-ip
    site ns   S.a ──── S.b  root: app (pages, WebSocket), coturn listening-ip
                            root: app on 127.0.0.1 (the host site's and the chair's browsers)

The site namespace (``site_factory(janus=None)`` in tests/lab/fixtures.py) has routes only to its own
/24: Janus's media address J.b is unreachable from it, so its media can only flow browser → coturn (S.b)
→ relay (J.a) → Janus (J.b).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from giaoban.context import AppContext
from giaoban.lab.serve import serve_with_media
from giaoban.media.turn import TurnService
from tests.lab.fixtures import JanusNamespace, SiteNamespace
from tests.lab.turn import lab_turn_settings

TURN_PORT = 34790


@dataclass
class TurnServed:
    local_base: str  # http://127.0.0.1:PORT (host site, console)
    site_base: str  # http://S.b:PORT (the TURN-only site)
    app: Any
    turn: TurnService


@contextmanager
def serve_with_turn(
    ctx: AppContext, janus: JanusNamespace, site: SiteNamespace, data_dir: Path
) -> Iterator[TurnServed]:
    """The app (never on 0.0.0.0) with Janus in ``janus`` and a local coturn for ``site``."""
    settings = lab_turn_settings(
        data_dir / "turn",
        listening_ip=site.app_address,
        relay_ip=janus.host_address,
        peers=[janus.address],
        port=TURN_PORT,
        relay_ports=(52000, 52199),
        credential_ttl=3600,
    )
    turn = TurnService(settings, data_dir / "turn")
    with serve_with_media(
        ctx, janus, data_dir / "janus", site_hosts=(site.app_address,), turn=turn
    ) as served:
        yield TurnServed(served.base, served.site_bases[site.app_address], served.app, turn)
