"""Writing and verifying the audit chain.

Each entry's hash is HMAC-SHA256, keyed from the installation's secret key, over the previous
entry's hash and the entry's own canonical JSON. Someone with write access to the database but not
the key cannot recompute the chain: an edited entry breaks its own hash, a deleted entry breaks the
next entry's ``prev_hash`` and the id sequence, and a cut tail no longer matches ``audit_head``.

The head does not hold the last entry's hash as such but a seal over it and the last id, keyed
the same way: otherwise whoever cuts the tail could also set the head back to the new last entry
(whose hash is in plain sight) and the cut would go unseen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from giaoban.audit.models import AuditEntry, AuditHead
from giaoban.db import utcnow

GENESIS = "0" * 64


@dataclass(frozen=True)
class Change:
    """One change to record: what was done, to which record, and its state before and after."""

    action: str
    entity_type: str
    entity_id: Any = ""
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class Actor:
    """Who is acting, for the audit trail."""

    user_id: int | None
    username: str
    ip: str = ""

    @classmethod
    def system(cls, what: str = "system") -> Actor:
        return cls(user_id=None, username=what, ip="")


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dump(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_default)


def _chain_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"giaoban-audit-chain-v1", hashlib.sha256).digest()


def _entry_hash(key: bytes, entry: AuditEntry) -> str:
    body = json.dumps(
        [
            entry.id,
            entry.at.isoformat(timespec="microseconds"),
            entry.actor_id,
            entry.actor,
            entry.ip,
            entry.action,
            entry.entity_type,
            entry.entity_id,
            entry.before,
            entry.after,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hmac.new(key, (entry.prev_hash + "\n" + body).encode(), hashlib.sha256).hexdigest()


def _head_seal(key: bytes, last_id: int, last_hash: str) -> str:
    return hmac.new(key, f"head\n{last_id}\n{last_hash}".encode(), hashlib.sha256).hexdigest()


class AuditLog:
    """Appends entries in the caller's transaction, so an entry exists exactly when its change does."""

    def __init__(self, secret: str) -> None:
        self._key = _chain_key(secret)

    def record(
        self,
        session: Session,
        actor: Actor,
        action: str,
        entity_type: str,
        entity_id: Any = "",
        before: Any = None,
        after: Any = None,
    ) -> AuditEntry:
        return self.record_many(session, actor, [Change(action, entity_type, entity_id, before, after)])[0]

    def record_many(self, session: Session, actor: Actor, changes: Sequence[Change]) -> list[AuditEntry]:
        """Append one entry per change, chained in order, in one write: the head is locked and read
        once, the entries go in as one batch insert. The chain is the same as ``record`` one by one
        would make (each entry's own time aside), so ``verify`` needs no notion of batches."""
        if not changes:
            return []
        head = session.execute(
            select(AuditHead).where(AuditHead.id == 1).with_for_update()
        ).scalar_one_or_none()
        if head is None:
            head = AuditHead(id=1, last_id=0, last_hash=_head_seal(self._key, 0, GENESIS))
            session.add(head)
            session.flush()
        prev_hash = GENESIS
        if head.last_id:
            # A missing last entry is tampering, which verify reports; appending goes on regardless.
            prev_hash = (
                session.execute(
                    select(AuditEntry.hash).where(AuditEntry.id == head.last_id)
                ).scalar_one_or_none()
                or GENESIS
            )
        at = utcnow()
        entries = []
        next_id = head.last_id
        for change in changes:
            next_id += 1
            entry = AuditEntry(
                id=next_id,
                at=at,
                actor_id=actor.user_id,
                actor=actor.username,
                ip=actor.ip,
                action=change.action,
                entity_type=change.entity_type,
                entity_id=str(change.entity_id),
                before=dump(change.before),
                after=dump(change.after),
                prev_hash=prev_hash,
            )
            entry.hash = prev_hash = _entry_hash(self._key, entry)
            entries.append(entry)
        session.add_all(entries)
        head.last_id = next_id
        head.last_hash = _head_seal(self._key, next_id, prev_hash)
        session.flush()
        return entries

    def verify(self, session: Session, batch: int = 5000) -> VerifyReport:
        """Walk the whole chain; report every break found."""
        report = VerifyReport()
        expected_prev = GENESIS
        expected_id = 1
        last_id = 0
        offset_id = 0
        while True:
            rows = (
                session.execute(
                    select(AuditEntry).where(AuditEntry.id > offset_id).order_by(AuditEntry.id).limit(batch)
                )
                .scalars()
                .all()
            )
            if not rows:
                break
            for entry in rows:
                report.checked += 1
                if entry.id != expected_id:
                    report.problems.append(f"entries {expected_id}..{entry.id - 1} are missing")
                if entry.prev_hash != expected_prev:
                    report.problems.append(f"entry {entry.id}: does not follow the previous entry")
                if _entry_hash(self._key, entry) != entry.hash:
                    report.problems.append(f"entry {entry.id}: content does not match its hash")
                expected_prev = entry.hash
                expected_id = entry.id + 1
                last_id = entry.id
            offset_id = rows[-1].id
        head = session.get(AuditHead, 1)
        if head is None:
            if report.checked:
                report.problems.append("chain head is missing")
        else:
            if head.last_id != last_id:
                report.problems.append(f"chain head says {head.last_id} entries, found up to {last_id}")
            if head.last_hash == expected_prev:
                report.problems.append("chain head is not sealed (set by hand, or by an older version)")
            elif head.last_hash != _head_seal(self._key, last_id, expected_prev):
                report.problems.append(f"chain head does not seal entry {last_id}, the last one found")
        return report


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems
