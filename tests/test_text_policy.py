"""The one text policy (giaoban.text): what the functions accept is exactly what the OpenAPI
patterns say, and what they store can always be exported."""

from __future__ import annotations

import io
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from giaoban.text import TextError, clean_line, clean_text, is_clean_line, line_pattern, text_pattern
from giaoban.types import SECRET_PATTERN

# Every kind of character the policy treats specially, mixed with anything at all (surrogates too).
SPECIAL = [
    "\x00", "\x01", "\t", "\n", "\r", "\x0b", "\x1f", "\x7f", "\x85", "\x9f", "\xa0", "\xad",
    "\u034f", "\u200b", "\u200c", "\u200d", "\u200e", "\u202e", "\u2028", "\u2029", "\u2060",
    "\u3000", "\u3164", "\u2800", "\ufeff", "\ufffe", "\uffff", "\ud800", "\udfff", " ",
    "a", "Đ", "ệ", "\u0302", "\u0301", "😀", "=",
]  # fmt: skip
texts = st.text(
    alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=())), max_size=30
)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _pattern_accepts(pattern: str, value: str) -> bool:
    """What a JSON Schema validator says: a text with a lone surrogate is no Unicode text, so no
    pattern can be asked about it; the functions refuse it (``test_lone_surrogates_are_refused``)."""
    return re.search(pattern, value) is not None and not _SURROGATE.search(value)


def _accepts(fn, value: str, **kw: object) -> bool:  # type: ignore[no-untyped-def]
    try:
        fn(value, max_length=10_000, **kw)
    except TextError:
        return False
    return True


@pytest.mark.parametrize("required", [True, False])
@settings(max_examples=600)
@given(value=texts)
def test_line_pattern_says_exactly_what_clean_line_accepts(required: bool, value: str) -> None:
    assert _pattern_accepts(line_pattern(required=required), value) == _accepts(
        clean_line, value, required=required
    )


@pytest.mark.parametrize("required", [True, False])
@settings(max_examples=600)
@given(value=texts)
def test_text_pattern_says_exactly_what_clean_text_accepts(required: bool, value: str) -> None:
    assert _pattern_accepts(text_pattern(required=required), value) == _accepts(
        clean_text, value, required=required
    )


@pytest.mark.parametrize("value", ["\ud800", "a\udfff", "Hà\udbffNội"])
def test_lone_surrogates_are_refused(value: str) -> None:
    for fn in (clean_line, clean_text):
        with pytest.raises(TextError) as err:
            fn(value, max_length=100)
        assert err.value.code == "control_character"


# Strings a Rust-regex JSON Schema validator (jsonschema_rs: what schemathesis checks with) can hold.
scalar_texts = st.text(
    alphabet=st.one_of(
        st.sampled_from([c for c in SPECIAL if not _SURROGATE.match(c)]),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=30,
)


@settings(max_examples=300)
@given(value=scalar_texts)
def test_patterns_mean_the_same_to_a_rust_regex_validator(value: str) -> None:
    """The OpenAPI patterns compile in the Rust engine of JSON Schema validators (a pattern naming
    surrogates does not, and a validator would then skip it) and judge every text as Python does."""
    import jsonschema_rs

    for pattern in (
        line_pattern(required=True),
        line_pattern(required=False),
        text_pattern(required=True),
        text_pattern(required=False),
        SECRET_PATTERN,
    ):
        validator = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        assert validator.is_valid(value) == (re.search(pattern, value) is not None), (pattern, value)


@settings(max_examples=600)
@given(value=texts)
def test_what_is_stored_is_clean_stable_and_exportable(value: str) -> None:
    for fn in (clean_line, clean_text):
        try:
            stored = fn(value, max_length=10_000, required=False)
        except TextError:
            continue
        assert unicodedata.is_normalized("NFC", stored)
        assert fn(stored, max_length=10_000, required=False) == stored
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]", stored)
        assert stored == stored.strip(" ")
        ws = Workbook().active
        assert ws is not None
        ws["A1"] = stored  # openpyxl raises IllegalCharacterError on what XLSX cannot hold
        ws.parent.save(io.BytesIO())
    if _accepts(clean_line, value, required=False):
        assert is_clean_line(clean_line(value, max_length=10_000, required=False))


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("  Hà   Nội ", "Hà Nội"),
        ("Ha\u0300 Nô\u0323i", "Hà Nội"),  # NFD in, NFC out
        ("Tỉnh\u00a0Bắc\u3000Ninh", "Tỉnh Bắc Ninh"),
        ("Xã\u200b Đông", "Xã Đông"),
        ("\ufeffBan Tổ chức", "Ban Tổ chức"),
        ("=HYPERLINK(1)", "=HYPERLINK(1)"),  # a formula is text here; exports neutralise it
    ],
)
def test_one_line_stored_forms(value: str, stored: str) -> None:
    assert clean_line(value) == stored


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("\u200b\u200b", "blank"),  # looks blank, is blank
        ("\u3164", "blank"),
        ("a\x01b", "control_character"),
        ("a\x85b", "control_character"),
        ("a\ud800", "control_character"),
        ("a\x00", "control_character"),
        ("a\nb", "line_break"),
        ("a\tb", "line_break"),
        ("a\u2028b", "line_break"),
        ("x" * 301, "too_long"),
    ],
)
def test_one_line_refusals(value: str, code: str) -> None:
    with pytest.raises(TextError) as err:
        clean_line(value, max_length=300)
    assert err.value.code == code


def test_multi_line_text() -> None:
    assert clean_text("  Kính gửi:\r\n\r\n- các đơn vị  \r\n\n") == "Kính gửi:\n\n- các đơn vị"
    assert clean_text("\n\n  1. Mở đầu\n    a) chi tiết") == "1. Mở đầu\n    a) chi tiết"
    assert clean_text("a\u2028b\tc") == "a\nb\tc"
    assert clean_text("👨\u200d👩\u200d👧") == "👨\u200d👩\u200d👧"  # joiners keep an emoji whole
    assert clean_text("\u200b\n \n") == ""
    with pytest.raises(TextError):
        clean_text(" \n ", required=True)
    with pytest.raises(TextError):
        clean_text("a\x07b")
