"""Accounts: users and their role assignments, passwords (argon2), logins, sessions, TOTP.

Only a token's SHA-256 is stored; the token itself lives in the browser's cookie or the script's
bearer header. Failed logins are throttled per user name and per address.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from giaoban.audit.log import Actor
from giaoban.context import AppContext, Tx
from giaoban.db import utcnow
from giaoban.errors import Conflict, DomainError, Forbidden, NotFound, Throttled, Unauthorized
from giaoban.org import scope
from giaoban.org.access import Perm, Principal, root_admin_ids
from giaoban.org.models import AuthSession, LoginAttempt, Role, RoleAssignment, Site, Unit, User
from giaoban.org.units import get_unit, in_any_subtree, root_unit
from giaoban.settings import Settings
from giaoban.text import check_line, search_key
from giaoban.types import Listing

_hasher = PasswordHasher()
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A fixed hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The column sizes of User; each is one line under giaoban.text's policy, and may be blank.
USER_FIELDS = {"full_name": ("Họ tên", 200), "email": ("Thư điện tử", 200), "phone": ("Điện thoại", 50)}
LOCK_REASON_MAX = 200


def _user_field(key: str, value: Any) -> str:
    label, limit = USER_FIELDS[key]
    return check_line(
        str(value), label=label, max_length=limit, required=False, field=key, code="invalid_user_field"
    )


def user_snapshot(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "full_name": user.full_name,
        "email": user.email,
        "phone": user.phone,
        "is_locked": user.is_locked,
        "totp_enabled": user.totp_enabled,
        "roles": [{"role": r.role, "unit_id": r.unit_id, "site_id": r.site_id} for r in user.roles],
    }


def check_password_strength(password: str, username: str = "") -> None:
    if len(password) < MIN_PASSWORD:
        raise DomainError(f"Mật khẩu phải có ít nhất {MIN_PASSWORD} ký tự.", code="weak_password")
    if username and username.lower() in password.lower():
        raise DomainError("Mật khẩu không được chứa tên đăng nhập.", code="weak_password")
    if len(set(password)) < 5:
        raise DomainError("Mật khẩu quá đơn giản.", code="weak_password")


def login_key(username: str) -> str:
    """The name a login attempt is counted under. A NUL (which PostgreSQL text cannot hold) becomes
    U+FFFD, so the attempt is still recorded and simply matches nobody."""
    return username.strip().lower()[:64].replace("\x00", "\ufffd")


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id, options=[selectinload(User.roles).selectinload(RoleAssignment.unit)])
    if user is None:
        raise NotFound(f"Không có người dùng mã số {user_id}.", code="user_not_found")
    return user


def get_user_by_name(session: Session, username: str) -> User | None:
    return session.execute(
        select(User)
        .where(User.username == username.strip().lower())
        .options(selectinload(User.roles).selectinload(RoleAssignment.unit))
    ).scalar_one_or_none()


@dataclass
class RoleSpec:
    role: str
    unit_id: int
    site_id: int | None = None


def _check_role_spec(session: Session, spec: RoleSpec) -> None:
    if spec.role not in {r.value for r in Role}:
        raise DomainError(f"Vai trò '{spec.role}' không hợp lệ.", code="invalid_role")
    unit = get_unit(session, spec.unit_id)
    if unit.valid_to is not None:
        raise Conflict(f"Đơn vị {unit.code} đã giải thể.", code="unit_closed")
    if spec.site_id is not None:
        if spec.role != Role.site_operator:
            raise DomainError(
                "Chỉ kỹ thuật viên điểm cầu được gắn với một điểm cầu.", code="invalid_role_site"
            )
        site = session.get(Site, spec.site_id)
        if site is None or site.unit_id != unit.id:
            raise Conflict("Điểm cầu không thuộc đơn vị được giao.", code="invalid_role_site")


def _is_last_root_admin(session: Session, user_id: int) -> bool:
    return root_admin_ids(session) == {user_id}


def _last_root_admin() -> Conflict:
    return Conflict(
        "Đây là quản trị viên cuối cùng của toàn hệ thống (vai trò quản trị tại đơn vị gốc) còn hoạt "
        "động: hãy giao vai trò này cho một người khác trước.",
        code="last_root_admin",
    )


def _keep_a_root_admin(session: Session, user: User, roles: Sequence[RoleSpec] | None, locked: bool) -> None:
    """Refuse a change to ``user`` (new ``roles``, ``locked``) that would leave nobody active able to
    administer the whole organization. Every path that revokes a role or disables an account ends
    here, so no sequence of them can lock the organization out of itself. The root's row is locked
    first, so two such changes at once (two admins locking each other) are decided one after the
    other, the second seeing the first."""
    session.execute(select(Unit.id).where(Unit.parent_id.is_(None)).with_for_update()).all()
    if not _is_last_root_admin(session, user.id):
        return
    root = root_unit(session)
    keeps = (
        not locked
        and root is not None
        and any(s.role == Role.admin and s.unit_id == root.id and s.site_id is None for s in roles or ())
    )
    if not keeps:
        raise _last_root_admin()


def create_user(
    tx: Tx,
    *,
    username: str,
    password: str,
    full_name: str = "",
    email: str = "",
    phone: str = "",
    roles: Sequence[RoleSpec] = (),
    must_change_password: bool = False,
    check_strength: bool = True,
    password_hash: str | None = None,
) -> User:
    session = tx.session
    username = username.strip().lower()
    if not USERNAME_RE.match(username):
        raise DomainError(
            "Tên đăng nhập gồm 2–64 ký tự: chữ thường không dấu, số, dấu chấm, gạch ngang, gạch dưới.",
            code="invalid_username",
        )
    if get_user_by_name(session, username) is not None:
        raise Conflict(f"Tên đăng nhập '{username}' đã tồn tại.", code="username_exists")
    if check_strength:
        check_password_strength(password, username)
    elif not password:
        raise DomainError("Mật khẩu không được để trống.", code="weak_password")
    full_name = _user_field("full_name", full_name)
    email = _user_field("email", email)
    phone = _user_field("phone", phone)
    for spec in roles:
        _check_role_spec(session, spec)
    user = User(
        username=username,
        full_name=full_name,
        full_name_key=search_key(full_name),
        email=email,
        phone=phone,
        password_hash=password_hash or hash_password(password),
        password_changed_at=utcnow(),
        must_change_password=must_change_password,
    )
    user.roles = [RoleAssignment(role=s.role, unit_id=s.unit_id, site_id=s.site_id) for s in roles]
    session.add(user)
    session.flush()
    tx.record("user.create", "user", user.id, after=user_snapshot(user))
    return user


def update_user(tx: Tx, user_id: int, **fields: Any) -> User:
    user = get_user(tx.session, user_id)
    before = user_snapshot(user)
    for key in ("full_name", "email", "phone"):
        if fields.get(key) is not None:
            value = _user_field(key, fields[key])
            setattr(user, key, value)
            if key == "full_name":
                user.full_name_key = search_key(value)
    if user_snapshot(user) != before:
        tx.record("user.update", "user", user.id, before=before, after=user_snapshot(user))
    return user


def set_roles(tx: Tx, user_id: int, roles: Sequence[RoleSpec]) -> User:
    user = get_user(tx.session, user_id)
    for spec in roles:
        _check_role_spec(tx.session, spec)
    _keep_a_root_admin(tx.session, user, roles, user.is_locked)
    before = user_snapshot(user)
    wanted = {(s.role, s.unit_id, s.site_id) for s in roles}
    user.roles = [r for r in user.roles if (r.role, r.unit_id, r.site_id) in wanted]
    have = {(r.role, r.unit_id, r.site_id) for r in user.roles}
    for role, unit_id, site_id in sorted(wanted - have, key=str):
        user.roles.append(RoleAssignment(role=role, unit_id=unit_id, site_id=site_id))
    tx.session.flush()
    tx.session.refresh(user)
    tx.record("user.roles", "user", user.id, before=before, after=user_snapshot(user))
    _end_sessions(tx.session, user.id)
    return user


def set_locked(tx: Tx, user_id: int, locked: bool, reason: str = "") -> User:
    user = get_user(tx.session, user_id)
    if locked:
        current = [RoleSpec(r.role, r.unit_id, r.site_id) for r in user.roles]
        _keep_a_root_admin(tx.session, user, current, locked=True)
    before = user_snapshot(user)
    user.is_locked = locked
    user.locked_reason = (
        check_line(reason, label="Lý do khóa", max_length=LOCK_REASON_MAX, required=False, field="reason")
        if locked
        else ""
    )
    if not locked:
        user.failed_logins = 0
    if locked:
        _end_sessions(tx.session, user.id)
    tx.record(
        "user.lock" if locked else "user.unlock", "user", user.id, before=before, after=user_snapshot(user)
    )
    return user


def reset_password(tx: Tx, user_id: int, new_password: str, *, must_change: bool = True) -> User:
    user = get_user(tx.session, user_id)
    check_password_strength(new_password, user.username)
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = must_change
    _end_sessions(tx.session, user.id)
    tx.record("user.password_reset", "user", user.id)
    return user


def change_password(tx: Tx, user_id: int, current: str, new_password: str, keep_session: int | None) -> None:
    user = get_user(tx.session, user_id)
    if not _verify_password(user.password_hash, current):
        raise Forbidden("Mật khẩu hiện tại không đúng.", code="wrong_password")
    if current == new_password:
        raise DomainError("Mật khẩu mới phải khác mật khẩu cũ.", code="weak_password")
    check_password_strength(new_password, user.username)
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    # Other logins of this user end; the one that changed the password stays.
    stmt = delete(AuthSession).where(AuthSession.user_id == user.id)
    if keep_session is not None:
        stmt = stmt.where(AuthSession.id != keep_session)
    tx.session.execute(stmt)
    tx.record("user.password_change", "user", user.id)


def _end_sessions(session: Session, user_id: int) -> None:
    session.execute(delete(AuthSession).where(AuthSession.user_id == user_id))


# --- login -------------------------------------------------------------------------------------


@dataclass
class LoginResult:
    token: str
    session: AuthSession
    user: User
    needs_totp: bool
    needs_totp_enrollment: bool


@dataclass
class LoginFailure:
    error: DomainError


def _throttled(session: Session, settings: Settings, username_key: str, ip: str) -> bool:
    since = utcnow() - timedelta(seconds=settings.login_window_seconds)
    failed = (
        select(func.count()).select_from(LoginAttempt).where(LoginAttempt.at >= since, ~LoginAttempt.success)
    )
    by_user = session.execute(failed.where(LoginAttempt.username_key == username_key)).scalar_one()
    by_ip = session.execute(failed.where(LoginAttempt.ip == ip)).scalar_one() if ip else 0
    return by_user >= settings.login_max_failures or by_ip >= settings.login_max_failures * 4


def check_not_throttled(session: Session, settings: Settings, username: str, ip: str) -> None:
    if _throttled(session, settings, login_key(username), ip):
        raise Throttled("Nhập sai mật khẩu quá nhiều lần. Vui lòng thử lại sau ít phút.")


def record_failed_attempt(session: Session, username: str, ip: str) -> None:
    """A wrong password given outside the login form (to change it) counts like a failed login."""
    session.add(LoginAttempt(username_key=login_key(username), ip=ip, success=False))


def login(
    tx: Tx,
    settings: Settings,
    *,
    username: str,
    password: str,
    totp: str | None = None,
    kind: str = "cookie",
    user_agent: str = "",
    replaces: str | None = None,
) -> LoginResult | LoginFailure:
    """Check the password (and TOTP if given); open a session.

    A failure is returned, not raised, so the caller commits the failed attempt (it counts toward
    throttling) before reporting it.

    With TOTP enabled and no code given, the session opens "pending": it can only finish the
    second step. The same happens for an admin who must enrol TOTP and has not yet.

    ``replaces`` is the cookie token the request still carried: a successful login ends that older
    browser session (whoever's it was), so one browser never holds two live sessions.
    """
    session = tx.session
    ip = tx.actor.ip
    key = login_key(username)
    if _throttled(session, settings, key, ip):
        raise Throttled("Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau ít phút.")
    user = get_user_by_name(session, key)
    ok = _verify_password(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    session.add(LoginAttempt(username_key=key, ip=ip, success=ok))
    if not ok or user is None:
        if user is not None:
            user.failed_logins += 1
            # Never the last administrator of the whole organization: that would lock everyone
            # out of it (throttling still slows a guesser down).
            if (
                settings.lock_after_failures
                and user.failed_logins >= settings.lock_after_failures
                and not _is_last_root_admin(session, user.id)
            ):
                user.is_locked = True
                user.locked_reason = "Khóa tự động: đăng nhập sai nhiều lần."
                tx.record("user.lock", "user", user.id, after={"reason": user.locked_reason})
        return LoginFailure(Unauthorized("Tên đăng nhập hoặc mật khẩu không đúng.", code="bad_credentials"))
    if user.is_locked:
        return LoginFailure(
            Unauthorized("Tài khoản đang bị khóa. Liên hệ quản trị hệ thống.", code="account_locked")
        )
    needs_enrollment = (
        settings.admin_totp_required
        and not user.totp_enabled
        and any(r.role == Role.admin for r in user.roles)
    )
    needs_totp = user.totp_enabled
    if needs_totp and totp is not None:
        if not verify_totp(user, totp):
            session.add(LoginAttempt(username_key=key, ip=ip, success=False))
            return LoginFailure(Unauthorized("Mã xác thực không đúng.", code="bad_totp"))
        needs_totp = False
    if kind == "bearer" and (needs_totp or needs_enrollment):
        code = "totp_required" if needs_totp else "totp_enrollment_required"
        raise Unauthorized("Cần mã xác thực hai lớp (TOTP).", code=code)
    user.failed_logins = 0
    user.last_login_at = utcnow()
    token = secrets.token_urlsafe(32)
    auth = AuthSession(
        token_hash=token_hash(token),
        user_id=user.id,
        kind=kind,
        csrf_token=secrets.token_urlsafe(24),
        second_factor_pending=needs_totp or needs_enrollment,
        expires_at=utcnow() + timedelta(hours=settings.session_hours),
        ip=ip,
        user_agent=user_agent[:300],
    )
    session.add(auth)
    if replaces:
        old = session_for_token(session, replaces)
        if old is not None and old.kind == "cookie":
            session.delete(old)
            tx.record("auth.logout", "user", old.user_id, after={"reason": "replaced_by_login"})
    session.flush()
    tx.record("auth.login", "user", user.id, after={"kind": kind, "pending": auth.second_factor_pending})
    return LoginResult(token, auth, user, needs_totp, needs_enrollment)


def session_for_token(session: Session, token: str) -> AuthSession | None:
    auth = session.execute(
        select(AuthSession).where(AuthSession.token_hash == token_hash(token))
    ).scalar_one_or_none()
    if auth is None or auth.expires_at <= utcnow():
        return None
    return auth


def touch(auth: AuthSession) -> None:
    """Record activity at most once a minute, so reads do not write on every request."""
    now = utcnow()
    if now - auth.last_seen_at > timedelta(minutes=1):
        auth.last_seen_at = now


def logout(tx: Tx, auth: AuthSession) -> None:
    tx.session.delete(auth)
    tx.record("auth.logout", "user", auth.user_id)


# --- TOTP --------------------------------------------------------------------------------------


def verify_totp(user: User, code: str) -> bool:
    if not user.totp_secret:
        return False
    return pyotp.TOTP(user.totp_secret).verify(code.strip().replace(" ", ""), valid_window=1)


def begin_totp_enrollment(tx: Tx, user_id: int) -> tuple[str, str]:
    """A new secret (not yet enabled) and its otpauth:// URI for an authenticator app."""
    user = get_user(tx.session, user_id)
    if user.totp_enabled:
        raise Conflict("Xác thực hai lớp đã được bật.", code="totp_already_enabled")
    user.totp_secret = pyotp.random_base32()
    uri = pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.username, issuer_name="Giao Ban")
    return user.totp_secret, uri


def confirm_totp(tx: Tx, user_id: int, code: str, auth: AuthSession | None = None) -> None:
    user = get_user(tx.session, user_id)
    if not user.totp_secret or not verify_totp(user, code):
        raise DomainError("Mã xác thực không đúng.", code="bad_totp")
    user.totp_enabled = True
    if auth is not None:
        auth.second_factor_pending = False
    tx.record("user.totp_enable", "user", user.id)


def complete_second_factor(tx: Tx, auth: AuthSession, code: str) -> None:
    user = get_user(tx.session, auth.user_id)
    if not verify_totp(user, code):
        raise Unauthorized("Mã xác thực không đúng.", code="bad_totp")
    auth.second_factor_pending = False
    tx.record("auth.totp", "user", user.id)


def disable_totp(tx: Tx, settings: Settings, user_id: int, code: str) -> None:
    """Turn off one's own second factor: only with a current code from it, and never for a system
    admin while ``GIAOBAN_ADMIN_TOTP_REQUIRED`` is on. The page and any API share these rules."""
    user = get_user(tx.session, user_id)
    if settings.admin_totp_required and any(
        r.role == Role.admin and r.unit.valid_to is None for r in user.roles
    ):
        raise Forbidden("Quản trị hệ thống bắt buộc dùng xác thực hai lớp.", code="totp_required_for_admin")
    if not verify_totp(user, code[:12]):
        # 403 like a wrong current password: the request is well-formed, the proof is not.
        raise Forbidden("Mã xác thực không đúng.", code="bad_totp")
    user.totp_enabled = False
    user.totp_secret = None
    tx.record("user.totp_disable", "user", user.id)


def prune_sessions(session: Session, now: datetime | None = None) -> int:
    result = session.execute(delete(AuthSession).where(AuthSession.expires_at <= (now or utcnow())))
    return int(getattr(result, "rowcount", 0) or 0)


# --- as a principal may (the API and the pages both call these) ------------------------------------


@dataclass(frozen=True)
class UserQuery:
    q: str | None = None
    role: str | None = None
    unit: int | None = None  # users with a role in this (readable) unit's subtree
    limit: int = 50
    offset: int = 0


def list_users(session: Session, p: Principal, f: UserQuery) -> Listing[User]:
    """The users ``p`` may see (``scope.users_in_scope``), filtered, with their roles loaded."""
    scope.require_user_admin(p)
    stmt = select(User).where(scope.users_in_scope(p, Perm.user_read))
    if f.q:
        key = search_key(f.q)
        stmt = stmt.where(
            or_(
                User.username.contains(f.q.strip().lower(), autoescape=True),
                User.full_name_key.contains(key, autoescape=True),
            )
        )
    if f.role or f.unit:
        cond = [RoleAssignment.user_id == User.id]
        if f.role:
            cond.append(RoleAssignment.role == f.role)
        if f.unit:
            cond.append(in_any_subtree(Unit.path, [scope.readable_unit(session, p, f.unit).path]))
        stmt = stmt.where(
            exists(select(RoleAssignment.id).join(Unit, Unit.id == RoleAssignment.unit_id).where(*cond))
        )
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    users = session.execute(
        stmt.order_by(User.username)
        .limit(f.limit)
        .offset(f.offset)
        .options(selectinload(User.roles).selectinload(RoleAssignment.unit))
    ).scalars()
    return Listing(list(users), total)


def read_user(tx: Tx, p: Principal, user_id: int) -> User:
    """One user ``p`` may see; an audited read (personal data)."""
    user = scope.readable_user(tx.session, p, user_id)
    tx.record("user.read", "user", user.id)
    return user


def grantable(session: Session, p: Principal, roles: Sequence[tuple[str, int, int | None]]) -> list[RoleSpec]:
    """``roles`` (role, unit id, site id) as specs, if ``p`` may give every one of them."""
    specs = []
    for role, unit_id, site_id in roles:
        scope.grantable_unit(session, p, unit_id)
        get_unit(session, unit_id)
        specs.append(RoleSpec(role=role, unit_id=unit_id, site_id=site_id))
    return specs


def add_user(tx: Tx, p: Principal, *, roles: Sequence[tuple[str, int, int | None]], **fields: Any) -> User:
    if not p.can_any(Perm.user_write):
        raise Forbidden("Bạn không có quyền tạo người dùng.")
    specs = grantable(tx.session, p, roles)
    if not specs and not p.is_global(Perm.user_write):
        raise Forbidden("Người dùng phải có ít nhất một vai trò trong phạm vi của bạn.")
    user = create_user(tx, roles=specs, **fields)
    return get_user(tx.session, user.id)


def edit_user(tx: Tx, p: Principal, user_id: int, **fields: Any) -> User:
    scope.writable_user(tx.session, p, user_id)
    return update_user(tx, user_id, **fields)


def replace_roles(tx: Tx, p: Principal, user_id: int, roles: Sequence[tuple[str, int, int | None]]) -> User:
    scope.writable_user(tx.session, p, user_id)
    if user_id == p.user_id:
        raise Forbidden("Không thể tự thay đổi vai trò của chính mình.", code="self_roles")
    return set_roles(tx, user_id, grantable(tx.session, p, roles))


def lock_user(tx: Tx, p: Principal, user_id: int, locked: bool, reason: str = "") -> User:
    scope.writable_user(tx.session, p, user_id)
    if user_id == p.user_id and locked:
        raise Forbidden("Không thể tự khóa tài khoản của chính mình.", code="self_lock")
    return set_locked(tx, user_id, locked, reason)


def set_password(tx: Tx, p: Principal, user_id: int, new_password: str, *, must_change: bool = True) -> User:
    scope.writable_user(tx.session, p, user_id)
    return reset_password(tx, user_id, new_password, must_change=must_change)


# --- one's own account (the API and the pages both call these) ---------------------------------


def sign_in(
    ctx: AppContext,
    *,
    username: str,
    password: str,
    totp: str | None,
    kind: str,
    ip: str,
    user_agent: str = "",
    replaces: str | None = None,
) -> LoginResult:
    """Log in; failed attempts are committed first, then the refusal is raised."""
    actor = Actor(None, login_key(username), ip)
    with ctx.db.session() as session:
        result = login(
            Tx(session, ctx.audit, actor),
            ctx.settings,
            username=username,
            password=password,
            totp=totp,
            kind=kind,
            user_agent=user_agent,
            replaces=replaces,
        )
    if isinstance(result, LoginFailure):
        raise result.error
    return result


def _throttled_attempt(
    ctx: AppContext, p: Principal, failure_code: str, change: Callable[[Tx], None]
) -> None:
    """Run ``change`` as ``p``; a refusal coded ``failure_code`` (a wrong password or code) counts
    as a failed login, so a borrowed session cannot be used to guess at full speed."""
    with ctx.db.session() as session:
        check_not_throttled(session, ctx.settings, p.username, p.ip)
    try:
        with ctx.db.session() as session:
            change(Tx(session, ctx.audit, Actor(p.user_id, p.username, p.ip)))
    except DomainError as exc:
        if exc.code == failure_code:
            with ctx.db.session() as session:
                record_failed_attempt(session, p.username, p.ip)
        raise


def change_own_password(
    ctx: AppContext, p: Principal, current: str, new_password: str, keep_session: int | None
) -> None:
    _throttled_attempt(
        ctx,
        p,
        "wrong_password",
        lambda tx: change_password(tx, p.user_id, current, new_password, keep_session),
    )


def disable_own_totp(ctx: AppContext, p: Principal, code: str) -> None:
    """Needs a current code; refused for a system admin while ``GIAOBAN_ADMIN_TOTP_REQUIRED`` is on."""
    _throttled_attempt(ctx, p, "bad_totp", lambda tx: disable_totp(tx, ctx.settings, p.user_id, code))
