"""What the audit trail costs a large unit import, written one entry at a time or as one batch.

    .venv/bin/python bench/import_units.py [--communes 3321] [--repeat 3] [--db sqlite,postgresql]

The file is the 2025 reformed country: 34 provinces and 3,321 communes (3,355 units) under the root.
Each round imports it into an empty database (SQLite in a temporary file; PostgreSQL: a throwaway
database on 127.0.0.1:5432, as the test suite uses) three ways, in one process:

* ``one by one``: every entry appended by itself (lock the head, read the last hash, insert, flush),
  as imports did before ``AuditLog.record_many``;
* ``batch``: ``record_many``, what imports do now (one head lock, one batch insert);
* ``no audit``: the entries are not written at all (a floor, never used in the product).

The best of ``--repeat`` rounds is printed, with each mode's ratio to ``one by one`` on the same
database; the chain written by both audit modes is verified after every round.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from giaoban.audit.log import Actor, AuditLog, Change
from giaoban.audit.models import AuditEntry
from giaoban.context import Tx
from giaoban.db import Base, Database
from giaoban.migrate import upgrade
from giaoban.models import Base as _all_tables  # noqa: F401  (every table registered)
from giaoban.org import io as org_io
from giaoban.org import units as unit_svc

SECRET = "bench-secret-key-0123456789"


class OneByOne(AuditLog):
    """Every change appended by itself, as imports did before ``record_many``."""

    def record_many(self, session: Session, actor: Actor, changes: Sequence[Change]) -> list[AuditEntry]:
        entries: list[AuditEntry] = []
        for change in changes:
            entries += super().record_many(session, actor, [change])
        return entries


class NoAudit(AuditLog):
    def record_many(self, session: Session, actor: Actor, changes: Sequence[Change]) -> list[AuditEntry]:
        return []


MODES: dict[str, type[AuditLog]] = {"one by one": OneByOne, "batch": AuditLog, "no audit": NoAudit}


def reform_file(communes: int) -> bytes:
    lines = ["code\tname\tkind\tparent"]
    lines += [f"P{p:02d}\tTỉnh ủy số {p}\tprovince\tTW" for p in range(34)]
    lines += [f"X{c:04d}\tĐảng ủy xã Đồng Tâm {c}\tcommune\tP{c % 34:02d}" for c in range(communes)]
    return ("\n".join(lines) + "\n").encode()


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite3"
            upgrade(url)
            yield url
    else:
        from giaoban.lab.pg import postgres_database

        with postgres_database() as url:
            upgrade(url)
            yield url


def empty(db: Database) -> None:
    with db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(text(f'DELETE FROM "{table.name}"'))
    with db.session() as session:
        tx = Tx(session, AuditLog(SECRET), Actor.system("bench"))
        unit_svc.create_unit(
            tx, code="TW", name="Trung ương", kind="central", parent_id=None, effective=date(2017, 1, 1)
        )


def one_round(db: Database, mode: str, data: bytes) -> float:
    empty(db)
    audit = MODES[mode](SECRET)
    with db.session() as session:
        tx = Tx(session, audit, Actor.system("bench"))
        t0 = time.perf_counter()
        report = org_io.import_units(tx, data, "reform.tsv", effective=date(2025, 7, 1))
        session.commit()
        elapsed = time.perf_counter() - t0
    assert report.created == data.count(b"\n") - 1, report.created
    if mode != "no audit":
        with db.session() as session:
            check = AuditLog(SECRET).verify(session)
            assert check.ok and check.checked == report.created + 1, check.problems
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--communes", type=int, default=3321)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    data = reform_file(args.communes)
    rows: list[tuple[Any, ...]] = []
    for kind in args.db.split(","):
        with database(kind) as url:
            db = Database(url)
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                for mode in MODES:  # interleaved, so drift hits every mode alike
                    t = one_round(db, mode, data)
                    best[mode] = min(best.get(mode, t), t)
            db.dispose()
        base = best["one by one"]
        for mode in MODES:
            rows.append((kind, mode, best[mode], best[mode] / base))
    units = data.count(b"\n") - 1
    print(
        f"\nImport of {units} units, best of {args.repeat} (seconds; ratio to 'one by one' on that database)\n"
    )
    print("| database   | audit        | seconds | ratio |\n|------------|--------------|--------:|------:|")
    for kind, mode, seconds, ratio in rows:
        print(f"| {kind:<10} | {mode:<12} | {seconds:7.2f} | {ratio:5.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
