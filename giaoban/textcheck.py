"""Stored text that the text policy (giaoban.text) would not accept today: ``giaoban text check``.

Since every way in applies the policy, new data is always clean. A database written by an earlier
version may still hold a name with a control character, an invisible-only name or text not in NFC.
Exports never fail on it (giaoban.tabular writes U+FFFD for what a spreadsheet cannot hold), but
the operator should correct it: this lists every such field with its table, row id and the reason,
and the command exits 1 if it finds any. Correct each through the pages or the API, which apply
the policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from giaoban.meetings.models import AgendaItem, Meeting
from giaoban.org.models import RosterEntry, Site, Unit, UnitVersion, User
from giaoban.text import TextError, clean_line, clean_text

# (model, one-line columns, multi-line columns)
CHECKED: tuple[tuple[Any, tuple[str, ...], tuple[str, ...]], ...] = (
    (Unit, ("code", "name", "kind"), ()),
    (UnitVersion, ("name", "kind"), ()),
    (Site, ("code", "name", "location", "contact_name", "contact_phone", "tech_name", "tech_phone"), ()),
    (User, ("full_name", "email", "phone", "locked_reason"), ()),
    (RosterEntry, ("full_name", "position", "phone"), ()),
    (Meeting, ("title",), ("description",)),
    (AgendaItem, ("title", "presenter"), ()),
)


@dataclass(frozen=True)
class Unclean:
    table: str
    row_id: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.table}.{self.column} (id {self.row_id}): {self.reason}"


def _reason(value: str, multiline: bool) -> str | None:
    try:
        cleaned = (clean_text if multiline else clean_line)(value, max_length=len(value) + 1, required=False)
    except TextError as exc:
        return exc.message
    if cleaned != value:
        return f"chưa ở dạng chuẩn (nên là {cleaned[:60]!r})"
    return None


def unclean_text(session: Session) -> Iterator[Unclean]:
    """Every stored text field the policy would store differently or refuse."""
    for model, lines, texts in CHECKED:
        columns = [getattr(model, c) for c in (*lines, *texts)]
        stmt = select(model.id, *columns).order_by(model.id).execution_options(yield_per=1000)
        for row in session.execute(stmt):
            for name, value in zip((*lines, *texts), row[1:], strict=True):
                if not value:
                    continue
                reason = _reason(str(value), multiline=name in texts)
                if reason is not None:
                    yield Unclean(model.__tablename__, int(row[0]), name, reason)
