"""Random histories of the unit tree against a simple in-memory model.

The model keeps the accepted actions in the order they were made. The tree "as of" a day is what
you get by replaying, in that order, every action effective on or before that day. After each
action the database must answer every as-of question exactly as the replay does, with consistent
paths. An action the service refuses must leave every answer unchanged; an action it accepts must
not make the replay impossible (a unit under a parent that does not exist then, a cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from giaoban.context import AppContext
from giaoban.errors import DomainError
from giaoban.org import units as svc
from giaoban.org.models import Unit, UnitVersion
from tests.conftest import wipe
from tests.org.helpers import act, check_paths, check_snapshot

DATES = [
    date(2017, 1, 1),
    date(2018, 6, 1),
    date(2019, 1, 1),
    date(2020, 3, 15),
    date(2021, 7, 1),
    date(2023, 1, 1),
    date(2025, 7, 1),
]
# Every date an action can take effect, the day before each, and a day before all of them.
CHECK_DATES = sorted({*DATES, *(d - timedelta(days=1) for d in DATES)})
KINDS = ("province", "district", "commune")
ACTIONS = ("create", "create", "create", "rename", "move", "merge", "split", "close")

# (unit id) -> [name, kind, parent id]
Snapshot = dict[int, list[Any]]


class ImpossibleHistory(AssertionError):
    """The service accepted an action whose replay breaks the tree at some date."""


@dataclass
class Model:
    log: list[tuple[date, tuple[Any, ...]]] = field(default_factory=list)

    def snapshot(self, day: date) -> Snapshot:
        tree: Snapshot = {}
        for effective, action in self.log:
            if effective <= day:
                _replay(tree, action, day)
        return tree


def _children(tree: Snapshot, uid: int) -> list[int]:
    return [c for c, node in tree.items() if node[2] == uid]


def _require(condition: bool, day: date, what: str) -> None:
    if not condition:
        raise ImpossibleHistory(f"as of {day}: {what}")


def _replay(tree: Snapshot, action: tuple[Any, ...], day: date) -> None:
    kind = action[0]
    if kind == "create":
        _, uid, name, unit_kind, parent = action
        _require(parent is None or parent in tree, day, f"{uid} created under missing {parent}")
        tree[uid] = [name, unit_kind, parent]
    elif kind == "rename":
        _, uid, name, unit_kind = action
        _require(uid in tree, day, f"rename of missing {uid}")
        tree[uid][0:2] = [name, unit_kind]
    elif kind == "move":
        _, uid, parent = action
        _require(uid in tree and (parent is None or parent in tree), day, f"move {uid} → {parent}")
        up = parent
        while up is not None:
            _require(up != uid, day, f"cycle moving {uid} under {parent}")
            up = tree[up][2]
        tree[uid][2] = parent
    elif kind == "merge":
        _, sources, target = action
        _require(target in tree and all(s in tree for s in sources), day, f"merge {sources} → {target}")
        for source in sources:
            for child in _children(tree, source):
                tree[child][2] = target
            del tree[source]
    elif kind == "split":
        _, source, parts, keep = action
        _require(source in tree, day, f"split of missing {source}")
        for part_id, name, part_kind, child_ids in parts:
            tree[part_id] = [name, part_kind, tree[source][2]]
            for child in child_ids:
                _require(tree.get(child, [None, None, None])[2] == source, day, f"split child {child}")
                tree[child][2] = part_id
        if not keep:
            _require(not _children(tree, source), day, f"split {source} leaves children behind")
            del tree[source]
    elif kind == "close":
        _, uid = action
        _require(uid in tree and not _children(tree, uid), day, f"close {uid}")
        del tree[uid]


def _db_snapshot(ctx: AppContext, day: date) -> Snapshot:
    with ctx.db.session() as session:
        versions = check_paths(session, day)
        return {uid: [v.name, v.kind, v.parent_id] for uid, v in versions.items()}


def _active(ctx: AppContext) -> list[Unit]:
    with ctx.db.session() as session:
        return list(session.execute(select(Unit).where(Unit.valid_to.is_(None)).order_by(Unit.id)).scalars())


def _pick(items: list[Any], n: int) -> Any:
    return items[n % len(items)]


action_strategy = st.tuples(
    st.sampled_from(ACTIONS),
    st.integers(0, 63),
    st.integers(0, 63),
    st.integers(0, 63),
    # A date, or (beyond the list) the latest date used so far: histories mostly move forward.
    st.integers(0, len(DATES) + 2),
)


def _attempt(ctx: AppContext, model: Model, step: int, spec: tuple[Any, ...]) -> None:
    """Try one action; on success append what it did to the model's log."""
    kind, a, b, c, d = spec
    day = DATES[d] if d < len(DATES) else max((e for e, _ in model.log), default=DATES[0])
    active = _active(ctx)
    ids = [u.id for u in active]
    if kind == "create" or not ids:
        parent = _pick([*ids, None], a)
        unit = act(
            ctx,
            svc.create_unit,
            code=f"U{step}",
            name=f"Đơn vị {step}",
            kind=KINDS[b % 3],
            parent_id=parent,
            effective=day,
        )
        model.log.append((day, ("create", unit.id, unit.name, unit.kind, parent)))
    elif kind == "rename":
        uid = _pick(ids, a)
        new_kind = KINDS[c % 3] if b % 2 else None
        unit = act(ctx, svc.update_unit, uid, name=f"Tên {step}", kind=new_kind, effective=day)
        model.log.append((day, ("rename", uid, unit.name, unit.kind)))
    elif kind == "move":
        uid = _pick(ids, a)
        parent = _pick([*(i for i in ids if i != uid), None], b)
        act(ctx, svc.move_unit, uid, new_parent_id=parent, effective=day)
        if parent != next(u.parent_id for u in active if u.id == uid):  # else nothing happened
            model.log.append((day, ("move", uid, parent)))
    elif kind == "merge":
        sources = sorted({_pick(ids, a), *([_pick(ids, c)] if c % 2 else [])})
        target = _pick([i for i in ids if i not in sources] or ids, b)
        act(ctx, svc.merge_units, source_ids=sources, target_id=target, effective=day)
        model.log.append((day, ("merge", sources, target)))
    elif kind == "split":
        source = _pick(ids, a)
        keep = b % 3 == 0
        children = [u.id for u in active if u.parent_id == source]
        # Child i goes to part bit i of c; when keeping the source, a set bit of b keeps it there.
        shares: list[list[int]] = [[], []]
        for i, child in enumerate(children):
            if keep and (b >> (i + 2)) & 1:
                continue
            shares[(c >> i) & 1].append(child)
        count = 1 if keep and c % 5 == 0 else 2
        if count == 1:
            shares = [shares[0] + shares[1]]
        parts = [
            svc.SplitPart(code=f"U{step}-{n}", name=f"Phần {step}-{n}", child_ids=share)
            for n, share in enumerate(shares)
        ]
        result = act(ctx, svc.split_unit, source, parts=parts, keep_source=keep, effective=day)
        with ctx.db.session() as session:
            made = {
                u.id: u for u in session.execute(select(Unit).where(Unit.id.in_(result.target_ids))).scalars()
            }
        replay = [
            (pid, made[pid].name, made[pid].kind, p.child_ids)
            for pid, p in zip(result.target_ids, parts, strict=True)
        ]
        model.log.append((day, ("split", source, replay, keep)))
    elif kind == "close":
        uid = _pick(ids, a)
        act(ctx, svc.close_unit, uid, effective=day)
        model.log.append((day, ("close", uid)))


def _check(ctx: AppContext, model: Model) -> None:
    for day in CHECK_DATES:
        assert _db_snapshot(ctx, day) == model.snapshot(day), f"as of {day}"
    with ctx.db.session() as session:
        check_snapshot(session)
        # Versions of one unit never overlap and never run backwards.
        rows = session.execute(
            select(UnitVersion).order_by(UnitVersion.unit_id, UnitVersion.valid_from)
        ).scalars()
        last: dict[int, date | None] = {}
        for v in rows:
            assert v.valid_to is None or v.valid_to >= v.valid_from
            if v.unit_id in last:
                assert last[v.unit_id] == v.valid_from, f"gap or overlap in the history of unit {v.unit_id}"
            last[v.unit_id] = v.valid_to


def _run(ctx: AppContext, specs: list[tuple[Any, ...]]) -> None:
    wipe(ctx.db)
    model = Model()
    for step, spec in enumerate(specs):
        before = len(model.log)
        try:
            _attempt(ctx, model, step, spec)
        except DomainError:
            assert len(model.log) == before  # refused: nothing to replay, nothing may have changed
        _check(ctx, model)


def test_random_histories_match_the_model(ctx: AppContext) -> None:
    # Fewer examples on PostgreSQL: the same code, a slower round trip.
    examples = 50 if ctx.db.is_sqlite else 10

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(specs=st.lists(action_strategy, min_size=1, max_size=14))
    def run(specs: list[tuple[Any, ...]]) -> None:
        _run(ctx, specs)

    run()


def test_a_known_tricky_history(ctx: AppContext) -> None:
    """Back-dated actions around a move: each is refused or keeps every date consistent."""
    specs = [
        ("create", 0, 0, 0, 0),  # root, 2017
        ("create", 0, 1, 0, 0),  # child of the root, 2017
        ("create", 0, 1, 0, 4),  # another child, 2021
        ("move", 1, 2, 0, 3),  # first child under the second, 2020: refused (the second is from 2021)
        ("move", 1, 2, 0, 5),  # ... 2023: accepted
        ("close", 2, 0, 0, 2),  # close the second in 2019: refused (it has a child)
        ("merge", 2, 0, 0, 3),  # merge the second into the root in 2020: refused (its child came in 2023)
        ("merge", 2, 0, 0, 6),  # ... in 2025: accepted
        ("split", 0, 1, 2, 6),
    ]
    _run(ctx, specs)
