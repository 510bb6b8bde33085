"""The demo through the API: the figures the issue names, on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Demo, login


def test_demo_counts(client: TestClient, demo: Demo) -> None:
    h = login(client, "admin")
    r = client.get("/api/v1/sites", headers=h)
    assert r.status_code == 200
    assert r.json()["total"] == 71
    r = client.get("/api/v1/units", params={"kind": "province"}, headers=h)
    assert r.json()["total"] == 63


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["database"] == "ok"
