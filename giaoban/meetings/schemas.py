"""API shapes of the meetings domain."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from giaoban.types import Description, Line, LocalDateTime, Title, UtcDateTime

Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
MeetingKind = Literal["briefing", "thematic", "training"]
Status = Literal["scheduled", "open", "live", "ended", "cancelled"]


class AgendaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    presenter: Annotated[str, Line(200, required=False)] = ""
    minutes: Annotated[int, Field(ge=1, le=600)] | None = None


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_ids: list[Id] = Field(default_factory=list, max_length=5000)
    under_unit_ids: list[Id] = Field(default_factory=list, max_length=100)
    unit_kinds: list[Annotated[str, Line(40)]] = Field(default_factory=list, max_length=20)


class MeetingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    kind: MeetingKind = "briefing"
    description: Description = ""
    starts_at: LocalDateTime
    ends_at: LocalDateTime = Field(
        description="After starts_at, at most 24 hours later (else 400 invalid_times)"
    )
    owner_unit_id: Id
    host_site_id: Id
    chair_user_id: Id | None = None
    secretary_user_id: Id | None = None
    agenda: list[AgendaIn] = Field(default_factory=list, max_length=100)
    invite: InviteIn = Field(default_factory=InviteIn)


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status


class AgendaOut(BaseModel):
    position: int
    title: str
    presenter: str
    minutes: int | None


class InvitedSite(BaseModel):
    site_id: int
    code: str
    name: str
    unit_name: str


class MeetingOut(BaseModel):
    id: int
    title: str
    kind: MeetingKind
    status: Status
    starts_at: UtcDateTime = Field(description="UTC")
    ends_at: UtcDateTime = Field(description="UTC")
    owner_unit_id: int
    host_site_id: int
    chair_user_id: int | None
    secretary_user_id: int | None
    site_count: int
    can_manage: bool = False
    can_chair: bool = False
    can_console: bool = False
    my_sites: list[int] = Field(default_factory=list, description="Invited sites the caller can act as")


class MeetingDetail(MeetingOut):
    description: str
    agenda: list[AgendaOut]
    sites: list[InvitedSite]
