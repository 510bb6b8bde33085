"""The audit trail: one entry per change and per read of a sensitive record, with who, when, what,
before/after and from where; and ``giaoban audit verify`` catching every kind of tampering done
straight in the database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from giaoban import cli
from giaoban.audit.log import AuditLog
from giaoban.audit.models import AuditEntry, AuditHead
from giaoban.context import AppContext
from giaoban.db import utcnow
from giaoban.settings import get_settings
from tests.conftest import DEMO_PASSWORD, Demo, login
from tests.security.conftest import World, make_actors

CLIENT_IP = "203.0.113.7"
NEW_PASSWORD = "Mật-khẩu-mới-2025!"


@pytest.fixture
def w(app: Any, demo: Demo) -> Iterator[World]:
    """The demo, with every request coming from CLIENT_IP."""
    make_actors(demo)
    with TestClient(app, client=(CLIENT_IP, 40000)) as client:
        yield World(demo.ctx, client)


def entries_after(ctx: AppContext, last_id: int) -> list[AuditEntry]:
    with ctx.db.session() as s:
        return list(
            s.execute(select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id)).scalars()
        )


def last_entry_id(ctx: AppContext) -> int:
    with ctx.db.session() as s:
        return int(s.execute(select(func.coalesce(func.max(AuditEntry.id), 0))).scalar_one())


def loads(value: str | None) -> Any:
    return json.loads(value) if value else None


@dataclass
class Change:
    """A request, and the one entry it must leave."""

    name: str
    send: Callable[[World, dict[str, str]], Any]
    action: str
    entity_type: str
    entity_id: Callable[[World, Any], str]
    check: Callable[[Any, Any], bool] = lambda before, after: True
    actor: str = "admin"


def _json(r: Any) -> Any:
    assert r.status_code in (200, 201, 204), r.text
    return r.json() if r.status_code != 204 else None


def _id(_: World, body: Any) -> str:
    return str(body["id"])


def _user(username: str) -> Callable[[World, Any], str]:
    return lambda w, _: str(w.user_id(username))


CHANGES = [
    Change(
        "create a unit",
        lambda w, h: _json(
            w.client.post(
                "/api/v1/units",
                json={"code": "A1", "name": "Huyện A", "kind": "district", "parent_id": w.unit_id("01")},
                headers=h,
            )
        ),
        "unit.create",
        "unit",
        _id,
        lambda b, a: b is None and a["code"] == "A1" and a["name"] == "Huyện A",
    ),
    Change(
        "rename a unit",
        lambda w, h: _json(
            w.client.patch(f"/api/v1/units/{w.new_unit('01')}", json={"name": "Tên mới"}, headers=h)
        ),
        "unit.update",
        "unit",
        _id,
        lambda b, a: b["name"].startswith("Huyện thử") and a["name"] == "Tên mới",
    ),
    Change(
        "move a unit",
        lambda w, h: _json(
            w.client.post(
                f"/api/v1/units/{w.new_unit('01')}/move", json={"parent_id": w.unit_id("79")}, headers=h
            )
        ),
        "unit.move",
        "unit",
        _id,
        lambda b, a: b["parent_id"] != a["parent_id"],
    ),
    Change(
        "close a unit",
        lambda w, h: _json(w.client.post(f"/api/v1/units/{w.new_unit('01')}/close", json={}, headers=h)),
        "unit.close",
        "unit",
        _id,
        lambda b, a: b["valid_to"] is None and a["valid_to"] is not None,
    ),
    Change(
        "create a site",
        lambda w, h: _json(
            w.client.post(
                "/api/v1/sites", json={"code": "S1", "unit_id": w.unit_id("01"), "name": "Phòng A"}, headers=h
            )
        ),
        "site.create",
        "site",
        _id,
        lambda b, a: b is None and a["code"] == "S1",
    ),
    Change(
        "edit a site's contacts",
        lambda w, h: _json(
            w.client.patch(f"/api/v1/sites/{w.site_id('01')}", json={"contact_name": "Chị Lan"}, headers=h)
        ),
        "site.update",
        "site",
        _id,
        lambda b, a: b["contact_name"] == "" and a["contact_name"] == "Chị Lan",
    ),
    Change(
        "move a site",
        lambda w, h: _json(
            w.client.patch(f"/api/v1/sites/{w.site_id('02')}", json={"unit_id": w.unit_id("79")}, headers=h)
        ),
        "site.move",
        "site",
        _id,
        lambda b, a: b["unit_id"] != a["unit_id"],
    ),
    Change(
        "create a user",
        lambda w, h: _json(
            w.client.post(
                "/api/v1/users",
                json={
                    "username": "moi",
                    "password": NEW_PASSWORD,
                    "email": "moi@example.org",
                    "roles": [{"role": "chair", "unit_id": w.unit_id("01")}],
                },
                headers=h,
            )
        ),
        "user.create",
        "user",
        _id,
        lambda b, a: b is None and a["username"] == "moi" and a["roles"][0]["role"] == "chair",
    ),
    Change(
        "edit a user",
        lambda w, h: _json(
            w.client.patch(f"/api/v1/users/{w.user_id('thuky')}", json={"phone": "0912"}, headers=h)
        ),
        "user.update",
        "user",
        _id,
        lambda b, a: b["phone"] == "" and a["phone"] == "0912",
    ),
    Change(
        "change a user's roles",
        lambda w, h: _json(
            w.client.put(
                f"/api/v1/users/{w.user_id('thuky')}/roles",
                json={"roles": [{"role": "chair", "unit_id": w.unit_id("01")}]},
                headers=h,
            )
        ),
        "user.roles",
        "user",
        _id,
        lambda b, a: b["roles"][0]["role"] == "secretary" and a["roles"][0]["role"] == "chair",
    ),
    Change(
        "lock a user",
        lambda w, h: _json(
            w.client.post(f"/api/v1/users/{w.user_id('thuky')}/lock", json={"locked": True}, headers=h)
        ),
        "user.lock",
        "user",
        _id,
        lambda b, a: not b["is_locked"] and a["is_locked"],
    ),
    Change(
        "reset a user's password",
        lambda w, h: _json(
            w.client.post(
                f"/api/v1/users/{w.user_id('thuky')}/password", json={"new_password": NEW_PASSWORD}, headers=h
            )
        ),
        "user.password_reset",
        "user",
        _id,
    ),
    Change(
        "read a user's personal data",
        lambda w, h: _json(w.client.get(f"/api/v1/users/{w.user_id('thuky')}", headers=h)),
        "user.read",
        "user",
        _id,
    ),
    Change(
        "log in",
        lambda w, h: _json(
            w.client.post("/api/v1/auth/login", json={"username": "thuky", "password": DEMO_PASSWORD})
        ),
        "auth.login",
        "user",
        _user("thuky"),
        lambda b, a: a == {"kind": "bearer", "pending": False},
        actor="thuky",
    ),
    Change(
        "change my password",
        lambda w, h: _json(
            w.client.post(
                "/api/v1/auth/password",
                json={"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD},
                headers=h,
            )
        ),
        "user.password_change",
        "user",
        _user("admin"),
    ),
    Change(
        "log out",
        lambda w, h: _json(w.client.post("/api/v1/auth/logout", headers=h)),
        "auth.logout",
        "user",
        _user("admin"),
    ),
]


@pytest.mark.parametrize("change", CHANGES, ids=[c.name for c in CHANGES])
def test_a_change_writes_one_entry(w: World, change: Change) -> None:
    admin = login(w.client, "admin")
    t0 = utcnow()
    new, body = _send_counting_from_request(w, change, admin)
    t1 = utcnow()
    assert len(new) == 1, [(e.action, e.entity_id) for e in new]
    entry = new[0]
    assert (entry.action, entry.entity_type) == (change.action, change.entity_type)
    assert entry.entity_id == change.entity_id(w, body)
    assert entry.actor == change.actor
    assert entry.actor_id == (w.user_id(change.actor) if change.actor == "admin" else None)
    assert entry.ip == CLIENT_IP
    assert t0 - timedelta(seconds=1) <= entry.at <= t1 + timedelta(seconds=1)
    assert change.check(loads(entry.before), loads(entry.after)), (entry.before, entry.after)


def _send_counting_from_request(
    w: World, change: Change, admin: dict[str, str]
) -> tuple[list[AuditEntry], Any]:
    """Send ``change``; the entries the request wrote (not those of the targets made for it), and
    the response body."""
    marks: list[int] = []
    real_new_unit = w.new_unit

    def new_unit(parent: str) -> int:
        unit_id = real_new_unit(parent)
        marks.append(last_entry_id(w.ctx))
        return unit_id

    w.new_unit = new_unit  # type: ignore[method-assign]
    start = last_entry_id(w.ctx)
    try:
        body = change.send(w, admin)
    finally:
        w.new_unit = real_new_unit  # type: ignore[method-assign]
    return entries_after(w.ctx, marks[-1] if marks else start), body


def test_no_entry_for_a_change_that_changes_nothing(w: World) -> None:
    admin = login(w.client, "admin")
    site = w.site_id("01")
    w.client.patch(f"/api/v1/sites/{site}", json={"contact_name": "Chị Lan"}, headers=admin)
    start = last_entry_id(w.ctx)
    r = w.client.patch(f"/api/v1/sites/{site}", json={"contact_name": "Chị Lan"}, headers=admin)
    assert r.status_code == 200
    assert entries_after(w.ctx, start) == []


def test_only_a_read_that_shows_personal_data_is_recorded(w: World) -> None:
    admin = login(w.client, "admin")
    staff = login(w.client, "quantri-01")
    start = last_entry_id(w.ctx)
    assert w.client.get("/api/v1/users", headers=admin).status_code == 200  # names only
    assert w.client.get(f"/api/v1/units/{w.unit_id('01')}", headers=admin).status_code == 200
    assert entries_after(w.ctx, start) == []
    # A refused read shows nothing, so it records nothing.
    assert w.client.get(f"/api/v1/users/{w.user_id('tochuc-79')}", headers=staff).status_code == 404
    assert entries_after(w.ctx, start) == []
    assert w.client.get(f"/api/v1/users/{w.user_id('tochuc-01')}", headers=staff).status_code == 200
    [entry] = entries_after(w.ctx, start)
    assert (entry.action, entry.actor, entry.entity_id) == (
        "user.read",
        "quantri-01",
        str(w.user_id("tochuc-01")),
    )


def test_secrets_never_reach_the_audit_trail(w: World) -> None:
    admin = login(w.client, "admin")
    uid = w.user_id("thuky")
    w.client.post(f"/api/v1/users/{uid}/password", json={"new_password": NEW_PASSWORD}, headers=admin)
    w.client.post(
        "/api/v1/users",
        json={"username": "moi", "password": "Mot-mat-khau-2025", "roles": [{"role": "chair", "unit_id": 1}]},
        headers=admin,
    )
    w.client.post("/api/v1/auth/login", json={"username": "admin", "password": "Sai-mat-khau-99"})
    with w.ctx.db.session() as s:
        dumped = " ".join(f"{e.before} {e.after} {e.actor}" for e in s.execute(select(AuditEntry)).scalars())
        hashes = [h for (h,) in s.execute(text("SELECT password_hash FROM users")).all()]
    for secret in (NEW_PASSWORD, "Mot-mat-khau-2025", "Sai-mat-khau-99", DEMO_PASSWORD, *hashes):
        assert secret not in dumped


def test_the_api_shows_the_trail_newest_first(w: World) -> None:
    admin = login(w.client, "admin")
    w.client.patch(f"/api/v1/sites/{w.site_id('01')}", json={"contact_name": "Chị Lan"}, headers=admin)
    r = w.client.get("/api/v1/audit", params={"entity_type": "site", "limit": 1}, headers=admin)
    assert r.status_code == 200
    item = r.json()["items"][0]
    assert item["action"] == "site.update" and item["actor"] == "admin" and item["ip"] == CLIENT_IP
    assert item["before"]["contact_name"] == "" and item["after"]["contact_name"] == "Chị Lan"
    assert item["at"].endswith("Z")


# --- verify ------------------------------------------------------------------------------------------


@pytest.fixture
def trail(w: World) -> World:
    """A chain with some history beyond the demo's: changes by several people, a sensitive read."""
    admin = login(w.client, "admin")
    w.client.patch(f"/api/v1/sites/{w.site_id('01')}", json={"contact_name": "Chị Lan"}, headers=admin)
    w.client.get(f"/api/v1/users/{w.user_id('thuky')}", headers=admin)
    staff = login(w.client, "tochuc-01")
    w.client.post(
        "/api/v1/units",
        json={"code": "A1", "name": "Huyện A", "kind": "district", "parent_id": w.unit_id("01")},
        headers=staff,
    )
    return w


def run_verify(
    ctx: AppContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    **env: str,
) -> tuple[int, str]:
    """``giaoban audit verify`` (or ``giaoban audit *argv``) against the test database; its exit
    code and its output."""
    monkeypatch.setenv("GIAOBAN_DATABASE_URL", ctx.db.url)
    monkeypatch.setenv("GIAOBAN_SECRET_KEY", env.get("key", ctx.settings.resolved_secret_key))
    monkeypatch.setenv("GIAOBAN_DATA_DIR", str(ctx.settings.data_dir))
    get_settings.cache_clear()
    capsys.readouterr()
    try:
        code = cli.main(["audit", *(argv or ("verify",))])
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    return code, out.out + out.err


def sql(ctx: AppContext, statement: str, **params: Any) -> None:
    with ctx.db.engine.begin() as conn:
        conn.execute(text(statement), params)


def chain_length(ctx: AppContext) -> int:
    return last_entry_id(ctx)


def test_an_untouched_chain_verifies(
    trail: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    n = chain_length(trail.ctx)
    assert n > 100  # the demo's users and units, and the changes above
    with trail.ctx.db.session() as s:
        report = trail.ctx.audit.verify(s, batch=37)  # batches that do not divide the chain
    assert report.ok, report.problems
    assert report.checked == n
    code, output = run_verify(trail.ctx, monkeypatch, capsys)
    assert code == 0, output
    assert f"{n} bản ghi" in output


def _middle(ctx: AppContext) -> int:
    return chain_length(ctx) // 2


def _edit_after(ctx: AppContext) -> tuple[int, str]:
    k = _middle(ctx)
    sql(ctx, 'UPDATE audit_log SET "after" = :v WHERE id = :k', v='{"contact_name":"Người khác"}', k=k)
    return k, f"entry {k}: content does not match its hash"


def _edit_actor(ctx: AppContext) -> tuple[int, str]:
    k = _middle(ctx)
    sql(ctx, "UPDATE audit_log SET actor = 'someone-else', ip = '198.51.100.1' WHERE id = :k", k=k)
    return k, f"entry {k}: content does not match its hash"


def _edit_time(ctx: AppContext) -> tuple[int, str]:
    k = _middle(ctx)
    with ctx.db.session() as s:
        at = s.get(AuditEntry, k).at  # type: ignore[union-attr]
    sql(ctx, "UPDATE audit_log SET at = :at WHERE id = :k", at=at - timedelta(days=30), k=k)
    return k, f"entry {k}: content does not match its hash"


def _rehash_without_key(ctx: AppContext) -> tuple[int, str]:
    """Edit an entry and give it a fresh hash, as someone without the secret key would."""
    import hashlib

    k = _middle(ctx)
    fake = hashlib.sha256(b"forged").hexdigest()
    sql(ctx, 'UPDATE audit_log SET "before" = NULL, hash = :h WHERE id = :k', h=fake, k=k)
    return k, f"entry {k}: content does not match its hash"


def _delete_middle(ctx: AppContext) -> tuple[int, str]:
    k = _middle(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE id = :k", k=k)
    return k, f"entries {k}..{k} are missing"


def _delete_tail(ctx: AppContext) -> tuple[int, str]:
    n = chain_length(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE id = :n", n=n)
    return n, f"chain head says {n} entries, found up to {n - 1}"


def _delete_tail_and_fix_the_head(ctx: AppContext) -> tuple[int, str]:
    """Cut the tail and set the head back to the new last entry: its hash is in plain sight."""
    n = chain_length(ctx)
    with ctx.db.session() as s:
        prev = s.get(AuditEntry, n - 1).hash  # type: ignore[union-attr]
    sql(ctx, "DELETE FROM audit_log WHERE id = :n", n=n)
    sql(ctx, "UPDATE audit_head SET last_id = :i, last_hash = :h", i=n - 1, h=prev)
    return n - 1, "chain head is not sealed"


def _delete_tail_and_reuse_the_seal(ctx: AppContext) -> tuple[int, str]:
    n = chain_length(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE id = :n", n=n)
    sql(ctx, "UPDATE audit_head SET last_id = :i", i=n - 1)
    return n - 1, f"chain head does not seal entry {n - 1}"


def _renumber(ctx: AppContext) -> tuple[int, str]:
    k = _middle(ctx)
    sql(ctx, "UPDATE audit_log SET id = :to WHERE id = :k", to=k + 100_000, k=k)
    return k, f"entries {k}..{k} are missing"


def _swap(ctx: AppContext) -> tuple[int, str]:
    """Reorder two neighbours by swapping their ids."""
    k = _middle(ctx)
    sql(ctx, "UPDATE audit_log SET id = -1 WHERE id = :k", k=k)
    sql(ctx, "UPDATE audit_log SET id = :k WHERE id = :k1", k=k, k1=k + 1)
    sql(ctx, "UPDATE audit_log SET id = :k1 WHERE id = -1", k1=k + 1)
    return k, f"entry {k}: content does not match its hash"


def _edit_head_count(ctx: AppContext) -> tuple[int, str]:
    n = chain_length(ctx)
    sql(ctx, "UPDATE audit_head SET last_id = :i", i=n + 5)
    return n, f"chain head says {n + 5} entries, found up to {n}"


def _edit_head_hash(ctx: AppContext) -> tuple[int, str]:
    n = chain_length(ctx)
    sql(ctx, "UPDATE audit_head SET last_hash = :h", h="f" * 64)
    return n, f"chain head does not seal entry {n}"


def _delete_head(ctx: AppContext) -> tuple[int, str]:
    sql(ctx, "DELETE FROM audit_head")
    return 0, "chain head is missing"


TAMPERING = {
    "edited after": _edit_after,
    "edited actor and address": _edit_actor,
    "edited time": _edit_time,
    "edited and re-hashed without the key": _rehash_without_key,
    "deleted middle entry": _delete_middle,
    "deleted tail entry": _delete_tail,
    "deleted tail, head set to the new last entry": _delete_tail_and_fix_the_head,
    "deleted tail, head count edited": _delete_tail_and_reuse_the_seal,
    "renumbered entry": _renumber,
    "reordered entries": _swap,
    "edited head count": _edit_head_count,
    "edited head hash": _edit_head_hash,
    "deleted head": _delete_head,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_verify_detects_tampering(
    trail: World,
    tamper: Callable[[AppContext], tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, expected = tamper(trail.ctx)
    code, output = run_verify(trail.ctx, monkeypatch, capsys)
    assert code == 1, output
    assert "NHẬT KÝ BỊ SỬA ĐỔI" in output
    assert expected in output, output


def test_verify_needs_the_installation_key(
    trail: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_verify(trail.ctx, monkeypatch, capsys, key="another-installation-key")
    assert code == 1
    assert "entry 1: content does not match its hash" in output


def test_appending_goes_on_after_tampering_and_verify_still_reports_it(trail: World) -> None:
    """An app whose trail was cut keeps working (an audited write must not fail) and the cut stays visible."""
    n = chain_length(trail.ctx)
    sql(trail.ctx, "DELETE FROM audit_log WHERE id = :n", n=n)
    admin = login(trail.client, "admin")
    r = trail.client.patch(
        f"/api/v1/sites/{trail.site_id('01')}", json={"contact_name": "Anh Nam"}, headers=admin
    )
    assert r.status_code == 200
    with trail.ctx.db.session() as s:
        report = trail.ctx.audit.verify(s)
        head = s.get(AuditHead, 1)
    assert head is not None and head.last_id > n
    assert f"entries {n}..{n} are missing" in report.problems


def test_a_fresh_log_verifies(ctx: AppContext) -> None:
    log = AuditLog(ctx.settings.resolved_secret_key)
    with ctx.db.session() as s:
        assert log.verify(s).ok and log.verify(s).checked == 0


# --- a wiped log, and anchors kept off the database host ---------------------------------------------


def _wipe_log(ctx: AppContext) -> None:
    sql(ctx, "DELETE FROM audit_log")
    sql(ctx, "DELETE FROM audit_head")


def test_a_wiped_log_does_not_look_like_a_new_installation(
    trail: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _wipe_log(trail.ctx)
    code, output = run_verify(trail.ctx, monkeypatch, capsys)
    assert code == 1, output
    assert "the log is empty, but the database holds" in output and "units" in output, output
    # Later writes start a fresh chain, which is sound in itself; the data's history is still gone.
    admin = login(trail.client, "admin")
    r = trail.client.patch(
        f"/api/v1/sites/{trail.site_id('01')}", json={"contact_name": "Anh Nam"}, headers=admin
    )
    assert r.status_code == 200
    code, output = run_verify(trail.ctx, monkeypatch, capsys)
    assert code == 1, output
    assert "units have no creation entry in the log" in output, output
    assert "users have no creation entry in the log" in output, output


def test_history_removed_for_one_record_is_found(trail: World) -> None:
    """A creation entry removed and the chain sealed again by someone holding the key: the unit is
    data without its history."""
    with trail.ctx.db.session() as s:
        unit = trail.unit_id("A1")
        k = s.execute(
            select(AuditEntry.id).where(AuditEntry.action == "unit.create", AuditEntry.entity_id == str(unit))
        ).scalar_one()
    _rewrite_from(trail.ctx, k, drop=True)
    with trail.ctx.db.session() as s:
        report = trail.ctx.audit.verify(s)
    assert report.problems == [
        f"1 units have no creation entry in the log (ids {unit}…): their history was removed"
    ]


def _rewrite_from(ctx: AppContext, k: int, *, drop: bool = False, edit: bool = False) -> None:
    """What someone holding the installation key (it lives on the app's host) can do: drop or edit
    entry ``k`` and re-chain, renumber and re-seal everything after it, so the log verifies."""
    from giaoban.audit.log import _chain_key, _entry_hash, _head_seal

    key = _chain_key(ctx.settings.resolved_secret_key)
    with ctx.db.session() as s:
        rows = s.execute(select(AuditEntry).where(AuditEntry.id >= k).order_by(AuditEntry.id)).scalars().all()
        data = [
            {
                c: getattr(e, c)
                for c in (
                    "at",
                    "actor_id",
                    "actor",
                    "ip",
                    "action",
                    "entity_type",
                    "entity_id",
                    "before",
                    "after",
                )
            }
            for e in rows
        ]
        prev = s.execute(select(AuditEntry.hash).where(AuditEntry.id == k - 1)).scalar_one()
    sql(ctx, "DELETE FROM audit_log WHERE id >= :k", k=k)
    if drop:
        data = data[1:]
    elif edit:
        data[0]["actor"] = "nguoi-khac"
    with ctx.db.session() as s:
        next_id = k
        for values in data:
            entry = AuditEntry(id=next_id, prev_hash=prev, **values)
            entry.hash = prev = _entry_hash(key, entry)
            s.add(entry)
            next_id += 1
        head = s.get(AuditHead, 1)
        assert head is not None
        head.last_id = next_id - 1
        head.last_hash = _head_seal(key, next_id - 1, prev)


def _cut_after(ctx: AppContext, k: int) -> None:
    """Cut the log after entry ``k`` and re-seal the head, with the key."""
    from giaoban.audit.log import _chain_key, _head_seal

    key = _chain_key(ctx.settings.resolved_secret_key)
    sql(ctx, "DELETE FROM audit_log WHERE id > :k", k=k)
    with ctx.db.session() as s:
        last = s.get(AuditEntry, k)
        head = s.get(AuditHead, 1)
        assert last is not None and head is not None
        head.last_id, head.last_hash = k, _head_seal(key, k, last.hash)


def _contact_changes(w: World, n: int) -> None:
    admin = login(w.client, "admin")
    for i in range(n):
        r = w.client.patch(
            f"/api/v1/sites/{w.site_id('01')}", json={"contact_name": f"Chị Lan {i}"}, headers=admin
        )
        assert r.status_code == 200


def test_an_anchor_proves_the_log_still_holds_everything_up_to_it(
    trail: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _contact_changes(trail, 3)
    anchor = tmp_path / "neo.json"
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "anchor", "--output", str(anchor))
    assert code == 0, output
    data = json.loads(anchor.read_text())
    seq = chain_length(trail.ctx)
    assert data["seq"] == seq and len(data["hash"]) == 64 and data["at"].endswith("Z")
    # Printed to standard output too, the same head.
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "anchor")
    assert code == 0 and json.loads(output)["hash"] == data["hash"]

    # Intact, and intact with more written since.
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(anchor))
    assert code == 0 and f"bản ghi {seq}" in output, output
    _contact_changes(trail, 2)
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(anchor))
    assert code == 0, output

    # Cut back to before the anchor and re-sealed with the key: the log verifies on its own, not
    # against the anchor.
    _cut_after(trail.ctx, seq - 2)
    code, output = run_verify(trail.ctx, monkeypatch, capsys)
    assert code == 0, output
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(anchor))
    assert code == 1, output
    assert f"entry {seq} of the anchor" in output and "cut or wiped after the anchor" in output, output


def test_an_anchor_shows_a_rewritten_past(
    trail: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = tmp_path / "neo.json"
    assert run_verify(trail.ctx, monkeypatch, capsys, "anchor", "-o", str(anchor))[0] == 0
    seq = json.loads(anchor.read_text())["seq"]
    _contact_changes(trail, 2)
    _rewrite_from(trail.ctx, seq // 2, edit=True)
    code, output = run_verify(trail.ctx, monkeypatch, capsys)
    assert code == 0, output  # sound in itself: rewritten with the key
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(anchor))
    assert code == 1 and f"entry {seq} is not the one anchored" in output, output
    # And a wiped log fails against it as well.
    _wipe_log(trail.ctx)
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(anchor))
    assert code == 1 and f"entry {seq} of the anchor" in output, output


def test_anchor_files_that_prove_nothing(
    trail: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    anchor = tmp_path / "neo.json"
    assert run_verify(trail.ctx, monkeypatch, capsys, "anchor", "-o", str(anchor))[0] == 0
    data = json.loads(anchor.read_text())
    # Made by another installation (or edited by hand): refused, exit 1.
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**data, "seq": data["seq"] - 1}))
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(forged))
    assert code == 1 and "was not made by this installation" in output, output
    # Unreadable: exit 2 with the reason, no traceback.
    for content in ("không phải JSON", "{}", json.dumps({**data, "seq": "7"})):
        forged.write_text(content)
        code, output = run_verify(trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(forged))
        assert code == 2 and "Không đọc được tệp neo" in output and "Traceback" not in output, output
    code, output = run_verify(
        trail.ctx, monkeypatch, capsys, "verify", "--anchor", str(tmp_path / "none.json")
    )
    assert code == 2, output
    # A log that does not verify is not anchored.
    _delete_middle(trail.ctx)
    other = tmp_path / "after-tampering.json"
    code, output = run_verify(trail.ctx, monkeypatch, capsys, "anchor", "-o", str(other))
    assert code == 1 and not other.exists() and "Không tạo mốc neo" in output, output
