"""Error bodies never fail and never echo, and the app itself limits what a client may send.

Every JSON route of the OpenAPI document is sent hostile bodies (a lone surrogate in every string
field and in a key, a huge value, broken JSON, non-UTF-8 bytes, the wrong content type): the answer
is a 4xx whose body is valid UTF-8 JSON, small, in the documented shape, with a Vietnamese message,
and without the input in it. Body limits are checked on a real uvicorn server as well: a 50 MB login
body with Content-Length or chunked gets a small 413 and the server keeps serving.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from giaoban.audit.log import AuditLog
from giaoban.context import AppContext
from giaoban.db import Database
from giaoban.settings import Settings
from giaoban.web.app import create_app
from giaoban.web.errors import MAX_ERROR_BYTES, clip, error_response, validation_issues
from giaoban.web.limits import BodyLimit
from tests.conftest import Demo, login

SURROGATE = b'"\\ud800"'
HUGE = "ê" * 200_000


def _json_routes(app: Any) -> list[tuple[str, str, list[str]]]:
    """(method, concrete path, top-level string properties) of every operation with a JSON body."""
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            content = (op.get("requestBody") or {}).get("content", {})
            if "application/json" not in content:
                continue
            schema = content["application/json"]["schema"]
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            props = [k for k, v in schema.get("properties", {}).items() if _stringish(v, schemas)]
            out.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path), props))
    return out


def _stringish(prop: dict[str, Any], schemas: dict[str, Any]) -> bool:
    options = prop.get("anyOf", [prop])
    return any(o.get("type") == "string" for o in options)


def _check_error(r: Any, *, limit: int = 4096, needle: str | None = None) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert len(r.content) <= limit, len(r.content)
    text = r.content.decode("utf-8")  # strict: an unencodable body would have failed already
    body = json.loads(text)
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    assert "\ufffd" not in body["error"]["code"]
    if needle is not None:
        assert needle not in text
    for issue in body.get("detail", []):
        assert set(issue) == {"loc", "msg", "type"}, issue  # no "input", no "ctx"
    return body


@pytest.fixture
def admin(client: TestClient, demo: Demo) -> dict[str, str]:
    return login(client, "admin")


def test_a_lone_surrogate_anywhere_in_any_json_body_is_a_clean_4xx(
    client: TestClient, admin: dict[str, str]
) -> None:
    routes = _json_routes(client.app)
    assert len(routes) > 20
    headers = {**admin, "content-type": "application/json"}
    for method, path, props in routes:
        fields = b",".join(b'"%s":%s' % (p.encode(), SURROGATE) for p in props)
        for raw in (b"{" + fields + b"}", b'{"\\udc00x":' + SURROGATE + b"}", SURROGATE):
            for who in (headers, {"content-type": "application/json"}):
                r = client.request(method, path, content=raw, headers=who)
                _check_error(r)


def test_the_unauthenticated_login_with_a_surrogate_is_422(client: TestClient) -> None:
    r = client.post(
        "/api/v1/auth/login",
        content=b'{"username":"\\ud800","password":"x"}',
        headers={"content-type": "application/json"},
    )
    body = _check_error(r)
    assert r.status_code == 422 and body["detail"][0]["loc"] == ["body", "username"]


def test_error_bodies_do_not_echo_the_input(client: TestClient, admin: dict[str, str]) -> None:
    for method, path, props in _json_routes(client.app):
        body = {p: HUGE for p in props} | {HUGE[:5000]: HUGE}
        r = client.request(method, path, json=body, headers=admin)
        _check_error(r, needle="ê" * 100)


def test_malformed_requests_say_what_is_wrong(client: TestClient) -> None:
    url = "/api/v1/auth/login"
    cases = [
        (b'{"username": "a", "password":', "application/json", "JSON"),
        (b'{"username": "\xff\xfe", "password": "x"}', "application/json", "UTF-8"),
        (b'{"username": "a", "password": "x"}', "text/plain", "Content-Type"),
        (b"username=a&password=x", "application/x-www-form-urlencoded", "Content-Type"),
        (b'["a", "b"]', "application/json", "đối tượng JSON"),
        (b"", "application/json", "Thiếu"),
    ]
    for raw, kind, words in cases:
        r = client.post(url, content=raw, headers={"content-type": kind})
        body = _check_error(r)
        assert words in body["error"]["message"], (raw, body)


def test_many_issues_are_capped_and_counted(client: TestClient, admin: dict[str, str]) -> None:
    r = client.put("/api/v1/users/1/roles", json={"roles": [{"role": 5, "unit_id": "x"}] * 50}, headers=admin)
    body = _check_error(r)
    assert len(body["detail"]) <= 20 and "lỗi khác" in body["error"]["message"]


def test_not_found_and_wrong_method_speak_vietnamese(client: TestClient, admin: dict[str, str]) -> None:
    assert (
        _check_error(client.get("/api/v1/nothing-here", headers=admin))["error"]["message"]
        == "Không tìm thấy."
    )
    body = _check_error(client.delete("/api/v1/units", headers=admin))
    assert body["error"]["code"] == "method_not_allowed"


def test_the_policy_itself() -> None:
    assert clip("a\ud800b\x00c\u202e") == "a\ufffdb\ufffdc\ufffd"
    assert len(clip("x" * 10_000)) == 300
    issues = validation_issues(
        [{"type": "extra_forbidden", "loc": ("body", "\ud800" * 500), "msg": "x", "input": HUGE}]
    )
    assert issues == [
        {
            "loc": ["body", "\ufffd" * 63 + "…"],
            "msg": "Trường này không được phép.",
            "type": "extra_forbidden",
        }
    ]
    # Domain errors may carry any details: made safe, and cut to fit.
    r = error_response(409, "x", "m\udfff", details=[{"row": i, "message": "ô" * 290} for i in range(1000)])
    assert len(r.body) <= MAX_ERROR_BYTES
    out = json.loads(r.body)
    assert 0 < len(out["error"]["details"]) < 1000 and out["error"]["message"] == "m\ufffd"


def test_the_validation_error_schema_is_what_is_sent(client: TestClient) -> None:
    doc = client.app.openapi()
    issue = doc["components"]["schemas"]["ValidationError"]
    assert set(issue["properties"]) == {"loc", "msg", "type"}
    assert doc["components"]["schemas"]["HTTPValidationError"]["required"] == ["error", "detail"]
    assert "413" in doc["paths"]["/api/v1/auth/login"]["post"]["responses"]


# --- body limits, in-process --------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_before_the_route_sees_it(client: TestClient, demo: Demo) -> None:
    limit = demo.ctx.settings.max_body_bytes
    body = b'{"username":"' + b"a" * limit + b'","password":"x"}'
    r = client.post("/api/v1/auth/login", content=body, headers={"content-type": "application/json"})
    out = _check_error(r, limit=512)
    assert r.status_code == 413 and out["error"]["code"] == "body_too_large"
    assert "1 MiB" in out["error"]["message"]

    # Streamed without Content-Length (chunked): counted as it arrives.
    def chunks() -> Iterator[bytes]:
        yield b'{"username":"'
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536
        yield b'","password":"x"}'

    r = client.post("/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and len(r.content) < 512
    assert client.get("/healthz").status_code == 200


def test_imports_may_send_more_than_json(client: TestClient, admin: dict[str, str], demo: Demo) -> None:
    """A 3 MiB spreadsheet reaches the import (its rows are judged there); 3 MiB of JSON does not."""
    assert demo.ctx.settings.max_upload_bytes > 3 * 1024 * 1024 > demo.ctx.settings.max_body_bytes
    filler = "\n".join(f"Q{i:07d}\tĐơn vị {i}\tdistrict\tKHONGCO" for i in range(80_000))
    data = ("code\tname\tkind\tparent\n" + filler + "\n").encode()
    assert len(data) > 3 * 1024 * 1024
    r = client.post(
        "/api/v1/units/import?format=tsv&dry_run=true",
        files={"file": ("units.tsv", data, "text/tab-separated-values")},
        headers=admin,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "import_rejected", r.text[:300]
    r = client.post("/api/v1/units", content=data, headers={**admin, "content-type": "application/json"})
    assert r.status_code == 413


def test_a_websocket_message_over_the_limit_closes_the_socket() -> None:
    got: list[str] = []

    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                got.append(await ws.receive_text())
        except WebSocketDisconnect as exc:
            got.append(f"closed {exc.code}")

    app = BodyLimit(
        Starlette(routes=[WebSocketRoute("/ws", echo)]), max_body_bytes=8192, max_upload_bytes=8192
    )
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("hello")
        ws.send_text("é" * 5000)  # 10 000 bytes in UTF-8
        message = ws.receive()
        assert message == {"type": "websocket.close", "code": 1009, "reason": "message too big"}
    assert got == ["hello", "closed 1009"]


# --- body limits, on a real server ----------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[str, int]]:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", secret_key="k" * 32
    )
    app = create_app(AppContext(settings, Database(settings.resolved_database_url), AuditLog("k" * 32)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _exchange(address: tuple[str, int], head: bytes, body: Iterator[bytes]) -> tuple[int, bytes]:
    """Send a request (stop sending once the server answers), return (status, response body)."""
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(head)
        sock.settimeout(0.001)
        answer = b""
        for chunk in body:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: stop sending
                break
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except (BlockingIOError, TimeoutError):
                pass
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def _length(answer: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", answer.split(b"\r\n\r\n", 1)[0], re.I)
    return int(match.group(1)) if match else 0


FIFTY_MB = 50 * 1024 * 1024


def _fifty_mb(chunked: bool) -> Iterator[bytes]:
    piece = b"a" * (256 * 1024)
    sent = 0
    prefix = b'{"username":"'
    yield (b"%x\r\n%s\r\n" % (len(prefix), prefix)) if chunked else prefix
    while sent < FIFTY_MB:
        yield (b"%x\r\n%s\r\n" % (len(piece), piece)) if chunked else piece
        sent += len(piece)


def test_a_50_mb_login_gets_a_small_413_and_the_server_keeps_serving(served: tuple[str, int]) -> None:

    head = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    status, body = _exchange(served, head + b"Content-Length: %d\r\n\r\n" % (FIFTY_MB + 13), _fifty_mb(False))
    assert status == 413 and len(body) < 512 and json.loads(body)["error"]["code"] == "body_too_large"

    status, body = _exchange(served, head + b"Transfer-Encoding: chunked\r\n\r\n", _fifty_mb(True))
    assert status == 413 and len(body) < 512 and json.loads(body)["error"]["code"] == "body_too_large"

    status, body = _exchange(
        served, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", iter(())
    )
    assert status == 200 and json.loads(body)["status"] in ("ok", "degraded")


@pytest.mark.parametrize("tail", ["abc", "%F0%9F%98%80" * 50, "99999999999999999999", "0"])
def test_a_malformed_websocket_path_closes_without_echo(client: TestClient, demo: Demo, tail: str) -> None:
    """FastAPI's default closed with the errors, input included, as the reason (a list, and longer
    than the 123 bytes a close reason may have); an id beyond 32 bits reached the database."""
    headers = login(client, "admin")
    for path in (f"/ws/meetings/{tail}", f"/ws/meetings/{tail}/techcheck"):
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect(path, headers=headers) as ws,
        ):
            ws.receive()
        assert (closed.value.code, closed.value.reason) == (1008, "invalid request")


def test_a_server_error_tells_nothing_of_its_cause() -> None:
    app = create_app(AppContext(Settings(), Database("sqlite://"), AuditLog("k" * 32)))

    def boom() -> None:
        raise RuntimeError("secret detail \ud800")

    app.add_api_route("/api/v1/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/api/v1/boom")
    assert r.status_code == 500
    assert r.json() == {
        "error": {"code": "internal_error", "message": "Lỗi máy chủ. Vui lòng thử lại sau.", "details": None}
    }
