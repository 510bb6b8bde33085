"""Scope is exactly the assigned subtree(s): with several top-level units a grant at one of them is
not "the whole organization"; and nobody changes the unit that defines their own scope.

The access matrix runs on the demo, which has one top-level unit (TW), where "at the root" and
"over everything" are the same. Here a second top-level unit tells them apart.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.org import accounts, units
from giaoban.org.models import Unit
from tests.conftest import DEMO_PASSWORD, Demo, login
from tests.security.conftest import World, changed_tables, make_actors


def _tx(session: Any, demo: Demo) -> Tx:
    return Tx(session, demo.ctx.audit, Actor.system("scope-tests"))


def _second_root(demo: Demo) -> int:
    with demo.ctx.db.session() as s:
        return units.create_unit(
            _tx(s, demo), code="KHAC", name="Tổ chức khác", kind="central", parent_id=None
        ).id


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


def test_a_grant_at_one_of_several_top_units_is_not_the_whole_organization(
    client: TestClient, demo: Demo
) -> None:
    tw = demo.unit_id("TW")
    khac = _second_root(demo)
    no_roles = _user(demo, "khong-vai-tro")
    theirs = _user(demo, "quantri-khac", ("admin", khac))
    both = _user(demo, "quantri-ca-hai", ("admin", tw), ("admin", khac))
    assert both
    admin = login(client, "admin")  # admin at TW only
    w = World(demo.ctx, client)
    before = w.snapshot()
    assert client.get("/api/v1/audit", headers=admin).status_code == 403
    new_root = {"code": "MOI", "name": "Gốc mới", "kind": "central", "parent_id": None}
    assert client.post("/api/v1/units", json=new_root, headers=admin).status_code == 403
    assert client.get(f"/api/v1/users/{no_roles}", headers=admin).status_code == 404
    assert client.get(f"/api/v1/users/{theirs}", headers=admin).status_code == 404
    listed = client.get("/api/v1/users", params={"limit": 500}, headers=admin).json()["items"]
    assert {u["id"] for u in listed}.isdisjoint({no_roles, theirs})
    nameless = {"username": "moi-khong-vai-tro", "password": "Mat-khau-dai-2025!", "roles": []}
    assert client.post("/api/v1/users", json=nameless, headers=admin).status_code == 403
    assert client.get(f"/api/v1/units/{khac}", headers=admin).status_code == 404
    assert changed_tables(before, w.snapshot()) == []

    # Whoever holds the grant at every top-level unit does have the whole organization.
    everything = login(client, "quantri-ca-hai")
    assert client.get("/api/v1/audit", headers=everything).status_code == 200
    assert client.get(f"/api/v1/users/{no_roles}", headers=everything).status_code == 200
    assert client.post("/api/v1/units", json=new_root, headers=everything).status_code == 201


def test_a_dissolved_second_top_unit_does_not_narrow_the_whole_tree(client: TestClient, demo: Demo) -> None:
    khac = _second_root(demo)
    with demo.ctx.db.session() as s:
        units.close_unit(_tx(s, demo), khac)
    assert client.get("/api/v1/audit", headers=login(client, "admin")).status_code == 200


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

    # From above it may be changed; the single top unit by whoever holds the whole organization.
    admin = login(client, "admin")
    assert (
        client.patch(f"/api/v1/units/{own}", json={"name": "Thành ủy Hà Nội mới"}, headers=admin).status_code
        == 200
    )
    tw = demo.unit_id("TW")
    assert (
        client.patch(f"/api/v1/units/{tw}", json={"name": "Trung ương mới"}, headers=admin).status_code == 200
    )
    # With a second top unit, TW's admin is no longer the whole organization: TW is their own top.
    _second_root(demo)
    r = client.patch(f"/api/v1/units/{tw}", json={"name": "Trung ương khác"}, headers=admin)
    assert _code(r) == (403, "own_scope_unit")
