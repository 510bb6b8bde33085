"""The one order in which a meeting's sites are listed: every page, API list and WebSocket roster.

``site_order`` — the host site ("điểm cầu chính") first, then by site code in natural order
("01" < "02" < "10" < "TW"; digits compare as numbers, not as text), the site id breaking ties.
Agenda items name a presenter as free text, not a site, so there is no speaking order to follow.

``wall_order`` — the chair's wall (the console's pages of video tiles): the host, then the sites
holding the floor, then the other sites sending a picture, then the rest; each group in
``site_order``. So the connected sites fill the first page instead of being scattered over three.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

_CHUNKS = re.compile(r"(\d+)")


def code_key(code: str) -> tuple[tuple[int, int, str], ...]:
    """Natural sort key of a code: numeric chunks by value, text chunks case-insensitively, and
    every number before any text ("01" < "2" < "10" < "TW")."""
    key: list[tuple[int, int, str]] = []
    for i, chunk in enumerate(_CHUNKS.split(code.strip())):
        if not chunk:
            continue
        if i % 2:  # a run of digits
            key.append((0, int(chunk), chunk))
        else:
            key.append((1, 0, chunk.casefold()))
    return tuple(key)


def site_order(
    items: Iterable[T],
    *,
    code: Callable[[T], str],
    site_id: Callable[[T], int],
    host_site_id: int | None = None,
) -> list[T]:
    """``items`` (anything naming a site) in the meeting's order: the host first, then by code."""
    return sorted(items, key=lambda x: (site_id(x) != host_site_id, code_key(code(x)), site_id(x)))


def order_ids(codes: dict[int, str], host_site_id: int | None = None) -> list[int]:
    """Site ids (``{id: code}``) in :func:`site_order`."""
    return site_order(codes, code=lambda i: codes[i], site_id=lambda i: i, host_site_id=host_site_id)


def wall_order(
    order: Sequence[int],
    *,
    host_site_id: int | None,
    speaking: Collection[int] = (),
    live: Collection[int] = (),
) -> list[int]:
    """``order`` (already in :func:`site_order`) for the wall: host, floor holders, sites sending a
    picture (``live``), then the others — each group keeping ``order``."""

    def rank(site: int) -> int:
        if site == host_site_id:
            return 0
        if site in speaking:
            return 1
        return 2 if site in live else 3

    return sorted(order, key=rank)  # sorted() is stable: each group keeps the site order
