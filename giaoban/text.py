"""Vietnamese text: the one policy for every field a person can type, its NFC storage form, and the
diacritics-free search key.

Every text that enters the system (API bodies and queries, form fields, CSV/XLSX cells, WebSocket
messages, CLI arguments) goes through ``clean_line`` (one-line fields: names, titles, codes) or
``clean_text`` (multi-line fields: descriptions, chat), so what is stored can always be exported
(no character that XML, openpyxl or PostgreSQL refuses) and never looks blank while holding
something:

- NFC; surrounding spaces trimmed and inner runs of spaces (any Unicode space) made one space;
- control characters refused: C0, DEL, C1; in one-line fields also tab, newline and the Unicode
  line/paragraph separators (multi-line fields keep tab and newline, line breaks become ``\\n``);
- lone surrogates and the non-characters U+FFFE/U+FFFF refused;
- invisible format characters (zero-width space, soft hyphen, bidirectional controls, BOM, Hangul
  fillers, braille blank …) removed; a field that is empty once they and the spaces are gone is
  blank, and a required field may not be blank;
- a length limit, counted on the stored form.

The rules are written as character classes so that one regular expression per kind of field
(``line_pattern`` / ``text_pattern``) states exactly what is accepted: it goes into the OpenAPI
document, and a test checks that the pattern and the functions agree on every string.
"""

from __future__ import annotations

import re
import unicodedata

from giaoban.errors import DomainError

# Refused everywhere: C0 (multi-line fields allow \t \n \r), DEL, C1, U+FFFE/FFFF, and lone
# surrogates. A surrogate is not a Unicode character: a JSON Schema validator built on Unicode
# scalar values (Rust's regex, ECMA-262 with the "u" flag) cannot even name one, and a pattern that
# tries is not a regex to it. So the patterns leave them out and say exactly what is accepted of
# every real text; the functions refuse a lone surrogate in any case.
_FORBIDDEN = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\ufffe\\uffff"
_SURROGATES = "\\ud800-\\udfff"
# Refused in one-line fields only (multi-line fields read them as line breaks or tabs).
_LINE_BREAKS = "\\t\\n\\r\\u2028\\u2029"
# Spaces (Unicode Zs): trimmed at the ends, a run inside becomes one " ".
_SPACES = " \\xa0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000"
# Invisible characters, removed from the stored form: soft hyphen, combining grapheme joiner,
# Arabic letter mark, Hangul fillers, Khmer inherent vowels, Mongolian selectors and separator,
# zero-width space/joiners, LRM/RLM, bidirectional embeddings and isolates, word joiner and
# invisible operators, Hangul filler, variation-free BOM, halfwidth filler, braille blank.
_INVISIBLE = (
    "\\xad\\u034f\\u061c\\u115f\\u1160\\u17b4\\u17b5\\u180b-\\u180f\\u200b\\u200e\\u200f\\u202a-\\u202e"
    "\\u2060-\\u2064\\u2066-\\u206f\\u2800\\u3164\\ufeff\\uffa0"
)
# Joiners keep emoji sequences whole in multi-line text (chat); one-line fields drop them.
_JOINERS = "\\u200c\\u200d"


def _cls(body: str) -> str:
    return f"[^{body}]"


_LINE_CHAR = _cls(_FORBIDDEN + _LINE_BREAKS)
_TEXT_CHAR = _cls(_FORBIDDEN)
_VISIBLE = _cls(_FORBIDDEN + _LINE_BREAKS + _SPACES + _INVISIBLE + _JOINERS)
# The true end of the text: "$" alone would also match before a final newline.
_END = "(?![\\s\\S])"


def line_pattern(*, required: bool) -> str:
    """The JSON Schema ``pattern`` of a one-line field (ECMA-262 and Python ``re`` alike)."""
    return f"^{_LINE_CHAR}*{_VISIBLE}{_LINE_CHAR}*{_END}" if required else f"^{_LINE_CHAR}*{_END}"


def text_pattern(*, required: bool) -> str:
    """The JSON Schema ``pattern`` of a multi-line field."""
    return f"^{_TEXT_CHAR}*{_VISIBLE}{_TEXT_CHAR}*{_END}" if required else f"^{_TEXT_CHAR}*{_END}"


_FORBIDDEN_RE = re.compile(f"[{_FORBIDDEN}{_SURROGATES}]")
_LINE_BREAK_RE = re.compile(f"[{_LINE_BREAKS}]")
_SPACES_RE = re.compile(f"[{_SPACES}]+")
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}{_JOINERS}]")
_INVISIBLE_TEXT_RE = re.compile(f"[{_INVISIBLE}]")
_LINE_ENDINGS_RE = re.compile("\r\n|[\r\u2028\u2029]")
_TRAILING_RE = re.compile(f"[{_SPACES}\\t{_JOINERS}]+$")
_LEADING_RE = re.compile(f"^[{_SPACES}\\t\\n{_JOINERS}]+")
_VISIBLE_RE = re.compile(_VISIBLE)


class TextError(DomainError, ValueError):
    """A text that the policy refuses; ``code`` is stable, ``str(exc)`` is the Vietnamese message.

    A ``DomainError`` (400 from the API, the message on a page's form, a line from the CLI) and a
    ``ValueError`` (a Pydantic validator turns it into a validation error)."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, code=code, details={"field": field} if field else None)
        self.field = field


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _check_chars(value: str, *, multiline: bool) -> None:
    bad = _FORBIDDEN_RE.search(value)
    if bad is not None:
        what = "ký tự không hợp lệ" if "\ud800" <= bad.group() <= "\udfff" else "ký tự điều khiển"
        raise TextError(
            "control_character", f"Có {what} ({_describe(bad.group())}) ở vị trí {bad.start() + 1}."
        )
    if not multiline:
        brk = _LINE_BREAK_RE.search(value)
        if brk is not None:
            raise TextError(
                "line_break", f"Trường một dòng không được có xuống dòng hay tab (vị trí {brk.start() + 1})."
            )


def _finish(value: str, *, max_length: int, required: bool) -> str:
    if required and not value:
        raise TextError("blank", "Không được để trống.")
    if len(value) > max_length:
        raise TextError("too_long", f"Dài quá {max_length} ký tự.")
    return value


def clean_line(value: str, *, max_length: int = 300, required: bool = True) -> str:
    """The stored form of a one-line field, or ``TextError`` saying why it is refused."""
    if not isinstance(value, str):
        raise TextError("not_text", "Phải là một chuỗi ký tự.")
    _check_chars(value, multiline=False)
    value = unicodedata.normalize("NFC", _INVISIBLE_RE.sub("", value))
    value = _SPACES_RE.sub(" ", value).strip(" ")
    return _finish(value, max_length=max_length, required=required)


def clean_text(value: str, *, max_length: int = 5000, required: bool = False) -> str:
    """The stored form of a multi-line field: line breaks are ``\\n``, tabs kept, trailing spaces of
    each line, blank lines at both ends and the spaces before the first visible character dropped;
    empty if nothing visible is left."""
    if not isinstance(value, str):
        raise TextError("not_text", "Phải là một chuỗi ký tự.")
    _check_chars(value, multiline=True)
    value = unicodedata.normalize("NFC", _INVISIBLE_TEXT_RE.sub("", value))
    lines = [_TRAILING_RE.sub("", line) for line in _LINE_ENDINGS_RE.sub("\n", value).split("\n")]
    value = _LEADING_RE.sub("", "\n".join(lines)).rstrip("\n")
    if _VISIBLE_RE.search(value) is None:
        value = ""
    return _finish(value, max_length=max_length, required=required)


def _labelled(exc: TextError, label: str, field: str | None, code: str | None) -> TextError:
    message = exc.message[:1].lower() + exc.message[1:]
    error = TextError(code or exc.code, f"{label}: {message}", field=field)
    error.details = {"field": field, "reason": exc.code}
    return error


def check_line(
    value: str,
    *,
    label: str,
    max_length: int = 300,
    required: bool = True,
    field: str | None = None,
    code: str | None = None,
) -> str:
    """``clean_line`` for a named field: the message says which field (``label``, Vietnamese); the
    error's ``code`` is ``code`` if given (``details.reason`` keeps the policy's own code)."""
    try:
        return clean_line(value, max_length=max_length, required=required)
    except TextError as exc:
        raise _labelled(exc, label, field, code) from None


def check_text(
    value: str,
    *,
    label: str,
    max_length: int = 5000,
    required: bool = False,
    field: str | None = None,
    code: str | None = None,
) -> str:
    """``clean_text`` for a named field."""
    try:
        return clean_text(value, max_length=max_length, required=required)
    except TextError as exc:
        raise _labelled(exc, label, field, code) from None


_REFUSED_IN_LINE_RE = re.compile(f"[{_FORBIDDEN}{_SURROGATES}{_LINE_BREAKS}]")


def searchable(value: str, *, max_length: int = 100) -> str:
    """A search box's text in the one-line form; never refuses: what the policy refuses becomes a
    space, and the text is cut to ``max_length``."""
    value = _REFUSED_IN_LINE_RE.sub(" ", value[: max_length * 4])
    return clean_line(value, max_length=len(value) + 1, required=False)[:max_length].rstrip(" ")


def is_clean_line(value: str) -> bool:
    """Whether ``value`` is already in the stored form of a one-line field (blank allowed)."""
    try:
        return clean_line(value, max_length=len(value) + 1, required=False) == value
    except TextError:
        return False


_WS = re.compile(r"\s+")


def nfc(value: str) -> str:
    """NFC, trimmed, inner whitespace collapsed: for text already admitted by the policy, or read
    back from storage (it does not check anything)."""
    return _WS.sub(" ", unicodedata.normalize("NFC", value)).strip()


def search_key(value: str) -> str:
    """Key for diacritics-insensitive search: "Hà Nội", "ha noi", "HA NOI" and NFD input all agree.

    NFD decomposition, combining marks dropped, đ/Đ folded to d (đ is a letter of its own, not a
    combining mark, so NFD alone keeps it), case folded, whitespace collapsed.
    """
    decomposed = unicodedata.normalize("NFD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    stripped = stripped.replace("đ", "d").replace("Đ", "D")
    return _WS.sub(" ", stripped.casefold()).strip()
