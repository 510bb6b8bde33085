"""/api/v1/{units,sites}/{import,export}: spreadsheets in and out (all rows or nothing)."""

from __future__ import annotations

from fastapi import APIRouter

from giaoban.web.api.common import ERRORS

router = APIRouter(tags=["import-export"], responses=ERRORS)
