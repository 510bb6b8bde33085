"""API shapes for the organization domain (Pydantic). Validation errors become 422, never 500."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
SiteCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Kind = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Short = Annotated[str, StringConstraints(max_length=300)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="Human-readable message (Vietnamese).")
    details: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


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
    parent_id: Id | None = None
    effective: date | None = None


class UnitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    kind: Kind | None = None
    effective: date | None = None


class UnitMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent_id: Id | None
    effective: date | None = None


class UnitClose(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effective: date | None = None


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
    effective: date | None = None


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
    keep_source: bool = False
    effective: date | None = None


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
    contact_name: Annotated[str, StringConstraints(max_length=200)] = ""
    contact_phone: Annotated[str, StringConstraints(max_length=50)] = ""
    tech_name: Annotated[str, StringConstraints(max_length=200)] = ""
    tech_phone: Annotated[str, StringConstraints(max_length=50)] = ""
    status: SiteStatusLit = "active"


class SiteUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    location: Short | None = None
    contact_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    contact_phone: Annotated[str, StringConstraints(max_length=50)] | None = None
    tech_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    tech_phone: Annotated[str, StringConstraints(max_length=50)] | None = None
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
    last_login_at: datetime | None
    roles: list[RoleOut]


class UserDetail(UserOut):
    email: str
    phone: str
    locked_reason: str
    must_change_password: bool
    created_at: datetime


Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=64)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: Password
    full_name: Annotated[str, StringConstraints(max_length=200)] = ""
    email: Annotated[str, StringConstraints(max_length=200)] = ""
    phone: Annotated[str, StringConstraints(max_length=50)] = ""
    roles: list[RoleIn] = Field(default_factory=list, max_length=50)
    must_change_password: bool = True


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    email: Annotated[str, StringConstraints(max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(max_length=50)] | None = None


class RolesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[RoleIn] = Field(max_length=50)


class LockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locked: bool
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_password: Password
    must_change: bool = True


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Password
    totp: Annotated[str, StringConstraints(max_length=10)] | None = None


class LoginOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: UserOut


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: Password
    new_password: Password


class MeOut(BaseModel):
    user: UserOut
    permissions: dict[str, list[int]] = Field(
        description="For each permission, the ids of the units whose subtrees it covers."
    )


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    ip: str
    action: str
    entity_type: str
    entity_id: str
    before: object | None
    after: object | None


class Health(BaseModel):
    status: str
    database: str
    media: dict[str, object] | None = None
