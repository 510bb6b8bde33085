"""A real browser logs in and browses the org tree; a site technician sees only their own site.

Screenshots at 1366×768 go to test-artifacts/ (kept out of git) for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh browser tab; fails the test on a script error, a console error (CSP included) or a
    page or static file that does not load."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    context = browser.new_context(
        base_url=live_server, viewport=VIEWPORT, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh"
    )
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_console(msg: Any) -> None:
        # A failed request is judged by on_response: the API may answer 404 on purpose.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(f"console: {msg.text}")

    def on_response(response: Any) -> None:
        if response.status >= 400 and "/api/" not in response.url:
            problems.append(f"{response.status} {response.url}")

    tab.on("console", on_console)
    tab.on("response", on_response)
    yield tab
    context.close()
    assert not problems, problems


def log_in(page: Any, username: str, next_path: str = "/") -> None:
    page.goto(next_path)
    assert urlparse(page.url).path == "/login"
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(lambda url: urlparse(url).path == next_path)


def shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"))


def test_admin_browses_the_org_tree(page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/org")
    expect(page.get_by_role("heading", name="Đăng nhập")).to_be_visible()
    shot(page, artifacts, "01-login")
    log_in(page, "admin", "/org")

    tree = page.locator("#org-tree")
    root = tree.locator("li.node").first
    expect(root.locator(".nm").first).to_have_text("Ban Tổ chức Trung ương (điểm cầu chính)")
    toggle = root.locator(":scope > .node-row > .toggle")
    # The only top unit opens by itself; close it, then open it again as a person would.
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(tree.get_by_text("Thành ủy Hà Nội")).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(tree.get_by_text("Thành ủy Hà Nội", exact=True)).to_be_visible()
    expect(root.locator(":scope > ul > li.node")).to_have_count(70)
    shot(page, artifacts, "02-org-tree")

    # Diacritics-insensitive search, whatever way it is typed.
    search = page.get_by_label("Tìm đơn vị")
    results = page.locator("#results-list button")
    for typed in ("HA NOI", "Hà Nội", "ha noi"):
        search.fill(typed)
        search.press("Enter")
        expect(results).to_have_count(1)
        expect(results.first).to_contain_text("Thành ủy Hà Nội")
    expect(page.locator("#results-title")).to_contain_text("ha noi")
    shot(page, artifacts, "03-org-search")

    # Open the unit: details, its site and history; the tree shows where it is.
    results.first.click()
    detail = page.locator("#detail-body")
    expect(detail.get_by_role("heading", name="Thành ủy Hà Nội")).to_be_visible()
    expect(detail).to_contain_text("Tỉnh, thành phố")
    expect(detail).to_contain_text("01/01/2017")
    expect(detail).to_contain_text("Đang hoạt động")
    expect(detail.get_by_role("link", name="Điểm cầu Thành ủy Hà Nội")).to_be_visible()
    expect(detail).to_contain_text("Thành lập")
    expect(page.locator("#results")).to_be_hidden()
    expect(tree.locator(".node-row.selected")).to_contain_text("Thành ủy Hà Nội")
    assert re.search(r"[?&]unit=\d+", page.url)
    shot(page, artifacts, "04-org-detail")

    # As of a date before the 2017 network existed: no tree, and the unit was not in effect.
    as_of = page.get_by_label("Xem cơ cấu tại ngày")
    as_of.fill("2016-06-01")
    expect(page.locator("#tree-status")).to_have_text("Không có đơn vị nào vào ngày này.")
    expect(page.locator("#tree-date")).to_have_text("Cơ cấu tại ngày 01/06/2016")
    expect(detail).to_contain_text("chưa có hoặc đã giải thể")
    assert "as_of=2016-06-01" in page.url
    shot(page, artifacts, "05-org-as-of-2016")

    as_of.fill("2017-06-01")
    expect(tree.get_by_text("Thành ủy Hà Nội", exact=True)).to_be_visible()
    expect(detail.get_by_role("heading", name="Thành ủy Hà Nội")).to_be_visible()
    expect(tree.locator(".node-row.selected")).to_contain_text("Thành ủy Hà Nội")
    shot(page, artifacts, "06-org-as-of-2017")

    # Reloading keeps the date and the open unit.
    page.reload()
    expect(page.get_by_label("Xem cơ cấu tại ngày")).to_have_value("2017-06-01")
    expect(page.locator("#detail-body").get_by_role("heading", name="Thành ủy Hà Nội")).to_be_visible()

    page.get_by_role("button", name="Đăng xuất").click()
    expect(page.get_by_text("Bạn đã đăng xuất.")).to_be_visible()


def test_site_technician_sees_only_their_site(page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    log_in(page, "dc-02")
    expect(page.get_by_role("heading", name="Điểm cầu của bạn")).to_be_visible()
    expect(page.locator(".who-role")).to_contain_text("Kỹ thuật viên điểm cầu · Tỉnh ủy Hà Giang")
    expect(page.get_by_role("link", name="Người dùng")).to_have_count(0)
    shot(page, artifacts, "07-site-technician-home")

    page.get_by_role("navigation", name="Mục chính").get_by_role("link", name="Điểm cầu").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Điểm cầu Tỉnh ủy Hà Giang")
    expect(page.get_by_text("1 điểm cầu", exact=True)).to_be_visible()
    page.get_by_label("Tìm điểm cầu").fill("ha noi")
    page.get_by_role("button", name="Tìm").click()
    expect(page.get_by_text("Không có điểm cầu nào phù hợp.")).to_be_visible()
    page.get_by_role("link", name="Xóa bộ lọc").click()
    shot(page, artifacts, "08-site-technician-sites")

    # Their own contacts can be corrected.
    page.get_by_role("link", name="Điểm cầu Tỉnh ủy Hà Giang").click()
    page.get_by_label("Kỹ thuật viên", exact=True).fill("Lò Văn Minh")
    page.get_by_label("Điện thoại kỹ thuật viên").fill("0219 3866 000")
    page.get_by_role("button", name="Lưu thông tin").click()
    expect(page.get_by_text("Đã lưu thông tin điểm cầu.")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Lò Văn Minh")
    shot(page, artifacts, "09-site-technician-contacts")

    # The org tree starts at their own unit.
    page.goto("/org")
    top = page.locator("#org-tree > li.node")
    expect(top).to_have_count(1)
    expect(top.first.locator(".nm")).to_have_text("Tỉnh ủy Hà Giang")


def test_admin_manages_users_in_english(page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    log_in(page, "admin", "/users")
    expect(page.get_by_role("heading", name="Người dùng", exact=True)).to_be_visible()
    shot(page, artifacts, "10-users")
    page.get_by_role("link", name="+ Tạo người dùng").click()
    page.get_by_label("Tên đăng nhập").fill("ktv-moi")
    page.get_by_label("Họ và tên").fill("Nguyễn Thị Hoa")
    page.get_by_label("Vai trò", exact=True).select_option("site_operator")
    page.get_by_label("Mã đơn vị được giao").fill("04")
    page.get_by_label("Mã điểm cầu").fill("04")
    page.get_by_role("button", name="Tạo ngẫu nhiên").click()
    assert len(page.get_by_label("Mật khẩu ban đầu").input_value()) >= 10
    shot(page, artifacts, "11-user-new")
    page.get_by_role("button", name="Tạo người dùng").click()
    expect(page.get_by_text("Đã tạo người dùng.")).to_be_visible()
    expect(page.get_by_role("heading", name="Nguyễn Thị Hoa")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Khóa tài khoản").click()
    expect(page.get_by_text("Đã khóa tài khoản.")).to_be_visible()
    shot(page, artifacts, "12-user-locked")

    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", name="Nguyễn Thị Hoa")).to_be_visible()
    expect(page.get_by_role("button", name="Unlock")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto("/org")
    expect(page.get_by_label("Show the structure on")).to_be_visible()
    expect(page.locator("#org-tree")).to_contain_text("Province, city")
    shot(page, artifacts, "13-org-english")


def test_two_factor_enrolment_and_login(page: Any, artifacts: Path) -> None:
    import pyotp
    from playwright.sync_api import expect

    log_in(page, "chutri", "/account")
    page.get_by_role("link", name="Bật xác thực hai lớp").click()
    page.get_by_role("button", name="Bắt đầu").click()
    expect(page.get_by_role("img", name="Mã QR để thêm tài khoản vào ứng dụng xác thực")).to_be_visible()
    shot(page, artifacts, "14-totp-enrol")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Mã 6 chữ số trong ứng dụng").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Xác nhận và bật").click()
    expect(page.get_by_text("Đã bật xác thực hai lớp.")).to_be_visible()
    page.get_by_role("button", name="Đăng xuất").click()

    page.get_by_label("Tên đăng nhập").fill("chutri")
    page.get_by_label("Mật khẩu").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    expect(page.get_by_role("heading", name="Xác thực hai lớp")).to_be_visible()
    shot(page, artifacts, "15-totp-login")
    page.get_by_label("Mã xác thực").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Xác nhận").click()
    expect(page.get_by_role("heading", name=re.compile("Xin chào"))).to_be_visible()
