"""The floor's second layer: every audio stream of a site without the floor is moderated on Janus,
after any (re)negotiation, and ``media.restart`` cannot add streams (giaoban/live/muting.py,
stage.py). Pure rules, then the stage on a fake Janus that keeps per-mid moderation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from giaoban.live import muting
from giaoban.live import stage as stage_mod
from giaoban.live.events import MediaFailure
from giaoban.live.stage import JanusStage, Publisher
from giaoban.media.videoroom import RoomOptions
from tests.support.fake_janus import FakeJanus, FakeSession, offer

AV = (("audio", "0"), ("video", "1"))

# -- pure rules -------------------------------------------------------------------------------


def test_parse_offer_reads_mlines_mids_ports_and_ufrags() -> None:
    sdp = offer(*AV) + "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\n"
    parsed = muting.parse_offer(sdp)
    assert parsed.mlines == (
        muting.MLine("audio", "0", False),
        muting.MLine("video", "1", False),
        muting.MLine("audio", "2", True),
    )
    assert parsed.ufrags == {"u1"}
    assert muting.parse_offer("v=0\r\nthis is not SDP\r\n").mlines == ()


@pytest.mark.parametrize(
    ("new", "refused"),
    [
        (offer(*AV, ufrag="u2"), None),  # a pure ICE restart
        (offer(*AV, ("audio", "2"), ufrag="u2"), "thêm, bớt hay đổi"),  # a new audio m-line
        (offer(("audio", "0"), ufrag="u2"), "thêm, bớt hay đổi"),  # one dropped
        (offer(("video", "1"), ("audio", "0"), ufrag="u2"), "thêm, bớt hay đổi"),  # reordered
        (offer(("audio", "7"), ("video", "1"), ufrag="u2"), "thêm, bớt hay đổi"),  # mid changed
        (offer(*AV, ufrag="u2").replace("m=video 9", "m=video 0"), "thêm, bớt hay đổi"),  # disabled
        (offer(*AV, ufrag="u1"), "thông tin ICE mới"),  # not an ICE restart
        (offer(*AV, ufrag="u2").replace("a=ice-ufrag:u2\r\n", ""), "thông tin ICE mới"),
        ("v=0\r\n", "thêm, bớt hay đổi"),
    ],
)
def test_a_restart_offer_may_only_restart_ice(new: str, refused: str | None) -> None:
    reason = muting.restart_refusal(offer(*AV), new)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_audio_mids_are_the_enabled_audio_streams_janus_reports() -> None:
    streams: list[dict[str, Any]] = [
        {"type": "audio", "mid": "0"},
        {"type": "video", "mid": "1"},
        {"type": "audio", "mid": "2"},
        {"type": "audio", "mid": "3", "disabled": True},
        {"type": "data", "mid": "4"},
    ]
    assert muting.audio_mids(streams) == ["0", "2"]
    assert muting.video_mids(streams) == ["1"]


mids = st.lists(st.sampled_from([str(i) for i in range(8)]), unique=True, max_size=8)


@given(
    audio=mids,
    applied=st.dictionaries(st.sampled_from([str(i) for i in range(10)]), st.booleans()),
    mute=st.booleans(),
)
def test_moderation_changes_bring_every_audio_mid_to_the_floor(
    audio: list[str], applied: dict[str, bool], mute: bool
) -> None:
    changes = muting.moderation_changes(audio, applied, mute)
    after = dict(applied) | dict(changes)
    # Every audio stream of the feed ends as the floor wants it, whatever was known before …
    assert all(after[mid] is mute for mid in audio)
    # … with one request per stream that was not known to be so, and none for anything else.
    assert [m for m, _ in changes] == [m for m in audio if applied.get(m) is not mute]
    assert all(want is mute for _, want in changes)
    assert muting.moderation_changes(audio, after, mute) == []


# -- the stage on a fake Janus ----------------------------------------------------------------

HOST, SITE = 1, 2
ROOM = 77


@pytest.fixture
def rig() -> tuple[FakeJanus, JanusStage]:
    janus = FakeJanus()
    janus.rooms.add(ROOM)
    stage = JanusStage(janus, "local", ROOM, "s", FakeSession(janus))  # type: ignore[arg-type]
    stage.options = RoomOptions(secret="s")
    stage.host_site_id = HOST
    stage.audible = frozenset({HOST})
    return janus, stage


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def published(stage: JanusStage, site: int, sdp: str) -> Publisher:
    await stage.publish(f"tab-{site}", site, {"type": "offer", "sdp": sdp})
    pub = stage.publishers[site]
    pub.started = True
    return pub


@pytest.mark.anyio
async def test_a_restart_adding_an_audio_mline_is_refused_and_nothing_reaches_janus(
    rig: tuple[FakeJanus, JanusStage],
) -> None:
    janus, stage = rig
    await published(stage, SITE, offer(*AV))
    assert janus.muted[SITE] == {"0": True}
    sneaky = {"type": "offer", "sdp": offer(*AV, ("audio", "2"), ufrag="u2")}
    with pytest.raises(MediaFailure) as refused:
        await stage.restart(f"tab-{SITE}", SITE, "publisher", sneaky)
    assert refused.value.code == "restart_refused"
    assert [s["mid"] for s in janus.feeds[SITE]] == ["0", "1"]  # Janus never saw it
    # A real ICE restart goes through, and its audio stays moderated.
    restart = {"type": "offer", "sdp": offer(*AV, ufrag="u2")}
    answer = await stage.restart(f"tab-{SITE}", SITE, "publisher", restart)
    assert answer["jsep"]["type"] == "answer"
    assert janus.muted[SITE] == {"0": True} and stage.publishers[SITE].muted


@pytest.mark.anyio
async def test_every_audio_mid_janus_reports_after_a_renegotiation_is_moderated(
    rig: tuple[FakeJanus, JanusStage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second layer alone: if an offer with a new audio m-line reached Janus anyway (the
    restart check switched off), the new stream is muted before the answer leaves, and it follows
    the floor from then on like the first one."""
    janus, stage = rig
    await published(stage, SITE, offer(*AV))
    monkeypatch.setattr(muting, "restart_refusal", lambda previous, new: None)
    sneaky = {"type": "offer", "sdp": offer(*AV, ("audio", "2"), ufrag="u2")}
    await stage.restart(f"tab-{SITE}", SITE, "publisher", sneaky)
    assert stage.publishers[SITE].audio_mids == ["0", "2"]
    assert janus.muted[SITE] == {"0": True, "2": True}
    await stage.enforce(frozenset({HOST, SITE}), [SITE])  # the floor: every mid unmuted
    assert janus.muted[SITE] == {"0": False, "2": False}
    await stage.enforce(frozenset({HOST}), [])
    assert janus.muted[SITE] == {"0": True, "2": True}
    # A publish with two audio m-lines from the start: both muted before the answer.
    await published(stage, 3, offer(*AV, ("audio", "2")))
    assert janus.muted[3] == {"0": True, "2": True}


@pytest.mark.anyio
async def test_a_restart_whose_new_audio_cannot_be_muted_drops_the_publisher(
    rig: tuple[FakeJanus, JanusStage], monkeypatch: pytest.MonkeyPatch
) -> None:
    janus, stage = rig
    monkeypatch.setattr(stage_mod, "JANUS_TIMEOUT", 0.05)
    await published(stage, SITE, offer(*AV))
    real = janus.ctl.moderate

    async def refuse_new(room: int, secret: str | None, feed: int, mid: str, mute: bool) -> None:
        if mid == "2":
            raise stage_mod.JanusPluginError(428, "No such mid 2")
        await real(room, secret, feed, mid, mute)

    monkeypatch.setattr(janus.ctl, "moderate", refuse_new)
    monkeypatch.setattr(muting, "restart_refusal", lambda previous, new: None)
    sneaky = {"type": "offer", "sdp": offer(*AV, ("audio", "2"), ufrag="u2")}
    with pytest.raises(MediaFailure) as failed:
        await stage.restart(f"tab-{SITE}", SITE, "publisher", sneaky)
    assert failed.value.code == "restart_failed"
    assert SITE not in stage.publishers  # the tab publishes anew
