"""Which simulcast layer a tab's view asks Janus for: start low, step up, step down under loss.

A site publishes up to three simulcast layers (``l`` 180p, ``m`` 360p, ``h`` 720p: substreams 0, 1,
2). A new view starts on substream 0 — the first keyframe of the low layer is a few packets, so the
first frame comes quickly even over a lossy link, where the top layer's keyframe (tens of packets)
needs several NACK rounds — and steps up to the top once it has been clean for ``first_up_after``.
When the site's downstream (Janus → site) loss is at or above ``down_loss_pct`` for ``down_after``
samples without a clean one (below ``clean_below_pct``) between them, the view steps down one layer;
after ``up_after`` seconds without a sample at or above ``clean_below_pct`` it steps up one layer
again. Samples between the two thresholds neither count as bad nor as clean (hysteresis: a site
hovering near a threshold does not flap; Janus's lost-by-remote figure over 10 % link loss swings
between ~4 % and ~15 % from one stats event to the next, so "in a row" would never trigger).

``step`` is a pure function of the state, the time and an optional loss sample: the stage calls it
on a loss sample (the quality monitor, every 2 s) and on its own timer (no sample).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

TOP_LAYER = 2  # substream of the highest layer a site sends (Janus falls back to what arrives)


@dataclass(frozen=True)
class LayerPolicy:
    top: int = TOP_LAYER
    start: int = 0  # substream a new view starts on
    first_up_after: float = 2.5  # s clean after the start: straight to the top
    down_loss_pct: float = 5.0  # a sample at or above this is bad
    down_after: int = 2  # bad samples (no clean one between) before one step down
    clean_below_pct: float = 2.0  # a sample at or above this restarts the clean time
    up_after: float = 10.0  # s clean after a step down (or a step up from one) before one step up

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.top:
            raise ValueError(f"start layer {self.start} outside 0..{self.top}")
        if self.clean_below_pct > self.down_loss_pct:
            raise ValueError("clean_below_pct must not exceed down_loss_pct")
        if self.down_after < 1 or self.first_up_after < 0 or self.up_after < 0:
            raise ValueError("down_after ≥ 1 and non-negative delays needed")


DEFAULT_POLICY = LayerPolicy()


@dataclass(frozen=True)
class LayerState:
    layer: int  # the substream asked for now
    clean_since: float  # the start, the last change of layer or the last sample that was not clean
    bad: int = 0  # bad samples since the last clean one
    degraded: bool = False  # stepped down since the start: step-ups wait ``up_after``, one at a time


def initial(now: float, policy: LayerPolicy = DEFAULT_POLICY) -> LayerState:
    return LayerState(policy.start, now)


def step(
    state: LayerState, now: float, loss_pct: float | None = None, policy: LayerPolicy = DEFAULT_POLICY
) -> LayerState:
    """The state after a loss sample (``loss_pct``) at ``now``, or after time passed (``None``)."""
    if loss_pct is not None:
        if loss_pct >= policy.down_loss_pct:
            bad = state.bad + 1
            if bad >= policy.down_after and state.layer > 0:
                return LayerState(state.layer - 1, now, 0, True)
            return replace(state, clean_since=now, bad=min(bad, policy.down_after))
        if loss_pct >= policy.clean_below_pct:
            return replace(state, clean_since=now)  # keeps the bad count: only a clean sample resets it
        state = replace(state, bad=0)
    if state.layer >= policy.top:
        return state
    wait = policy.up_after if state.degraded else policy.first_up_after
    if now - state.clean_since < wait:
        return state
    if state.degraded:
        return LayerState(state.layer + 1, now, 0, True)
    return LayerState(policy.top, now, 0, False)


def next_change(state: LayerState, policy: LayerPolicy = DEFAULT_POLICY) -> float | None:
    """When the layer steps up if no bad sample comes first (None: already at the top)."""
    if state.layer >= policy.top:
        return None
    return state.clean_since + (policy.up_after if state.degraded else policy.first_up_after)
