"""The one ``giaoban`` command: serve, db, demo, user, units, sites, audit."""

from __future__ import annotations

import argparse
import getpass
import importlib
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from giaoban.audit.log import Actor, VerifyReport
from giaoban.context import AppContext, Tx
from giaoban.errors import DomainError
from giaoban.settings import get_settings


def _ctx() -> AppContext:
    return AppContext.from_settings(get_settings())


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from giaoban.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url, args.revision)
    print(f"Cơ sở dữ liệu đã cập nhật ({args.revision}).")
    return 0


def print_logins(logins: Sequence[object]) -> None:
    print("\nTài khoản demo / demo logins:")
    print(f"  {'username':<16} {'password':<22} {'role':<17} scope")
    for login in logins:
        print(
            f"  {login.username:<16} {login.password:<22} {login.role:<17} {login.scope}"  # type: ignore[attr-defined]
        )
    print()


def cmd_demo_load(args: argparse.Namespace) -> int:
    from giaoban.demo import is_empty, load_demo

    ctx = _ctx()
    if not is_empty(ctx):
        if args.if_empty:
            print("Cơ sở dữ liệu đã có dữ liệu; bỏ qua nạp demo.")
            return 0
        print("Cơ sở dữ liệu không rỗng: chỉ nạp demo vào cơ sở dữ liệu rỗng.", file=sys.stderr)
        return 1
    logins = load_demo(ctx, password=args.password)
    print_logins(logins)
    creds = ctx.settings.data_dir / "demo-logins.txt"
    creds.touch(mode=0o600)
    creds.write_text("".join(f"{x.username}\t{x.password}\t{x.role}\t{x.scope}\n" for x in logins))
    print(f"(đã lưu vào {creds})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from giaoban.web.app import create_app

    settings = get_settings()
    if args.migrate:
        from giaoban.migrate import upgrade

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.resolved_database_url)
    media = None
    if not args.no_media:
        from giaoban.media.service import MediaService

        event_host = settings.janus_events_host or (
            "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        )
        media = MediaService.from_env(
            settings.data_dir,
            event_backend_url=f"http://{event_host}:{args.port or settings.port}/internal/janus/events",
        )
    turn = None
    if not args.no_media:
        from giaoban.media.config import JanusSettings
        from giaoban.media.turn import TurnService, janus_media_addresses

        janus = JanusSettings()
        turn = TurnService.from_env(
            settings.data_dir,
            default_peers=janus_media_addresses(janus.nat_1_1_mapping, janus.ice_enforce_list),
        )
    from giaoban.web.tls import TlsError, resolve_tls

    try:
        tls = resolve_tls(settings.data_dir, settings.tls_cert, settings.tls_key, settings.tls_self_signed)
    except TlsError as exc:
        raise DomainError(str(exc)) from exc
    app = create_app(settings=settings, media=media, turn=turn)
    if args.demo:
        from giaoban.demo import is_empty, load_demo

        ctx: AppContext = app.state.ctx
        if is_empty(ctx):
            print_logins(load_demo(ctx))
        else:
            creds = settings.data_dir / "demo-logins.txt"
            if creds.exists():
                print(f"Tài khoản demo: xem {creds}")
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"Giao Ban: {'https' if tls else 'http'}://{host}:{port}/")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=False,
        # Our messages are small JSON: compressing each for every tab costs CPU at a floor change
        # (one delta to 72 tabs) and a zlib context per connection, and saves next to nothing.
        ws_per_message_deflate=False,
        # The app closes the socket on a larger message too (giaoban.web.limits); uvicorn refuses it
        # while it arrives instead of buffering up to its default 16 MiB.
        ws_max_size=settings.max_body_bytes,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
    return 0


def cmd_tls_selfsigned(args: argparse.Namespace) -> int:
    import ipaddress

    from giaoban.web.tls import ensure_self_signed, fingerprint, load_cert, subject_names

    settings = get_settings()
    try:
        ips = [ipaddress.ip_address(x) for x in args.ip or []]
    except ValueError as exc:
        raise DomainError(f"Địa chỉ IP không hợp lệ: {exc}") from exc
    files = ensure_self_signed(settings.data_dir, extra_names=args.name, extra_ips=ips, force=args.force)
    cert = load_cert(files.cert)
    names, addrs = subject_names(cert)
    print(f"Chứng chỉ: {files.cert}\nKhóa riêng: {files.key}")
    print(f"Tên: {', '.join(names)}\nĐịa chỉ: {', '.join(str(a) for a in addrs)}")
    print(f"Hết hạn: {cert.not_valid_after_utc:%Y-%m-%d}\nSHA-256: {fingerprint(cert)}")
    print("Dùng: GIAOBAN_TLS_SELF_SIGNED=1 giaoban serve (hoặc GIAOBAN_TLS_CERT/GIAOBAN_TLS_KEY).")
    return 0


def cmd_text_check(args: argparse.Namespace) -> int:
    from giaoban.textcheck import unclean_text

    ctx = _ctx()
    with ctx.db.session() as session:
        found = [str(u) for u in unclean_text(session)]
    if not found:
        print("Mọi tên và nội dung đã lưu đều đúng quy tắc văn bản.")
        return 0
    print(f"{len(found)} trường cần sửa (qua trang quản trị hoặc API):", file=sys.stderr)
    for line in found:
        print(f"  - {line}", file=sys.stderr)
    return 1


def _tx(ctx: AppContext, session: object) -> Tx:
    return Tx(session, ctx.audit, Actor.system(f"cli:{getpass.getuser()}"))  # type: ignore[arg-type]


def read_password(args: argparse.Namespace, prompt: str) -> str:
    """The password for ``user create`` / ``user passwd``: ``--password``; else one line of standard
    input when it is not a terminal (or with ``--password-stdin``); else asked twice at the terminal.
    No password to be had is a clear error (exit 2), never a traceback."""
    if args.password:
        return str(args.password)
    stdin = sys.stdin
    if args.password_stdin or stdin is None or not stdin.isatty():
        line = stdin.readline() if stdin is not None else ""
        password = line.rstrip("\r\n")
        if not password:
            raise DomainError(
                "Không có mật khẩu: chạy lệnh trong một terminal để nhập, hoặc đưa mật khẩu vào đầu vào "
                "chuẩn (một dòng), ví dụ: printf '%s\\n' \"$MAT_KHAU\" | giaoban user create ... "
                "--password-stdin."
            )
        return password
    try:
        password = getpass.getpass(prompt)
        again = getpass.getpass("Nhập lại mật khẩu: ")
    except (EOFError, KeyboardInterrupt):
        raise DomainError("Chưa nhập mật khẩu; không thay đổi gì.") from None
    if password != again:
        raise DomainError("Hai lần nhập mật khẩu không giống nhau; không thay đổi gì.")
    return password


def cmd_user_create(args: argparse.Namespace) -> int:
    from giaoban.org import accounts
    from giaoban.org.units import get_unit_by_code

    ctx = _ctx()
    password = read_password(args, "Mật khẩu: ")
    with ctx.db.session() as session:
        roles = []
        for spec in args.role or []:
            role, _, code = spec.partition("@")
            unit = get_unit_by_code(session, code)
            if unit is None:
                raise DomainError(f"Không tìm thấy đơn vị '{code}' (dạng vai_trò@mã_đơn_vị).")
            roles.append(accounts.RoleSpec(role=role, unit_id=unit.id))
        user = accounts.create_user(
            _tx(ctx, session),
            username=args.username,
            password=password,
            full_name=args.full_name,
            roles=roles,
        )
        print(f"Đã tạo người dùng {user.username} (id {user.id}).")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from giaoban.org import accounts

    ctx = _ctx()
    password = read_password(args, "Mật khẩu mới: ")
    with ctx.db.session() as session:
        user = accounts.get_user_by_name(session, args.username)
        if user is None:
            raise DomainError(f"Không có người dùng '{args.username}'.")
        accounts.reset_password(_tx(ctx, session), user.id, password, must_change=False)
        if args.unlock:
            accounts.set_locked(_tx(ctx, session), user.id, False)
    print("Đã đặt mật khẩu mới.")
    return 0


def _print_import_error(exc: DomainError) -> None:
    print(f"Lỗi: {exc.message}", file=sys.stderr)
    for item in exc.details or []:
        where = f"dòng {item['row']}" if item["row"] else "tệp"
        print(f"  {where}: {item['message']}", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    from giaoban.org import io as org_io
    from giaoban.org.units import allowed_kinds

    ctx = _ctx()
    path = Path(args.file)
    data = path.read_bytes()
    try:
        with ctx.db.session() as session:
            tx = _tx(ctx, session)
            if args.what == "units":
                report = org_io.import_units(
                    tx,
                    data,
                    path.name,
                    effective=args.effective,
                    with_sites=args.with_sites,
                    kinds=allowed_kinds(ctx.settings.extra_unit_kinds),
                    dry_run=args.dry_run,
                )
            else:
                report = org_io.import_sites(tx, data, path.name, dry_run=args.dry_run)
    except DomainError as exc:
        _print_import_error(exc)
        return 2
    verb = "Sẽ tạo" if args.dry_run else "Đã tạo"
    print(f"{verb} {report.created} {args.what} ({report.sites_created} điểm cầu kèm theo).")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from giaoban.org import io as org_io
    from giaoban.org.sites import SiteFilter, query_sites
    from giaoban.org.units import UnitFilter

    ctx = _ctx()
    with ctx.db.session() as session:
        if args.what == "units":
            data = org_io.export_units(session, args.format, UnitFilter(as_of=args.as_of))
        else:
            data = org_io.export_sites(session, args.format, query_sites(SiteFilter()))
    if args.output == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(args.output).write_bytes(data)
    return 0


def _print_problems(report: VerifyReport) -> None:
    print(
        f"NHẬT KÝ BỊ SỬA ĐỔI: {len(report.problems)} vấn đề trong {report.checked} bản ghi:", file=sys.stderr
    )
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0: the chain verifies (and holds the anchor, if given); 1: tampering or lost history
    found; 2: the anchor file cannot be read (or another usage error)."""
    from giaoban.audit.log import Anchor, AnchorError

    anchor = None
    if args.anchor:
        try:
            anchor = Anchor.from_json(Path(args.anchor).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, AnchorError) as exc:
            raise DomainError(f"Không đọc được tệp neo {args.anchor}: {exc}") from None
    ctx = _ctx()
    with ctx.db.session() as session:
        report = ctx.audit.verify(session, anchor=anchor)
    if report.ok:
        print(f"Nhật ký toàn vẹn: {report.checked} bản ghi, chuỗi băm khớp.")
        if anchor is not None:
            print(f"Nhật ký còn nguyên đến mốc neo: bản ghi {anchor.seq} ({anchor.at or 'nhật ký rỗng'}).")
        return 0
    _print_problems(report)
    return 1


def cmd_audit_anchor(args: argparse.Namespace) -> int:
    """Print (or write to ``--output``) the sealed head as a JSON anchor, after checking the log:
    exit 0 with the anchor; 1 if the log does not verify (no anchor is made); 2 on a usage error."""
    ctx = _ctx()
    with ctx.db.session() as session:
        report = ctx.audit.verify(session)
        if not report.ok:
            _print_problems(report)
            print("Không tạo mốc neo cho một nhật ký không toàn vẹn.", file=sys.stderr)
            return 1
        anchor = ctx.audit.anchor(session)
    text = anchor.to_json() + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)  # never a half-written anchor
    except OSError as exc:
        raise DomainError(f"Không ghi được tệp neo {target}: {exc}") from None
    print(f"Đã ghi mốc neo: bản ghi {anchor.seq} vào {target}.", file=sys.stderr)
    return 0


# `giaoban loadtest NAME`: the lab module that runs it, and its one-line help.
LOAD_TESTS = {
    "media": ("giaoban.lab.loadtest", "host + N synthetic sites in one Janus room"),
    "briefing": ("giaoban.lab.loadbrief", "host + N sites in a live briefing, through the app"),
}
LAB_INSTALL = 'pip install "giaoban[lab]"'


def lab_missing(exc: ImportError) -> str:
    """What to say when a lab command runs without the `lab` extra (in Vietnamese, with the pip command)."""
    missing = exc.name or str(exc)
    return (
        f"Lỗi: lệnh này cần bộ công cụ thử tải (phần mở rộng `lab`), chưa được cài đặt (thiếu {missing}).\n"
        f"Cài đặt bằng lệnh: {LAB_INSTALL}\n"
        "(từ thư mục mã nguồn: pip install -e '.[lab]', hoặc scripts/setup.sh run)"
    )


def cmd_loadtest(args: argparse.Namespace) -> int:
    """`giaoban loadtest media|briefing …`: the lab command parses its own options, then runs."""
    module, what = LOAD_TESTS[args.loadtest_command]
    try:
        command = importlib.import_module(module)
    except ImportError as exc:
        print(lab_missing(exc), file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"giaoban loadtest {args.loadtest_command}", description=what)
    command.configure_parser(parser)
    options = parser.parse_args(args.lab_args)
    try:
        import aiortc  # noqa: F401  (the bots need it; the options above did not)
    except ImportError as exc:
        print(lab_missing(exc), file=sys.stderr)
        return 2
    return int(command.run_cli(options))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="giaoban", description="Giao Ban — giao ban trực tuyến và hồ sơ tổ chức"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web server (and its media plane)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--migrate", action="store_true", help="upgrade the database first")
    serve.add_argument(
        "--demo", action="store_true", help="load the demo organization if the database is empty"
    )
    serve.add_argument("--no-media", action="store_true", help="do not start or connect to Janus")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_command", required=True)
    load = demo.add_parser("load", help="load the demo organization and logins")
    load.add_argument("--if-empty", action="store_true", help="do nothing if the database has data")
    load.add_argument("--password", help="one password for every demo login (default: generated)")
    load.set_defaults(func=cmd_demo_load)

    user = sub.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    create = user.add_parser("create", help="create a user")
    create.add_argument("username")
    create.add_argument("--full-name", default="")
    create.add_argument("--password", help="(prompted when omitted; visible to other local users)")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of standard input"
    )
    create.add_argument("--role", action="append", help="ROLE@UNIT_CODE, e.g. admin@TW (repeatable)")
    create.set_defaults(func=cmd_user_create)
    passwd = user.add_parser("passwd", help="set a user's password")
    passwd.add_argument("username")
    passwd.add_argument("--password", help="(prompted when omitted; visible to other local users)")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of standard input"
    )
    passwd.add_argument("--unlock", action="store_true", help="also unlock the account")
    passwd.set_defaults(func=cmd_user_passwd)

    text = sub.add_parser("text", help="stored text").add_subparsers(dest="text_command", required=True)
    check = text.add_parser("check", help="list stored names the text rules refuse; exit 1 if any")
    check.set_defaults(func=cmd_text_check)

    for what in ("units", "sites"):
        group = sub.add_parser(what, help=f"{what} import/export").add_subparsers(
            dest="io_command", required=True
        )
        imp = group.add_parser("import", help="import a TSV/CSV/XLSX file (all rows or nothing)")
        imp.add_argument("file")
        imp.add_argument("--dry-run", action="store_true", help="check the file, write nothing")
        if what == "units":
            imp.add_argument("--effective", type=date.fromisoformat, help="valid from (YYYY-MM-DD)")
            imp.add_argument("--with-sites", action="store_true", help="one site per new unit")
        imp.set_defaults(func=cmd_import, what=what)
        exp = group.add_parser("export", help="export as TSV/CSV/XLSX")
        exp.add_argument("--format", choices=("tsv", "csv", "xlsx"), default="tsv")
        exp.add_argument("--output", "-o", default="-")
        if what == "units":
            exp.add_argument("--as-of", type=date.fromisoformat)
        exp.set_defaults(func=cmd_export, what=what, as_of=None)

    loadtest = sub.add_parser(
        "loadtest", help=f"load tests (as root: builds its own lab; needs the lab extra: {LAB_INSTALL})"
    ).add_subparsers(dest="loadtest_command", required=True)
    # The lab (giaoban.lab, installed with the `lab` extra) is imported only when a load test runs:
    # its own parser takes the options, so `giaoban serve` works without aiortc.
    for name, (_, summary) in LOAD_TESTS.items():
        lt = loadtest.add_parser(name, help=summary, add_help=False, prefix_chars="\0")
        lt.add_argument("lab_args", nargs=argparse.REMAINDER)
        lt.set_defaults(func=cmd_loadtest)

    tls = sub.add_parser("tls", help="https certificates").add_subparsers(dest="tls_command", required=True)
    selfsigned = tls.add_parser("selfsigned", help="make a self-signed certificate for this machine's LAN")
    selfsigned.add_argument("--name", action="append", help="one more host name (repeatable)")
    selfsigned.add_argument("--ip", action="append", help="one more IP address (repeatable)")
    selfsigned.add_argument("--force", action="store_true", help="remake it even if still valid")
    selfsigned.set_defaults(func=cmd_tls_selfsigned)

    audit = sub.add_parser("audit", help="audit trail").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser(
        "verify",
        help="check the hash chain and that the log holds the history of the data; "
        "exit 0 intact, 1 altered or lost, 2 unreadable anchor",
    )
    verify.add_argument(
        "--anchor", metavar="FILE", help="also prove the log still holds everything up to this anchor"
    )
    verify.set_defaults(func=cmd_audit_verify)
    anchor = audit.add_parser(
        "anchor",
        help="print the sealed head as a JSON anchor to keep off this host; exit 1 if the log does not verify",
    )
    anchor.add_argument("--output", "-o", metavar="FILE", help="write it to FILE (default: standard output)")
    anchor.set_defaults(func=cmd_audit_anchor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DomainError as exc:
        print(f"Lỗi: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # A GIAOBAN_* environment variable that makes no sense: say which, without a traceback.
        for error in exc.errors():
            name = "GIAOBAN_" + "_".join(str(part) for part in error["loc"][:1]).upper()
            print(f"Lỗi cấu hình {name}: {error['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
