"""Languages of the pages: Vietnamese source strings, other languages from gettext catalogs.

The source language is Vietnamese, so a string with no translation shows in Vietnamese. The English
catalog is the ``.po`` file under ``locale/en/LC_MESSAGES``; it is read with Babel when first used
and turned into gettext translations in memory, so no compiled ``.mo`` file is kept in the tree.

Maintaining the catalog (from the project root)::

    pybabel extract -F giaoban/web/locale/babel.cfg -o /tmp/messages.pot giaoban/web
    pybabel update -i /tmp/messages.pot -d giaoban/web/locale -l en --no-fuzzy-matching

``tests/web/test_pages.py`` fails when a string shown in the pages has no English translation.
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from giaoban.org.access import ROLE_LABELS_VI
from giaoban.org.models import Role
from giaoban.org.units import KIND_LABELS_VI

SOURCE_LOCALE = "vi"
LOCALES = ("vi", "en")
LOCALE_NAMES = {"vi": "Tiếng Việt", "en": "English"}
LANG_COOKIE = "lang"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"

# Vietnam keeps UTC+7 all year; times are stored as naive UTC.
VN_TIME = timezone(timedelta(hours=7), "ICT")


def N_(message: str) -> str:
    """Marks a string for the catalog where it is defined; it is translated where it is shown."""
    return message


SITE_STATUS_LABELS_VI = {
    "active": N_("Hoạt động"),
    "maintenance": N_("Đang bảo trì"),
    "inactive": N_("Ngừng hoạt động"),
}

UNIT_EVENT_LABELS_VI = {
    "create": N_("Thành lập"),
    "rename": N_("Đổi tên"),
    "update": N_("Cập nhật"),
    "move": N_("Chuyển đơn vị cấp trên"),
    "merge": N_("Sáp nhập"),
    "split": N_("Chia tách"),
    "close": N_("Giải thể"),
}


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(locale: str) -> gettext.NullTranslations:
    """The translations of one locale, read from its ``.po`` file once per process."""
    path = catalog_path(locale)
    if locale == SOURCE_LOCALE or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=locale, domain=DOMAIN)
    buffer = BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out, as gettext would
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def pick_locale(cookie: str | None, default: str) -> str:
    if cookie in LOCALES:
        return str(cookie)
    return default if default in LOCALES else SOURCE_LOCALE


@dataclass(frozen=True)
class Translator:
    """Translates for one request: ``_("Xin chào %(name)s", name=...)``."""

    locale: str
    _t: gettext.NullTranslations = field(repr=False, compare=False)

    @classmethod
    def for_locale(cls, locale: str) -> Translator:
        return cls(locale, translations(locale))

    def __call__(self, message: str, **values: Any) -> str:
        text = self._t.gettext(message) if message else message
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        text = self._t.ngettext(singular, plural, n)
        return text % {"num": n, **values}

    def role_label(self, role: str) -> str:
        try:
            return self(ROLE_LABELS_VI[Role(role)])
        except ValueError:
            return role

    def kind_label(self, kind: str) -> str:
        return self(KIND_LABELS_VI.get(kind, kind))

    def site_status_label(self, status: str) -> str:
        return self(SITE_STATUS_LABELS_VI.get(status, status))

    def event_label(self, kind: str) -> str:
        return self(UNIT_EVENT_LABELS_VI.get(kind, kind))

    def date(self, value: date | None) -> str:
        if value is None:
            return ""
        return value.strftime("%d/%m/%Y") if self.locale == "vi" else value.isoformat()

    def datetime(self, value: datetime | None) -> str:
        """A stored (naive UTC) time in Vietnam's time."""
        if value is None:
            return ""
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        local = aware.astimezone(VN_TIME)
        return local.strftime("%H:%M %d/%m/%Y") if self.locale == "vi" else local.strftime("%Y-%m-%d %H:%M")


# Texts defined outside giaoban/web that the pages show translated: role and unit-kind labels, and
# the messages of the services' errors. They are listed here so that `pybabel extract` puts them
# in the catalog; a test checks that the labels still match their sources. A service message that
# is not listed simply shows in Vietnamese.
FOREIGN_MESSAGES = (
    N_("Quản trị hệ thống"),
    N_("Điều hành Trung ương"),
    N_("Chủ trì"),
    N_("Thư ký"),
    N_("Kỹ thuật viên điểm cầu"),
    N_("Cán bộ tổ chức"),
    N_("Thí sinh"),
    N_("Trung ương"),
    N_("Tỉnh, thành phố"),
    N_("Đảng bộ trực thuộc Trung ương"),
    N_("Cơ quan thường trực"),
    N_("Huyện, quận"),
    N_("Xã, phường, đặc khu"),
    N_("Cơ sở"),
    N_("Tên đăng nhập hoặc mật khẩu không đúng."),
    N_("Tài khoản đang bị khóa. Liên hệ quản trị hệ thống."),
    N_("Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau ít phút."),
    N_("Thiếu hoặc sai mã chống giả mạo (CSRF). Tải lại trang và thử lại."),
    N_("Mật khẩu hiện tại không đúng."),
    N_("Mật khẩu mới phải khác mật khẩu cũ."),
    N_("Mật khẩu phải có ít nhất 10 ký tự."),
    N_("Mật khẩu không được chứa tên đăng nhập."),
    N_("Mật khẩu quá đơn giản."),
    N_("Không thể tự khóa tài khoản của chính mình."),
    N_("Không thể tự thay đổi vai trò của chính mình."),
    N_("Người dùng này có vai trò ngoài phạm vi quản trị của bạn."),
    N_("Bạn không có quyền quản lý người dùng."),
    N_("Người dùng phải có ít nhất một vai trò trong phạm vi của bạn."),
    N_("Tên đăng nhập gồm 2–64 ký tự: chữ thường không dấu, số, dấu chấm, gạch ngang, gạch dưới."),
    N_("Xác thực hai lớp đã được bật."),
    N_("Chỉ kỹ thuật viên điểm cầu được gắn với một điểm cầu."),
    N_("Điểm cầu không thuộc đơn vị được giao."),
)
