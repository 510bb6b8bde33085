"""GET /api/v1/units?under=X&as_of=D answers with X's subtree as it stood on D, even if X moved since."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient

from giaoban.audit.log import Actor
from giaoban.context import Tx
from giaoban.org import units as svc
from tests.conftest import Demo, login


def test_subtree_as_of_a_date_before_a_move(client: TestClient, demo: Demo) -> None:
    hanoi, hcm = demo.unit_id("01"), demo.unit_id("79")
    with demo.ctx.db.session() as session:
        tx = Tx(session, demo.ctx.audit, Actor.system("test"))
        x = svc.create_unit(
            tx, code="X1", name="Huyện X", kind="district", parent_id=hanoi, effective=date(2020, 1, 1)
        )
        svc.create_unit(
            tx, code="Y1", name="Xã Y", kind="commune", parent_id=x.id, effective=date(2020, 1, 1)
        )
        svc.move_unit(tx, x.id, new_parent_id=hcm, effective=date(2024, 1, 1))
        x_id = x.id
    h = login(client, "admin")
    for day in ("2022-06-01", "2025-06-01"):
        r = client.get("/api/v1/units", params={"under": x_id, "as_of": day}, headers=h)
        assert r.status_code == 200
        assert sorted(u["code"] for u in r.json()["items"]) == ["X1", "Y1"], day
