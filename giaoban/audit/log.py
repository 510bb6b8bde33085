"""Writing and verifying the audit chain.

Each entry's hash is HMAC-SHA256, keyed from the installation's secret key, over the previous
entry's hash and the entry's own canonical JSON. Someone with write access to the database but not
the key cannot recompute the chain: an edited entry breaks its own hash, a deleted entry breaks the
next entry's ``prev_hash`` and the id sequence, and a cut tail no longer matches ``audit_head``.

The head does not hold the last entry's hash as such but a seal over it and the last id, keyed
the same way: otherwise whoever cuts the tail could also set the head back to the new last entry
(whose hash is in plain sight) and the cut would go unseen.

A log wiped whole (every entry and the head) would look like a new installation's, so ``verify``
also checks that the log holds the history of what the database holds: every unit, site and user
has its creation entry (``ACCOUNTED``). And because the key lives on the same host as the database,
whoever holds both could rewrite the whole chain; an *anchor* (``anchor``: the sealed head's
sequence number and hash, as JSON) kept off that host proves, later, that the log still holds
everything up to it unchanged (``verify(anchor=...)``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import column, select, table
from sqlalchemy.orm import Session

from giaoban.audit.models import AuditEntry, AuditHead
from giaoban.db import utcnow

GENESIS = "0" * 64
ANCHOR_FORMAT = "giaoban-audit-anchor-v1"

# Records whose creation is always audited: (creation action, entity type, table). A row of one of
# these tables without its creation entry is data whose history is gone from the log.
ACCOUNTED: tuple[tuple[str, str, str], ...] = (
    ("unit.create", "unit", "units"),
    ("site.create", "site", "sites"),
    ("user.create", "user", "users"),
)


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


def _anchor_seal(key: bytes, seq: int, entry_hash: str, at: str) -> str:
    return hmac.new(key, f"anchor\n{seq}\n{entry_hash}\n{at}".encode(), hashlib.sha256).hexdigest()


class AnchorError(ValueError):
    """An anchor file that cannot be read as one (not a proof either way)."""


@dataclass(frozen=True)
class Anchor:
    """The log's head at one moment, to be kept away from the database: entry ``seq`` (the last one
    then) had hash ``hash`` and was written at ``at``. ``seal`` ties the three to the installation."""

    seq: int
    hash: str
    at: str
    anchored_at: str
    seal: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": ANCHOR_FORMAT,
                "seq": self.seq,
                "hash": self.hash,
                "at": self.at,
                "anchored_at": self.anchored_at,
                "seal": self.seal,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Anchor:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AnchorError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != ANCHOR_FORMAT:
            raise AnchorError(f"not a {ANCHOR_FORMAT} file")
        seq, entry_hash, at = data.get("seq"), data.get("hash"), data.get("at")
        anchored_at, seal = data.get("anchored_at", ""), data.get("seal")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise AnchorError("'seq' must be a whole number")
        for name, value in (("hash", entry_hash), ("seal", seal)):
            if not isinstance(value, str) or len(value) != 64:
                raise AnchorError(f"'{name}' must be 64 hexadecimal characters")
        if not isinstance(at, str) or not isinstance(anchored_at, str):
            raise AnchorError("'at' and 'anchored_at' must be texts")
        return cls(seq=seq, hash=entry_hash, at=at, anchored_at=anchored_at, seal=seal)  # type: ignore[arg-type]


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


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

    def anchor(self, session: Session) -> Anchor:
        """The sealed head as an anchor: the last entry's number, hash and time (0 and the genesis
        hash for an empty log). Anchor only a log that verifies: an anchor vouches for what it saw."""
        head = session.get(AuditHead, 1)
        seq, entry_hash, at = 0, GENESIS, ""
        if head is not None and head.last_id:
            entry = session.get(AuditEntry, head.last_id)
            if entry is None:
                raise AnchorError(f"the head names entry {head.last_id}, which is missing")
            seq, entry_hash, at = entry.id, entry.hash, _iso(entry.at)
        seal = _anchor_seal(self._key, seq, entry_hash, at)
        return Anchor(seq=seq, hash=entry_hash, at=at, anchored_at=_iso(utcnow()), seal=seal)

    def verify(self, session: Session, batch: int = 5000, anchor: Anchor | None = None) -> VerifyReport:
        """Walk the whole chain; report every break found, data whose history is not in the log,
        and (given an ``anchor``) anything the log lost or changed up to that anchor."""
        report = VerifyReport()
        creations = {action: entity for action, entity, _ in ACCOUNTED}
        created: dict[str, set[str]] = {entity: set() for _, entity, _ in ACCOUNTED}
        anchored: AuditEntry | None = None
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
                if creations.get(entry.action) == entry.entity_type:
                    created[entry.entity_type].add(entry.entity_id)
                if anchor is not None and entry.id == anchor.seq:
                    anchored = entry
                expected_prev = entry.hash
                expected_id = entry.id + 1
                last_id = entry.id
            offset_id = rows[-1].id
        held = self._unaccounted(session, created)
        if held and not report.checked:
            what = ", ".join(f"{n} {name}" for name, (n, _) in held.items())
            report.problems.append(
                f"the log is empty, but the database holds {what}: its history was removed"
            )
        else:
            for name, (n, sample) in held.items():
                report.problems.append(
                    f"{n} {name} have no creation entry in the log (ids {', '.join(sample)}…): "
                    "their history was removed"
                )
        if anchor is not None:
            self._check_anchor(anchor, anchored, last_id, report)
        head = session.get(AuditHead, 1)
        if head is None:
            if report.checked or held:
                report.problems.append("chain head is missing")
        else:
            if head.last_id != last_id:
                report.problems.append(f"chain head says {head.last_id} entries, found up to {last_id}")
            if head.last_hash == expected_prev:
                report.problems.append("chain head is not sealed (set by hand, or by an older version)")
            elif head.last_hash != _head_seal(self._key, last_id, expected_prev):
                report.problems.append(f"chain head does not seal entry {last_id}, the last one found")
        return report

    @staticmethod
    def _unaccounted(session: Session, created: dict[str, set[str]]) -> dict[str, tuple[int, list[str]]]:
        """Per table, how many rows have no creation entry, and a few of their ids."""
        out: dict[str, tuple[int, list[str]]] = {}
        for _, entity, name in ACCOUNTED:
            rows = table(name, column("id"))
            ids = session.execute(select(rows.c.id).order_by(rows.c.id)).scalars()
            missing = [str(i) for i in ids if str(i) not in created[entity]]
            if missing:
                out[name] = (len(missing), missing[:5])
        return out

    def _check_anchor(
        self, anchor: Anchor, entry: AuditEntry | None, last_id: int, report: VerifyReport
    ) -> None:
        if not hmac.compare_digest(anchor.seal, _anchor_seal(self._key, anchor.seq, anchor.hash, anchor.at)):
            report.problems.append("the anchor was not made by this installation (its seal does not match)")
            return
        if anchor.seq == 0:
            return  # anchored an empty log: nothing to find
        if entry is None:
            report.problems.append(
                f"entry {anchor.seq} of the anchor ({anchor.at}) is missing: the log holds entries up to "
                f"{last_id} only, so it was cut or wiped after the anchor was taken"
            )
        elif entry.hash != anchor.hash or _iso(entry.at) != anchor.at:
            report.problems.append(
                f"entry {anchor.seq} is not the one anchored ({anchor.at}): the log up to the anchor was "
                "rewritten"
            )
        else:
            report.anchored = anchor.seq


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    anchored: int | None = None  # the anchor's entry, when the log was found to hold it unchanged

    @property
    def ok(self) -> bool:
        return not self.problems
