"""The relay's per-direction logic without any network: a fake socket records when frames leave."""

from __future__ import annotations

import itertools
import random

import pytest

from giaoban.lab.impair import Direction, Profile, apply_changes


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frame: bytes | memoryview) -> int:
        self.sent.append(bytes(frame))
        return len(frame)


def _direction(seed: int = 1, **profile: object) -> tuple[Direction, FakeSocket]:
    sock = FakeSocket()
    d = Direction("ab", sock, random.Random(seed))  # type: ignore[arg-type]
    d.set_profile(apply_changes(Profile(), dict(profile)))
    return d, sock


def _run(d: Direction, arrivals: list[tuple[float, bytes]], until: float) -> list[tuple[float, bytes]]:
    """Feed frames at their times and step a clock by 0.1 ms; (time, frame) of each departure."""
    out: list[tuple[float, bytes]] = []
    sock = d.out
    assert isinstance(sock, FakeSocket)
    pending = list(arrivals)
    t = 0.0
    while t <= until:
        while pending and pending[0][0] <= t:
            d.arrive(memoryview(pending.pop(0)[1]), t)
        d.flush(t)
        out += [(t, f) for f in sock.sent]
        sock.sent.clear()
        t = round(t + 0.0001, 4)
    return out


def test_transparent_forwards_at_once() -> None:
    d, _ = _direction()
    out = _run(d, [(0.001 * i, bytes([i])) for i in range(10)], 0.02)
    assert [f for _t, f in out] == [bytes([i]) for i in range(10)]
    assert all(abs(t - 0.001 * i) < 0.00011 for i, (t, _f) in enumerate(out))


def test_delay_and_jitter_keep_order() -> None:
    d, _ = _direction(delay_ms=50, jitter_ms=30)
    frames = [(0.001 * i, i.to_bytes(2, "big")) for i in range(300)]
    out = _run(d, frames, 1.0)
    assert [f for _t, f in out] == [f for _t, f in frames]  # no reordering
    delays = [t - 0.001 * int.from_bytes(f, "big") for t, f in out]
    assert min(delays) >= 0.020 - 1e-9 and max(delays) <= 0.080 + 0.002
    assert max(delays) - min(delays) > 0.03


def test_rate_serializes_and_buffer_tail_drops() -> None:
    # 1000-byte frames at 800 kbit/s: one every 10 ms; a 5000-byte buffer holds 5 frames (the one on
    # the wire included).
    d, _ = _direction(rate_kbit=800, buffer_bytes=5000)
    out = _run(d, [(0.0, bytes(1000)) for _ in range(20)], 0.2)
    times = [t for t, _f in out]
    assert len(out) == 5 and d.counters.overflow == 15
    assert all(abs((b - a) - 0.010) < 0.0002 for a, b in itertools.pairwise(times)), times


def test_loss_is_random_at_the_rate_asked() -> None:
    d, _ = _direction(seed=7, loss_pct=25)
    out = _run(d, [(0.0, b"x") for _ in range(4000)], 0.0)
    assert 900 <= 4000 - len(out) <= 1100 and d.counters.lost == 4000 - len(out)


def test_outage_drops_and_flushes_the_queue() -> None:
    d, _ = _direction(delay_ms=100)
    for _ in range(5):
        d.arrive(memoryview(b"q"), 0.0)
    assert len(d.queue) == 5
    d.set_profile(apply_changes(d.profile, {"outage": True}))
    assert not d.queue and d.counters.cut == 5
    d.arrive(memoryview(b"x"), 0.2)
    d.flush(1.0)
    assert d.counters.tx == 0 and d.counters.cut == 6
    d.set_profile(apply_changes(d.profile, {"outage": False}))
    assert d.profile.delay_ms == 100  # the rest of the profile survived the cut


@pytest.mark.parametrize(
    "bad",
    [{"loss_pct": 101}, {"loss_pct": True}, {"delay_ms": "1"}, {"rate_kbit": 0}, {"outage": 1}, {"x": 1}],
)
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        apply_changes(Profile(), bad)
