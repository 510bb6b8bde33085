"""Field types shared by every API shape, form and message: text under the one text policy
(``giaoban.text``), ids, dates and times.

Each type states in its JSON Schema exactly what it accepts, so the OpenAPI document is true to
the server: ``Annotated[str, Line(300)]`` is a one-line text of at most 300 characters with
something visible in it, ``Line(200, required=False)`` may be blank, ``Text(5000)`` may span lines.
Common ones have names (``Name``, ``Title``, ``Code`` …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    Strict,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from giaoban.text import TextError, clean_line, clean_text, line_pattern, text_pattern

T = TypeVar("T")


@dataclass(frozen=True)
class _Policy:
    """Pydantic metadata: ``Annotated[str, Line(300)]`` validates with the text policy and states the
    policy's pattern and length in the JSON Schema."""

    max_length: int
    required: bool
    multiline: bool = False

    def clean(self, value: str) -> str:
        cleaner = clean_text if self.multiline else clean_line
        try:
            return cleaner(value, max_length=self.max_length, required=self.required)
        except TextError as exc:
            raise ValueError(exc.message) from None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            self.clean,
            core_schema.str_schema(min_length=1 if self.required else 0, max_length=self.max_length),
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        pattern = text_pattern if self.multiline else line_pattern
        out["pattern"] = pattern(required=self.required)
        return out


def Line(max_length: int = 300, *, required: bool = True) -> _Policy:
    """A one-line text field (names, titles, codes): ``Annotated[str, Line(300)]``. Stored NFC,
    trimmed, no control characters, not blank unless ``required=False``."""
    return _Policy(max_length, required)


def Text(max_length: int = 5000, *, required: bool = False) -> _Policy:
    """A multi-line text field (descriptions, messages): tab and newline allowed, nothing else."""
    return _Policy(max_length, required, multiline=True)


# Secrets (passwords, codes) are compared, never shown or exported: any character a keyboard can
# type, but no NUL (PostgreSQL text) and no lone surrogate (not encodable, so not hashable). The
# pattern names only the NUL: a surrogate is no Unicode character (see giaoban.text).
SECRET_PATTERN = "^[^\\x00]*(?![\\s\\S])"


def Secret(max_length: int = 200, *, min_length: int = 1) -> tuple[Any, Any]:
    """``Annotated[str, *Secret()]``: length limits, no NUL, no lone surrogate."""
    return (
        Field(min_length=min_length, max_length=max_length, json_schema_extra={"pattern": SECRET_PATTERN}),
        AfterValidator(_no_nul_or_surrogate),
    )


_BAD_SECRET = re.compile("[\x00\ud800-\udfff]")


def _no_nul_or_surrogate(value: str) -> str:
    if _BAD_SECRET.search(value):
        raise ValueError("Có ký tự không hợp lệ.")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_only(value: object) -> object:
    """Accept a date only as ``YYYY-MM-DD`` (what the OpenAPI document promises).

    Pydantic's lax mode would also read ``0`` or ``"0"`` as a Unix time and take datetimes, so a
    malformed date would silently become 1970-01-01.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return date.fromisoformat(value)
    raise ValueError("Ngày phải có dạng YYYY-MM-DD.")


def _json_integer(value: object) -> object:
    """An integer as JSON Schema means it: a number without a fraction (``5`` or ``5.0``).

    Pydantic's lax mode would also take the string ``"5"`` or ``true``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError("Phải là một số nguyên.")


# --- times -----------------------------------------------------------------------------------------
#
# One policy (docs/api.md, "Times"):
# - out: every time the API sends is an RFC 3339 date-time in UTC with ``Z`` (``UtcDateTime``);
#   the database keeps naive UTC.
# - in: a time is an ISO 8601 string (never a number), ``YYYY-MM-DDTHH:MM[:SS[.ffffff]]`` with an
#   offset (``Z``, ``+07:00``) or without one, then it is Vietnam's local time (``LOCAL_TZ``); its
#   date as written lies between ``EARLIEST_DAY`` and ``LATEST_DAY`` (``LocalDateTime``). The
#   schema's pattern says exactly this, so every string it allows is a real time in range.

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2100, 12, 31)


def local_today() -> date:
    """Today in Vietnam: the organization's calendar day (effective dates of the tree, "as of",
    file names of exports). The machine's own date is UTC on most servers and would still say
    yesterday until 07:00."""
    return datetime.now(LOCAL_TZ).date()


_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
# 2000-2099 and 2100; 29 February in the leap years among them (2000 is one, 2100 is not).
_DAY = f"(?:(?:20[0-9]{{2}}|2100)-{_MONTH_DAY}|20(?:[02468][048]|[13579][26])-02-29)"
_CLOCK = "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,6})?)?"
_OFFSET = "(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
DATETIME_BODY = f"{_DAY}T{_CLOCK}{_OFFSET}?"
DATETIME_PATTERN = f"^{DATETIME_BODY}(?![\\s\\S])"
_DATETIME = re.compile(DATETIME_BODY)

TIME_FORMAT_MESSAGE = (
    "Thời điểm phải là chuỗi dạng YYYY-MM-DDTHH:MM[:SS] (giờ Việt Nam) hoặc kèm múi giờ "
    "(Z, +07:00), trong khoảng năm 2000 đến 2100."
)


def as_utc(value: datetime) -> datetime:
    """The database keeps naive UTC; say so on the way out (RFC 3339 needs an offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_given(value: datetime, tz: ZoneInfo = LOCAL_TZ) -> datetime:
    """A time given by a person, made aware: naive means ``tz`` (Vietnam's time); its offset kept.

    ``ValueError`` (Vietnamese) when its date as written is outside ``EARLIEST_DAY``..``LATEST_DAY``,
    checked before any arithmetic, so no input can overflow.
    """
    if not EARLIEST_DAY <= value.date() <= LATEST_DAY:
        raise ValueError(f"Thời điểm phải trong khoảng {EARLIEST_DAY:%d/%m/%Y} đến {LATEST_DAY:%d/%m/%Y}.")
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def to_instant(value: datetime, tz: ZoneInfo = LOCAL_TZ) -> datetime:
    """``as_given``, in UTC."""
    return as_given(value, tz).astimezone(UTC)


def _local_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return as_given(value)
    if isinstance(value, str) and _DATETIME.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(TIME_FORMAT_MESSAGE) from None
        return as_given(parsed)
    raise ValueError(TIME_FORMAT_MESSAGE)


IsoDate = Annotated[date, BeforeValidator(_iso_date_only), Strict()]
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
LocalDateTime = Annotated[
    datetime,
    PlainValidator(_local_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DATETIME_PATTERN,
            "description": (
                "ISO 8601 time, 2000-01-01 to 2100-12-31: with an offset (Z, +07:00) or without one "
                "(then Vietnam's local time, UTC+07:00), e.g. 2026-12-08T08:00:00+07:00 or "
                "2026-12-08T08:00. Never a number."
            ),
        },
        mode="validation",
    ),
]
Id = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(_json_integer)]

Name = Annotated[str, Line(300)]
Title = Annotated[str, Line(300)]
Code = Annotated[str, Line(32)]
PersonName = Annotated[str, Line(200)]
OptionalLine = Annotated[str, Line(300, required=False)]
Description = Annotated[str, Text(5000)]


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One page of a list a domain function answers: the rows and how many there are in all (the
    web layer renders it as ``Page`` or as a table with page links)."""

    items: list[T]
    total: int
