"""One explicit root: the whole organization is the root unit's subtree, and it stays that way.

No request makes a second unit without a parent (create, move to the top, import), so whoever
holds a role at the root keeps the whole tree, the users without roles and the audit trail; nobody
changes the unit that defines their own scope; and nobody can take the last administrator of the
whole organization away (revoke, lock, failed logins).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.errors import DomainError
from giaoban.org import accounts, units
from giaoban.org.access import root_admin_ids
from giaoban.org.models import Unit
from tests.conftest import DEMO_PASSWORD, Demo, login
from tests.security.conftest import World, changed_tables, make_actors


def _tx(session: Any, demo: Demo) -> Tx:
    return Tx(session, demo.ctx.audit, Actor.system("scope-tests"))


def _user(demo: Demo, username: str, *roles: tuple[str, int]) -> int:
    with demo.ctx.db.session() as s:
        specs = [accounts.RoleSpec(role=r, unit_id=u) for r, u in roles]
        user = accounts.create_user(
            _tx(s, demo), username=username, password=DEMO_PASSWORD, roles=specs, check_strength=False
        )
        return user.id


def _name(demo: Demo, unit_id: int) -> str:
    with demo.ctx.db.session() as s:
        return str(s.execute(select(Unit.name).where(Unit.id == unit_id)).scalar_one())


def _code(r: Any) -> tuple[int, str | None]:
    body = r.json()
    return r.status_code, (body.get("error") or {}).get("code") if isinstance(body, dict) else None


def _tsv(*rows: str) -> bytes:
    return ("code\tname\tkind\tparent\n" + "".join(f"{r}\n" for r in rows)).encode()


def test_no_request_makes_a_second_root_and_the_root_admin_keeps_everything(
    client: TestClient, demo: Demo
) -> None:
    make_actors(demo)  # adds quantri-01, an admin at province 01
    admin = login(client, "admin")  # admin at TW, the root
    theirs = login(client, "quantri-01")
    province = demo.unit_id("01")
    w = World(demo.ctx, client)
    before = w.snapshot()
    new_root = {"code": "MOI", "name": "Gốc mới", "kind": "central", "parent_id": None}
    assert _code(client.post("/api/v1/units", json=new_root, headers=admin)) == (409, "second_root")
    no_parent = {k: v for k, v in new_root.items() if k != "parent_id"}
    assert _code(client.post("/api/v1/units", json=no_parent, headers=admin)) == (409, "second_root")
    r = client.post(f"/api/v1/units/{province}/move", json={"parent_id": None}, headers=admin)
    assert _code(r) == (409, "second_root")
    tw = demo.unit_id("TW")
    r = client.post(f"/api/v1/units/{tw}/move", json={"parent_id": province}, headers=admin)
    assert _code(r) == (409, "root_fixed")
    assert _code(client.post(f"/api/v1/units/{tw}/close", json={}, headers=admin)) == (409, "root_fixed")
    files = {"file": ("u.tsv", _tsv("MOI\tGốc mới\tcentral\t"), "text/tab-separated-values")}
    r = client.post("/api/v1/units/import", files=files, headers=admin)
    assert r.status_code == 422
    assert [d["code"] for d in r.json()["error"]["details"]] == ["second_root"]
    # A province admin hears the same about a second root, and nothing about the root itself.
    assert _code(client.post("/api/v1/units", json=new_root, headers=theirs)) == (409, "second_root")
    assert client.post(f"/api/v1/units/{tw}/close", json={}, headers=theirs).status_code == 404
    assert changed_tables(before, w.snapshot()) == []
    # The root admin still has the whole organization.
    assert client.get("/api/v1/audit", headers=admin).status_code == 200
    no_roles = _user(demo, "khong-vai-tro-2")
    assert client.get(f"/api/v1/users/{no_roles}", headers=admin).status_code == 200


def test_nobody_renames_closes_or_merges_the_unit_that_defines_their_scope(
    client: TestClient, demo: Demo
) -> None:
    make_actors(demo)  # adds quantri-01, an admin at province 01
    own = demo.unit_id("01")
    with demo.ctx.db.session() as s:
        district = units.create_unit(
            _tx(s, demo), code="01-T1", name="Huyện thử", kind="district", parent_id=own
        ).id
        spare = units.create_unit(
            _tx(s, demo), code="01-T2", name="Huyện thử 2", kind="district", parent_id=own
        )
        spare_id = spare.id
    w = World(demo.ctx, client)
    for username in ("tochuc-01", "quantri-01"):
        h = login(client, username)
        before = w.snapshot()
        r = client.patch(f"/api/v1/units/{own}", json={"name": "Tên tự đặt"}, headers=h)
        assert _code(r) == (403, "own_scope_unit"), (username, r.text)
        r = client.post(f"/api/v1/units/{own}/close", json={}, headers=h)
        assert _code(r) == (403, "own_scope_unit"), (username, r.text)
        r = client.post("/api/v1/units/merge", json={"source_ids": [own], "target_id": district}, headers=h)
        assert _code(r) == (403, "own_scope_unit"), (username, r.text)
        assert changed_tables(before, w.snapshot()) == []
        # Inside their scope they do work: rename a district of their province.
        r = client.patch(f"/api/v1/units/{spare_id}", json={"name": f"Huyện của {username}"}, headers=h)
        assert r.status_code == 200, r.text
    assert _name(demo, own) == "Thành ủy Hà Nội"

    # From above it may be changed; the root by whoever holds the whole organization.
    admin = login(client, "admin")
    assert (
        client.patch(f"/api/v1/units/{own}", json={"name": "Thành ủy Hà Nội mới"}, headers=admin).status_code
        == 200
    )
    tw = demo.unit_id("TW")
    assert (
        client.patch(f"/api/v1/units/{tw}", json={"name": "Trung ương mới"}, headers=admin).status_code == 200
    )


def _refused(code: str, action: Any, demo: Demo, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(DomainError) as err, demo.ctx.db.session() as s:
        action(_tx(s, demo), *args, **kwargs)
    assert err.value.code == code, err.value.message


def test_the_last_administrator_of_the_whole_organization_stays(client: TestClient, demo: Demo) -> None:
    tw, province = demo.unit_id("TW"), demo.unit_id("01")
    admin = demo_user(demo, "admin")
    with demo.ctx.db.session() as s:
        assert root_admin_ids(s) == {admin}
    # The domain refuses, whoever asks (the API refuses self-changes before that).
    _refused("last_root_admin", accounts.set_roles, demo, admin, [])
    _refused("last_root_admin", accounts.set_roles, demo, admin, [accounts.RoleSpec("admin", province)])
    _refused("last_root_admin", accounts.set_locked, demo, admin, True, "thử")
    # Failed logins lock other accounts, never the last root admin (throttling still holds).
    demo.ctx.settings.lock_after_failures = 2
    for _ in range(3):
        client.post("/api/v1/auth/login", json={"username": "admin", "password": "sai-mat-khau-123"})
    with demo.ctx.db.session() as s:
        assert root_admin_ids(s) == {admin}
    # With a second root admin, either may go, but not both.
    second = _user(demo, "quantri-hai", ("admin", tw))
    headers = login(client, "quantri-hai")
    r = client.post(f"/api/v1/users/{admin}/lock", json={"locked": True, "reason": "nghỉ"}, headers=headers)
    assert r.status_code == 200, r.text
    _refused("last_root_admin", accounts.set_roles, demo, second, [])
    with demo.ctx.db.session() as s:
        assert root_admin_ids(s) == {second}
        accounts.set_locked(_tx(s, demo), admin, False)
    r = client.put(f"/api/v1/users/{second}/roles", json={"roles": []}, headers=login(client, "admin"))
    assert r.status_code == 200, r.text
    with demo.ctx.db.session() as s:
        assert root_admin_ids(s) == {admin}


def demo_user(demo: Demo, username: str) -> int:
    with demo.ctx.db.session() as s:
        user = accounts.get_user_by_name(s, username)
        assert user is not None
        return user.id


def test_a_taken_unit_code_says_only_that_it_is_taken(client: TestClient, demo: Demo) -> None:
    """Codes are the organization's official codes, unique over the whole tree: a province picking
    a code used in another province hears that it is taken, not where or by what."""
    make_actors(demo)
    h = login(client, "quantri-01")
    other = demo.unit_id("79")
    body = {"code": "79", "name": "Huyện mới", "kind": "district", "parent_id": demo.unit_id("01")}
    r = client.post("/api/v1/units", json=body, headers=h)
    assert _code(r) == (409, "unit_code_exists")
    message = r.json()["error"]["message"]
    assert "đã tồn tại" in message and set(r.json()) == {"error"}
    assert _name(demo, other) not in message and str(other) not in message.replace("79", "")
    files = {"file": ("u.tsv", _tsv("79\tHuyện mới\tdistrict\t01"), "text/tab-separated-values")}
    r = client.post("/api/v1/units/import", files=files, headers=h)
    (detail,) = r.json()["error"]["details"]
    assert detail["code"] == "unit_code_exists" and _name(demo, other) not in detail["message"]


def test_two_root_admins_locking_each_other_at_once_leave_one(demo: Demo) -> None:
    """Two transactions at the same moment, each locking the other admin: the second waits for the
    first and then sees it, so one of them stays (real concurrent sessions, both databases)."""
    import threading
    import time

    tw = demo.unit_id("TW")
    admin, second = demo_user(demo, "admin"), _user(demo, "quantri-hai", ("admin", tw))
    outcome: dict[str, object] = {}
    first_done = threading.Event()

    def lock_admin_later() -> None:
        first_done.wait(10)
        try:
            with demo.ctx.db.session() as s:
                accounts.set_locked(_tx(s, demo), admin, True, "khóa chéo")
            outcome["second"] = "locked"
        except DomainError as exc:
            outcome["second"] = exc.code

    other = threading.Thread(target=lock_admin_later)
    other.start()
    with demo.ctx.db.session() as s:
        accounts.set_locked(_tx(s, demo), second, True, "khóa chéo")
        first_done.set()  # the other transaction starts while this one is still open
        time.sleep(0.5)
    other.join(30)
    assert outcome == {"second": "last_root_admin"}
    with demo.ctx.db.session() as s:
        assert root_admin_ids(s) == {admin}
