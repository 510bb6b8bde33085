"""Shared fixtures. Every database test runs twice: on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import text

from giaoban.audit.log import Actor, AuditLog
from giaoban.context import AppContext, Tx
from giaoban.db import Base, Database
from giaoban.lab.pg import postgres_database
from giaoban.migrate import upgrade
from giaoban.models import Base as _all_tables  # noqa: F401  (every table registered for wipe())
from giaoban.settings import Settings

DEMO_PASSWORD = "Demo-password-2017"

# Network-namespace lab and Janus fixtures, for every test that needs a real Janus.
pytest_plugins = ["tests.lab.fixtures"]


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing() -> Iterator[None]:
    """Cheap argon2 parameters in tests only: the demo creates ~80 users per test."""
    from giaoban.org import accounts

    real = accounts._hasher
    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    accounts._hasher = real


@pytest.fixture(scope="session")
def _pg_url() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def _sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"_{'pg' if request.param == 'postgresql' else 'sqlite'}_url"))


def wipe(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    # DELETE, not TRUNCATE: on tables this small it is several times faster on PostgreSQL.
    with db.engine.begin() as conn:
        for name in tables:
            conn.execute(text(f'DELETE FROM "{name}"'))


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        database_url=db_url,
        secret_key="test-secret-key-0123456789",
        demo_password=DEMO_PASSWORD,
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    wipe(db)
    context = AppContext(settings=settings, db=db, audit=AuditLog(settings.resolved_secret_key))
    yield context
    db.dispose()


@pytest.fixture
def tx(ctx: AppContext) -> Iterator[Tx]:
    """A transaction as the system actor, committed at the end of the test body."""
    with ctx.db.session() as session:
        yield Tx(session, ctx.audit, Actor.system("test"))


@dataclass
class Demo:
    ctx: AppContext
    logins: dict[str, str]  # username -> role

    def unit_id(self, code: str) -> int:
        from giaoban.org.units import get_unit_by_code

        with self.ctx.db.session() as session:
            unit = get_unit_by_code(session, code)
            assert unit is not None
            return unit.id


_DEMO_CACHE: dict[str, tuple[dict[str, list[dict[str, object]]], dict[str, str]]] = {}


def _dump(db: Database) -> dict[str, list[dict[str, object]]]:
    with db.engine.connect() as conn:
        return {
            t.name: [dict(r._mapping) for r in conn.execute(t.select().order_by(*t.primary_key.columns))]
            for t in Base.metadata.sorted_tables
        }


def _restore(db: Database, rows: dict[str, list[dict[str, object]]]) -> None:
    with db.engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            if rows.get(table.name):
                conn.execute(table.insert(), rows[table.name])
        if not db.is_sqlite:
            for table in Base.metadata.sorted_tables:
                if "id" in table.columns:
                    conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false) "
                            f"WHERE pg_get_serial_sequence('{table.name}', 'id') IS NOT NULL"
                        )
                    )


@pytest.fixture
def demo(ctx: AppContext) -> Demo:
    """The demo org and logins. Loaded through the real import path once per database, then
    restored row for row into each test's empty database (the same rows, ids and audit chain)."""
    from giaoban.demo import load_demo

    cached = _DEMO_CACHE.get(ctx.db.url)
    if cached is None:
        logins = {x.username: x.role for x in load_demo(ctx, password=DEMO_PASSWORD)}
        _DEMO_CACHE[ctx.db.url] = (_dump(ctx.db), logins)
    else:
        _restore(ctx.db, cached[0])
        logins = cached[1]
    return Demo(ctx, dict(logins))


@pytest.fixture
def app(ctx: AppContext):  # type: ignore[no-untyped-def]
    from giaoban.web.app import create_app

    return create_app(ctx)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c


def login(client: TestClient, username: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
    """Bearer headers for ``username``."""
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


# In CI every real part must be there: a Janus, browser or PostgreSQL test that skips there fails.
_REAL_PART_MARKERS = ("janus", "browser")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and any(item.get_closest_marker(m) for m in _REAL_PART_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where real parts are required: {report.longrepr}"
