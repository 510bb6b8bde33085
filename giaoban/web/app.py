"""The ASGI application: API under /api/v1, server-rendered pages, health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from giaoban import __version__
from giaoban.context import AppContext
from giaoban.errors import DomainError
from giaoban.live.hub import Hub
from giaoban.live.quality import QualityMonitor
from giaoban.live.stage import stage_factory
from giaoban.media.service import MediaService
from giaoban.media.turn import TurnService
from giaoban.settings import Settings, get_settings
from giaoban.thresholds import Thresholds
from giaoban.web.api import audit as audit_api
from giaoban.web.api import auth as auth_api
from giaoban.web.api import io as io_api
from giaoban.web.api import meetings as meetings_api
from giaoban.web.api import quality as quality_api
from giaoban.web.api import roster as roster_api
from giaoban.web.api import sites as sites_api
from giaoban.web.api import units as units_api
from giaoban.web.api import users as users_api
from giaoban.web.errors import (
    HTTP_CODES,
    error_response,
    http_message,
    validation_response,
    validation_schema,
)
from giaoban.web.limits import BodyLimit
from giaoban.web.schemas import Health

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    ctx: AppContext | None = None,
    settings: Settings | None = None,
    media: MediaService | None = None,
    turn: TurnService | None = None,
) -> FastAPI:
    """The app. ``media`` (the Janus plane) and ``turn`` (coturn, ICE servers) start and stop with it."""
    ctx = ctx or AppContext.from_settings(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if media is not None:
            await media.start()
        if turn is not None:
            await turn.start()
        app.state.quality.start()
        try:
            yield
        finally:
            await app.state.quality.stop()
            if turn is not None:
                await turn.stop()
            if media is not None:
                await media.stop()
            ctx.db.dispose()

    app = FastAPI(
        title="Giao Ban",
        version=__version__,
        description="Giao ban trực tuyến và hồ sơ tổ chức — API v1",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.media = media
    app.state.hub = Hub(ctx, stage_factory=stage_factory(media) if media is not None else None)
    app.state.quality = QualityMonitor(
        app.state.hub,
        lambda: media.events if media is not None else None,
        thresholds=Thresholds.with_overrides(ctx.settings.quality_thresholds),
    )
    app.state.turn = turn
    if turn is not None and turn.enabled:
        app.state.hub.ice_config = turn.ice_config

    # io first: its fixed paths (/units/export) must win over /units/{unit_id}.
    for router in (
        auth_api.router,
        io_api.router,
        units_api.router,
        sites_api.router,
        users_api.router,
        audit_api.router,
        meetings_api.router,
        quality_api.router,
        roster_api.router,
    ):
        app.include_router(router, prefix="/api/v1")

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        from giaoban.web.pagekit import render_error, wants_html

        if wants_html(request):
            return render_error(request, exc.status, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        from giaoban.web.pagekit import render_error, wants_html

        if wants_html(request):
            return render_error(request, exc.status_code, http_message(exc.status_code, exc.detail))
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = http_message(exc.status_code, exc.detail)
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # Locations, types and Vietnamese messages; never the input (giaoban.web.errors).
        from giaoban.web.pagekit import render_error, wants_html

        response = validation_response(exc.errors(), content_type=request.headers.get("content-type"))
        if wants_html(request):
            return render_error(request, 422, json.loads(bytes(response.body))["error"]["message"])
        return response

    @app.exception_handler(WebSocketRequestValidationError)
    async def websocket_validation_error(websocket: WebSocket, exc: WebSocketRequestValidationError) -> None:
        # FastAPI's default puts the errors, input included, in the close reason (at most 123 bytes).
        await websocket.close(code=1008, reason="invalid request")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # Logged by the server; the client learns nothing of the cause.
        from giaoban.web.pagekit import render_error, wants_html

        if wants_html(request):
            return render_error(request, 500, "")
        return error_response(500, "internal_error", "Lỗi máy chủ. Vui lòng thử lại sau.")

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness of the app and its parts")
    async def healthz() -> Health:
        import anyio

        def db_ok() -> str:
            try:
                with ctx.db.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return "ok"
            except Exception:
                return "down"

        database = await anyio.to_thread.run_sync(db_ok)
        media = await app.state.media.health() if app.state.media is not None else None
        status = "ok" if database == "ok" and (media is None or media.get("status") == "ok") else "degraded"
        if turn is not None and media is not None:  # TURN is part of the media plane (docs/deploy.md)
            media["turn"] = turn.health()
            if media["turn"]["status"] not in ("ok", "off"):
                status = "degraded"
        return Health(status=status, database=database, media=media)

    @app.post("/internal/janus/events", include_in_schema=False)
    async def janus_events(request: Request) -> Response:
        """Janus's event handler posts here (HTTP basic auth with the events secret); answer fast."""
        if media is None or not media.check_event_auth(request.headers.get("authorization")):
            return Response(status_code=401)
        try:
            body = await request.json()
        except ValueError:
            return Response(status_code=400)
        if not isinstance(body, list | dict):
            return Response(status_code=400)
        media.ingest_events(body)
        return Response(status_code=200)

    settings_ = ctx.settings
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings_.max_body_bytes,
        max_upload_bytes=settings_.max_upload_bytes,
        # Imports take a spreadsheet; Janus posts its events in batches (grouping), on loopback.
        upload_paths=["/api/v1" + path for path in io_api.UPLOAD_PATHS] + ["/internal/janus/events"],
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(validation_schema())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    from giaoban.web import metrics, pages, pages_account, pages_meetings, pages_org, pages_roster, ws

    app.include_router(metrics.router)

    app.include_router(ws.router)
    from giaoban.web import ws_techcheck

    app.include_router(ws_techcheck.router)
    app.include_router(pages.router)
    app.include_router(pages_org.router)
    app.include_router(pages_account.router)
    app.include_router(pages_meetings.router)
    app.include_router(pages_roster.router)
    return app
