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
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from giaoban.text import TextError, clean_line, clean_text, line_pattern, text_pattern


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


def as_utc(value: datetime) -> datetime:
    """The database keeps naive UTC; say so on the way out (RFC 3339 needs an offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


IsoDate = Annotated[date, BeforeValidator(_iso_date_only), Strict()]
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(_json_integer)]

Name = Annotated[str, Line(300)]
Title = Annotated[str, Line(300)]
Code = Annotated[str, Line(32)]
PersonName = Annotated[str, Line(200)]
OptionalLine = Annotated[str, Line(300, required=False)]
Description = Annotated[str, Text(5000)]
