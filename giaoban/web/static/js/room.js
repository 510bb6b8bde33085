// A site's room: camera/microphone check, joining (publish + subscribe through our server), the
// host large and the current speaker beside it, "xin phát biểu", check-in and chat.

import { el, format, readJson } from "./common.js";
import { LiveError, LiveSocket, Subscription, autoplay, clock, hhmm, publish } from "./live.js";

const config = readJson("gb-config");
const S = readJson("gb-strings");
const $ = (id) => document.getElementById(id);

const conn = $("conn");
const errorBox = $("room-error");
const preview = $("preview");
const cameraSelect = $("camera");
const micSelect = $("mic");
const qualitySelect = $("quality");
const levelMeter = $("level");
const selfLevel = $("self-level");
const joinButton = $("join");
const setupStatus = $("setup-status");
const hostVideo = $("host-video");
const hostWait = $("host-wait");
const speakersBox = $("speakers");
const noSpeaker = $("no-speaker");
const floorState = $("floor-state");
const requestButton = $("request");
const orderButton = $("request-order");
const cancelButton = $("cancel");
const micState = $("mic-state");
const soundButton = $("sound");
const playAll = autoplay(() => [hostVideo, ...speakersBox.querySelectorAll("video")], soundButton);

let local = null; // MediaStream from the camera and microphone
let joined = false; // the technician pressed "Vào phòng họp"
let pub = null; // RTCPeerConnection publishing
let view = null; // Subscription (host + speakers)
let slots = null; // {host: {site_id, video, audio}, speakers: [...]}
let subscribing = false;
let publishing = false;
const streams = new Map(); // mid -> MediaStream of its slot
let meter = null;

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

// ---- connection ------------------------------------------------------------------------------

const socket = new LiveSocket({
  meetingId: config.meetingId,
  hello: { as: "site", site_id: config.siteId },
  onStatus(status, detail) {
    const text = {
      connecting: S.connecting,
      reconnecting: S.reconnecting,
      connected: S.connected,
      lost: format(S.lost, { s: Math.ceil((detail ?? 0) / 1000) }),
      not_open: format(S.notOpen, { s: Math.ceil((detail ?? 0) / 1000) }),
      refused: format(S.refused, { code: detail }),
      ended: S.meetingEnded,
    }[status];
    conn.textContent = text;
    conn.className = `conn conn-${status}`;
    if (status !== "connected") dropMedia();
  },
  onWelcome() {
    showError("");
    if (joined) startMedia();
  },
  onState(state, changes) {
    render(state);
    if (joined && !view && !subscribing && state.site(config.hostSiteId)?.publishing) subscribeView();
    if (changes?.some((c) => c.path === "meeting") && state.meeting.status === "ended") {
      showError(S.meetingEnded);
      dropMedia();
      joined = false;
    }
  },
  onMessage(msg) {
    if (msg.type === "media.slots") showSlots(msg);
    else if (msg.type === "media.offer" && msg.target === "view") view?.renegotiate(msg.jsep).catch(console.warn);
    else if (msg.type === "chat.private") addChat(msg.message);
  },
});
socket.connect();

// ---- devices ---------------------------------------------------------------------------------

function constraints() {
  const height = Number(qualitySelect.value);
  const video = { height: { ideal: height }, width: { ideal: Math.round((height * 16) / 9) }, frameRate: { ideal: 25 } };
  if (cameraSelect.value) video.deviceId = { exact: cameraSelect.value };
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (micSelect.value) audio.deviceId = { exact: micSelect.value };
  return { video, audio };
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (select, kind, none) => {
    const current = select.value;
    select.replaceChildren(
      ...devices
        .filter((d) => d.kind === kind)
        .map((d, i) => el("option", { value: d.deviceId }, d.label || `${kind} ${i + 1}`)),
    );
    if (!select.options.length) select.append(el("option", { value: "" }, none));
    if (current) select.value = current;
  };
  fill(cameraSelect, "videoinput", S.noCamera);
  fill(micSelect, "audioinput", S.noMic);
}

async function openDevices() {
  local?.getTracks().forEach((t) => t.stop());
  local = null;
  try {
    local = await navigator.mediaDevices.getUserMedia(constraints());
  } catch (error) {
    setupStatus.textContent = format(S.camError, { error: error.message || error.name });
    joinButton.disabled = true;
    return;
  }
  preview.srcObject = local;
  $("self-video").srcObject = local;
  startMeter(local);
  await listDevices();
  setupStatus.textContent = "";
  joinButton.disabled = false;
  if (joined && pub) {
    // A device changed while in the room: swap tracks without renegotiating.
    for (const sender of pub.getSenders()) {
      const track = local.getTracks().find((t) => t.kind === sender.track?.kind);
      if (track) await sender.replaceTrack(track);
    }
    applyMicPolicy();
  }
}

let meterTrack = null;

function startMeter(stream) {
  meter?.close();
  meterTrack?.stop();
  const [track] = stream.getAudioTracks();
  if (!track) return;
  const ctx = new AudioContext();
  // A clone: the level shows even while the track we send is off (no floor).
  meterTrack = track.clone();
  const source = ctx.createMediaStreamSource(new MediaStream([meterTrack]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  const tick = () => {
    if (ctx.state === "closed") return;
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    const level = Math.min(1, Math.sqrt(sum / data.length) * 4);
    levelMeter.value = level;
    selfLevel.value = level;
    setTimeout(tick, 100);
  };
  tick();
  meter = ctx;
  ctx.resume().catch(() => {}); // browsers start it suspended until the page has been used
}
// Any click or choice counts as "used": let the level meter run.
for (const type of ["click", "change", "keydown"]) {
  document.addEventListener(type, () => meter?.resume().catch(() => {}), { passive: true });
}

for (const select of [cameraSelect, micSelect, qualitySelect]) select.addEventListener("change", openDevices);

// ---- joining ---------------------------------------------------------------------------------

joinButton.addEventListener("click", async () => {
  joined = true;
  joinButton.disabled = true;
  setupStatus.textContent = S.joining;
  meter?.resume?.();
  $("setup").hidden = true;
  $("screens").hidden = false;
  $("self").hidden = false;
  if (socket.connected) await startMedia();
});

async function startMedia() {
  if (publishing || pub || !local) return;
  publishing = true;
  try {
    pub = await publish(socket, local, { simulcast: true });
    pub.addEventListener("connectionstatechange", () => {
      if (pub && pub.connectionState === "failed") {
        showError(S.mediaDown);
        republish();
      }
    });
    applyMicPolicy();
  } catch (error) {
    pub = null;
    showError(format(S.joinFailed, { error: error.message }));
  } finally {
    publishing = false;
  }
  if (socket.state.site(config.hostSiteId)?.publishing) subscribeView();
}

function republish() {
  // A new offer replaces the old publisher on the server (moderation is applied to it again).
  pub?.close();
  pub = null;
  if (socket.connected) startMedia();
}

function dropMedia() {
  pub?.close();
  pub = null;
  view?.close();
  view = null;
  slots = null;
  streams.clear();
}

async function subscribeView() {
  if (subscribing || !socket.connected) return;
  subscribing = true;
  try {
    const result = await socket.send("media.subscribe");
    slots = result.slots;
    streams.clear();
    buildSpeakerScreens();
    view = new Subscription(socket, "view", placeTrack, () => {
      // The view's media failed (network): subscribe again.
      view?.close();
      view = null;
      showError(S.mediaDown);
      setTimeout(subscribeView, 1000);
    });
    await view.start(result.jsep);
    showSlots(result.slots);
    showError("");
  } catch (error) {
    view?.close();
    view = null;
    if (!(error instanceof LiveError && error.code === "host_not_ready")) {
      showError(format(S.joinFailed, { error: error.message }));
    }
  } finally {
    subscribing = false;
  }
}

function slotStream(mid) {
  if (!streams.has(mid)) streams.set(mid, new MediaStream());
  return streams.get(mid);
}

/** A track arrived on mid ``mid``: put it in its slot's stream (video and audio share one). */
function placeTrack(mid, track) {
  if (!slots) return;
  const all = [slots.host, ...slots.speakers];
  const slot = all.find((s) => s.video === mid || s.audio === mid);
  if (!slot) return;
  const stream = slotStream(slot.video);
  stream.addTrack(track);
  const video = slot === slots.host ? hostVideo : document.querySelector(`video[data-mid="${slot.video}"]`);
  if (video && video.srcObject !== stream) video.srcObject = stream;
  playAll();
}


function buildSpeakerScreens() {
  speakersBox.replaceChildren(
    ...slots.speakers.map((s) =>
      el(
        "figure",
        { class: "screen screen-speaker", hidden: true, dataset: { slot: s.video } },
        el("video", { autoplay: true, playsinline: true, dataset: { mid: s.video } }),
        el("span", { class: "time-left" }),
        el("figcaption", {}, el("span", { class: "who" })),
      ),
    ),
  );
}

function showSlots(message) {
  if (!slots) return;
  slots = { host: { ...slots.host, ...message.host }, speakers: message.speakers };
  hostWait.hidden = message.host.site_id !== null;
  let any = false;
  for (const s of message.speakers) {
    const figure = speakersBox.querySelector(`figure[data-slot="${s.video}"]`);
    if (!figure) continue;
    figure.hidden = s.site_id === null;
    figure.dataset.site = s.site_id ?? "";
    if (s.site_id !== null) {
      any = true;
      figure.querySelector(".who").textContent = format(S.speakerLabel, { name: socket.state.siteName(s.site_id) });
    }
  }
  noSpeaker.hidden = any;
  renderTimes();
  playAll();
}

// ---- the floor -------------------------------------------------------------------------------

function myFloor(state) {
  const floor = state.floor;
  const holding = floor.holders.find((h) => h.site_id === config.siteId);
  const queued = floor.queue.find((q) => q.site_id === config.siteId);
  return { holding, queued };
}

/** Our own microphone: sending only when we may be heard (Janus enforces it anyway). */
function applyMicPolicy() {
  const audible = socket.state.floor.audible.includes(config.siteId);
  for (const track of local?.getAudioTracks() ?? []) track.enabled = audible;
  const live = Boolean(socket.state.site(config.siteId)?.publishing);
  micState.textContent = config.isHost ? S.hostIdle : audible ? S.micOpen : live ? S.idle : S.joinFirst;
}

function render(state) {
  const status = state.meeting?.status;
  if (status) {
    const badge = $("meeting-status");
    badge.textContent = config.statuses[status] ?? status;
    badge.className = `badge mstatus-${status}`;
  }
  const { holding, queued } = myFloor(state);
  requestButton.hidden = Boolean(holding || queued) || config.isHost;
  orderButton.hidden = requestButton.hidden;
  // The floor is for a site the room can see and hear: join (publish) first.
  const live = Boolean(state.site(config.siteId)?.publishing);
  requestButton.disabled = !live;
  orderButton.disabled = !live;
  cancelButton.hidden = !queued;
  if (holding) floorState.textContent = S.holding;
  else if (queued) floorState.textContent = format(S.queued, { n: queued.position });
  else floorState.textContent = "";
  floorState.className = holding ? "floor-state floor-holding" : queued ? "floor-state floor-queued" : "floor-state";
  applyMicPolicy();
  renderCheckin(state.site(config.siteId));
  renderChat(state);
  renderTimes();
}

function renderTimes() {
  const now = socket.now();
  for (const figure of speakersBox.querySelectorAll("figure[data-site]")) {
    const holder = socket.state.floor.holders.find((h) => String(h.site_id) === figure.dataset.site);
    const span = figure.querySelector(".time-left");
    const left = holder?.expires_at ? Date.parse(holder.expires_at) / 1000 - now : null;
    span.textContent = left === null ? "" : format(S.timeLeft, { t: clock(left) });
  }
  const mine = socket.state.floor.holders.find((h) => h.site_id === config.siteId);
  if (mine?.expires_at) {
    floorState.textContent = `${S.holding} · ${format(S.timeLeft, { t: clock(Date.parse(mine.expires_at) / 1000 - now) })}`;
  }
}
setInterval(renderTimes, 1000);

async function floorAction(type, payload = {}) {
  try {
    await socket.send(type, payload);
    showError("");
  } catch (error) {
    showError(format(S.sendFailed, { error: error.message }));
  }
}
requestButton.addEventListener("click", () => floorAction("floor.request", { kind: "normal" }));
orderButton.addEventListener("click", () => floorAction("floor.request", { kind: "point_of_order" }));
cancelButton.addEventListener("click", () => floorAction("floor.cancel"));

// ---- check-in --------------------------------------------------------------------------------

function renderCheckin(site) {
  const checkin = site?.checkin;
  if (checkin) {
    $("checkin-state").textContent = format(S.checkedIn, { t: hhmm(checkin.at), n: checkin.delegates });
  }
}

$("checkin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const names = $("names")
    .value.split("\n")
    .map((n) => n.trim())
    .filter(Boolean)
    .slice(0, 500);
  await floorAction("checkin", { delegates: Number($("delegates").value), names });
});

// ---- chat ------------------------------------------------------------------------------------

const chatList = $("chat");
const privateSeen = [];
let chatRendered = 0;

function chatLine(m) {
  const mine = m.from_site === config.siteId;
  const from = m.from_site === null ? S.control : mine ? S.you : socket.state.siteName(m.from_site);
  const tag = m.to === "all" ? null : mine ? S.privateTo : S.privateFrom;
  return el(
    "li",
    { class: m.to === "all" ? "chat-line" : "chat-line chat-private" },
    el("span", { class: "chat-meta" }, `${hhmm(m.at)} · ${from}`, tag ? ` · ${tag}` : ""),
    el("span", { class: "chat-text" }, m.text),
  );
}

function renderChat(state) {
  if (state.chat.length < chatRendered) {
    chatList.replaceChildren();
    chatRendered = 0;
  }
  for (const m of state.chat.slice(chatRendered)) chatList.append(chatLine(m));
  chatRendered = state.chat.length;
  chatList.scrollTop = chatList.scrollHeight;
}

function addChat(message) {
  privateSeen.push(message);
  chatList.append(chatLine(message));
  chatList.scrollTop = chatList.scrollHeight;
}

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  if (!text) return;
  try {
    await socket.send("chat.send", { text, to: $("chat-to").value });
    input.value = "";
  } catch (error) {
    showError(format(S.sendFailed, { error: error.message }));
  }
});

// For the end-to-end tests and for support staff in the browser console.
window.giaobanRoom = { socket, get pub() { return pub; }, get view() { return view; }, get slots() { return slots; } };

openDevices();
