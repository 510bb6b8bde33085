"""Every table, imported in one place so Alembic and ``create_all`` see the whole schema."""

from giaoban.audit.models import AuditEntry, AuditHead
from giaoban.db import Base
from giaoban.meetings.models import AgendaItem, Invitation, Meeting, MeetingRecord
from giaoban.org.models import (
    AuthSession,
    LoginAttempt,
    RoleAssignment,
    RosterEntry,
    Site,
    Unit,
    UnitEvent,
    UnitLineage,
    UnitVersion,
    User,
)

__all__ = [
    "AgendaItem",
    "AuditEntry",
    "AuditHead",
    "AuthSession",
    "Base",
    "Invitation",
    "LoginAttempt",
    "Meeting",
    "MeetingRecord",
    "RoleAssignment",
    "RosterEntry",
    "Site",
    "Unit",
    "UnitEvent",
    "UnitLineage",
    "UnitVersion",
    "User",
]
