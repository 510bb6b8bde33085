"""The suite's fallback when no PostgreSQL answers on 127.0.0.1:5432: a throwaway cluster works."""

from __future__ import annotations

import os

import psycopg

from giaoban.lab.pg import _throwaway_cluster


def test_throwaway_cluster_starts_answers_and_is_removed() -> None:
    with _throwaway_cluster() as url:
        with psycopg.connect(url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        port = url.rsplit(":", 1)[1].split("/")[0]
    # Stopped: nothing listens on its port any more, and its directory is gone.
    try:
        psycopg.connect(url, connect_timeout=2).close()
        answered = True
    except psycopg.Error:
        answered = False
    assert not answered, f"cluster on port {port} still answers"
    assert not [d for d in os.listdir("/tmp") if d.startswith("gb-pg-")]
