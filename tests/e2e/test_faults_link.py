"""Fault test (issue 5): a site behind a slow, lossy link joins in ≤ 3 s and keeps receiving.

The site's Chromium runs inside its own namespace (tests/lab/fixtures.py: ``site_factory``), behind two
impairable links shaped by the userspace relay (giaoban/lab/impair.py): one to the root namespace,
where the app listens on the link's root end (pages and WebSocket), one to the Janus namespace (media).
The host site (dc-tw) is an ordinary browser in the root namespace. Impairment, **on both links, in
each direction** (``site.shape``):

1. **join**: 10 % loss and 200 ms one-way delay (400 ms round trip), from the site's first page on
   (``GIAOBAN_FAULT_JOIN_LOSS_PCT`` changes the loss of this phase). While the technician checks
   camera and microphone, the page pre-warms its view (connected, nothing sent) and says so under the
   join button ("Đường truyền hình: đã sẵn sàng", ``#path-state``); the test clicks then, as a
   technician would. Asserted: click on "Vào phòng họp" → first frame of the host's video presented
   (``requestVideoFrameCallback`` on ``#host-video``, the page's clock) ≤ 3 s, and the view asks Janus
   for the low layer (substream 0: docs/media.md "Layer selection per view"; the very first frame is
   whichever layer's keyframe reaches Janus first). The time from the room page's load to "ready" is
   printed (it holds the handshakes that loss slows down);
2. **it keeps receiving** under the same loss (≈ 19 % of round trips lose a packet). Sampled every 0.5 s
   for ~12 s (getStats of the view, the view's layer, the monitor's downstream loss; the longest
   framesDecoded freeze is printed): the host's inbound audio bytesReceived grows every 1.5 s; its video
   framesDecoded grows over the window; media flows on the site↔Janus link (selected candidate pair)
   and the relay dropped ≈ 10 % of what Janus sent. Screenshots: test-artifacts/faults-link-ready.png
   (before the click), test-artifacts/faults-link-site.png;
3. **the link clears** (delay kept): the view steps up to the top layer (> 180p).

Every run prints the join's timeline (``TIMELINE``: WebSocket media messages, ICE/DTLS states, first RTP
and decoded frame, with Janus's event-handler events) and the relay's drops during the join. Measured
with it (docs/media.md "Joining over a lossy link"): at 10 % + 200 ms each way from the first page and
*without* the pre-warmed view, DTLS took 2.2–5.6 s in 6 of 7 joins (Chromium's ClientHello is two
datagrams, resent after 1.5 s then 3 s); with the browser answering ``a=setup:passive`` (Janus is the
DTLS client, live.js) 4 joins took 2.7, 4.1, 3.0, 4.3 s. With the view pre-warmed during the device
check, 6 runs of this test joined in 0.45–1.2 s (2026-11-27).

Earlier measurements (before the layer policy and the pre-warmed view): measured here (2026-11-27, Janus 1.1.2, Chromium 156, a loaded
2-core VM; ``GIAOBAN_FAULT_LOSS_PCT`` / ``GIAOBAN_FAULT_DELAY_MS`` set the loss and delay of *both*
phases to re-measure), per direction on both links, with loss from the first page on:

| loss / delay each way | join (click → first host frame) | host video afterwards (framesDecoded) |
|---|---|---|
| 0 % / 200 ms | 2.1 s | continuous, ~20 frames/s |
| 2 % / 200 ms | 2.2, 2.4, 4.7 s | stalls of 1.5–3 s in 1 of 3 runs |
| 3 % / 200 ms | 2.1, 2.5 s | one ≥ 1.5 s stall in 1 of 2 runs |
| 5 % / 200 ms | 2.9, 3.1 s | stalls in 1 of 2 runs |
| 5 % / 100 ms | 1.3, 1.9, 1.9, 2.8 s | one stall in 1 of 4 runs |
| 10 % / 50 ms | 0.6–4.2 s | frozen for 1.5–4.5 s at a time |
| 10 % / 100 ms | 5.7 s | frozen 4.5 s |
| 10 % / 200 ms | 8.2 s | frozen 1.5 s at a time, ~5 frames/s decoded |

At 400 ms round trip the join path is long (WebSocket publish → subscribe → start, then ICE and DTLS on
the view's PeerConnection, then a keyframe): any lost packet on it costs a TCP retransmission timeout
or Janus's DTLS retransmission (OpenSSL: fixed 1 s), so a 3 s join needs a loss-free handshake. Video
stalls come from losses that are not recovered: in Janus 1.1.2 (src/ice.c) a subscriber's
retransmission buffer keeps packets for max(``min_nack_queue`` = 200 ms, RTT + 100 ms) and a packet is
retransmitted at most once per 200 ms, so when the NACK or the retransmission is lost the packet is
usually gone and the picture freezes until a PLI brings a keyframe. ``min_nack_queue = 1000`` in
janus.jcfg (tried by patching the rendered config) did not remove the stalls at 5 %/200 ms. Audio
(Opus) kept flowing in every run.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from giaoban.context import AppContext
from giaoban.lab.serve import serve_with_media
from giaoban.live.layers import TOP_LAYER
from tests.conftest import Demo
from tests.e2e.helpers import (
    ARTIFACTS,
    join_room,
    launch_chromium,
    launch_in_site,
    live_meeting,
    ready_to_join,
)
from tests.e2e.test_briefing import Tabs, growth, slots_of, wait_for
from tests.lab.fixtures import JanusNamespace, SiteNamespace

pytestmark = [pytest.mark.browser, pytest.mark.janus]

# Each direction, each link. The environment can change them to re-measure (see above; not for CI).
LOSS_PCT = float(os.environ.get("GIAOBAN_FAULT_LOSS_PCT", "10"))
JOIN_LOSS_PCT = float(os.environ.get("GIAOBAN_FAULT_JOIN_LOSS_PCT", str(LOSS_PCT)))
DELAY_MS = float(os.environ.get("GIAOBAN_FAULT_DELAY_MS", "200"))  # one way
JOIN_BUDGET_MS = 3000.0
SAMPLE_EVERY = 0.5  # s, under loss
SAMPLES = 24  # ≈ 12 s under loss

# Installed before the click: the click time and the first presented frame of the host's video.
JOIN_CLOCK = """() => {
  window.__join = {};
  document.getElementById("join").addEventListener("click", () => { window.__join.t0 = performance.now(); },
                                                   {capture: true});
  document.getElementById("host-video").requestVideoFrameCallback(() => { window.__join.t1 = performance.now(); });
}"""
JOIN_MS = "() => (window.__join.t0 && window.__join.t1) ? window.__join.t1 - window.__join.t0 : null"

# Join timeline (docs/media.md "Joining over a lossy link"), installed before the click: media.* messages
# sent and received on the WebSocket, each new PeerConnection's ICE gathering/ICE/DTLS/connection states,
# its first RTP packet and first decoded frame (getStats every 20 ms), all on the wall clock (ms), so
# Janus's event timestamps line up.
TIMELINE = """() => {
  const T = (window.__tl = []);
  const now = () => performance.timeOrigin + performance.now();
  const mark = (what) => T.push([now(), what]);
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const m = JSON.parse(data);
      if (m.type && m.type.startsWith("media.")) {
        let what = `ws> ${m.type} #${m.id}`;
        if (m.target) what += ` ${m.target}`;
        if ("candidate" in m) what += m.candidate ? ` ${m.candidate.candidate.split(" ").slice(2, 8).join(" ")}` : " end";
        mark(what);
      }
    } catch (e) {}
    return send.call(this, data);
  };
  const socket = window.giaobanRoom.socket;
  const receive = socket._receive.bind(socket);
  socket._receive = (ws, raw) => {
    try {
      const m = JSON.parse(raw);
      if (m.type === "ack" || m.type === "error" || (m.type && m.type.startsWith("media."))) mark(`ws< ${m.type} #${m.id}`);
    } catch (e) {}
    return receive(ws, raw);
  };
  const PC = window.RTCPeerConnection;
  let n = 0;
  window.RTCPeerConnection = function (...args) {
    const pc = new PC(...args);
    const id = `pc${++n}`;
    mark(`${id} new`);
    const on = (ev, f) => pc.addEventListener(ev, f);
    on("icegatheringstatechange", () => mark(`${id} gathering ${pc.iceGatheringState}`));
    on("iceconnectionstatechange", () => mark(`${id} ice ${pc.iceConnectionState}`));
    on("connectionstatechange", () => mark(`${id} connection ${pc.connectionState}`));
    on("icecandidate", (e) => mark(`${id} candidate ${e.candidate ? e.candidate.type + " " + e.candidate.protocol : "end"}`));
    let dtls = null;
    on("signalingstatechange", () => {
      mark(`${id} signaling ${pc.signalingState}`);
      const t = pc.getTransceivers()[0];
      const tr = t && (t.receiver.transport || t.sender.transport);
      if (tr && !dtls) {
        dtls = tr;
        mark(`${id} dtls ${tr.state}`);
        tr.addEventListener("statechange", () => mark(`${id} dtls ${tr.state}`));
      }
    });
    const seen = new Set();
    const poll = async () => {
      if (pc.signalingState === "closed" || seen.size >= 3) return;
      (await pc.getStats()).forEach((r) => {
        if (r.type !== "inbound-rtp") return;
        if (r.packetsReceived > 0 && !seen.has(r.kind)) { seen.add(r.kind); mark(`${id} first rtp ${r.kind} mid ${r.mid}`); }
        if (r.framesDecoded > 0 && !seen.has("frame")) { seen.add("frame"); mark(`${id} first frame decoded mid ${r.mid}`); }
      });
      setTimeout(poll, 20);
    };
    setTimeout(poll, 20);
    return pc;
  };
  window.RTCPeerConnection.prototype = PC.prototype;
  document.getElementById("join").addEventListener("click", () => mark("click"), {capture: true});
  document.getElementById("host-video").requestVideoFrameCallback(() => mark("host video first frame presented"));
}"""
# What the view's ICE/DTLS did: its candidate pairs' STUN requests/responses, its transport.
HANDSHAKE = """async () => {
  const pc = window.giaobanRoom.view && window.giaobanRoom.view.pc;
  const out = {pairs: [], transport: null};
  if (!pc) return out;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "candidate-pair")
      out.pairs.push({state: r.state, nominated: r.nominated, requestsSent: r.requestsSent,
                      requestsReceived: r.requestsReceived, responsesReceived: r.responsesReceived,
                      responsesSent: r.responsesSent, rtt: r.currentRoundTripTime});
    if (r.type === "transport") out.transport = {dtlsState: r.dtlsState, dtlsRole: r.dtlsRole, tls: r.tlsVersion,
                                                 cipher: r.dtlsCipher, iceRole: r.iceRole};
  });
  return out;
}"""

# The host's streams on the view: frames decoded (video) and bytes received (audio), by mid.
INBOUND = """async (mids) => {
  const view = window.giaobanRoom.view;
  const out = {frames: null, audio: null};
  if (!view || !view.pc) return out;
  (await view.pc.getStats()).forEach((r) => {
    if (r.type !== "inbound-rtp") return;
    if (r.mid === mids.video) {
      out.frames = r.framesDecoded;
      out.video = {packets: r.packetsReceived, lost: r.packetsLost, nacks: r.nackCount, plis: r.pliCount,
                   firs: r.firCount, received: r.framesReceived, keyframes: r.keyFramesDecoded,
                   retransmitted: r.retransmittedPacketsReceived, freezes: r.freezeCount, height: r.frameHeight};
    }
    if (r.mid === mids.audio) out.audio = r.bytesReceived;
  });
  return out;
}"""

# The remote (Janus) address of the view's selected candidate pair.
VIEW_REMOTE = """async () => {
  const pc = window.giaobanRoom.view && window.giaobanRoom.view.pc;
  if (!pc) return null;
  const stats = await pc.getStats();
  let remote = null;
  stats.forEach((r) => {
    if (r.type !== "transport" || !r.selectedCandidatePairId) return;
    const pair = stats.get(r.selectedCandidatePairId);
    if (pair && pair.state === "succeeded") remote = stats.get(pair.remoteCandidateId).address;
  });
  return remote;
}"""


def _janus_marks(events: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, str]]:
    """(wall-clock ms, what) of Janus's WebRTC events (type 16) and plugin events on the site's handles."""
    out = []
    for _, ev in events:
        body, etype = ev.get("event"), ev.get("type")
        if not isinstance(body, dict) or etype not in (16, 64):
            continue
        what = {
            k: v for k, v in body.items() if k in ("ice", "dtls", "connection", "selected-pair", "reason")
        }
        if etype == 64:
            what = {"plugin": str((body.get("data") or {}).get("event") or sorted(body.get("data") or {}))}
        if what:
            out.append(
                (float(ev["timestamp"]) / 1000, f"janus {ev.get('opaque_id')} h{ev.get('handle_id')} {what}")
            )
    return out


def _timeline(page_marks: list[list[Any]], janus: list[tuple[float, str]]) -> str:
    """The join timeline, ms from the click."""
    marks = sorted([(float(t), str(w)) for t, w in page_marks] + janus)
    t0 = next((t for t, w in marks if w == "click"), marks[0][0] if marks else 0.0)
    return "\n".join(f"{t - t0:8.0f} ms  {w}" for t, w in marks)


def name_janus(site: SiteNamespace) -> str | None:
    return site.janus_link.name_a if site.janus_link is not None else None


def _down_loss(app: Any, meeting_id: int, site_id: int) -> float | None:
    mq = app.state.quality.meetings.get(meeting_id)
    sq = mq.sites.get(site_id) if mq is not None else None
    return sq.figures.down_loss_pct if sq is not None else None


def _longest_stall(samples: list[dict[str, Any]]) -> float:
    """The longest time (s) over which framesDecoded did not move."""
    longest, since = 0.0, samples[0]
    for s in samples[1:]:
        if s["frames"] != since["frames"]:
            since = s
        longest = max(longest, s["t"] - since["t"])
    return round(longest, 1)


def test_site_behind_lossy_slow_link_joins_and_keeps_receiving(
    ctx: AppContext,
    demo: Demo,
    janus_ns: JanusNamespace,
    site_factory: Any,
    tmp_path: Path,
    playwright: Any,
) -> None:
    site: SiteNamespace = site_factory("lossy", janus=janus_ns)
    mid, sites = live_meeting(demo)
    site_id = sites["01"]
    room = f"/meetings/{mid}/room"
    with serve_with_media(ctx, janus_ns, tmp_path / "janus", site_hosts=(site.app_address,)) as served:
        site_base = served.site_bases[site.app_address]
        direct = launch_chromium(playwright)
        behind = launch_in_site(playwright, site, site_base, tmp_path)
        host_tabs, site_tabs = Tabs(direct, served.base), Tabs(behind, site_base)
        try:
            # The host joins over a clean path and publishes.
            host = host_tabs.open("dc-tw", room)
            join_room(host)
            rooms = served.app.state.hub.rooms
            wait_for(lambda: mid in rooms and rooms[mid].stage.publishers, "the host publishing")

            # The site, behind the slow, lossy link from its first page on.
            site.shape(loss_pct=JOIN_LOSS_PCT, delay_ms=DELAY_MS)
            opened = time.monotonic()
            page = site_tabs.open("dc-01", room)  # the login page, then the room page
            loaded = time.monotonic()
            assert page.evaluate("() => window.isSecureContext")
            join = ready_to_join(page)
            # The technician checks camera and microphone meanwhile; the page says when the media
            # path (the pre-warmed view) is ready. That is when a technician clicks.
            expect(page.locator("#path-state")).to_have_attribute("data-ready", "yes", timeout=30_000)
            path_ready_s = time.monotonic() - loaded
            login_s = loaded - opened
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "faults-link-ready.png"))
            page.evaluate(JOIN_CLOCK)
            page.evaluate(TIMELINE)
            store = served.app.state.media.events
            janus_events: list[tuple[float, dict[str, Any]]] = []
            ingest = store.ingest

            def recording(events: Any) -> int:
                for ev in events if isinstance(events, list) else [events]:
                    if isinstance(ev, dict):
                        janus_events.append((time.time(), ev))
                return int(ingest(events))

            store.ingest = recording
            relays = {link.name_a: link.relay for link in site.links if link.relay is not None}
            at_click = {name: relay.stats() for name, relay in relays.items()}
            join.click()
            join_ms = float(
                wait_for(lambda: page.evaluate(JOIN_MS), "the host's first frame at the site", 30)
            )
            time.sleep(0.5)  # late marks (first frame decoded vs presented, Janus's events)
            store.ingest = ingest
            joined = {name: relay.stats() for name, relay in relays.items()}
            join_drops = {
                f"{name} {d}": {k: joined[name][d][k] - at_click[name][d][k] for k in ("rx", "lost")}
                for name in relays
                for d in ("ab", "ba")
            }
            print(
                f"join timeline ({JOIN_LOSS_PCT:g} % loss, {DELAY_MS:g} ms each way; media path ready"
                f" {path_ready_s:.1f} s after the room page loaded (login and load {login_s:.1f} s); join {join_ms:.0f} ms;"
                f" links: {site.app_link.name_a if site.app_link else None} = app, {name_janus(site)} = Janus;"
                f" ab = site → far end):\n"
                + _timeline(page.evaluate("() => window.__tl"), _janus_marks(janus_events))
                + f"\nrelay during the join: {join_drops}\nview handshake: {page.evaluate(HANDSHAKE)}"
            )
            slots = wait_for(lambda: slots_of(page), "the site's slots")
            mids = {"video": slots["host"]["video"], "audio": slots["host"]["audio"]}
            view = next(v for v in list(rooms[mid].stage.views.values()) if v.site_id == site_id)
            first = page.evaluate(INBOUND, mids)
            start_layer = view.layer_state.layer

            # The site keeps receiving the host's video and audio behind the lossy link.
            site.shape(loss_pct=LOSS_PCT, delay_ms=DELAY_MS)
            before = {link.name_a: link.relay.stats() for link in site.links if link.relay is not None}
            samples = []
            for _ in range(SAMPLES):
                sample = page.evaluate(INBOUND, mids)
                sample["t"] = time.monotonic()
                sample["layer"] = view.layer_state.layer
                sample["down_loss"] = _down_loss(served.app, mid, site_id)
                samples.append(sample)
                time.sleep(SAMPLE_EVERY)
            remote = wait_for(lambda: page.evaluate(VIEW_REMOTE), "the view's selected pair")
            after = {link.name_a: link.relay.stats() for link in site.links if link.relay is not None}
            received = growth(page, 1.0)
            page.screenshot(path=str(ARTIFACTS / "faults-link-site.png"))

            # The link clears (the delay stays): the view, started on the low layer, steps up.
            site.shape(loss_pct=0, delay_ms=DELAY_MS)
            wait_for(lambda: view.layer_state.layer == TOP_LAYER, "the view stepping up", 30)
            top_height = wait_for(
                lambda: (
                    (h := (page.evaluate(INBOUND, mids).get("video") or {}).get("height")) and h > 180 and h
                ),
                "the host's top layer at the site",
                15,
            )
            problems = host_tabs.problems + site_tabs.problems
        finally:
            host_tabs.close()
            site_tabs.close()
            behind.close()
            direct.close()

    stall = _longest_stall(samples) if all(s["frames"] is not None for s in samples) else None
    print(
        f"join behind {JOIN_LOSS_PCT:g} % loss + {DELAY_MS:g} ms each way: media path ready {path_ready_s:.1f} s"
        f" after the room page loaded, join {join_ms:.0f} ms, first frame {first.get('video')};"
        f" under {LOSS_PCT:g} % loss: longest stall {stall} s,"
        f" layers {[s['layer'] for s in samples]}, down loss {[s['down_loss'] for s in samples]},"
        f" samples {samples}; link cleared: top layer {top_height}p"
    )
    print(f"relay counters after: {after}; view bytes over 1 s: {received}")
    frames = [s["frames"] for s in samples]
    audio = [s["audio"] for s in samples[::3]]  # every 1.5 s
    assert all(f is not None for f in frames) and all(a is not None for a in audio), samples
    # The view asks Janus for the low layer from the click on; which layer the very first frame is
    # depends on whose keyframe Janus gets first (it takes the first keyframe of any layer, then moves
    # to the asked one: janus_rtp_simulcasting_context_process_rtp), so only the ask is asserted.
    assert start_layer == 0, f"the view did not start on the low layer: {start_layer}"
    assert frames[-1] > frames[0], f"no video decoded in {SAMPLE_EVERY * (SAMPLES - 1):g} s: {frames}"
    assert all(b > a for a, b in itertools.pairwise(audio)), f"audio stalled: {audio}"
    assert remote == site.janus_address, remote  # media on the site's own (impaired) link to Janus
    assert site.janus_link is not None and site.janus_link.relay is not None
    name = site.janus_link.name_a
    media = {k: after[name]["ba"][k] - before[name]["ba"][k] for k in ("rx", "lost")}  # Janus → site
    assert media["rx"] > 200 and LOSS_PCT / 2 <= 100 * media["lost"] / media["rx"] <= LOSS_PCT * 1.5 + 0.5, (
        media
    )
    assert join_ms <= JOIN_BUDGET_MS, f"join took {join_ms:.0f} ms behind the slow link"
    assert not problems, problems
