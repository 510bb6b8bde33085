"""The real app with its media plane in a child process, for the browser benchmarks (bench/join_time.py).

A SQLite database with the demo org and an open briefing of every site, served as
the tests do (giaoban/lab/serve.py): Janus in the lab namespace, the app on loopback + the link.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from giaoban.lab.janus_ns import JanusNamespace

PASSWORD = "Demo-password-2017"


def _open_meeting(ctx: Any, live: bool = False) -> tuple[int, list[tuple[str, int]]]:
    from sqlalchemy import select

    from giaoban.audit.log import Actor
    from giaoban.context import Tx
    from giaoban.meetings import scheduling as svc
    from giaoban.meetings.lifecycle import MeetingStatus
    from giaoban.org.models import Site, Unit, User

    with ctx.db.session() as s:
        tx = Tx(s, ctx.audit, Actor.system("bench"))
        sites = [(str(c), int(i)) for c, i in s.execute(select(Site.code, Site.id).order_by(Site.id))]
        tw_unit = s.execute(select(Unit.id).where(Unit.code == "TW")).scalar_one()
        now = datetime.now()
        meeting = svc.create_meeting(
            tx,
            svc.MeetingSpec(
                title="Đo độ trễ trao quyền phát biểu",
                kind="briefing",
                starts_at=now + timedelta(minutes=5),
                ends_at=now + timedelta(hours=1),
                owner_unit_id=tw_unit,
                host_site_id=dict(sites)["TW"],
                chair_user_id=s.execute(select(User.id).where(User.username == "chutri")).scalar_one(),
                invite=svc.InviteSpec(under_unit_ids=[tw_unit]),
            ),
        )
        svc.transition(tx, meeting.id, MeetingStatus.open)
        if live:
            svc.transition(tx, meeting.id, MeetingStatus.live)
        return meeting.id, sites


def _serve(
    conn: multiprocessing.connection.Connection,
    ns: JanusNamespace,
    work: Path,
    live: bool = False,
    extra_plugins: tuple[str, ...] = (),
    log_file: str | None = None,
) -> None:
    """Child process: database + demo + open briefing, then the app with Janus until told to stop."""
    if log_file:  # the app's own log (giaoban.*, DEBUG) for diagnosing a run
        import logging

        handler = logging.FileHandler(log_file)
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        app_log = logging.getLogger("giaoban")
        app_log.setLevel(logging.DEBUG)
        app_log.addHandler(handler)
    from argon2 import PasswordHasher

    from giaoban.audit.log import AuditLog
    from giaoban.context import AppContext
    from giaoban.db import Database
    from giaoban.demo import load_demo
    from giaoban.lab.serve import serve_with_media
    from giaoban.migrate import upgrade
    from giaoban.org import accounts
    from giaoban.settings import Settings

    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # ~75 logins
    url = f"sqlite:///{work / 'bench.sqlite3'}"
    upgrade(url)
    settings = Settings(
        data_dir=work / "var",
        database_url=url,
        secret_key="bench-secret-key-0123456789",
        demo_password=PASSWORD,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    ctx = AppContext(settings=settings, db=db, audit=AuditLog(settings.resolved_secret_key))
    try:
        load_demo(ctx, password=PASSWORD)
        meeting_id, sites = _open_meeting(ctx, live)
        # e.g. bench/join_time.py's echotest, on the same Janus
        janus = {"extra_plugins": list(extra_plugins)} if extra_plugins else None
        with serve_with_media(ctx, ns, work / "janus", janus=janus) as served:
            conn.send(
                {
                    "base": served.base,
                    "meeting": meeting_id,
                    "sites": sites,
                    "janus_url": served.janus_url,
                    "api_secret": served.api_secret,
                }
            )
            conn.poll(None)  # until the parent says stop (or dies: EOF)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send({"error": repr(exc)})
        raise
    finally:
        db.dispose()


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]
