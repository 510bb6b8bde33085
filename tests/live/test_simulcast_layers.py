"""The per-view simulcast layer policy (giaoban/live/layers.py): start low, step up, step down."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from giaoban.live.layers import DEFAULT_POLICY, LayerPolicy, LayerState, initial, next_change, step

P = DEFAULT_POLICY


def test_starts_low_and_goes_to_the_top_after_a_clean_start() -> None:
    s = initial(100.0)
    assert s.layer == 0
    assert next_change(s) == 100.0 + P.first_up_after
    assert step(s, 100.0 + P.first_up_after - 0.1).layer == 0
    up = step(s, 100.0 + P.first_up_after)
    assert up.layer == P.top and not up.degraded and next_change(up) is None


def test_a_lossy_start_stays_low() -> None:
    s = initial(0.0)
    s = step(s, 2.0, 3.0)  # between the thresholds: not clean, not bad
    assert s.layer == 0 and s.clean_since == 2.0
    assert step(s, 2.0 + P.first_up_after - 0.1).layer == 0
    assert step(s, 2.0 + P.first_up_after).layer == P.top


def test_steps_down_one_layer_after_two_bad_samples_and_up_slowly() -> None:
    s = step(initial(0.0), 3.0)
    assert s.layer == 2
    s = step(s, 4.0, 12.0)
    assert s.layer == 2 and s.bad == 1
    s = step(s, 6.0, 8.0)
    assert s.layer == 1 and s.degraded and s.bad == 0
    s = step(s, 8.0, 9.0)
    s = step(s, 10.0, 9.0)
    assert s.layer == 0
    s = step(s, 12.0, 20.0)  # the floor: nothing below 0
    s = step(s, 14.0, 20.0)
    assert s.layer == 0
    # Clean from 14 s: one layer after up_after, the next one up_after later.
    assert step(s, 16.0, 0.5).layer == 0
    assert next_change(s) == 14.0 + P.up_after
    s = step(s, 14.0 + P.up_after, 0.0)
    assert s.layer == 1
    s = step(s, 14.0 + P.up_after + 1.0, 1.0)
    assert s.layer == 1
    s = step(s, 14.0 + 2 * P.up_after)
    assert s.layer == 2


def test_only_a_clean_sample_between_bad_ones_resets_the_count() -> None:
    s = step(initial(0.0), 3.0)
    for t, loss in ((4.0, 7.0), (6.0, 1.0), (8.0, 7.0)):
        s = step(s, t, loss)
    assert s.layer == 2 and s.bad == 1
    s = step(s, 10.0, 4.0)  # between the thresholds: still one bad sample
    assert s.layer == 2 and s.bad == 1
    assert step(s, 12.0, 14.0).layer == 1


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        LayerPolicy(start=3)
    with pytest.raises(ValueError):
        LayerPolicy(clean_below_pct=6.0, down_loss_pct=5.0)
    with pytest.raises(ValueError):
        LayerPolicy(down_after=0)


samples = st.lists(
    st.tuples(st.floats(0.0, 5.0), st.none() | st.floats(0.0, 100.0, allow_nan=False)), max_size=60
)


@given(samples)
def test_invariants(events: list[tuple[float, float | None]]) -> None:
    """Layers stay in range, move one step at a time (except the first step up, to the top), never
    down without ``down_after`` bad samples since the last clean one, never up right after a bad one."""
    now = 0.0
    s = initial(now)
    bad_run = 0
    for dt, loss in events:
        now += dt
        new = step(s, now, loss)
        assert 0 <= new.layer <= P.top
        if loss is not None:
            if loss >= P.down_loss_pct:
                bad_run += 1
            elif loss < P.clean_below_pct:
                bad_run = 0
        if new.layer < s.layer:
            assert new.layer == s.layer - 1 and bad_run >= P.down_after and new.degraded
            bad_run = 0
        if new.layer > s.layer:
            assert loss is None or loss < P.clean_below_pct
            assert new.layer == s.layer + 1 or (not s.degraded and new.layer == P.top)
            wait = P.up_after if s.degraded else P.first_up_after
            assert now - s.clean_since >= wait
        s = new


@given(st.lists(st.floats(P.down_loss_pct, 100.0), min_size=2 * P.top * P.down_after, max_size=20))
def test_sustained_loss_reaches_the_bottom(losses: list[float]) -> None:
    s = step(initial(0.0), P.first_up_after)
    assert s.layer == P.top
    for i, loss in enumerate(losses):
        s = step(s, P.first_up_after + 2.0 * (i + 1), loss)
    assert s.layer == 0


def test_state_is_a_value() -> None:
    assert initial(1.0) == LayerState(0, 1.0)
