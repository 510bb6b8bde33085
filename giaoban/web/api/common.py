"""Shared API pieces: documented error responses, pagination parameters, path ids, the route class."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from giaoban.web.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "Not authenticated"},
    403: {"model": ErrorResponse, "description": "Not allowed"},
    404: {"model": ErrorResponse, "description": "Not found (or outside the caller's scope)"},
    409: {"model": ErrorResponse, "description": "Conflicts with the current state"},
    413: {"model": ErrorResponse, "description": "Request body too large (GIAOBAN_MAX_BODY_BYTES)"},
}
THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "Too many failed attempts; try again later"},
}

Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip")]
PathId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _methods_at(scope: Scope) -> set[str]:
    """Every method that some route of the application serves at the request's path."""
    from fastapi import routing

    routes = scope["app"].routes
    # FastAPI ≥ 0.16x keeps included routers as such; older versions flatten them into app.routes.
    contexts = routing.iter_route_contexts(routes) if hasattr(routing, "iter_route_contexts") else routes
    methods: set[str] = set()
    for route in contexts:
        served = getattr(route, "methods", None)
        if served and route.matches(scope)[0] is not Match.NONE:
            methods |= set(served)
    return methods


class ApiRoute(APIRoute):
    """An API route whose 405 answer lists, in ``Allow``, the methods of every route at that path.

    Starlette answers a wrong method from the first route whose path matches, so ``Allow`` would
    name only that route's method (``GET`` for ``/units/{id}``, though ``PATCH`` is served too).
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.methods and scope["method"] not in self.methods:
            allowed = ", ".join(sorted(_methods_at(scope) or self.methods))
            raise HTTPException(status_code=405, headers={"Allow": allowed})
        await super().handle(scope, receive, send)
