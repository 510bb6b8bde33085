"""What every service needs: settings, the database, the audit log."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from giaoban.audit.log import Actor, AuditLog
from giaoban.db import Database
from giaoban.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    db: Database
    audit: AuditLog

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings=settings,
            db=Database(settings.resolved_database_url),
            audit=AuditLog(settings.resolved_secret_key),
        )


@dataclass
class Tx:
    """One unit of work by one actor: the session it writes in and the audit trail it writes to."""

    session: Session
    audit: AuditLog
    actor: Actor

    def record(
        self,
        action: str,
        entity_type: str,
        entity_id: object = "",
        before: object = None,
        after: object = None,
    ) -> None:
        self.audit.record(self.session, self.actor, action, entity_type, entity_id, before, after)
