"""The API against its own OpenAPI document, fuzzed by schemathesis with every default check.

Each API operation is one test, run on SQLite and PostgreSQL with the demo organization loaded and
the root admin's bearer token, so the generated requests reach the handlers rather than the login
wall. All of schemathesis's default checks run (no 5xx, status codes and headers as documented,
response bodies matching their schema, schema-invalid requests rejected, schema-valid requests not
rejected with 400/422, a proper 405 with ``Allow`` for undeclared methods, auth not ignored...).
None is switched off or loosened.

Generation is taught the few domain rules that JSON Schema cannot state (``_domain_valid``,
``_known_kinds``, ``_valid_upload``):
a schema-valid request that breaks one of them is answered 400, which the
``positive_data_acceptance`` check would otherwise report as "valid data rejected". Rules that
depend on stored state (tree cycles, history, existing codes) are the app's to answer with 409,
and are not filtered here.

25 examples per operation keep the suite quick; ``GIAOBAN_TEST_FUZZ_EXAMPLES=500`` digs deeper and
``GIAOBAN_TEST_FUZZ_SEED=<n>`` draws other examples (docs/api.md, "Fuzzing").
"""

from __future__ import annotations

import itertools
import os
import secrets
from datetime import timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from giaoban.audit.log import AuditLog
from giaoban.context import AppContext
from giaoban.db import Database, utcnow
from giaoban.errors import DomainError
from giaoban.org.accounts import check_password_strength, get_user_by_name, token_hash
from giaoban.org.models import AuthSession
from giaoban.org.units import allowed_kinds
from giaoban.settings import Settings
from giaoban.text import TextError, clean_line
from giaoban.web.app import create_app
from tests.conftest import DEMO_PASSWORD, Demo

# The OpenAPI document does not depend on the database; a throwaway app serves it for collection.
_doc_app = create_app(AppContext(Settings(), Database("sqlite://"), AuditLog("schema-only")))
schema = schemathesis.openapi.from_asgi("/openapi.json", _doc_app)

KINDS = allowed_kinds()


def _strong(password: Any, username: str = "") -> bool:
    try:
        check_password_strength(str(password), username)
    except DomainError:
        return False
    return True


def _ends_after_start(body: dict[str, Any]) -> bool:
    """A meeting ends after it starts, at most a day later (naive times are Vietnam's local time)."""
    from datetime import datetime

    from giaoban.meetings.scheduling import MAX_DURATION
    from giaoban.types import to_instant

    try:
        starts = to_instant(datetime.fromisoformat(str(body["starts_at"])))
        ends = to_instant(datetime.fromisoformat(str(body["ends_at"])))
    except (KeyError, ValueError):
        return True
    return starts < ends <= starts + MAX_DURATION


def _visible(value: Any) -> bool:
    """Something is left of the text once the text policy has cleaned it (giaoban.text)."""
    try:
        return bool(clean_line(str(value), max_length=10_000, required=False))
    except TextError:
        return False


def _domain_valid(case: schemathesis.Case) -> bool:
    """The request-content rules a JSON schema cannot express (each answered 400 by the app)."""
    body = case.body if isinstance(case.body, dict) else {}
    route = f"{case.method} {case.operation.path}"
    if route == "POST /api/v1/users" and not _strong(
        body.get("password", ""), str(body.get("username", "")).lower()
    ):
        return False
    if route == "POST /api/v1/users/{user_id}/password" and not _strong(body.get("new_password", "")):
        return False
    if route == "POST /api/v1/auth/password":
        new = body.get("new_password", "")
        if not _strong(new) or new == body.get("current_password"):
            return False
    for role in body.get("roles", []) if isinstance(body.get("roles"), list) else []:
        # Only a site operator is pinned to a site.
        if isinstance(role, dict) and role.get("site_id") is not None and role.get("role") != "site_operator":
            return False
    if route == "POST /api/v1/units/merge":
        # Exactly one target, and not one of the sources.
        if (body.get("target_id") is None) == (body.get("new_target") is None):
            return False
        if body.get("target_id") in (body.get("source_ids") or []):
            return False
    if route == "POST /api/v1/meetings" and not _ends_after_start(body):
        return False
    if route == "POST /api/v1/meetings/{meeting_id}/sites/{site_id}/techcheck":
        # "ready" needs a camera and a measured echo; "failed" needs a reason.
        if body.get("status") == "ready" and (not body.get("camera") or body.get("echo_rtt_ms") is None):
            return False
        if body.get("status") == "failed" and not _visible(body.get("reason", "")):
            return False
    # Without keep_source a unit splits into at least two parts.
    if route == "POST /api/v1/units/{unit_id}/split" and not body.get("keep_source"):
        return len(body.get("parts") or []) >= 2
    return True


def _known_kinds(case: schemathesis.Case) -> schemathesis.Case:
    """Unit kinds are the installation's list (settings.extra_unit_kinds adds to it), so the document
    cannot enumerate them; valid requests use one of the built-in kinds."""
    body = case.body if isinstance(case.body, dict) else None
    if body is None or case.operation.path.startswith("/api/v1/meetings"):  # a meeting's kind is not a unit's
        return case
    holders = [body, body.get("new_target")]
    holders += body.get("parts") if isinstance(body.get("parts"), list) else []
    for holder in holders:
        if isinstance(holder, dict) and isinstance(holder.get("kind"), str) and holder["kind"] not in KINDS:
            holder["kind"] = KINDS[sum(map(ord, holder["kind"])) % len(KINDS)]
    return case


_upload_numbers = itertools.count(1)
# A valid upload is a spreadsheet whose rows fit the organization as it stands (a parent that
# exists, a new code, a date inside its history); the document can only call it binary.
VALID_UPLOADS = {
    "/api/v1/units/import": "code\tname\tkind\tparent\nFZ{n}\tĐơn vị thử {n}\tdistrict\t01\n",
    "/api/v1/sites/import": "code\tunit\tname\nFZ{n}\t01\tĐiểm cầu thử {n}\n",
}


def _valid_upload(case: schemathesis.Case) -> schemathesis.Case:
    """Called when the case is generated, and again before each call: Hypothesis may send one
    example more than once, and the second time its code would already exist."""
    template = VALID_UPLOADS.get(case.operation.path)
    if template is not None and isinstance(case.body, dict):
        case.body["file"] = template.format(n=next(_upload_numbers))
        case.query = {**(case.query or {}), "format": "tsv"}
        case.query.pop("effective", None)
    return case


def _positive(case: schemathesis.Case) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


@schema.hook
def filter_case(context: Any, case: schemathesis.Case) -> bool:
    return not _positive(case) or _domain_valid(case)


@schema.hook
def map_case(context: Any, case: schemathesis.Case) -> schemathesis.Case:
    return _valid_upload(_known_kinds(case)) if _positive(case) else case


def _admin_token(demo: Demo) -> str:
    """A fresh bearer session of the root admin.

    Minted for every example: a generated request may end the admin's sessions (a password reset
    of user 1 does), and later examples must still reach the handlers.
    """
    token = secrets.token_urlsafe(32)
    with demo.ctx.db.session() as session:
        admin = get_user_by_name(session, "admin")
        assert admin is not None
        session.add(
            AuthSession(
                token_hash=token_hash(token),
                user_id=admin.id,
                kind="bearer",
                csrf_token=secrets.token_urlsafe(24),
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
    return token


# The same examples on every run and every machine, unless GIAOBAN_TEST_FUZZ_SEED asks for others.
FUZZ_SEED = os.environ.get("GIAOBAN_TEST_FUZZ_SEED")
_SUPPRESSED = [
    # The demo is loaded once per operation and shared by its examples on purpose; filtering out
    # domain-invalid positive bodies is expected to discard some.
    HealthCheck.function_scoped_fixture,
    HealthCheck.filter_too_much,
    HealthCheck.too_slow,
]


def _seeded(test: Any) -> Any:
    return hypothesis.seed(int(FUZZ_SEED))(test) if FUZZ_SEED else test


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("GIAOBAN_TEST_FUZZ_EXAMPLES", "25")),
    derandomize=FUZZ_SEED is None,
    deadline=None,
    suppress_health_check=_SUPPRESSED,
)
@_seeded
def test_api_conforms_to_its_schema(case: schemathesis.Case, app: Any, demo: Demo) -> None:
    if _positive(case):
        _valid_upload(case)
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {_admin_token(demo)}"})


def test_api_conforms_statefully(app: Any, demo: Demo) -> None:
    """Schemathesis's stateful phase: sequences of calls chained by the links it infers from the
    document (a unit created, then read, moved, renamed; a meeting scheduled, then invited to ...),
    every response checked as above. A few scenarios here; GIAOBAN_TEST_FUZZ_STATEFUL=200 digs deeper."""

    from tests.conftest import _DEMO_CACHE, _restore, wipe

    demo_rows = _DEMO_CACHE[demo.ctx.db.url][0]

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Every scenario starts from the demo as loaded: Hypothesis replays a scenario to shrink
            # it, and must see the same answers again.
            wipe(demo.ctx.db)
            _restore(demo.ctx.db, demo_rows)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            if _positive(case):
                _valid_upload(case)
            return {"app": app, "headers": {"Authorization": f"Bearer {_admin_token(demo)}"}}

    Workflow.run(
        settings=settings(
            max_examples=int(os.environ.get("GIAOBAN_TEST_FUZZ_STATEFUL", "8")),
            stateful_step_count=6,
            derandomize=FUZZ_SEED is None,
            database=None,
            deadline=None,
            suppress_health_check=_SUPPRESSED,
        )
    )


# --- what the fuzzing found, pinned down --------------------------------------------------------------


def test_a_wrong_method_is_405_listing_every_method_of_the_path(client: Any, demo: Demo) -> None:
    h = {"Authorization": f"Bearer {_admin_token(demo)}"}
    r = client.put("/api/v1/units/1", json={}, headers=h)
    assert r.status_code == 405 and r.headers["allow"] == "GET, PATCH"
    # "merge" is not a unit id: the fixed path answers, not /units/{unit_id}.
    r = client.patch("/api/v1/units/merge", json={}, headers=h)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert client.get("/api/v1/units/abc", headers=h).status_code == 404


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/api/v1/units?as_of=0", None),  # a Unix time is not a date
        ("GET", "/api/v1/units?as_of=2017-01-01T00:00:00", None),
        ("GET", "/api/v1/units?q=%00", None),  # PostgreSQL text cannot hold NUL
        ("GET", "/api/v1/audit?action=%00", None),
        ("POST", "/api/v1/units/1/move", {"parent_id": "2"}),  # an id is a JSON number
        ("POST", "/api/v1/units/1/move", {"parent_id": True}),
        ("POST", "/api/v1/units/1/move", {"parent_id": 2.5}),
        ("POST", "/api/v1/units/1/move", {"parent_id": 2, "effective": 0}),
        ("POST", "/api/v1/users/2/lock", {"locked": 0}),  # a flag is a JSON boolean
        ("PATCH", "/api/v1/sites/1", {"name": "   "}),  # blank once trimmed
        ("PATCH", "/api/v1/sites/1", {"contact_name": "a\u0000b"}),
        ("POST", "/api/v1/auth/login", {"username": "ad\u0000min", "password": "x"}),
    ],
)
def test_malformed_input_is_422(client: Any, demo: Demo, method: str, url: str, body: Any) -> None:
    r = client.request(method, url, json=body, headers={"Authorization": f"Bearer {_admin_token(demo)}"})
    assert r.status_code == 422, r.text


def test_ids_may_be_written_as_whole_floats(client: Any, demo: Demo) -> None:
    """JSON Schema counts 2.0 as an integer, so the API does too."""
    h = {"Authorization": f"Bearer {_admin_token(demo)}"}
    site = client.get("/api/v1/sites", params={"q": "79"}, headers=h).json()["items"][0]
    r = client.patch(f"/api/v1/sites/{site['id']}", json={"unit_id": float(site["unit_id"])}, headers=h)
    assert r.status_code == 200, r.text


def test_times_are_given_in_utc(client: Any, demo: Demo) -> None:
    token = _admin_token(demo)
    r = client.post("/api/v1/auth/login", json={"username": "thuky", "password": DEMO_PASSWORD})
    assert r.json()["expires_at"].endswith("Z")
    users = client.get("/api/v1/users/1", headers={"Authorization": f"Bearer {token}"}).json()
    assert users["created_at"].endswith("Z")
