"""Vietnamese text handling: store NFC, search on a diacritics-free key."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def nfc(value: str) -> str:
    """Canonical stored form: NFC, trimmed, inner whitespace collapsed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", value)).strip()


def search_key(value: str) -> str:
    """Key for diacritics-insensitive search: "Hà Nội", "ha noi", "HA NOI" and NFD input all agree.

    NFD decomposition, combining marks dropped, đ/Đ folded to d (đ is a letter of its own, not a
    combining mark, so NFD alone keeps it), case folded, whitespace collapsed.
    """
    decomposed = unicodedata.normalize("NFD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    stripped = stripped.replace("đ", "d").replace("Đ", "D")
    return _SPACES.sub(" ", stripped.casefold()).strip()
