"""The effective-dated unit tree: every action keeps history, and the tree can be asked "as of" a date.

Runs on SQLite and PostgreSQL (the ``ctx`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from giaoban.context import AppContext
from giaoban.errors import DomainError
from giaoban.org import units as svc
from giaoban.org.models import Site, Unit, UnitLineage, UnitVersion
from giaoban.org.sites import create_site
from giaoban.types import local_today
from tests.conftest import Demo
from tests.org.helpers import act, check_paths, check_snapshot, check_subtrees, kinds_count, tree, unit_id

D2017 = date(2017, 1, 1)
D2020 = date(2020, 1, 1)
D2021 = date(2021, 1, 1)
D2022 = date(2022, 1, 1)
REFORM = date(2025, 7, 1)
DAY_BEFORE_REFORM = date(2024, 12, 31)


def _create(
    ctx: AppContext, code: str, kind: str, parent: str | None, day: date = D2017, name: str = ""
) -> int:
    parent_id = unit_id(ctx, parent) if parent else None
    unit = act(
        ctx,
        svc.create_unit,
        code=code,
        name=name or f"Đơn vị {code}",
        kind=kind,
        parent_id=parent_id,
        effective=day,
    )
    return unit.id


@pytest.fixture
def org(ctx: AppContext) -> AppContext:
    """TW ─ P1 ─ D1 ─ C1 ; P1 ─ D2 ; TW ─ P2 ─ D3 ; TW ─ P3 (all from 2017)."""
    _create(ctx, "TW", "central", None)
    for code in ("P1", "P2", "P3"):
        _create(ctx, code, "province", "TW")
    _create(ctx, "D1", "district", "P1")
    _create(ctx, "D2", "district", "P1")
    _create(ctx, "D3", "district", "P2")
    _create(ctx, "C1", "commune", "D1")
    return ctx


def _refuses(
    expected: str, action: Callable[..., object], ctx: AppContext, /, *args: object, **kwargs: object
) -> None:
    """The action raises a domain error with the ``expected`` code (and, its transaction rolled back, writes nothing)."""
    with pytest.raises(DomainError) as err:
        act(ctx, action, *args, **kwargs)
    assert err.value.code == expected, err.value.message


def _parent(ctx: AppContext, day: date, code: str) -> str | None:
    return tree(ctx, day)[code][2]


# --- create and as-of ------------------------------------------------------------------------


def test_created_units_exist_from_their_effective_date(org: AppContext) -> None:
    _create(org, "D4", "district", "P3", day=D2020)
    assert "D4" not in tree(org, D2020 - timedelta(days=1))
    assert tree(org, D2020)["D4"] == ("Đơn vị D4", "district", "P3")
    assert tree(org, D2017 - timedelta(days=1)) == {}
    assert len(tree(org, D2017)) == 8


def test_create_checks_its_input(org: AppContext) -> None:
    p1 = unit_id(org, "P1")
    _refuses("unit_code_exists", svc.create_unit, org, code="D1", name="x", kind="district", parent_id=p1)
    _refuses("invalid_unit_code", svc.create_unit, org, code=" ", name="x", kind="district", parent_id=p1)
    _refuses(
        "invalid_unit_code", svc.create_unit, org, code="x" * 33, name="x", kind="district", parent_id=p1
    )
    _refuses("invalid_unit_name", svc.create_unit, org, code="N", name="", kind="district", parent_id=p1)
    _refuses(
        "invalid_unit_name", svc.create_unit, org, code="N", name="x" * 301, kind="district", parent_id=p1
    )
    _refuses("invalid_unit_kind", svc.create_unit, org, code="N", name="x", kind="planet", parent_id=p1)
    _refuses("unit_not_found", svc.create_unit, org, code="N", name="x", kind="district", parent_id=999_999)


def test_extra_kinds_are_accepted_when_configured(org: AppContext) -> None:
    kinds = svc.allowed_kinds(["special-zone"])
    unit = act(
        org,
        svc.create_unit,
        code="DK",
        name="Đặc khu",
        kind="special-zone",
        parent_id=unit_id(org, "P1"),
        kinds=kinds,
    )
    assert unit.kind == "special-zone"


def test_names_are_stored_nfc_and_searchable_without_diacritics(org: AppContext) -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Thành ủy Hà Nội")
    _create(org, "HN", "province", "TW", name=nfd)
    assert tree(org, D2017)["HN"][0] == "Thành ủy Hà Nội"
    for q in ("ha noi", "HÀ NỘI", nfd, "HN"):
        assert list(tree(org, local_today(), q=q)) == ["HN"], q


def test_batch_create_links_parents_by_code(org: AppContext) -> None:
    drafts = [
        svc.UnitDraft("N1", "Mới 1", "district", parent_code="P3"),
        svc.UnitDraft("N2", "Mới 2", "commune", parent_code="N1"),
        svc.UnitDraft("N3", "Mới 3", "commune", parent_code="N1"),
        svc.UnitDraft("N4", "Mới 4", "district", parent_id=unit_id(org, "P2")),
    ]
    units = act(org, svc.create_units, drafts, effective=D2020)
    assert [u.code for u in units] == ["N1", "N2", "N3", "N4"]
    t = tree(org, D2020)
    assert (t["N1"][2], t["N2"][2], t["N3"][2], t["N4"][2]) == ("P3", "N1", "N1", "P2")
    with org.db.session() as session:
        check_subtrees(session, D2020)
    # A draft may only name an earlier draft as its parent; codes are unique in the batch too.
    late = [svc.UnitDraft("L2", "x", "commune", parent_code="L1"), svc.UnitDraft("L1", "x", "district")]
    _refuses("parent_order", svc.create_units, org, late)
    twice = [svc.UnitDraft("L1", "x", "district"), svc.UnitDraft("L1", "y", "district")]
    _refuses("unit_code_exists", svc.create_units, org, twice)


# --- rename ------------------------------------------------------------------------------------


def test_rename_keeps_the_old_name_in_history(org: AppContext) -> None:
    p1 = unit_id(org, "P1")
    act(org, svc.update_unit, p1, name="Tỉnh ủy Mới", effective=D2020)
    assert tree(org, D2020 - timedelta(days=1))["P1"][0] == "Đơn vị P1"
    assert tree(org, D2020)["P1"][0] == "Tỉnh ủy Mới"
    with org.db.session() as session:
        history = svc.history(session, p1)
    assert [(v["name"], v["valid_from"], v["valid_to"]) for v in history["versions"]] == [
        ("Đơn vị P1", D2017, D2020),
        ("Tỉnh ủy Mới", D2020, None),
    ]
    assert [e["kind"] for e in history["events"]] == ["create", "rename"]


def test_two_changes_on_one_day_make_one_version(org: AppContext) -> None:
    p1 = unit_id(org, "P1")
    act(org, svc.update_unit, p1, name="Lần 1", effective=D2020)
    act(org, svc.update_unit, p1, name="Lần 2", kind="central-committee", effective=D2020)
    with org.db.session() as session:
        versions = svc.history(session, p1)["versions"]
    assert [(v["name"], v["kind"]) for v in versions] == [
        ("Đơn vị P1", "province"),
        ("Lần 2", "central-committee"),
    ]


def test_unchanged_update_writes_nothing(org: AppContext) -> None:
    p1 = unit_id(org, "P1")
    act(org, svc.update_unit, p1, name="Đơn vị P1", effective=D2020)
    with org.db.session() as session:
        assert len(svc.history(session, p1)["versions"]) == 1


# --- move ------------------------------------------------------------------------------------


def test_move_repaths_the_subtree_from_its_date(org: AppContext) -> None:
    act(org, svc.move_unit, unit_id(org, "D1"), new_parent_id=unit_id(org, "P2"), effective=D2020)
    before, after = tree(org, D2020 - timedelta(days=1)), tree(org, D2020)
    assert before["D1"][2] == "P1" and after["D1"][2] == "P2"
    assert before["C1"][2] == after["C1"][2] == "D1"
    p1, p2 = unit_id(org, "P1"), unit_id(org, "P2")
    with org.db.session() as session:
        for day in (D2017, D2020 - timedelta(days=1), D2020, local_today()):
            check_subtrees(session, day)
        check_snapshot(session)
        p1_path = svc.path_as_of(session, p1, D2017)
        p2_path = svc.path_as_of(session, p2, None)
    # The subtree of P1 as it stood before the move still holds D1 and C1; P2's holds them after.
    assert p1_path is not None and p2_path is not None
    assert set(tree(org, D2017, under_path=p1_path)) == {"P1", "D1", "D2", "C1"}
    assert set(tree(org, D2020, under_path=p1_path)) == {"P1", "D2"}
    assert set(tree(org, D2020, under_path=p2_path)) == {"P2", "D1", "D3", "C1"}


def test_the_root_is_the_only_unit_without_a_parent_and_it_stays_where_it_is(org: AppContext) -> None:
    """One root: no second one by creating, moving, merging or splitting; the root never moves,
    merges, splits or closes; and the database holds the same rule."""
    tw, p1, d1 = unit_id(org, "TW"), unit_id(org, "P1"), unit_id(org, "D1")
    with org.db.session() as session:
        assert svc.root_unit(session) is not None and svc.root_unit(session).id == tw  # type: ignore[union-attr]
        assert svc.root_path(session) == f"/{tw}/"
    before = tree(org, local_today())
    _refuses("second_root", svc.create_unit, org, code="TW2", name="Gốc hai", kind="central", parent_id=None)
    _refuses(
        "second_root",
        svc.create_units,
        org,
        [svc.UnitDraft("A", "A", "province"), svc.UnitDraft("B", "B", "province", parent_code="A")],
    )
    _refuses("second_root", svc.move_unit, org, d1, new_parent_id=None, effective=D2020)
    _refuses("second_root", svc.move_unit, org, p1, new_parent_id=None)
    _refuses("root_fixed", svc.move_unit, org, tw, new_parent_id=p1)
    _refuses("root_fixed", svc.close_unit, org, tw)
    _refuses("root_fixed", svc.merge_units, org, source_ids=[tw], target_id=p1)
    _refuses("root_fixed", svc.merge_units, org, source_ids=[tw], new_target=svc.NewUnit("M", "Mới"))
    _refuses("root_fixed", svc.split_unit, org, tw, parts=[svc.SplitPart("S", "S")], keep_source=True)
    assert tree(org, local_today()) == before
    # Moving the root "to the top", where it is, changes nothing.
    act(org, svc.move_unit, tw, new_parent_id=None)
    assert tree(org, local_today()) == before
    # Merging into the root and renaming it are ordinary changes.
    act(org, svc.update_unit, tw, name="Trung ương Đảng")
    act(org, svc.merge_units, source_ids=[unit_id(org, "P3")], target_id=tw)
    # Behind the service, the database refuses a second unit without a parent too.
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), org.db.session() as session:
        session.execute(Unit.__table__.update().where(Unit.id == p1).values(parent_id=None))


def test_the_first_unit_of_an_empty_tree_is_the_root(ctx: AppContext) -> None:
    _refuses(
        "second_root",
        svc.create_units,
        ctx,
        [svc.UnitDraft("A", "A", "central"), svc.UnitDraft("B", "B", "central")],
    )
    root = _create(ctx, "TW", "central", None)
    with ctx.db.session() as session:
        assert svc.root_path(session) == f"/{root}/"


def test_move_refuses_cycles(org: AppContext) -> None:
    p1, c1 = unit_id(org, "P1"), unit_id(org, "C1")
    _refuses("tree_cycle", svc.move_unit, org, p1, new_parent_id=p1)
    _refuses("tree_cycle", svc.move_unit, org, p1, new_parent_id=c1)
    _refuses("tree_cycle", svc.move_unit, org, unit_id(org, "D1"), new_parent_id=c1)


def test_move_under_a_unit_that_did_not_yet_stand_there_is_refused(org: AppContext) -> None:
    d4 = _create(org, "D4", "district", "P3", day=D2021)
    # D4 was created in 2021: D2 cannot be under it in 2020.
    _refuses(
        "effective_before_parent", svc.move_unit, org, unit_id(org, "D2"), new_parent_id=d4, effective=D2020
    )
    # D3 moved in 2021: moving something under it as of 2020 would hang it under D3's old place.
    act(org, svc.move_unit, unit_id(org, "D3"), new_parent_id=unit_id(org, "P3"), effective=D2021)
    _refuses(
        "effective_before_parent",
        svc.move_unit,
        org,
        unit_id(org, "D2"),
        new_parent_id=unit_id(org, "D3"),
        effective=D2020,
    )
    # A rename does not move a unit: creating under a renamed unit before the rename is fine.
    act(org, svc.update_unit, unit_id(org, "P2"), name="Tên mới", effective=D2021)
    _create(org, "D5", "district", "P2", day=D2020)


def test_move_of_a_unit_whose_subtree_changed_later_is_refused(org: AppContext) -> None:
    act(org, svc.update_unit, unit_id(org, "C1"), name="Xã đổi tên", effective=D2021)
    _refuses(
        "effective_before_history",
        svc.move_unit,
        org,
        unit_id(org, "D1"),
        new_parent_id=unit_id(org, "P2"),
        effective=D2020,
    )
    act(org, svc.move_unit, unit_id(org, "D1"), new_parent_id=unit_id(org, "P2"), effective=D2021)


def test_closed_sub_unit_pins_the_history_of_its_parent(org: AppContext) -> None:
    act(org, svc.close_unit, unit_id(org, "C1"), effective=D2021)
    # D1 cannot have moved in 2020: C1 was still under D1's old path until 2021.
    _refuses(
        "effective_before_history",
        svc.move_unit,
        org,
        unit_id(org, "D1"),
        new_parent_id=unit_id(org, "P2"),
        effective=D2020,
    )
    act(org, svc.move_unit, unit_id(org, "D1"), new_parent_id=unit_id(org, "P2"), effective=D2022)
    with org.db.session() as session:
        for day in (D2020, D2021, D2022):
            check_subtrees(session, day)


# --- subtree ---------------------------------------------------------------------------------


def test_subtree_range_matches_a_walk_of_the_tree(demo: Demo) -> None:
    ctx = demo.ctx
    for province in ("01", "79", "KCQ"):
        for n in range(3):
            _create(ctx, f"{province}-{n}", "district", province, day=D2020)
            _create(ctx, f"{province}-{n}-x", "commune", f"{province}-{n}", day=D2021)
    act(ctx, svc.move_unit, unit_id(ctx, "01-0"), new_parent_id=unit_id(ctx, "79"), effective=D2022)
    with ctx.db.session() as session:
        for day in (D2017, D2020, D2021, D2022):
            check_subtrees(session, day)


def test_subtree_range_separates_ids_sharing_a_prefix(ctx: AppContext) -> None:
    """ "/7/5/" must not take in "/7/50/": the range relies on "/" sorting just before "0".

    Ids are chosen here (not left to the sequence) so the shared prefixes exist on every database.
    """
    tree_ids = {7: None, 5: 7, 50: 7, 51: 7, 500: 5, 5000: 50, 6: 7}
    with ctx.db.session() as session:
        paths: dict[int, str] = {}
        for uid, parent in tree_ids.items():
            path = f"{paths[parent] if parent else '/'}{uid}/"
            paths[uid] = path
            depth = path.count("/") - 2
            fields = {"name": f"U{uid}", "name_key": f"u{uid}", "kind": "district", "parent_id": parent}
            session.add(Unit(id=uid, code=f"U{uid}", path=path, depth=depth, valid_from=D2017, **fields))
            session.flush()
            session.add(UnitVersion(unit_id=uid, path=path, depth=depth, valid_from=D2017, **fields))
        session.flush()
        check_subtrees(session, D2017)

        def under(uid: int) -> set[int]:
            return set(session.execute(select(Unit.id).where(svc.subtree(Unit.path, paths[uid]))).scalars())

        assert under(5) == {5, 500}
        assert under(50) == {50, 5000}
        assert under(7) == set(tree_ids)
        assert set(
            session.execute(
                select(Unit.id).where(svc.in_any_subtree(Unit.path, [paths[5], paths[6]]))
            ).scalars()
        ) == {5, 500, 6}
        assert session.execute(select(Unit.id).where(svc.in_any_subtree(Unit.path, []))).all() == []
        session.rollback()


def test_ancestors_come_from_the_path(org: AppContext) -> None:
    with org.db.session() as session:
        c1 = svc.get_unit(session, unit_id(org, "C1"))
        assert [u.code for u in svc.ancestors(session, c1)] == ["TW", "P1", "D1"]


# --- merge -----------------------------------------------------------------------------------


def test_merge_moves_children_and_sites_and_closes_the_sources(org: AppContext) -> None:
    p1, p2 = unit_id(org, "P1"), unit_id(org, "P2")
    site = act(org, create_site, code="S-P1", unit_id=p1, name="Điểm cầu P1")
    result = act(org, svc.merge_units, source_ids=[p1], target_id=p2, effective=D2020)
    assert (result.closed_ids, result.target_ids, result.moved_children, result.moved_sites) == (
        [p1],
        [p2],
        2,
        1,
    )
    before, after = tree(org, D2020 - timedelta(days=1)), tree(org, D2020)
    assert "P1" in before and "P1" not in after
    assert {c for c, n in after.items() if n[2] == "P2"} == {"D1", "D2", "D3"}
    assert after["C1"][2] == "D1"
    with org.db.session() as session:
        assert session.get(Site, site.id).unit_id == p2  # type: ignore[union-attr]
        p1_unit = session.get(Unit, p1)
        assert p1_unit is not None and p1_unit.valid_to == D2020
        lineage = session.execute(select(UnitLineage)).scalars().all()
        assert [(x.predecessor_id, x.successor_id, x.effective) for x in lineage] == [(p1, p2, D2020)]
        assert svc.history(session, p1)["successors"] == [{"unit_id": p2, "effective": D2020}]
        assert svc.history(session, p2)["predecessors"] == [{"unit_id": p1, "effective": D2020}]
        for day in (D2017, D2020):
            check_subtrees(session, day)
        check_snapshot(session)


def test_merge_into_a_new_unit(org: AppContext) -> None:
    p1, p2 = unit_id(org, "P1"), unit_id(org, "P2")
    new = svc.NewUnit(code="P12", name="Tỉnh ủy hợp nhất")
    result = act(org, svc.merge_units, source_ids=[p1, p2], new_target=new, effective=D2020)
    after = tree(org, D2020)
    assert after["P12"] == ("Tỉnh ủy hợp nhất", "province", "TW")
    assert {c for c, n in after.items() if n[2] == "P12"} == {"D1", "D2", "D3"}
    assert sorted(result.closed_ids) == sorted([p1, p2])
    assert "P12" not in tree(org, D2020 - timedelta(days=1))


def test_merge_with_a_new_name_for_the_target(org: AppContext) -> None:
    act(
        org,
        svc.merge_units,
        source_ids=[unit_id(org, "P1")],
        target_id=unit_id(org, "P2"),
        new_name="Tên sau sáp nhập",
        effective=D2020,
    )
    assert tree(org, D2020)["P2"][0] == "Tên sau sáp nhập"
    assert tree(org, D2017)["P2"][0] == "Đơn vị P2"


def test_merge_refusals(org: AppContext) -> None:
    p1, p2, d1 = unit_id(org, "P1"), unit_id(org, "P2"), unit_id(org, "D1")
    _refuses("merge_target", svc.merge_units, org, source_ids=[p1], target_id=p1)
    _refuses("merge_target", svc.merge_units, org, source_ids=[p1])
    _refuses("merge_nested", svc.merge_units, org, source_ids=[p1, d1], target_id=p2)
    _refuses("tree_cycle", svc.merge_units, org, source_ids=[p1], target_id=d1)
    act(org, svc.close_unit, unit_id(org, "P3"), effective=D2020)
    _refuses("unit_closed", svc.merge_units, org, source_ids=[p1], target_id=unit_id(org, "P3"))
    _refuses("unit_closed", svc.merge_units, org, source_ids=[unit_id(org, "P3")], target_id=p1)


def test_merge_before_a_child_left_is_refused(org: AppContext) -> None:
    act(org, svc.move_unit, unit_id(org, "D2"), new_parent_id=unit_id(org, "P3"), effective=D2021)
    # Closing P1 in 2020 would leave D2 under a dissolved P1 for 2020.
    _refuses(
        "effective_before_history",
        svc.merge_units,
        org,
        source_ids=[unit_id(org, "P1")],
        target_id=unit_id(org, "P2"),
        effective=D2020,
    )
    act(org, svc.merge_units, source_ids=[unit_id(org, "P1")], target_id=unit_id(org, "P2"), effective=D2021)
    with org.db.session() as session:
        for day in (D2020, D2021):
            check_subtrees(session, day)


def test_merge_into_a_target_created_later_is_refused(org: AppContext) -> None:
    _create(org, "P4", "province", "TW", day=D2021)
    _refuses(
        "effective_before_parent",
        svc.merge_units,
        org,
        source_ids=[unit_id(org, "P1")],
        target_id=unit_id(org, "P4"),
        effective=D2020,
    )


def test_merge_reports_roles_left_on_closed_units(demo: Demo) -> None:
    ctx = demo.ctx
    result = act(
        ctx, svc.merge_units, source_ids=[demo.unit_id("02")], target_id=demo.unit_id("08"), effective=REFORM
    )
    assert result.roles_left_on_closed == 1  # the site operator of Hà Giang


# --- split -----------------------------------------------------------------------------------


def test_split_hands_every_child_and_site_to_a_part(org: AppContext) -> None:
    p1, d1, d2 = unit_id(org, "P1"), unit_id(org, "D1"), unit_id(org, "D2")
    site = act(org, create_site, code="S-P1", unit_id=p1, name="Điểm cầu P1")
    parts = [
        svc.SplitPart(code="P1A", name="Phần A", child_ids=[d1], site_ids=[site.id]),
        svc.SplitPart(code="P1B", name="Phần B", child_ids=[d2]),
    ]
    result = act(org, svc.split_unit, p1, parts=parts, effective=D2020)
    assert (result.moved_children, result.moved_sites, result.closed_ids) == (2, 1, [p1])
    before, after = tree(org, D2020 - timedelta(days=1)), tree(org, D2020)
    assert before["D1"][2] == "P1" and after["D1"][2] == "P1A" and after["D2"][2] == "P1B"
    assert after["P1A"] == ("Phần A", "province", "TW")
    assert "P1" not in after and "P1A" not in before
    with org.db.session() as session:
        assert [s["unit_id"] for s in svc.history(session, p1)["successors"]] == result.target_ids
        assert session.get(Site, site.id).unit_id == result.target_ids[0]  # type: ignore[union-attr]
        check_subtrees(session, D2020)
        check_snapshot(session)


def test_split_requires_every_child_and_site_assigned(org: AppContext) -> None:
    p1, d1, d2 = unit_id(org, "P1"), unit_id(org, "D1"), unit_id(org, "D2")
    site = act(org, create_site, code="S-P1", unit_id=p1, name="Điểm cầu P1")
    only_d1 = [
        svc.SplitPart(code="A", name="A", child_ids=[d1], site_ids=[site.id]),
        svc.SplitPart(code="B", name="B"),
    ]
    _refuses("split_unassigned", svc.split_unit, org, p1, parts=only_d1)
    no_site = [
        svc.SplitPart(code="A", name="A", child_ids=[d1]),
        svc.SplitPart(code="B", name="B", child_ids=[d2]),
    ]
    _refuses("split_unassigned", svc.split_unit, org, p1, parts=no_site)
    twice = [
        svc.SplitPart(code="A", name="A", child_ids=[d1, d2]),
        svc.SplitPart(code="B", name="B", child_ids=[d2]),
    ]
    _refuses("split_child", svc.split_unit, org, p1, parts=twice)
    foreign = [
        svc.SplitPart(code="A", name="A", child_ids=[unit_id(org, "D3")]),
        svc.SplitPart(code="B", name="B"),
    ]
    _refuses("split_child", svc.split_unit, org, p1, parts=foreign)
    _refuses(
        "split_parts", svc.split_unit, org, p1, parts=[svc.SplitPart(code="A", name="A", child_ids=[d1, d2])]
    )
    assert "A" not in tree(org, local_today())


def test_split_keeping_the_source_carves_out_a_part(org: AppContext) -> None:
    p1, d2 = unit_id(org, "P1"), unit_id(org, "D2")
    result = act(
        org,
        svc.split_unit,
        p1,
        parts=[svc.SplitPart(code="P1N", name="Tách ra", child_ids=[d2])],
        keep_source=True,
        effective=D2020,
    )
    after = tree(org, D2020)
    assert result.closed_ids == []
    assert after["P1"][2] == "TW" and after["D1"][2] == "P1" and after["D2"][2] == "P1N"
    assert tree(org, D2020 - timedelta(days=1))["D2"][2] == "P1"


# --- close and effective dates ---------------------------------------------------------------


def test_close_needs_an_empty_unit_and_ends_its_history(org: AppContext) -> None:
    _refuses("unit_not_empty", svc.close_unit, org, unit_id(org, "D1"))
    act(org, svc.close_unit, unit_id(org, "C1"), effective=D2020)
    assert "C1" in tree(org, D2020 - timedelta(days=1)) and "C1" not in tree(org, D2020)
    _refuses("unit_closed", svc.close_unit, org, unit_id(org, "C1"))
    _refuses("unit_closed", svc.update_unit, org, unit_id(org, "C1"), name="x")


def test_close_before_a_child_left_is_refused(org: AppContext) -> None:
    act(org, svc.move_unit, unit_id(org, "C1"), new_parent_id=unit_id(org, "D2"), effective=D2021)
    _refuses("effective_before_history", svc.close_unit, org, unit_id(org, "D1"), effective=D2020)
    act(org, svc.close_unit, unit_id(org, "D1"), effective=D2021)


def test_closed_units_are_refused_as_parents(org: AppContext) -> None:
    c1 = unit_id(org, "C1")
    act(org, svc.close_unit, c1, effective=D2020)
    _refuses("unit_closed", svc.create_unit, org, code="X", name="X", kind="grassroots", parent_id=c1)
    _refuses("unit_closed", svc.move_unit, org, unit_id(org, "D2"), new_parent_id=c1)
    _refuses("unit_closed", svc.move_unit, org, c1, new_parent_id=unit_id(org, "D2"))
    _refuses("unit_closed", create_site, org, code="S", unit_id=c1, name="S")


def test_effective_dates_in_the_future_are_refused(org: AppContext) -> None:
    tomorrow = local_today() + timedelta(days=1)
    p1 = unit_id(org, "P1")
    _refuses(
        "effective_in_future",
        svc.create_unit,
        org,
        code="F",
        name="F",
        kind="district",
        parent_id=p1,
        effective=tomorrow,
    )
    _refuses("effective_in_future", svc.update_unit, org, p1, name="F", effective=tomorrow)
    _refuses(
        "effective_in_future", svc.move_unit, org, unit_id(org, "D1"), new_parent_id=None, effective=tomorrow
    )
    _refuses("effective_in_future", svc.close_unit, org, unit_id(org, "C1"), effective=tomorrow)


def test_effective_dates_before_the_history_are_refused(org: AppContext) -> None:
    p1 = unit_id(org, "P1")
    act(org, svc.update_unit, p1, name="Đổi tên", effective=D2021)
    _refuses("effective_before_history", svc.update_unit, org, p1, name="Sớm hơn", effective=D2020)
    _refuses(
        "effective_before_history",
        svc.update_unit,
        org,
        unit_id(org, "D1"),
        name="x",
        effective=date(2016, 1, 1),
    )
    _refuses(
        "effective_before_parent",
        svc.create_unit,
        org,
        code="E",
        name="E",
        kind="district",
        parent_id=p1,
        effective=date(2016, 1, 1),
    )
    _refuses("effective_before_history", svc.close_unit, org, unit_id(org, "C1"), effective=date(2016, 6, 1))


def test_every_change_is_audited(org: AppContext) -> None:
    from giaoban.audit.models import AuditEntry

    act(org, svc.update_unit, unit_id(org, "P1"), name="Đổi", effective=D2020)
    act(org, svc.move_unit, unit_id(org, "D3"), new_parent_id=unit_id(org, "P3"), effective=D2020)
    with org.db.session() as session:
        actions = session.execute(select(AuditEntry.action).order_by(AuditEntry.id)).scalars().all()
        assert actions.count("unit.create") == 8
        assert actions[-2:] == ["unit.update", "unit.move"]
        assert org.audit.verify(session).ok


# --- the 2025 reform on the demo network ------------------------------------------------------


def test_the_2025_reform_on_the_demo(demo: Demo) -> None:
    ctx = demo.ctx
    assert kinds_count(ctx, DAY_BEFORE_REFORM, "province") == 63
    # A district of Hà Giang existed before the reform.
    ha_giang, tuyen_quang = demo.unit_id("02"), demo.unit_id("08")
    district = _create(ctx, "02-BQ", "district", "02", day=D2020, name="Huyện ủy Bắc Quang")
    act(ctx, svc.merge_units, source_ids=[ha_giang], target_id=tuyen_quang, effective=REFORM)
    # Split a central committee in two, keeping its site with the first part.
    kcq = demo.unit_id("KCQ")
    with ctx.db.session() as session:
        kcq_site = session.execute(select(Site.id).where(Site.unit_id == kcq)).scalar_one()
    parts = [
        svc.SplitPart(code="KCQ-A", name="Đảng ủy Khối A", site_ids=[kcq_site]),
        svc.SplitPart(code="KCQ-B", name="Đảng ủy Khối B"),
    ]
    act(ctx, svc.split_unit, kcq, parts=parts, effective=REFORM)

    before, after = tree(ctx, DAY_BEFORE_REFORM), tree(ctx, REFORM)
    assert kinds_count(ctx, DAY_BEFORE_REFORM, "province") == 63
    assert kinds_count(ctx, REFORM, "province") == 62
    assert kinds_count(ctx, REFORM, "central-committee") == 6
    assert before["02-BQ"][2] == "02" and after["02-BQ"][2] == "08"
    assert "02" in before and "02" not in after and "KCQ" not in after
    assert len(before) == 72 and len(after) == 72  # 71 + the district; −02 −KCQ +2 parts
    with ctx.db.session() as session:
        assert session.execute(select(Site.unit_id).where(Site.code == "02")).scalar_one() == tuyen_quang
        for day in (DAY_BEFORE_REFORM, REFORM, local_today()):
            check_subtrees(session, day)
        check_snapshot(session)
        assert svc.history(session, district)["versions"][-1]["parent_id"] == tuyen_quang
    # Today's lists follow the reform; the tree as of 2017 is untouched.
    assert kinds_count(ctx, local_today(), "province") == 62
    assert kinds_count(ctx, D2017, "province") == 63


def test_subtree_of_a_unit_as_of_a_date_uses_its_path_then(org: AppContext) -> None:
    d1 = unit_id(org, "D1")
    act(org, svc.move_unit, d1, new_parent_id=unit_id(org, "P2"), effective=D2020)
    with org.db.session() as session:
        then = svc.path_as_of(session, d1, D2017)
        now = svc.path_as_of(session, d1, None)
        assert then != now and then is not None and now is not None
        assert svc.path_as_of(session, d1, date(2016, 1, 1)) is None
    assert set(tree(org, D2017, under_path=then)) == {"D1", "C1"}
    assert set(tree(org, D2017, under_path=now)) == set()


def test_child_counts_follow_the_date(org: AppContext) -> None:
    p1, p2 = unit_id(org, "P1"), unit_id(org, "P2")
    act(org, svc.move_unit, unit_id(org, "D1"), new_parent_id=p2, effective=D2020)
    with org.db.session() as session:
        assert svc.child_counts(session, [p1, p2], D2017) == {p1: 2, p2: 1}
        assert svc.child_counts(session, [p1, p2], D2020) == {p1: 1, p2: 2}


def test_check_paths_helper_sees_the_whole_tree(org: AppContext) -> None:
    with org.db.session() as session:
        assert len(check_paths(session, D2017)) == 8


def test_the_single_root_migration_refuses_a_database_with_several_roots(tmp_path: Path) -> None:
    """0005 adds the one-root index; a database an older version left with several units at the
    top is not changed but named, for an administrator to decide where each belongs."""
    from sqlalchemy import create_engine, text

    from giaoban.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0004")
    engine = create_engine(url)
    with engine.begin() as conn:
        for uid, code in ((1, "TW"), (2, "KHAC")):
            conn.execute(
                text(
                    "INSERT INTO units (id, code, name, name_key, kind, parent_id, path, depth, valid_from,"
                    " created_at, updated_at) VALUES (:id, :code, :code, :code, 'central', NULL, :path, 0,"
                    " '2017-01-01', '2017-01-01', '2017-01-01')"
                ),
                {"id": uid, "code": code, "path": f"/{uid}/"},
            )
    with pytest.raises(RuntimeError, match="TW, KHAC"):
        upgrade(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE units SET parent_id = 1, path = '/1/2/', depth = 1 WHERE id = 2"))
    upgrade(url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert version >= "0005"
