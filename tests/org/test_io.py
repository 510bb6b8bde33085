"""Import and export of units and sites: files in every format, bad files, the API and the CLI.

A rejected file writes nothing (no unit, version, event, site or audit entry) and names every bad
row by its line in the file. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from giaoban import tabular
from giaoban.context import AppContext
from giaoban.demo import DEMO_TSV
from giaoban.errors import DomainError
from giaoban.org import io as org_io
from giaoban.org import sites as site_svc
from giaoban.org import units as unit_svc
from giaoban.org.io import ImportRejected, import_sites, import_units
from giaoban.org.models import Site, Unit
from giaoban.types import local_today
from tests.conftest import DEMO_PASSWORD, Demo, login, wipe
from tests.org.helpers import act, check_subtrees, kinds_count, row_counts, tree, unit_id

D2017 = date(2017, 1, 1)
HEADER = "code\tname\tkind\tparent\n"


def tsv(*lines: str, header: str = HEADER) -> bytes:
    return (header + "".join(line + "\n" for line in lines)).encode()


def xlsx(rows: list[list[Any]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def rejected(
    ctx: AppContext, action: Callable[..., Any], data: bytes, filename: str, **kwargs: Any
) -> list[dict[str, Any]]:
    """Run an import that must be rejected; check nothing was written; return its row errors."""
    before = row_counts(ctx)
    with pytest.raises(ImportRejected) as err:
        act(ctx, action, data, filename, **kwargs)
    assert row_counts(ctx) == before
    assert err.value.status == 422 and err.value.code == "import_rejected"
    details: list[dict[str, Any]] = err.value.details
    assert details and all(
        {"row", "code", "message"} <= set(d) <= {"row", "code", "message", "column"} and d["message"]
        for d in details
    )
    return details


def errors_of(details: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(d["row"], d["code"]) for d in details]


@pytest.fixture
def root(ctx: AppContext) -> AppContext:
    """A database holding only the top unit TW (from 2017)."""
    act(ctx, import_units, tsv("TW\tTrung ương\tcentral\t"), "root.tsv", effective=D2017)
    return ctx


# --- the demo file ------------------------------------------------------------------------------


def test_demo_file_imports_71_units_and_sites(ctx: AppContext) -> None:
    report = act(ctx, import_units, DEMO_TSV.read_bytes(), DEMO_TSV.name, effective=D2017, with_sites=True)
    assert (report.rows, report.created, report.sites_created) == (71, 71, 71)
    assert kinds_count(ctx, local_today(), "province") == 63
    t = tree(ctx, local_today())
    assert len(t) == 71
    assert t["TW"][2] is None and all(parent == "TW" for code, (_, _, parent) in t.items() if code != "TW")
    assert t["01"] == ("Thành ủy Hà Nội", "province", "TW")
    with ctx.db.session() as session:
        assert len(session.execute(select(Site)).all()) == 71
        check_subtrees(session, local_today())
        assert ctx.audit.verify(session).ok


def test_demo_fixture_goes_through_the_same_import(demo: Demo) -> None:
    counts = row_counts(demo.ctx)
    assert (counts["units"], counts["sites"], counts["unit_versions"]) == (71, 71, 71)


def test_dry_run_checks_everything_and_writes_nothing(ctx: AppContext) -> None:
    before = row_counts(ctx)
    report = act(ctx, import_units, DEMO_TSV.read_bytes(), DEMO_TSV.name, with_sites=True, dry_run=True)
    assert (report.rows, report.created, report.sites_created, report.dry_run) == (71, 71, 71, True)
    assert row_counts(ctx) == before


# --- broken rows ----------------------------------------------------------------------------------


def test_broken_rows_are_each_reported_by_line(root: AppContext) -> None:
    data = tsv(
        "P1\tTỉnh 1\tprovince\tTW",  # line 2: fine
        "P2\t\tprovince\tTW",  # 3: no name
        "P3\tTỉnh 3\tplanet\tTW",  # 4: bad kind
        f"{'X' * 33}\tDài\tprovince\tTW",  # 5: code too long
        f"P5\t{'T' * 301}\tprovince\tTW",  # 6: name too long
        "\tKhông mã\tprovince\tTW",  # 7: no code
        "P7\tTỉnh 7\t\tTW",  # 8: no kind
    )
    details = rejected(root, import_units, data, "bad.tsv")
    assert errors_of(details) == [
        (3, "invalid_unit_name"),
        (4, "invalid_unit_kind"),
        (5, "invalid_unit_code"),
        (6, "invalid_unit_name"),
        (7, "invalid_unit_code"),
        (8, "invalid_unit_kind"),
    ]


def test_a_row_with_several_problems_gets_each(root: AppContext) -> None:
    details = rejected(root, import_units, tsv("\t\tplanet\tTW"), "bad.tsv")
    assert sorted(errors_of(details)) == [
        (2, "invalid_unit_code"),
        (2, "invalid_unit_kind"),
        (2, "invalid_unit_name"),
    ]


def test_duplicate_codes_in_the_file_and_in_the_database(root: AppContext) -> None:
    data = tsv(
        "P1\tTỉnh 1\tprovince\tTW",
        "P1\tTỉnh 1 lần nữa\tprovince\tTW",  # 3: repeats line 2
        "TW\tTrung ương 2\tcentral\t",  # 4: already in the database
        "P1\tLần ba\tplanet\tTW",  # 5: repeats line 2 and a bad kind
    )
    details = rejected(root, import_units, data, "dup.tsv")
    assert errors_of(details) == [
        (3, "duplicate_code"),
        (4, "unit_code_exists"),
        (5, "duplicate_code"),
        (5, "invalid_unit_kind"),
    ]
    assert "dòng 2" in details[0]["message"]


def test_unknown_and_closed_parents(root: AppContext) -> None:
    act(root, import_units, tsv("OLD\tĐã giải thể\tprovince\tTW"), "x.tsv", effective=D2017)
    act(root, unit_svc.close_unit, unit_id(root, "OLD"), effective=date(2020, 1, 1))
    data = tsv("A\tA\tdistrict\tNOPE", "B\tB\tdistrict\tOLD", "C\tC\tcommune\tA")
    details = rejected(root, import_units, data, "x.tsv")
    # C's only fault is its parent row: fixing A fixes C, so C is not reported.
    assert errors_of(details) == [(2, "unknown_parent"), (3, "unit_closed")]


def test_children_of_a_bad_row_are_not_blamed(root: AppContext) -> None:
    details = rejected(root, import_units, tsv("A\tA\tplanet\tTW", "B\tB\tcommune\tA"), "x.tsv")
    assert errors_of(details) == [(2, "invalid_unit_kind")]


def test_cycles_are_reported_on_every_row_of_the_cycle(root: AppContext) -> None:
    data = tsv(
        "A\tA\tdistrict\tB",  # 2 ┐ a → b → a
        "B\tB\tdistrict\tA",  # 3 ┘
        "S\tS\tdistrict\tS",  # 4: its own parent
        "X\tX\tdistrict\tY",  # 5 ┐ x → y → z → x
        "Y\tY\tdistrict\tZ",  # 6 │
        "Z\tZ\tdistrict\tX",  # 7 ┘
        "T\tT\tcommune\tX",  # 8: hangs off the cycle, not on it
        "OK\tOK\tdistrict\tTW",  # 9: fine
    )
    details = rejected(root, import_units, data, "cycle.tsv")
    assert errors_of(details) == [
        (2, "cycle"),
        (3, "cycle"),
        (4, "cycle"),
        (5, "cycle"),
        (6, "cycle"),
        (7, "cycle"),
    ]
    assert "chính nó" in details[2]["message"]
    assert "X → Y → Z → X" in details[3]["message"]


def test_a_deep_chain_imports_without_recursion(root: AppContext) -> None:
    depth = unit_svc.MAX_DEPTH
    # Listed children first, so the file's order is the reverse of the creation order.
    lines = [f"L{i}\tCấp {i}\tgrassroots\t{f'L{i - 1}' if i > 1 else 'TW'}" for i in range(depth, 0, -1)]
    report = act(root, import_units, tsv(*lines), "chain.tsv")
    assert report.created == depth
    with root.db.session() as session:
        deepest = unit_svc.get_unit_by_code(session, f"L{depth}")
        assert deepest is not None and deepest.depth == depth
        check_subtrees(session, local_today())


def test_too_deep_trees_are_refused_row_by_row(root: AppContext) -> None:
    n = 3000  # far deeper than Python's recursion limit, too
    lines = [f"L{i}\tCấp {i}\tgrassroots\t{f'L{i - 1}' if i > 1 else 'TW'}" for i in range(1, n + 1)]
    details = rejected(root, import_units, tsv(*lines), "chain.tsv")
    too_deep = [d for d in details if d["code"] == "tree_too_deep"]
    assert too_deep[0]["row"] == unit_svc.MAX_DEPTH + 2  # L(MAX_DEPTH + 1) is one level too deep
    assert len(details) == org_io.MAX_REPORTED


def test_blank_lines_are_skipped_and_lines_still_counted(root: AppContext) -> None:
    data = b"\n" + tsv("", "A\tA\tdistrict\tTW", "\t\t\t", "B\t\tdistrict\tTW", "")
    details = rejected(root, import_units, data, "blank.tsv")
    assert errors_of(details) == [(6, "invalid_unit_name")]
    report = act(root, import_units, b"\n" + tsv("", "A\tA\tdistrict\tTW", "\t\t\t", ""), "blank.tsv")
    assert (report.rows, report.created) == (1, 1)


def test_header_problems(root: AppContext) -> None:
    details = rejected(root, import_units, b"code\tname\nA\tA\n", "x.tsv")
    assert errors_of(details) == [(1, "missing_column")]
    assert errors_of(rejected(root, import_units, b"", "x.tsv")) == [(0, "empty")]
    assert errors_of(rejected(root, import_units, b"\n\n \n", "x.tsv")) == [(0, "empty")]
    assert errors_of(rejected(root, import_units, b"A,B\n", "x.pdf")) == [(0, "unsupported_format")]
    assert errors_of(rejected(root, import_units, b"A,B\n", "noextension")) == [(0, "unsupported_format")]


def test_header_only_file_creates_nothing(root: AppContext) -> None:
    report = act(root, import_units, tsv(), "x.tsv")
    assert (report.rows, report.created) == (0, 0)


def test_effective_date_checks(root: AppContext) -> None:
    act(root, import_units, tsv("LATE\tMới\tprovince\tTW"), "x.tsv", effective=date(2022, 1, 1))
    details = rejected(root, import_units, tsv("A\tA\tdistrict\tLATE"), "x.tsv", effective=date(2020, 1, 1))
    assert errors_of(details) == [(2, "effective_before_parent")]
    before = row_counts(root)
    with pytest.raises(DomainError) as err:
        act(
            root,
            import_units,
            tsv("A\tA\tdistrict\tTW"),
            "x.tsv",
            effective=date(local_today().year + 1, 1, 1),
        )
    assert err.value.code == "effective_in_future"
    assert row_counts(root) == before


def test_kinds_by_label_and_case(root: AppContext) -> None:
    data = tsv(
        "A\tA\tProvince\tTW",
        "B\tB\tTỉnh, thành phố\tTW",
        "C\tC\txa, phuong, dac khu\tA",
        "D\tD\tCENTRAL_COMMITTEE\tTW",
    )
    act(root, import_units, data, "x.tsv")
    t = tree(root, local_today())
    assert (t["A"][1], t["B"][1], t["C"][1], t["D"][1]) == (
        "province",
        "province",
        "commune",
        "central-committee",
    )


def test_too_many_rows(root: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(org_io, "MAX_ROWS", 5)
    lines = [f"A{i}\tA\tdistrict\tTW" for i in range(6)]
    assert errors_of(rejected(root, import_units, tsv(*lines), "x.tsv")) == [(0, "too_many_rows")]
    assert act(root, import_units, tsv(*lines[:5]), "x.tsv").created == 5


def test_with_sites_checks_the_sites_too(root: AppContext) -> None:
    act(root, site_svc.create_site, code="TAKEN", unit_id=unit_id(root, "TW"), name="Điểm cầu có sẵn")
    data = tsv("TAKEN\tĐơn vị\tprovince\tTW", f"LONG\t{'T' * 295}\tprovince\tTW")
    details = rejected(root, import_units, data, "x.tsv", with_sites=True)
    assert errors_of(details) == [(2, "site_code_exists"), (3, "invalid_site_name")]
    assert act(root, import_units, data, "x.tsv").created == 2  # without sites both are fine


def test_caller_scope_refusals_are_row_errors(root: AppContext) -> None:
    act(root, import_units, tsv("P1\tP1\tprovince\tTW", "P2\tP2\tprovince\tTW"), "x.tsv")
    data = tsv("A\tA\tdistrict\tP1", "B\tB\tdistrict\tP2", "C\tC\tcommune\tB", "TOP\tTop\tcentral\t")
    details = rejected(
        root,
        import_units,
        data,
        "x.tsv",
        may_create_under=lambda parent: parent is not None and parent.code == "P1",
    )
    # A row without a parent is never allowed once the root exists, whoever imports it.
    assert errors_of(details) == [(3, "forbidden"), (5, "second_root")]
    hidden = rejected(root, import_units, data, "x.tsv", may_see=lambda unit: unit.code != "P2")
    assert errors_of(hidden) == [(3, "unknown_parent"), (5, "second_root")]


def test_many_errors_are_capped_with_the_total_in_the_message(
    root: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(org_io, "MAX_REPORTED", 3)
    details = rejected(root, import_units, tsv(*[f"A{i}\t\tdistrict\tTW" for i in range(10)]), "x.tsv")
    assert [d["row"] for d in details] == [2, 3, 4]


# --- encodings and file formats -------------------------------------------------------------------


def test_wrong_encoding_names_the_line(root: AppContext) -> None:
    data = (HEADER + "A\tHa Noi\tprovince\tTW\nB\tHà Nam\tprovince\tTW\n").encode("latin-1")
    assert errors_of(rejected(root, import_units, data, "x.tsv")) == [(3, "bad_encoding")]
    assert errors_of(rejected(root, import_units, b"code\tname\x00\tkind\n", "x.tsv")) == [
        (1, "unreadable_file")
    ]


def test_utf8_with_bom_and_utf16_are_read(root: AppContext) -> None:
    text = HEADER + "A\tHà Nội\tprovince\tTW\n"
    act(root, import_units, text.encode("utf-8-sig"), "a.tsv")
    act(root, import_units, text.replace("A\t", "B\t").encode("utf-16"), "b.tsv")  # Excel's "Unicode text"
    t = tree(root, local_today())
    assert t["A"][0] == t["B"][0] == "Hà Nội"


def test_nfd_input_is_stored_nfc(root: AppContext) -> None:
    import unicodedata

    act(
        root,
        import_units,
        unicodedata.normalize("NFD", HEADER + "A\tTỉnh ủy Hà Giang\tprovince\tTW\n").encode(),
        "a.tsv",
    )
    assert tree(root, local_today())["A"][0] == "Tỉnh ủy Hà Giang"
    assert tree(root, local_today(), q="ha giang") == {"A": ("Tỉnh ủy Hà Giang", "province", "TW")}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes(range(256)) * 8, id="random-bytes"),
        pytest.param(b"PK\x03\x04" + b"\x00" * 100, id="zip-header-only"),
        pytest.param(xlsx([["code", "name", "kind"], ["A", "A", "province"]])[:600], id="truncated"),
        pytest.param(b"", id="empty"),
    ],
)
def test_broken_xlsx_is_refused(root: AppContext, data: bytes) -> None:
    assert errors_of(rejected(root, import_units, data, "x.xlsx")) == [(0, "unreadable_file")]


def test_zip_that_is_not_a_workbook_is_refused(root: AppContext) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    assert errors_of(rejected(root, import_units, out.getvalue(), "x.xlsx")) == [(0, "unreadable_file")]


def test_xlsx_rows_are_numbered_as_in_excel(root: AppContext) -> None:
    data = xlsx(
        [
            ["Mã", "Tên", "Loại", "Cấp trên"],
            ["A", "A", "district", "TW"],
            [None],
            [2017, None, "district", "TW"],
        ]
    )
    assert errors_of(rejected(root, import_units, data, "x.xlsx")) == [(4, "invalid_unit_name")]
    ok = xlsx(
        [["Mã", "Tên", "Loại", "Cấp trên"], ["A", "A", "district", "TW"], [2017, "Số", "district", "A"]]
    )
    act(root, import_units, ok, "x.xlsx")
    assert tree(root, local_today())["2017"] == ("Số", "district", "A")  # a number cell is read as its digits


def test_csv_quoting_and_multiline_cells(root: AppContext) -> None:
    data = (
        "code,name,kind,parent\n"
        'A,"Tỉnh ủy ""Mới"", có dấu phẩy",province,TW\n'
        'B,"Tên\nhai dòng",province,TW\n'
        "\n"
        "C,,province,TW\n"
    ).encode()
    # A name is one line: the quoted cell spanning lines 3-4 is refused at its first line.
    details = rejected(root, import_units, data, "x.csv")
    assert errors_of(details) == [(3, "invalid_unit_name"), (6, "invalid_unit_name")]
    assert details[0]["column"] == "name" and "xuống dòng" in details[0]["message"]
    act(root, import_units, data.replace(b"C,,", b"C,C,").replace(b"\nhai", b" hai"), "x.csv")
    t = tree(root, local_today())
    assert t["A"][0] == 'Tỉnh ủy "Mới", có dấu phẩy'
    assert t["B"][0] == "Tên hai dòng"


def test_csv_with_windows_and_old_mac_line_ends(root: AppContext) -> None:
    act(root, import_units, b"code,name,kind,parent\r\nA,A,district,TW\r\n", "a.csv")
    act(root, import_units, b"code,name,kind,parent\rB,B,district,TW\r", "b.csv")
    assert {"A", "B"} <= set(tree(root, local_today()))


def test_vietnamese_header_aliases(root: AppContext) -> None:
    import unicodedata

    header = "Mã đơn vị\tTÊN ĐƠN VỊ\tLoại đơn vị\tMã cấp trên\tGhi chú\n"
    act(root, import_units, (header + "A\tA\tdistrict\tTW\tbỏ qua\n").encode(), "a.tsv")
    nfd = unicodedata.normalize("NFD", "Mã\tTên\tCấp\tCấp trên\n")
    act(root, import_units, (nfd + "B\tB\tdistrict\tA\n").encode(), "b.tsv")
    t = tree(root, local_today())
    assert t["A"][2] == "TW" and t["B"][2] == "A"


def test_site_header_aliases_with_underscores(demo: Demo) -> None:
    ctx = demo.ctx
    header = "code,unit,name,contact_name,contact_phone,tech_name,tech_phone,trạng thái,Địa điểm\n"
    data = (header + "S1,01,Phòng họp 2,Nguyễn Văn A,0901,Trần B,0902,maintenance,Tầng 3\n").encode()
    act(ctx, import_sites, data, "s.csv")
    with ctx.db.session() as session:
        site = session.execute(select(Site).where(Site.code == "S1")).scalar_one()
        assert (site.contact_name, site.contact_phone, site.tech_name, site.tech_phone) == (
            "Nguyễn Văn A",
            "0901",
            "Trần B",
            "0902",
        )
        assert (site.status, site.location) == ("maintenance", "Tầng 3")


# --- sites -------------------------------------------------------------------------------------


def test_site_rows_are_checked(demo: Demo) -> None:
    ctx = demo.ctx
    act(
        ctx,
        unit_svc.merge_units,
        source_ids=[demo.unit_id("04")],
        target_id=demo.unit_id("06"),
        effective=date(2025, 7, 1),
    )
    header = "code,unit,name,status,contact_phone\n"
    data = (
        header
        + "N1,01,Mới,,\n"  # 2: fine
        + "01,01,Trùng,,\n"  # 3: site code taken
        + "N1,01,Lặp,,\n"  # 4: repeats line 2
        + "N3,ZZ,Không có đơn vị,,\n"  # 5
        + "N4,04,Đơn vị đã sáp nhập,,\n"  # 6
        + "N5,01,,,\n"  # 7: no name
        + "N6,01,Tên,broken,\n"  # 8
        + f"N7,01,Tên,,{'9' * 51}\n"  # 9
    ).encode()
    details = rejected(ctx, import_sites, data, "s.csv")
    assert errors_of(details) == [
        (3, "site_code_exists"),
        (4, "duplicate_code"),
        (5, "unknown_unit"),
        (6, "unit_closed"),
        (7, "invalid_site_name"),
        (8, "invalid_site_status"),
        (9, "field_too_long"),
    ]
    one = "code,unit,name\nN1,01,Mới\n".encode()
    assert errors_of(rejected(ctx, import_sites, one, "s.csv", may_create_in=lambda unit: False)) == [
        (2, "forbidden")
    ]
    assert errors_of(rejected(ctx, import_sites, one, "s.csv", may_see=lambda unit: False)) == [
        (2, "unknown_unit")
    ]


def test_sites_dry_run(demo: Demo) -> None:
    before = row_counts(demo.ctx)
    report = act(demo.ctx, import_sites, b"code,unit,name\nN1,01,A\nN2,79,B\n", "s.csv", dry_run=True)
    assert (report.rows, report.created, report.dry_run) == (2, 2, True)
    assert row_counts(demo.ctx) == before


# --- round trips --------------------------------------------------------------------------------


def _reorganize(demo: Demo) -> None:
    ctx = demo.ctx
    for n in range(3):
        act(
            ctx,
            unit_svc.create_unit,
            code=f"01-{n}",
            name=f"Quận {n}, Hà Nội",
            kind="district",
            parent_id=demo.unit_id("01"),
            effective=date(2020, 1, 1),
        )
    act(
        ctx,
        unit_svc.update_unit,
        demo.unit_id("79"),
        name='Thành ủy "TP. Hồ Chí Minh"',
        effective=date(2021, 1, 1),
    )
    act(
        ctx,
        unit_svc.merge_units,
        source_ids=[demo.unit_id("02")],
        target_id=demo.unit_id("08"),
        effective=date(2025, 7, 1),
    )
    act(
        ctx,
        unit_svc.move_unit,
        unit_id(ctx, "01-2"),
        new_parent_id=demo.unit_id("08"),
        effective=date(2025, 7, 1),
    )
    with ctx.db.session() as session:
        site_id = session.execute(select(Site.id).where(Site.code == "01")).scalar_one()
    act(
        ctx,
        site_svc.update_site,
        site_id,
        contact_name="Nguyễn Văn A",
        contact_phone="024 3825",
        tech_name="=HYPERLINK(1)",
        location="Phòng 1, tầng 2",
        status="maintenance",
    )


def _sites(ctx: AppContext) -> dict[str, tuple[str, ...]]:
    with ctx.db.session() as session:
        rows = session.execute(select(Site, Unit.code).join(Unit, Unit.id == Site.unit_id)).all()
        return {
            s.code: (
                code,
                s.name,
                s.location,
                s.contact_name,
                s.contact_phone,
                s.tech_name,
                s.tech_phone,
                s.status,
            )
            for s, code in rows
        }


@pytest.mark.parametrize("fmt", ["tsv", "csv", "xlsx"])
def test_export_then_import_into_an_empty_database_gives_the_same_tree(demo: Demo, fmt: str) -> None:
    ctx = demo.ctx
    _reorganize(demo)
    units_before, sites_before = tree(ctx, local_today()), _sites(ctx)
    with ctx.db.session() as session:
        units_file = org_io.export_units(session, fmt, unit_svc.UnitFilter())
        sites_file = org_io.export_sites(session, fmt, site_svc.query_sites(site_svc.SiteFilter()))
    wipe(ctx.db)
    act(ctx, import_units, units_file, f"units.{fmt}", effective=D2017)
    act(ctx, import_sites, sites_file, f"sites.{fmt}")
    assert tree(ctx, local_today()) == units_before
    assert _sites(ctx) == sites_before
    assert len(units_before) == 73 and kinds_count(ctx, local_today(), "province") == 62


def test_csv_export_carries_a_utf8_bom_that_import_accepts(demo: Demo) -> None:
    """Excel opens a CSV without a byte-order mark in the local code page: "Hà Nội" turns into
    "HÃ  Ná»™i". With the mark it reads UTF-8; TSV (for scripts) and XLSX need none."""
    with demo.ctx.db.session() as session:
        data = org_io.export_units(session, "csv", unit_svc.UnitFilter())
        sites = org_io.export_sites(session, "csv", site_svc.query_sites(site_svc.SiteFilter()))
        plain = org_io.export_units(session, "tsv", unit_svc.UnitFilter())
    assert data.startswith(codecs.BOM_UTF8) and data.count(codecs.BOM_UTF8) == 1
    assert sites.startswith(codecs.BOM_UTF8)
    assert not plain.startswith(codecs.BOM_UTF8)
    assert "01,Thành ủy Hà Nội,province,TW" in data.decode("utf-8-sig")
    # A file saved back by Excel ("CSV UTF-8") keeps the mark: it imports, the mark is not data.
    edited = codecs.BOM_UTF8 + "code,name,kind,parent\nZ1,Huyện Mới,district,01\n".encode()
    assert act(demo.ctx, import_units, edited, "z.csv").created == 1
    assert unit_id(demo.ctx, "Z1")


def test_export_as_of_a_past_date(demo: Demo) -> None:
    ctx = demo.ctx
    _reorganize(demo)
    with ctx.db.session() as session:
        then = org_io.export_units(session, "tsv", unit_svc.UnitFilter(as_of=date(2024, 12, 31))).decode()
        now = org_io.export_units(session, "tsv", unit_svc.UnitFilter()).decode()
    assert "02\tTỉnh ủy Hà Giang\tprovince\tTW\t2017-01-01\t2025-07-01" in then
    assert "\n02\t" not in now
    assert "01-2\tQuận 2, Hà Nội\tdistrict\t01\t2020-01-01\t2025-07-01" in then
    assert "01-2\tQuận 2, Hà Nội\tdistrict\t08\t2025-07-01\t" in now


def test_xlsx_export_keeps_text_as_text(demo: Demo) -> None:
    _reorganize(demo)
    with demo.ctx.db.session() as session:
        data = org_io.export_sites(session, "xlsx", site_svc.query_sites(site_svc.SiteFilter()))
    ws = load_workbook(io.BytesIO(data)).worksheets[0]
    cells = {c.value: c.data_type for row in ws.iter_rows() for c in row if c.value}
    assert cells["=HYPERLINK(1)"] == "s"  # text, never a formula
    assert cells["01"] == "s"  # codes keep their leading zero


# --- a reformed country: 34 provinces, 3,321 communes ------------------------------------------------


@pytest.mark.slow
def test_import_of_the_reformed_country(root: AppContext) -> None:
    """Not timed: a sanity check that a file of the 2025 size goes through on both databases."""
    lines = [f"P{p:02d}\tTỉnh ủy số {p}\tprovince\tTW" for p in range(34)]
    lines += [f"X{c:04d}\tĐảng ủy xã Đồng Tâm {c}\tcommune\tP{c % 34:02d}" for c in range(3321)]
    report = act(root, import_units, tsv(*lines), "reform.tsv", effective=date(2025, 7, 1))
    assert report.created == 3355
    assert kinds_count(root, local_today(), "province") == 34
    assert kinds_count(root, local_today(), "commune") == 3321
    with root.db.session() as session:
        p00 = unit_svc.get_unit_by_code(session, "P00")
        assert p00 is not None
        under = session.execute(select(Unit.id).where(unit_svc.subtree(Unit.path, p00.path))).all()
        assert len(under) == 1 + len(range(0, 3321, 34))


# --- the API ------------------------------------------------------------------------------------


def _upload(name: str, data: bytes) -> dict[str, Any]:
    return {"file": (name, data, "application/octet-stream")}


def test_api_export_units(client: TestClient, demo: Demo) -> None:
    h = login(client, "admin")
    r = client.get("/api/v1/units/export", headers=h)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/tab-separated-values; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="units-{local_today().isoformat()}.tsv"'
    assert len(r.text.strip().split("\n")) == 72
    r = client.get("/api/v1/units/export", params={"format": "csv", "as_of": "2016-12-31"}, headers=h)
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content.startswith(codecs.BOM_UTF8)  # so Excel reads it as UTF-8
    assert r.content[3:].decode().strip() == "code,name,kind,parent,valid_from,valid_to"
    r = client.get("/api/v1/units/export", params={"format": "xlsx", "under": demo.unit_id("79")}, headers=h)
    assert r.headers["content-type"] == tabular.MEDIA_TYPES["xlsx"]
    rows = list(load_workbook(io.BytesIO(r.content)).worksheets[0].iter_rows(values_only=True))
    assert rows[1][:4] == ("79", "Thành ủy Thành phố Hồ Chí Minh", "province", "TW")
    assert len(rows) == 2


def test_api_export_is_scoped_to_the_caller(client: TestClient, demo: Demo) -> None:
    h = login(client, "tochuc-01")
    r = client.get("/api/v1/units/export", headers=h)
    # Hà Nội's parent is outside the caller's scope: its code is not given away.
    assert [line.split("\t")[:4] for line in r.text.strip().split("\n")[1:]] == [
        ["01", "Thành ủy Hà Nội", "province", ""]
    ]
    assert (
        client.get("/api/v1/units/export", params={"under": demo.unit_id("79")}, headers=h).status_code == 404
    )
    r = client.get("/api/v1/sites/export", headers=login(client, "dc-79"))
    assert [line.split("\t")[0] for line in r.text.strip().split("\n")[1:]] == ["79"]
    r = client.get("/api/v1/sites/export", params={"format": "csv"}, headers=login(client, "dieuhanh"))
    assert len(r.text.strip().split("\n")) == 72
    assert client.get("/api/v1/units/export").status_code == 401


def test_api_export_under_a_unit_as_of_a_date_uses_where_it_stood(client: TestClient, demo: Demo) -> None:
    ctx = demo.ctx
    act(
        ctx,
        unit_svc.create_unit,
        code="01-Q",
        name="Quận",
        kind="district",
        parent_id=demo.unit_id("01"),
        effective=date(2020, 1, 1),
    )
    act(
        ctx,
        unit_svc.move_unit,
        demo.unit_id("01"),
        new_parent_id=demo.unit_id("KCQ"),
        effective=date(2021, 1, 1),
    )
    h = login(client, "admin")
    r = client.get(
        "/api/v1/units/export", params={"under": demo.unit_id("01"), "as_of": "2020-06-01"}, headers=h
    )
    assert [line.split("\t")[:4] for line in r.text.strip().split("\n")[1:]] == [
        ["01", "Thành ủy Hà Nội", "province", "TW"],
        ["01-Q", "Quận", "district", "01"],
    ]
    r = client.get(
        "/api/v1/units/export", params={"under": demo.unit_id("01"), "as_of": "2016-01-01"}, headers=h
    )
    assert r.status_code == 404


def test_api_import_units(client: TestClient, demo: Demo) -> None:
    h = login(client, "admin")
    data = tsv("01-A\tQuận A\tdistrict\t01", "01-A-1\tPhường 1\tcommune\t01-A")
    r = client.post(
        "/api/v1/units/import", params={"dry_run": "true"}, files=_upload("u.tsv", data), headers=h
    )
    assert r.status_code == 200
    assert r.json() == {"rows": 2, "created": 2, "sites_created": 0, "dry_run": True}
    assert "01-A" not in tree(demo.ctx, local_today())
    r = client.post(
        "/api/v1/units/import",
        params={"effective": "2025-07-01", "with_sites": "true"},
        files=_upload("u.tsv", data),
        headers=h,
    )
    assert r.json() == {"rows": 2, "created": 2, "sites_created": 2, "dry_run": False}
    assert tree(demo.ctx, date(2025, 7, 1))["01-A-1"] == ("Phường 1", "commune", "01-A")
    assert "01-A" not in tree(demo.ctx, date(2025, 6, 30))


def test_api_import_rejection_shape(client: TestClient, demo: Demo) -> None:
    h = login(client, "admin")
    before = row_counts(demo.ctx)
    r = client.post(
        "/api/v1/units/import",
        files=_upload("u.tsv", tsv("A\tA\tdistrict\tB", "B\tB\tdistrict\tA", "C\t\tdistrict\t01")),
        headers=h,
    )
    assert r.status_code == 422
    body = r.json()["error"]
    assert body["code"] == "import_rejected"
    assert body["details"] == [
        {"row": 2, "code": "cycle", "message": body["details"][0]["message"]},
        {"row": 3, "code": "cycle", "message": body["details"][1]["message"]},
        {
            "row": 4,
            "code": "invalid_unit_name",
            "message": "Cột “name” (cột B): không được để trống.",
            "column": "name",
        },
    ]
    r = client.post("/api/v1/units/import", files=_upload("u.xlsx", b"not a workbook"), headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "unreadable_file"
    r = client.post("/api/v1/units/import", files=_upload("u.bin", tsv()), headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "unsupported_format"
    assert (
        client.post(
            "/api/v1/units/import", params={"format": "tsv"}, files=_upload("u.bin", tsv()), headers=h
        ).status_code
        == 200
    )
    r = client.post(
        "/api/v1/units/import",
        params={"effective": f"{local_today().year + 1}-01-01"},
        files=_upload("u.tsv", tsv("A\tA\tdistrict\t01")),
        headers=h,
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "effective_in_future"
    r = client.post("/api/v1/units/import", headers=h)
    assert r.status_code == 422 and "detail" in r.json()
    r = client.post(
        "/api/v1/units/import", params={"effective": "yesterday"}, files=_upload("u.tsv", tsv()), headers=h
    )
    assert r.status_code == 422
    assert row_counts(demo.ctx) == before


def test_api_import_is_limited_to_the_callers_subtrees(client: TestClient, demo: Demo) -> None:
    h = login(client, "tochuc-01")
    before = row_counts(demo.ctx)
    data = tsv(
        "01-A\tQuận A\tdistrict\t01",
        "79-A\tQuận 1\tdistrict\t79",
        "79-A-1\tPhường\tcommune\t79-A",
        "NEW\tMới\tprovince\t",
    )
    r = client.post("/api/v1/units/import", files=_upload("u.tsv", data), headers=h)
    assert r.status_code == 422
    # 79 is out of the caller's sight: refused exactly as a code that does not exist.
    assert [(d["row"], d["code"]) for d in r.json()["error"]["details"]] == [
        (3, "unknown_parent"),
        (5, "second_root"),
    ]
    nowhere = client.post(
        "/api/v1/units/import", files=_upload("u.tsv", tsv("79-A\tQuận 1\tdistrict\tNOWHERE")), headers=h
    )
    assert nowhere.json()["error"]["details"][0]["message"] == r.json()["error"]["details"][0][
        "message"
    ].replace("79", "NOWHERE")
    assert row_counts(demo.ctx) == before
    # Org-work staff create units, not sites.
    r = client.post(
        "/api/v1/units/import", params={"with_sites": "true"}, files=_upload("u.tsv", data), headers=h
    )
    assert r.status_code == 403
    r = client.post(
        "/api/v1/units/import", files=_upload("u.tsv", tsv("01-A\tQuận A\tdistrict\t01")), headers=h
    )
    assert r.status_code == 200 and r.json()["created"] == 1
    # A chair reads the tree but changes nothing.
    r = client.post(
        "/api/v1/units/import",
        files=_upload("u.tsv", tsv("X\tX\tdistrict\t01")),
        headers=login(client, "chutri"),
    )
    assert r.status_code == 403
    assert client.post("/api/v1/units/import", files=_upload("u.tsv", tsv())).status_code == 401


def test_api_import_under_a_unit_seen_but_not_writable(client: TestClient, demo: Demo) -> None:
    from giaoban.org import accounts

    roles = [
        accounts.RoleSpec("org_staff", demo.unit_id("01")),
        accounts.RoleSpec("chair", demo.unit_id("TW")),
    ]
    act(
        demo.ctx,
        accounts.create_user,
        username="hai-vai",
        password=DEMO_PASSWORD,
        roles=roles,
        check_strength=False,
    )
    h = login(client, "hai-vai")
    before = row_counts(demo.ctx)
    r = client.post(
        "/api/v1/units/import", files=_upload("u.tsv", tsv("79-A\tQuận 1\tdistrict\t79")), headers=h
    )
    assert r.status_code == 422
    assert [(d["row"], d["code"]) for d in r.json()["error"]["details"]] == [(2, "forbidden")]
    assert row_counts(demo.ctx) == before


def test_api_import_sites(client: TestClient, demo: Demo) -> None:
    data = b"code,unit,name,location\nHN-2,01,Phong hop 2,Tang 2\nHCM-2,79,Phong hop 2,\n"
    r = client.post("/api/v1/sites/import", files=_upload("s.csv", data), headers=login(client, "tochuc-01"))
    assert r.status_code == 403  # org-work staff do not manage sites
    operator = login(client, "dieuhanh")
    before = row_counts(demo.ctx)
    r = client.post("/api/v1/sites/import", files=_upload("s.csv", data + b"BAD,ZZ,x,\n"), headers=operator)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["row"] == 4
    assert row_counts(demo.ctx) == before
    r = client.post("/api/v1/sites/import", files=_upload("s.csv", data), headers=operator)
    assert r.status_code == 200 and r.json() == {
        "rows": 2,
        "created": 2,
        "sites_created": 0,
        "dry_run": False,
    }
    r = client.get("/api/v1/sites", params={"q": "HN-2"}, headers=login(client, "admin"))
    assert r.json()["items"][0]["location"] == "Tang 2"


def test_api_openapi_documents_the_file_endpoints(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    export = doc["paths"]["/api/v1/units/export"]["get"]["responses"]["200"]["content"]
    assert set(export) == {m.split(";")[0] for m in tabular.MEDIA_TYPES.values()}
    imp = doc["paths"]["/api/v1/units/import"]["post"]
    assert "multipart/form-data" in imp["requestBody"]["content"]
    refs = {
        s["$ref"].rsplit("/", 1)[-1]
        for s in imp["responses"]["422"]["content"]["application/json"]["schema"]["anyOf"]
    }
    assert refs == {"ImportRejectedOut", "ValidationErrorOut"}
    assert imp["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ImportReportOut"
    )


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    from giaoban.settings import get_settings

    monkeypatch.setenv("GIAOBAN_DATABASE_URL", ctx.db.url)
    monkeypatch.setenv("GIAOBAN_SECRET_KEY", ctx.settings.resolved_secret_key)
    monkeypatch.setenv("GIAOBAN_DATA_DIR", str(tmp_path / "cli-var"))
    get_settings.cache_clear()
    yield ctx
    get_settings.cache_clear()


def test_cli_units_and_sites_import_export(
    cli_env: AppContext, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from giaoban.cli import main

    ctx = cli_env
    assert (
        main(["units", "import", str(DEMO_TSV), "--effective", "2017-01-01", "--with-sites", "--dry-run"])
        == 0
    )
    assert row_counts(ctx)["units"] == 0
    assert main(["units", "import", str(DEMO_TSV), "--effective", "2017-01-01", "--with-sites"]) == 0
    assert "71" in capsys.readouterr().out
    assert kinds_count(ctx, local_today(), "province") == 63

    out = tmp_path / "units.xlsx"
    assert main(["units", "export", "--format", "xlsx", "--output", str(out), "--as-of", "2017-01-01"]) == 0
    assert len(list(load_workbook(out).worksheets[0].iter_rows())) == 72
    sites = tmp_path / "sites.csv"
    assert main(["sites", "export", "--format", "csv", "-o", str(sites)]) == 0
    assert sites.read_text().count("\n") == 72

    bad = tmp_path / "bad.tsv"
    bad.write_bytes(tsv("01\tTrùng\tprovince\tTW", "N\tN\tdistrict\tNOPE"))
    before = row_counts(ctx)
    capsys.readouterr()
    assert main(["units", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "dòng 2" in err and "dòng 3" in err
    assert row_counts(ctx) == before

    more = tmp_path / "more.csv"
    more.write_text("code,unit,name\nHN-2,01,Phòng họp 2\n")
    assert main(["sites", "import", str(more)]) == 0
    with ctx.db.session() as session:
        assert session.execute(select(Site.name).where(Site.code == "HN-2")).scalar_one() == "Phòng họp 2"
    assert main(["sites", "import", str(more)]) == 2  # now a duplicate: nothing written


def test_cli_export_to_stdout(cli_env: AppContext, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from giaoban.cli import main

    assert main(["units", "import", str(DEMO_TSV)]) == 0
    capsysbinary.readouterr()
    assert main(["units", "export"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert out.startswith("code\tname\tkind\tparent") and out.count("\n") == 72
