"""Every table, imported in one place so Alembic and ``create_all`` see the whole schema."""

from giaoban.audit.models import AuditEntry, AuditHead
from giaoban.db import Base
from giaoban.org.models import (
    AuthSession,
    LoginAttempt,
    RoleAssignment,
    Site,
    Unit,
    UnitEvent,
    UnitLineage,
    UnitVersion,
    User,
)

__all__ = [
    "AuditEntry",
    "AuditHead",
    "AuthSession",
    "Base",
    "LoginAttempt",
    "RoleAssignment",
    "Site",
    "Unit",
    "UnitEvent",
    "UnitLineage",
    "UnitVersion",
    "User",
]
