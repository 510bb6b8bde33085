// A site's tech check ("kiểm tra kỹ thuật", docs/protocol.md "Tech check"): camera, microphone level,
// the site's media looped back through Janus (echotest, signalled through our server — the browser
// never talks to Janus), a bandwidth estimate from the echo's stats, and TURN reachability. The result
// goes to the server (POST /api/v1/meetings/{id}/sites/{site}/techcheck) and so to the control room.

import { api, format, readJson } from "./common.js";
import { hhmm } from "./live.js";

const config = readJson("gb-config");
const S = readJson("gb-strings");
const $ = (id) => document.getElementById(id);

const ECHO_TIMEOUT_MS = 15_000;
const MEASURE_MS = 4_000;
const TURN_TIMEOUT_MS = 6_000;
const MIC_MIN = 0.02; // peak level (0..1) under which the microphone counts as silent
const BW_MIN_KBPS = 100;

const app = { result: null, pc: null, running: false };
window.giaobanTechcheck = app;

function mark(check, state, text) {
  const row = document.querySelector(`[data-check="${check}"]`);
  row.className = { ok: "tc-ok", bad: "tc-bad", skip: "tc-skip", run: "tc-run" }[state] ?? "";
  row.querySelector(".tc-mark").textContent = { ok: "✓", bad: "✗", skip: "–", run: "…" }[state] ?? "·";
  row.querySelector(".tc-detail").textContent = text;
}

function verdict(result) {
  const node = $("tc-verdict");
  node.className = `tc-verdict ${result.status}`;
  let text = S.not_checked;
  if (result.status === "ready") text = S.ready;
  else if (result.status === "failed") text = format(S.failed, { reason: result.reason });
  if (result.at) text += ` — ${format(S.lastAt, { t: hhmm(result.at) })}`;
  node.textContent = text;
}

/** The microphone's level on the meter; returns a function giving the peak seen so far. */
function levelMeter(stream) {
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let peak = 0;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
    peak = Math.max(peak, level);
    $("tc-level").value = level;
    requestAnimationFrame(tick);
  };
  ctx.resume().catch(() => {});
  tick();
  return {
    peak: () => peak,
    stop: () => {
      stopped = true;
      ctx.close().catch(() => {});
    },
  };
}

/** The echo socket: resolves with {ws, welcome, next(type)} once the server has said welcome. */
function openSocket() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${window.location.host}/ws/meetings/${config.meetingId}/techcheck?site_id=${config.siteId}`;
  const ws = new WebSocket(url);
  const waiting = new Map();
  const handlers = { webrtcup: () => {}, error: () => {} };
  return new Promise((resolve, reject) => {
    ws.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "welcome") resolve({ ws, welcome: msg, waiting, handlers });
      else if (waiting.has(msg.type)) {
        waiting.get(msg.type)(msg);
        waiting.delete(msg.type);
      } else if (msg.type === "error") {
        if (waiting.size === 0) handlers.error(msg);
        for (const [, done] of waiting) done(msg);
        waiting.clear();
      } else if (handlers[msg.type]) handlers[msg.type](msg);
    });
    ws.addEventListener("close", (event) => reject(new Error(event.reason || `${event.code}`)));
    ws.addEventListener("error", () => reject(new Error(S.noMedia)));
  });
}

function within(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(S.timeout)), ms))]);
}

/** Loop the stream through Janus; measure round trip and outgoing bitrate from the echo's stats. */
async function echo(stream) {
  const sock = await within(openSocket(), ECHO_TIMEOUT_MS);
  const { ws, welcome, waiting } = sock;
  const servers = welcome.ice_servers ?? [];
  const pc = new RTCPeerConnection({ iceServers: servers, bundlePolicy: "max-bundle" });
  app.pc = pc;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.addEventListener("track", (event) => {
    $("tc-video").srcObject = event.streams[0] ?? new MediaStream([event.track]);
  });
  const send = (msg) => ws.send(JSON.stringify(msg));
  pc.addEventListener("icecandidate", (event) => send({ type: "trickle", candidate: event.candidate ? event.candidate.toJSON() : null }));
  const connected = new Promise((resolve, reject) => {
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected") resolve();
      if (pc.connectionState === "failed") reject(new Error("ICE failed"));
    });
  });
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const answered = new Promise((resolve) => waiting.set("answer", resolve));
  send({ type: "offer", jsep: { type: offer.type, sdp: offer.sdp } });
  const answer = await within(answered, ECHO_TIMEOUT_MS);
  if (answer.type === "error") throw new Error(answer.message);
  await pc.setRemoteDescription(answer.jsep);
  await within(connected, ECHO_TIMEOUT_MS);

  const sample = async () => {
    const out = { sent: 0, received: 0, rtt: null, available: null, at: performance.now() };
    (await pc.getStats()).forEach((r) => {
      if (r.type === "outbound-rtp") out.sent += r.bytesSent ?? 0;
      if (r.type === "inbound-rtp") out.received += r.bytesReceived ?? 0;
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
        if (typeof r.currentRoundTripTime === "number") out.rtt = r.currentRoundTripTime * 1000;
        if (typeof r.availableOutgoingBitrate === "number") out.available = r.availableOutgoingBitrate;
      }
    });
    return out;
  };
  const first = await sample();
  await new Promise((resolve) => setTimeout(resolve, MEASURE_MS));
  const last = await sample();
  const seconds = (last.at - first.at) / 1000;
  const achieved = ((last.sent - first.sent) * 8) / 1000 / seconds;
  const estimate = last.available ? last.available / 1000 : 0;
  return {
    sock,
    rtt: last.rtt,
    received: last.received - first.received,
    kbps: Math.round(Math.max(achieved, estimate)),
  };
}

/** With TURN servers configured: does a relay candidate appear when only relays are allowed? */
async function turnCheck(servers) {
  const turn = servers.filter((s) => [].concat(s.urls).some((u) => /^turns?:/.test(u)));
  if (turn.length === 0) return "not_configured";
  const pc = new RTCPeerConnection({ iceServers: turn, iceTransportPolicy: "relay" });
  pc.createDataChannel("turn-check");
  const relay = new Promise((resolve) => {
    pc.addEventListener("icecandidate", (event) => {
      if (event.candidate && / typ relay /.test(event.candidate.candidate)) resolve("ok");
      if (!event.candidate) resolve("failed");
    });
  });
  await pc.setLocalDescription(await pc.createOffer());
  try {
    return await within(relay, TURN_TIMEOUT_MS);
  } catch {
    return "failed";
  } finally {
    pc.close();
  }
}

async function run() {
  if (app.running) return;
  app.running = true;
  $("tc-start").disabled = true;
  $("tc-saved").textContent = "";
  $("tc-verdict").className = "tc-verdict not_checked";
  $("tc-verdict").textContent = S.running;
  for (const check of ["camera", "mic", "echo", "bandwidth", "turn"]) mark(check, "", S.waiting);
  const result = { status: "ready", reason: "", camera: false, mic_level: 0, echo_rtt_ms: null, bandwidth_kbps: null, turn: "not_configured" };
  const fail = (reason) => {
    if (result.status === "ready") Object.assign(result, { status: "failed", reason });
  };
  let stream = null;
  let meter = null;
  let sock = null;
  try {
    mark("camera", "run", S.running);
    mark("mic", "run", S.running);
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    } catch (error) {
      mark("camera", "bad", format(S.camBad, { error: error.message || error.name }));
      mark("mic", "bad", format(S.micBad, { error: error.message || error.name }));
      fail(format(S.camBad, { error: error.name }));
      return;
    }
    const [video] = stream.getVideoTracks();
    const [audio] = stream.getAudioTracks();
    const { width = 0, height = 0 } = video?.getSettings() ?? {};
    result.camera = Boolean(video && video.readyState === "live");
    if (result.camera) mark("camera", "ok", format(S.camOk, { w: width, h: height, label: video.label }));
    else {
      mark("camera", "bad", format(S.camBad, { error: "—" }));
      fail(format(S.camBad, { error: "—" }));
    }
    $("tc-video").srcObject = stream;
    $("tc-video").hidden = false;
    $("tc-hint").hidden = true;
    meter = audio ? levelMeter(stream) : null;

    mark("echo", "run", S.running);
    mark("bandwidth", "run", S.running);
    try {
      const measured = await echo(stream);
      sock = measured.sock;
      if (measured.rtt === null || measured.received <= 0) throw new Error(S.timeout);
      result.echo_rtt_ms = Math.round(measured.rtt * 10) / 10;
      result.bandwidth_kbps = measured.kbps;
      mark("echo", "ok", format(S.echoOk, { rtt: result.echo_rtt_ms }));
      if (measured.kbps >= BW_MIN_KBPS) mark("bandwidth", "ok", format(S.bwOk, { kbps: measured.kbps }));
      else {
        mark("bandwidth", "bad", format(S.bwLow, { kbps: measured.kbps }));
        fail(format(S.bwLow, { kbps: measured.kbps }));
      }
    } catch (error) {
      mark("echo", "bad", format(S.echoBad, { error: error.message }));
      mark("bandwidth", "skip", S.bwUnknown);
      fail(format(S.echoBad, { error: error.message }));
    }

    const peak = meter ? meter.peak() : 0;
    result.mic_level = Math.round(peak * 1000) / 1000;
    if (!audio) {
      mark("mic", "bad", format(S.micBad, { error: "—" }));
      fail(format(S.micBad, { error: "—" }));
    } else if (peak < MIC_MIN) {
      mark("mic", "bad", S.micQuiet);
      fail(S.micQuiet);
    } else mark("mic", "ok", format(S.micOk, { level: Math.round(peak * 100), label: audio.label }));

    mark("turn", "run", S.running);
    const welcome = sock ? sock.welcome : { ice_servers: [] };
    result.turn = await turnCheck(welcome.ice_servers ?? []);
    if (result.turn === "ok") mark("turn", "ok", S.turnOk);
    else if (result.turn === "not_configured") mark("turn", "skip", S.turnNone);
    else {
      mark("turn", "bad", S.turnBad);
      if (welcome.ice_transport_policy === "relay") fail(S.turnBad);
    }
  } finally {
    meter?.stop();
    app.pc?.close();
    sock?.ws.close();
    for (const track of stream?.getTracks() ?? []) track.stop();
    $("tc-video").srcObject = null;
    $("tc-video").hidden = true;
    $("tc-hint").hidden = false;
    if (!result.reason && result.status === "failed") result.reason = "—";
    try {
      app.result = await api(`/api/v1/meetings/${config.meetingId}/sites/${config.siteId}/techcheck`, {
        method: "POST",
        body: result,
      });
      verdict(app.result);
      $("tc-saved").textContent = S.saved;
    } catch (error) {
      $("tc-saved").textContent = format(S.saveFailed, { error: error.message || error.code });
      verdict(result);
    }
    $("tc-start").disabled = false;
    app.running = false;
  }
}

$("tc-start").addEventListener("click", run);
if (config.last) verdict(config.last);
if (new URLSearchParams(window.location.search).get("auto") === "1") run();
