"""Vietnamese text: stored NFC, searched on a key without diacritics, case or đ."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from giaoban.text import nfc, search_key

# The Vietnamese alphabet, each vowel with its five tone marks (huyền, sắc, ngã, hỏi, nặng).
BASES = {
    "a": "a",
    "ă": "a",
    "â": "a",
    "e": "e",
    "ê": "e",
    "i": "i",
    "o": "o",
    "ô": "o",
    "ơ": "o",
    "u": "u",
    "ư": "u",
    "y": "y",
}
TONES = ("", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323")
CONSONANTS = "bcdđghklmnpqrstvx"


def _letters() -> dict[str, str]:
    """Every Vietnamese letter (NFC, both cases) → its plain ASCII lower-case letter."""
    plain: dict[str, str] = {}
    for vowel, base in BASES.items():
        for tone in TONES:
            letter = unicodedata.normalize("NFC", vowel + tone)
            assert len(letter) == 1, letter  # every toned vowel has a precomposed form
            plain[letter] = base
            plain[letter.upper()] = base
    for consonant in CONSONANTS:
        base = "d" if consonant == "đ" else consonant
        plain[consonant] = base
        plain[consonant.upper()] = base
    return plain


LETTERS = _letters()
vietnamese = st.text(alphabet=st.sampled_from([*sorted(LETTERS), " "]), max_size=40)


@pytest.mark.parametrize(
    "spelling",
    [
        "ha noi",
        "Hà Nội",
        "HA NOI",
        "HÀ NỘI",
        unicodedata.normalize("NFD", "Hà Nội"),
        "  Hà   Nội ",
        "hà\tnội",
    ],
)
def test_ways_of_writing_ha_noi_agree(spelling: str) -> None:
    assert search_key(spelling) == "ha noi"


def test_nfc_and_nfd_input_give_one_key() -> None:
    for name in ("Tỉnh ủy Hà Giang", "Thành ủy Thành phố Hồ Chí Minh", "Đảng ủy Khối doanh nghiệp"):
        nfd = unicodedata.normalize("NFD", name)
        assert nfd != name
        assert search_key(nfd) == search_key(name)


def test_d_with_stroke_folds_to_d() -> None:
    # đ/Đ are letters of their own, not d plus a combining mark: NFD alone would keep them.
    assert unicodedata.normalize("NFD", "đ") == "đ"
    assert search_key("Đà Nẵng") == "da nang"
    assert search_key("đà nẵng") == search_key("DA NANG")
    assert search_key("Điện Biên") == "dien bien"


def test_key_keeps_letters_apart() -> None:
    assert search_key("Hà Nội") != search_key("Hà Nam")
    assert search_key("a") != search_key("ă b")


def test_nfc_stores_composed_trimmed_text() -> None:
    nfd = unicodedata.normalize("NFD", "  Tỉnh ủy\n Cà  Mau ")
    assert nfc(nfd) == "Tỉnh ủy Cà Mau"
    assert unicodedata.is_normalized("NFC", nfc(nfd))


@given(st.text())
def test_search_key_is_idempotent(text: str) -> None:
    key = search_key(text)
    assert search_key(key) == key


@given(st.text())
def test_search_key_ignores_the_normal_form(text: str) -> None:
    key = search_key(text)
    assert search_key(unicodedata.normalize("NFC", text)) == key
    assert search_key(unicodedata.normalize("NFD", text)) == key


@given(st.text())
def test_nfc_is_idempotent(text: str) -> None:
    once = nfc(text)
    assert nfc(once) == once
    assert once == once.strip()


@given(vietnamese)
def test_vietnamese_text_gets_a_plain_ascii_key(text: str) -> None:
    key = search_key(text)
    assert key.isascii()
    assert key == " ".join("".join(LETTERS.get(ch, ch) for ch in text).split())


@given(vietnamese)
def test_vietnamese_key_is_the_same_for_any_spelling(text: str) -> None:
    key = search_key(text)
    assert search_key(unicodedata.normalize("NFD", text)) == key
    assert search_key(text.upper()) == key
    assert search_key(text.swapcase()) == key
