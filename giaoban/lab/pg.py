"""A real PostgreSQL for the suite: the one at 127.0.0.1:5432 (as in CI), or a throwaway one.

The suite never skips PostgreSQL. ``GIAOBAN_TEST_PG_URL`` names a server explicitly; otherwise the
server on 127.0.0.1:5432 (database ``test``, trust auth) is used when it answers; otherwise a
private cluster is initialised from Debian's ``postgresql`` package in a temporary directory and
stopped afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _throwaway_cluster() -> Iterator[str]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        raise RuntimeError(
            "No PostgreSQL server found: install Debian's 'postgresql' package (make test does)."
        )
    bindir = os.path.dirname(bins[-1])
    root = tempfile.mkdtemp(prefix="gb-pg-")
    datadir = os.path.join(root, "data")
    port = _free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, f"{bindir}/initdb", "-D", datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [*as_postgres, f"{bindir}/postgres", "-D", datadir, "-p", str(port), "-h", "127.0.0.1", "-k", root],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 30
        while not _answers(url):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("throwaway PostgreSQL did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database for this test run (SQLAlchemy URL); dropped afterwards."""
    explicit = os.environ.get("GIAOBAN_TEST_PG_URL")
    with _server(explicit) as admin_url:
        name = f"gb_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = admin_url.rsplit("/", 1)[0]
        try:
            yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _server(explicit: str | None) -> Iterator[str]:
    if explicit:
        yield explicit
    elif _answers(DEFAULT_ADMIN_URL):
        yield DEFAULT_ADMIN_URL
    else:
        with _throwaway_cluster() as url:
            yield url
