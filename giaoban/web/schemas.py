"""API shapes every router shares, whatever its domain: a page of a list, the error body, health."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from giaoban.types import Listing

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


def page_of(found: Listing[object], items: list[T]) -> Page[T]:
    """The ``Page`` of a domain ``Listing`` whose rows were rendered as ``items``."""
    return Page(items=items, total=found.total)


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="Human-readable message (Vietnamese).")
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    database: str
    media: dict[str, object] | None = None
