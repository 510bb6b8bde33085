"""The one policy for error bodies: every error the app answers is built here.

An error body names *where* the request is wrong (field locations), *what kind* of wrong (a stable
type or code) and says it in a short Vietnamese sentence. It never echoes the input back: a
hostile or huge value would come back as a hostile or huge answer (a 50 MB login body once got a
52 MB error), and a lone surrogate in it made the answer itself fail to encode (a 500). So:

- validation errors list ``loc``, ``type`` and ``msg`` only: no ``input``, no ``ctx``;
- every string that reaches a body (a location naming a client's key, a message carrying a
  domain's words) goes through ``clip``: no lone surrogate, no control character, cut at a length;
- the encoded body is capped (``MAX_ERROR_BYTES``): past it, details are dropped, never the status.

Shapes (docs/api.md): ``{"error": {"code", "message", "details"}}`` for every error, and for a
malformed request (422) also FastAPI's ``"detail": [{"loc", "msg", "type"}]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse

MAX_ERROR_BYTES = 256 * 1024  # an import's 1000 row errors fit
MAX_ISSUES = 20  # validation issues listed; the rest are counted
MAX_LOC_PART = 64  # characters of one location part (a client's key may be anything)
MAX_MESSAGE = 300

# Lone surrogates cannot be encoded; C0/C1 controls (tab and newline too) have no place in a
# one-line message; bidi controls could reorder what a reader sees.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clip(value: object, limit: int = MAX_MESSAGE) -> str:
    """A string safe to put in an error body: printable, encodable, at most ``limit`` characters."""
    text = _UNPRINTABLE.sub("\ufffd", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe(value: Any, depth: int = 0) -> Any:
    """Details made of plain JSON, every string clipped, every container bounded."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return clip(value)
    if depth > 6:
        return None
    if isinstance(value, Mapping):
        return {clip(k, MAX_LOC_PART): _safe(v, depth + 1) for k, v in list(value.items())[:200]}
    if isinstance(value, Sequence | set | frozenset):
        return [_safe(v, depth + 1) for v in list(value)[:1000]]
    return clip(value)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class ErrorJSON(JSONResponse):
    """A JSON error answer that cannot fail to encode and cannot grow past ``MAX_ERROR_BYTES``:
    a list of details too long is cut (an import's row errors), anything else dropped."""

    def render(self, content: Any) -> bytes:
        try:
            data = _encode(content)
        except (TypeError, ValueError, UnicodeError):  # not expected: the content was made safe
            content, data = _fallback(content), b""
        if 0 < len(data) <= MAX_ERROR_BYTES:
            return data
        body = _fallback(content)
        details = content.get("error", {}).get("details") if isinstance(content, dict) else None
        if isinstance(details, list):
            keep = len(details)
            while keep > 0:
                keep //= 2
                body["error"]["details"] = details[:keep]
                data = _encode(body)
                if len(data) <= MAX_ERROR_BYTES:
                    return data
            body["error"]["details"] = None
        return _encode(body)


def _fallback(content: Any) -> dict[str, Any]:
    error = content.get("error", {}) if isinstance(content, dict) else {}
    error = error if isinstance(error, dict) else {}
    body: dict[str, Any] = {
        "error": {
            "code": clip(error.get("code", "error"), MAX_LOC_PART),
            "message": clip(error.get("message", "Yêu cầu không hợp lệ.")),
            "details": None,
        }
    }
    if isinstance(content, dict) and isinstance(content.get("detail"), list):
        body["detail"] = _safe(content["detail"][:MAX_ISSUES])
    return body


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": clip(code, MAX_LOC_PART), "message": clip(message), "details": _safe(details)}}
    return ErrorJSON(body, status_code=status, headers=dict(headers) if headers else None)


# --- 422: a malformed request ------------------------------------------------------------------------

# Pydantic's error types, said in Vietnamese; ``{name}`` is filled from the error's limits (numbers
# and the schema's own words, never the input).
_MESSAGES = {
    "missing": "Thiếu trường bắt buộc.",
    "extra_forbidden": "Trường này không được phép.",
    "json_invalid": "Nội dung không phải JSON hợp lệ.",
    "json_type": "Nội dung không phải JSON hợp lệ.",
    "model_type": "Phải là một đối tượng JSON.",
    "model_attributes_type": "Phải là một đối tượng JSON.",
    "dict_type": "Phải là một đối tượng JSON.",
    "list_type": "Phải là một danh sách.",
    "string_type": "Phải là một chuỗi ký tự.",
    "string_too_short": "Quá ngắn (ít nhất {min_length} ký tự).",
    "string_too_long": "Quá dài (nhiều nhất {max_length} ký tự).",
    "string_pattern_mismatch": "Có ký tự không được phép hoặc để trống.",
    "string_unicode": "Chuỗi ký tự không hợp lệ.",
    "too_short": "Quá ít phần tử (ít nhất {min_length}).",
    "too_long": "Quá nhiều phần tử (nhiều nhất {max_length}).",
    "int_type": "Phải là một số nguyên.",
    "int_parsing": "Phải là một số nguyên.",
    "int_from_float": "Phải là một số nguyên.",
    "float_type": "Phải là một số.",
    "float_parsing": "Phải là một số.",
    "finite_number": "Phải là một số hữu hạn.",
    "bool_type": "Phải là true hoặc false.",
    "bool_parsing": "Phải là true hoặc false.",
    "greater_than": "Phải lớn hơn {gt}.",
    "greater_than_equal": "Phải lớn hơn hoặc bằng {ge}.",
    "less_than": "Phải nhỏ hơn {lt}.",
    "less_than_equal": "Phải nhỏ hơn hoặc bằng {le}.",
    "literal_error": "Phải là một trong: {expected}.",
    "enum": "Phải là một trong: {expected}.",
    "date_type": "Ngày phải có dạng YYYY-MM-DD.",
    "date_parsing": "Ngày phải có dạng YYYY-MM-DD.",
    "date_from_datetime_parsing": "Ngày phải có dạng YYYY-MM-DD.",
    "datetime_type": "Thời điểm phải có dạng ISO 8601, ví dụ 2026-12-08T08:00:00+07:00.",
    "datetime_parsing": "Thời điểm phải có dạng ISO 8601, ví dụ 2026-12-08T08:00:00+07:00.",
    "datetime_from_date_parsing": "Thời điểm phải có dạng ISO 8601, ví dụ 2026-12-08T08:00:00+07:00.",
    "url_parsing": "Địa chỉ không hợp lệ.",
    "uuid_parsing": "Mã UUID không hợp lệ.",
    "bytes_type": "Phải là một tệp hoặc chuỗi byte.",
    "union_tag_invalid": "Loại không hợp lệ.",
}
_GENERIC = "Giá trị không hợp lệ."


def _message(issue: Mapping[str, Any]) -> str:
    kind = str(issue.get("type", ""))
    ctx = issue.get("ctx") if isinstance(issue.get("ctx"), Mapping) else {}
    assert isinstance(ctx, Mapping)
    if kind in ("value_error", "assertion_error"):
        # Our own validators speak Vietnamese already (giaoban.types, giaoban.text).
        text = str(ctx.get("error", "")) or _GENERIC
        return clip(text)
    template = _MESSAGES.get(kind)
    if template is None:
        return _GENERIC
    limits = {k: clip(v, 120) for k, v in ctx.items() if isinstance(v, int | float | str)}
    try:
        return clip(template.format(**limits))
    except (KeyError, IndexError, ValueError):
        return clip(template.split("{")[0].rstrip(" (:") + ".")


def _loc(parts: Iterable[Any]) -> list[str | int]:
    out: list[str | int] = []
    for part in list(parts)[:12]:
        out.append(part if isinstance(part, int) and not isinstance(part, bool) else clip(part, MAX_LOC_PART))
    return out


def validation_issues(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``loc``, ``type`` and a Vietnamese ``msg`` for each of the first ``MAX_ISSUES`` issues."""
    return [
        {"loc": _loc(e.get("loc", ())), "msg": _message(e), "type": clip(e.get("type", ""), MAX_LOC_PART)}
        for e in errors[:MAX_ISSUES]
    ]


def _field_name(loc: Sequence[str | int]) -> str:
    names = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(names)


def validation_response(
    errors: Sequence[Mapping[str, Any]], *, content_type: str | None = None
) -> JSONResponse:
    issues = validation_issues(errors)
    first = issues[0] if issues else None
    if (
        first is not None
        and first["loc"] == ["body"]
        and first["type"]
        in (
            "model_attributes_type",
            "dict_type",
            "model_type",
        )
        and "json" not in (content_type or "")
    ):
        message = "Nội dung yêu cầu phải là JSON (Content-Type: application/json)."
        first["msg"] = message
    elif first is not None and first["type"] == "json_invalid":
        position = first["loc"][-1] if isinstance(first["loc"][-1], int) else None
        message = (
            first["msg"] if position is None else f"Nội dung không phải JSON hợp lệ (ở ký tự {position})."
        )
    elif first is not None:
        field = _field_name(first["loc"])
        message = clip(f"{field}: {first['msg']}" if field else first["msg"])
    else:
        message = "Yêu cầu không hợp lệ."
    if len(errors) > 1:
        message = clip(f"{message} (và {len(errors) - 1} lỗi khác)")
    body = {
        "error": {"code": "invalid_request", "message": message, "details": None},
        "detail": issues,
    }
    return ErrorJSON(body, status_code=422)


# --- other HTTP errors ------------------------------------------------------------------------------

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}
HTTP_MESSAGES = {
    400: "Yêu cầu không hợp lệ.",
    404: "Không tìm thấy.",
    405: "Phương thức này không được hỗ trợ ở địa chỉ này.",
    413: "Nội dung yêu cầu quá lớn.",
    415: "Kiểu nội dung không được hỗ trợ.",
}
# Starlette's and FastAPI's own words, in Vietnamese.
_KNOWN_DETAILS = {
    "There was an error parsing the body": "Không đọc được nội dung yêu cầu: cần JSON hợp lệ, mã hoá UTF-8.",
}


def http_message(status: int, detail: object) -> str:
    text = str(detail) if detail is not None else ""
    if text in _KNOWN_DETAILS:
        return _KNOWN_DETAILS[text]
    try:
        import http

        if not text or text == http.HTTPStatus(status).phrase:
            return HTTP_MESSAGES.get(status, "Đã có lỗi xảy ra.")
    except ValueError:
        pass
    return clip(text)


def validation_schema() -> dict[str, dict[str, Any]]:
    """The OpenAPI components for a 422 as this module sends it (replacing FastAPI's, which
    promises ``input`` and ``ctx``)."""
    return {
        "ValidationError": {
            "title": "ValidationError",
            "type": "object",
            "required": ["loc", "msg", "type"],
            "properties": {
                "loc": {
                    "title": "Location",
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "description": "Where: body / query / path, then field names and list positions.",
                },
                "msg": {"title": "Message", "type": "string", "description": "What is wrong (Vietnamese)."},
                "type": {"title": "Error Type", "type": "string", "description": "Pydantic's error type."},
            },
        },
        "HTTPValidationError": {
            "title": "HTTPValidationError",
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"$ref": "#/components/schemas/ErrorBody"},
                "detail": {
                    "title": "Detail",
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ValidationError"},
                    "maxItems": MAX_ISSUES,
                },
            },
        },
    }
