"""File answers the API and the pages both give: a meeting's .ics, a roll call's .xlsx."""

from __future__ import annotations

from fastapi.responses import Response

from giaoban import tabular


def ics_response(data: bytes, meeting_id: int) -> Response:
    return Response(
        data,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="giaoban-{meeting_id}.ics"'},
    )


def xlsx_response(data: bytes, meeting_id: int) -> Response:
    return Response(
        data,
        media_type=tabular.MEDIA_TYPES["xlsx"],
        headers={"Content-Disposition": f'attachment; filename="diem-danh-{meeting_id}.xlsx"'},
    )
