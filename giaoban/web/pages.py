"""Server-rendered pages (Vietnamese first). Placeholder until the UI lands."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def render_error(request: Request, status: int, message: str) -> Response:
    return HTMLResponse(f"<!doctype html><title>{status}</title><p>{message}</p>", status_code=status)
