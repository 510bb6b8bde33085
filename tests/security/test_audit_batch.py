"""``AuditLog.record_many``: one chained batch per import, still one entry per change, still verified."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select, text

from giaoban.audit.log import Actor, Change
from giaoban.audit.models import AuditEntry
from giaoban.context import AppContext, Tx
from giaoban.org.io import import_sites, import_units
from tests.conftest import Demo


def _tx(session: Any, ctx: AppContext) -> Tx:
    return Tx(session, ctx.audit, Actor.system("batch-tests"))


def _verify(ctx: AppContext) -> list[str]:
    with ctx.db.session() as s:
        return ctx.audit.verify(s, batch=7).problems


def _last_id(ctx: AppContext) -> int:
    with ctx.db.session() as s:
        return int(s.execute(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)).scalar_one())


@contextmanager
def _statements(ctx: AppContext) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", before)


def test_a_batch_extends_the_chain_one_entry_per_change(demo: Demo) -> None:
    ctx = demo.ctx
    start = _last_id(ctx)
    changes = [Change("unit.create", "unit", i, after={"n": i, "tên": "Xã Đồng Tâm"}) for i in range(5)]
    with ctx.db.session() as s:
        entries = ctx.audit.record_many(s, Actor(7, "tochuc-01", "203.0.113.4"), changes)
        assert ctx.audit.record_many(s, Actor.system(), []) == []
    assert [e.id for e in entries] == list(range(start + 1, start + 6))
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert _verify(ctx) == []
    # Entries after a batch chain on from its last one.
    with ctx.db.session() as s:
        _tx(s, ctx).record("site.update", "site", 1, after={"x": 1})
    assert _verify(ctx) == []
    with ctx.db.session() as s:
        rows = (
            s.execute(select(AuditEntry).where(AuditEntry.id > start).order_by(AuditEntry.id)).scalars().all()
        )
        assert [(r.actor, r.ip, r.entity_id) for r in rows[:5]] == [
            ("tochuc-01", "203.0.113.4", str(i)) for i in range(5)
        ]
        assert rows[5].prev_hash == rows[4].hash


def test_tampering_inside_a_batch_is_found(demo: Demo) -> None:
    ctx = demo.ctx
    start = _last_id(ctx)
    with ctx.db.session() as s:
        ctx.audit.record_many(s, Actor.system(), [Change("unit.create", "unit", i) for i in range(4)])
    with ctx.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET entity_id = 'x' WHERE id = :k"), {"k": start + 2})
        conn.execute(text("DELETE FROM audit_log WHERE id = :k"), {"k": start + 3})
    problems = _verify(ctx)
    assert f"entry {start + 2}: content does not match its hash" in problems
    assert f"entries {start + 3}..{start + 3} are missing" in problems


def test_an_import_writes_its_entries_in_one_batch(demo: Demo) -> None:
    """The head is locked once per import (not once per unit), and every unit still has its entry."""
    ctx = demo.ctx
    lines = ["code\tname\tkind\tparent"] + [f"B{i:03d}\tXã thử {i}\tcommune\t01" for i in range(40)]
    start = _last_id(ctx)
    with _statements(ctx) as seen, ctx.db.session() as s:
        report = import_units(_tx(s, ctx), ("\n".join(lines) + "\n").encode(), "b.tsv", with_sites=True)
    assert report.created == 40 and report.sites_created == 40
    head_reads = [q for q in seen if "FROM audit_head" in q]
    assert len(head_reads) == 2  # one batch for the units, one for their sites
    with ctx.db.session() as s:
        actions = s.execute(select(AuditEntry.action).where(AuditEntry.id > start)).scalars().all()
    assert sorted(set(actions)) == ["site.create", "unit.create"] and len(actions) == 80
    with ctx.db.session() as s:
        more = import_sites(_tx(s, ctx), b"code,unit,name\nS1,B001,A\nS2,B002,B\n", "s.csv")
    assert more.created == 2
    assert _verify(ctx) == []
