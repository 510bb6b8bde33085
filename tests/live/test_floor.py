"""Floor control: examples of each rule, and a hypothesis state machine checking the invariants."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from giaoban.live.floor import EndReason, FloorError, FloorState, RequestKind

HOST = 1


def test_queue_order_host_then_points_of_order_then_first_come() -> None:
    s = FloorState(host_site_id=HOST)
    s, _ = s.request(5, now=0)
    s, _ = s.request(6, now=1, kind=RequestKind.point_of_order)
    s, _ = s.request(7, now=2)
    s, _ = s.request(HOST, now=3)
    assert s.queued_ids() == [HOST, 6, 5, 7]


def test_grant_head_then_single_holder_limit() -> None:
    s = FloorState(host_site_id=HOST)
    s, _ = s.request(5, now=0)
    s, _ = s.request(6, now=1)
    s, events = s.grant(None, now=2, limit_seconds=60)
    assert [e.kind for e in events] == ["granted"] and s.holder_ids() == [5]
    assert s.audible() == {HOST, 5}
    with pytest.raises(FloorError) as err:
        s.grant(None, now=3)
    assert err.value.code == "floor_full"
    s, events = s.revoke(5)
    assert events[0].reason == EndReason.revoked and s.audible() == {HOST}


def test_chair_can_invite_a_site_that_did_not_ask() -> None:
    s, _ = FloorState().grant(9, now=0)
    assert s.holder_ids() == [9]


def test_time_limit_expires_and_extend_postpones() -> None:
    s, _ = FloorState().grant(5, now=0, limit_seconds=10)
    assert s.next_deadline() == 10
    s, _ = s.extend(5, 5, now=8)
    s, events = s.expire(now=14)
    assert events == [] and s.holder_ids() == [5]
    s, events = s.expire(now=15)
    assert [(e.kind, e.reason) for e in events] == [("ended", "expired")]
    assert s.holder_ids() == []


def test_dropped_holder_keeps_floor_within_grace_only() -> None:
    s = FloorState(drop_grace=30)
    s, _ = s.grant(5, now=0)
    s, _ = s.dropped(5, now=10)
    s, events = s.expire(now=39)
    assert s.holder_ids() == [5] and not events
    s, _ = s.returned(5)
    s, events = s.expire(now=100)
    assert s.holder_ids() == [5]
    s, _ = s.dropped(5, now=100)
    s, events = s.expire(now=130)
    assert [(e.kind, e.reason) for e in events] == [("ended", "dropped")]


def test_dropped_site_is_skipped_when_granting_head() -> None:
    s = FloorState()
    s, _ = s.request(5, now=0)
    s, _ = s.request(6, now=1)
    s, _ = s.dropped(5, now=2)
    s, _ = s.grant(None, now=3)
    assert s.holder_ids() == [6] and s.queued_ids() == [5]
    with pytest.raises(FloorError) as err:
        s.configure(max_holders=2).grant(5, now=4)
    assert err.value.code == "site_disconnected"


def test_errors_leave_state_unchanged() -> None:
    s, _ = FloorState().request(5, now=0)
    for op in (
        lambda: s.request(5, now=1),
        lambda: s.cancel(6),
        lambda: s.revoke(5),
        lambda: s.grant(5, 1, -1),
    ):
        with pytest.raises(FloorError):
            op()
    assert s.queued_ids() == [5] and s.holder_ids() == []


def test_chair_declines_a_request_and_the_site_may_ask_again() -> None:
    s = FloorState(host_site_id=HOST)
    s, _ = s.request(5, now=0)
    s, _ = s.request(6, now=1)
    s, _ = s.request(7, now=2)
    s, _ = s.grant(6, now=3)
    s, events = s.decline(5, now=4)
    assert [(e.kind, e.site_id) for e in events] == [("declined", 5)]
    assert s.queued_ids() == [7] and s.holder_ids() == [6] and s.audible() == {HOST, 6}
    assert s.declined_at(5) == 4 and s.declined_at(7) is None
    with pytest.raises(FloorError) as err:
        s.decline(5, now=5)  # no longer queued
    assert err.value.code == "not_queued"
    with pytest.raises(FloorError):
        s.decline(6, now=5)  # holding, not queued: ending a turn is revoke
    s, _ = s.request(5, now=6)
    assert s.declined_at(5) is None and s.queued_ids() == [7, 5]  # back at the end of the line
    s, _ = s.decline(7, now=7)
    s, _ = s.revoke(6)
    s, _ = s.grant(7, now=8)  # invited after all: no longer "declined"
    assert s.declined_at(7) is None and s.holder_ids() == [7]


def test_max_holders_bounds() -> None:
    with pytest.raises(FloorError):
        FloorState().configure(max_holders=5)
    s = FloorState().configure(max_holders=4)
    for site in range(10, 14):
        s, _ = s.grant(site, now=0)
    assert len(s.holder_ids()) == 4
    with pytest.raises(FloorError):
        s.configure(max_holders=2)


SITES = st.integers(min_value=1, max_value=8)


class FloorMachine(RuleBasedStateMachine):
    """Random sequences of floor operations never break the invariants."""

    @initialize(k=st.integers(min_value=1, max_value=4))
    def start(self, k: int) -> None:
        self.state = FloorState(host_site_id=HOST, max_holders=k, drop_grace=20)
        self.now = 0.0

    def _try(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        before = self.state
        try:
            self.state, events = fn(*args, **kwargs)
            return events
        except FloorError:
            assert self.state == before
            return None

    @rule(dt=st.floats(min_value=0, max_value=30))
    def tick(self, dt: float) -> None:
        self.now += dt
        before = self.state
        events = self._try(self.state.expire, self.now)
        ended = {e.site_id for e in events or [] if e.kind == "ended"}
        for t in before.holders:
            due = (t.expires_at is not None and self.now >= t.expires_at) or (
                t.dropped_at is not None and self.now >= t.dropped_at + before.drop_grace
            )
            assert (t.site_id in ended) == due

    @rule(site=SITES, poo=st.booleans())
    def request(self, site: int, poo: bool) -> None:
        kind = RequestKind.point_of_order if poo else RequestKind.normal
        if self._try(self.state.request, site, self.now, kind) is not None:
            assert site in self.state.queued_ids()

    @rule(site=SITES)
    def cancel(self, site: int) -> None:
        self._try(self.state.cancel, site)
        assert site not in self.state.queued_ids()

    @rule(site=SITES)
    def decline(self, site: int) -> None:
        before = self.state
        events = self._try(self.state.decline, site, self.now)
        assert site not in self.state.queued_ids()
        if events is None:
            assert site not in before.queued_ids()
            return
        assert [(e.kind, e.site_id) for e in events] == [("declined", site)]
        assert self.state.declined_at(site) == self.now
        # Nobody else moves: holders, who is heard and the others' order stay as they were.
        assert self.state.holders == before.holders and self.state.audible() == before.audible()
        assert self.state.queued_ids() == [s for s in before.queued_ids() if s != site]

    @rule(site=st.one_of(st.none(), SITES), limit=st.one_of(st.none(), st.floats(min_value=1, max_value=60)))
    def grant(self, site: int | None, limit: float | None) -> None:
        head = next((r.site_id for r in self.state.queue if r.dropped_at is None), None)
        events = self._try(self.state.grant, site, self.now, limit)
        if events is not None:
            granted = events[0].site_id
            assert granted == (site if site is not None else head)
            assert granted in self.state.holder_ids()

    @rule(site=SITES)
    def revoke(self, site: int) -> None:
        self._try(self.state.revoke, site)
        assert site not in self.state.holder_ids()

    @rule(site=SITES)
    def leave(self, site: int) -> None:
        self._try(self.state.left, site)
        assert site not in self.state.holder_ids() and site not in self.state.queued_ids()

    @rule(site=SITES)
    def drop(self, site: int) -> None:
        self._try(self.state.dropped, site, self.now)

    @precondition(lambda self: self.state.holders or self.state.queue)
    @rule(site=SITES)
    def back(self, site: int) -> None:
        self._try(self.state.returned, site)

    @invariant()
    def holders_within_limit(self) -> None:
        assert len(self.state.holders) <= self.state.max_holders

    @invariant()
    def nobody_twice(self) -> None:
        q, h = self.state.queued_ids(), self.state.holder_ids()
        assert len(set(q)) == len(q) and len(set(h)) == len(h)
        assert not set(q) & set(h)

    @invariant()
    def queue_sorted_by_priority(self) -> None:
        keys = [self.state._priority(r) for r in self.state.queue]
        assert keys == sorted(keys)
        if HOST in self.state.queued_ids():
            assert self.state.queued_ids()[0] == HOST

    @invariant()
    def declined_sites_wait_for_nothing(self) -> None:
        """A declined site is neither queued nor holding, and is listed once."""
        declined = [sid for sid, _ in self.state.declined]
        assert len(set(declined)) == len(declined)
        assert not set(declined) & (set(self.state.queued_ids()) | set(self.state.holder_ids()))

    @invariant()
    def audible_is_host_plus_holders(self) -> None:
        assert self.state.audible() == {HOST, *self.state.holder_ids()}


FloorMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestFloorMachine = FloorMachine.TestCase
