"""API shapes for the organization domain (Pydantic). Validation errors become 422, never 500."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)

from giaoban.org.accounts import MIN_PASSWORD
from giaoban.org.models import RosterEntry, Site, Unit, UnitVersion, User
from giaoban.types import Id, IsoDate, Line, Secret, UtcDateTime

# Every text a person types is one line under the one text policy (giaoban.text, giaoban.types):
# NFC, trimmed, no control or invisible-only content; the limits are the column sizes (models.py).
Code = Annotated[str, Line(32)]
SiteCode = Annotated[str, Line(40)]
Name = Annotated[str, Line(300)]
Kind = Annotated[str, Line(40)]
Short = Annotated[str, Line(300, required=False)]
Text200 = Annotated[str, Line(200, required=False)]
Text50 = Annotated[str, Line(50, required=False)]
# A text query parameter (search words, filters): one line, may be empty.
SearchText = Annotated[str, Line(100, required=False)]


class UnitOut(BaseModel):
    id: int
    code: str
    name: str
    kind: str
    parent_id: int | None
    depth: int
    valid_from: date
    valid_to: date | None
    child_count: int = 0


class UnitDetail(UnitOut):
    ancestors: list[UnitOut] = []
    site_count: int = 0


class UnitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: Name
    kind: Kind
    parent_id: Id | None = Field(
        None,
        description="The parent unit. The organization has exactly one root: without a parent the "
        "request is refused (409 second_root).",
    )
    effective: IsoDate | None = None


class UnitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    kind: Kind | None = None
    effective: IsoDate | None = None


class UnitMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent_id: Id | None = Field(
        description="The new parent. Null (to the top) is refused (409 second_root), and the root "
        "itself never moves (409 root_fixed)."
    )
    effective: IsoDate | None = None


class UnitClose(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effective: IsoDate | None = None


class NewUnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: Name
    kind: Kind | None = None
    parent_id: Id | None = None


class UnitMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_ids: list[Id] = Field(min_length=1, max_length=500)
    target_id: Id | None = None
    new_target: NewUnitIn | None = None
    new_name: Name | None = None
    effective: IsoDate | None = None


class SplitPartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code
    name: Name
    kind: Kind | None = None
    child_ids: list[Id] = Field(default_factory=list, max_length=5000)
    site_ids: list[Id] = Field(default_factory=list, max_length=500)


class UnitSplit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[SplitPartIn] = Field(min_length=1, max_length=100)
    keep_source: StrictBool = False
    effective: IsoDate | None = None


class ReorgOut(BaseModel):
    event_id: int
    target_ids: list[int]
    closed_ids: list[int]
    moved_children: int
    moved_sites: int
    roles_left_on_closed: int


class VersionOut(BaseModel):
    name: str
    kind: str
    parent_id: int | None
    valid_from: date
    valid_to: date | None


class EventOut(BaseModel):
    kind: str
    effective: date
    data: dict[str, object]


class LineageOut(BaseModel):
    unit_id: int
    effective: date


class UnitHistory(BaseModel):
    unit: UnitOut
    versions: list[VersionOut]
    events: list[EventOut]
    predecessors: list[LineageOut]
    successors: list[LineageOut]


SiteStatusLit = Literal["active", "maintenance", "inactive"]


class SiteOut(BaseModel):
    id: int
    code: str
    unit_id: int
    unit_code: str
    unit_name: str
    name: str
    location: str
    contact_name: str
    contact_phone: str
    tech_name: str
    tech_phone: str
    status: SiteStatusLit


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: SiteCode
    unit_id: Id
    name: Name
    location: Short = ""
    contact_name: Text200 = ""
    contact_phone: Text50 = ""
    tech_name: Text200 = ""
    tech_phone: Text50 = ""
    status: SiteStatusLit = "active"


class SiteUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    location: Short | None = None
    contact_name: Text200 | None = None
    contact_phone: Text50 | None = None
    tech_name: Text200 | None = None
    tech_phone: Text50 | None = None
    status: SiteStatusLit | None = None
    unit_id: Id | None = None


RoleName = Literal[
    "admin", "central_operator", "chair", "secretary", "site_operator", "org_staff", "exam_candidate"
]


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: RoleName
    unit_id: Id
    site_id: Id | None = None


class RoleOut(BaseModel):
    role: RoleName
    unit_id: int
    unit_code: str
    unit_name: str
    site_id: int | None


class UserOut(BaseModel):
    id: int
    username: str
    full_name: str
    is_locked: bool
    totp_enabled: bool
    last_login_at: UtcDateTime | None
    roles: list[RoleOut]


class UserDetail(UserOut):
    email: str
    phone: str
    locked_reason: str
    must_change_password: bool
    created_at: UtcDateTime


# accounts.USERNAME_RE, before the name is lower-cased.
Username = Annotated[
    str, StringConstraints(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
]
Password = Annotated[str, *Secret(200)]
# The length rule of accounts.check_password_strength, stated where clients can read it.
NewPassword = Annotated[str, *Secret(200, min_length=MIN_PASSWORD)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: NewPassword
    full_name: Text200 = ""
    email: Text200 = ""
    phone: Text50 = ""
    roles: list[RoleIn] = Field(default_factory=list, max_length=50)
    must_change_password: StrictBool = True


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full_name: Text200 | None = None
    email: Text200 | None = None
    phone: Text50 | None = None


class RolesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[RoleIn] = Field(max_length=50)


class LockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locked: StrictBool
    reason: Text200 = ""


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_password: NewPassword
    must_change: StrictBool = True


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, *Secret(64)]
    password: Password
    totp: Annotated[str, *Secret(10, min_length=0)] | None = None


class LoginOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: UtcDateTime
    user: UserOut
    must_change_password: bool = Field(
        default=False,
        description="Until the password is changed (POST /auth/password), other calls answer 403 "
        "password_change_required.",
    )


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: Password
    new_password: NewPassword


class TotpCode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=12, pattern=r"^[0-9 ]+$", description="A current TOTP code")


class MeOut(BaseModel):
    user: UserOut
    permissions: dict[str, list[int]] = Field(
        description="For each permission, the ids of the units whose subtrees it covers."
    )


class AuditOut(BaseModel):
    id: int
    at: UtcDateTime
    actor: str
    ip: str
    action: str
    entity_type: str
    entity_id: str
    before: object | None
    after: object | None


class RosterEntryOut(BaseModel):
    id: int
    full_name: str
    position: str
    phone: str
    active: bool
    sort_order: int


# --- rendering domain objects as API shapes (shared by the API and the pages) ---------------------


def unit_out(version: UnitVersion | Unit, code: str, child_count: int = 0) -> UnitOut:
    unit_id = version.unit_id if isinstance(version, UnitVersion) else version.id
    return UnitOut(
        id=unit_id,
        code=code,
        name=version.name,
        kind=version.kind,
        parent_id=version.parent_id,
        depth=version.depth,
        valid_from=version.valid_from,
        valid_to=version.valid_to,
        child_count=child_count,
    )


def site_out(site: Site, unit: Unit) -> SiteOut:
    return SiteOut(
        id=site.id,
        code=site.code,
        unit_id=unit.id,
        unit_code=unit.code,
        unit_name=unit.name,
        name=site.name,
        location=site.location,
        contact_name=site.contact_name,
        contact_phone=site.contact_phone,
        tech_name=site.tech_name,
        tech_phone=site.tech_phone,
        status=site.status,
    )


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        is_locked=user.is_locked,
        totp_enabled=user.totp_enabled,
        last_login_at=user.last_login_at,
        roles=[
            RoleOut(
                role=r.role,
                unit_id=r.unit_id,
                unit_code=r.unit.code,
                unit_name=r.unit.name,
                site_id=r.site_id,
            )
            for r in user.roles
        ],
    )


def user_detail(user: User) -> UserDetail:
    return UserDetail(
        **user_out(user).model_dump(),
        email=user.email,
        phone=user.phone,
        locked_reason=user.locked_reason,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
    )


def entry_out(entry: RosterEntry) -> RosterEntryOut:
    return RosterEntryOut(
        id=entry.id,
        full_name=entry.full_name,
        position=entry.position,
        phone=entry.phone,
        active=entry.active,
        sort_order=entry.sort_order,
    )
