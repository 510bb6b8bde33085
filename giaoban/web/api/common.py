"""Shared API pieces: documented error responses, pagination parameters, path ids."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from giaoban.org.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "Not authenticated"},
    403: {"model": ErrorResponse, "description": "Not allowed"},
    404: {"model": ErrorResponse, "description": "Not found (or outside the caller's scope)"},
    409: {"model": ErrorResponse, "description": "Conflicts with the current state"},
}

Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip")]
PathId = Annotated[int, Path(ge=1, le=2**31 - 1)]
