// A site's room: camera/microphone check, joining (publish + subscribe through our server), the
// host large and the current speaker beside it, "xin phát biểu", check-in and chat.

import { el, format, readJson } from "./common.js";
import {
  LiveError,
  LiveSocket,
  MediaSteps,
  statusText,
  Subscription,
  autoplay,
  clock,
  hhmm,
  keepAlive,
  publish,
  restartPublisher,
  showHostPresence,
} from "./live.js";

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
const pathState = $("path-state");
const hostState = $("host-state"); // the host's presence, at every site but the host itself
const hostVideo = $("host-video");
const hostWait = $("host-wait");
const speakersBox = $("speakers");
const noSpeaker = $("no-speaker");
const floorState = $("floor-state");
const requestButton = $("request");
const orderButton = $("request-order");
const cancelButton = $("cancel");
const requestWhy = $("request-why");
const queueAhead = $("queue-ahead");
const siteQueue = $("site-queue");
const screensBox = $("screens");
const micState = $("mic-state");
const soundButton = $("sound");
const playAll = autoplay(() => [hostVideo, ...speakersBox.querySelectorAll("video")], soundButton);

let local = null; // MediaStream from the camera and microphone
let joined = false; // the technician pressed "Vào phòng họp"
let pub = null; // RTCPeerConnection publishing
let view = null; // Subscription (host + speakers)
// Whether the server sends anything on the view: before "Vào phòng họp" the view is pre-warmed
// (connected, nothing sent), the click only turns it on (media.view) — docs/protocol.md.
let viewOn = false;
let slots = null; // {host: {site_id, video, audio}, speakers: [...]}
let subscribing = false;
let publishing = false;
const streams = new Map(); // mid -> MediaStream of its slot
let meter = null;
let epoch = 0; // bumped whenever the media is dropped: late answers of older attempts are discarded
let pubAlive = null; // keepAlive of the publishing PeerConnection

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

// ---- recovery steps, shown to the site's technician (docs/protocol.md "Recovery") ------------

const mediaSteps = new MediaSteps($("media-state"), S);
const showMediaStep = mediaSteps.show;

// ---- connection ------------------------------------------------------------------------------

const socket = new LiveSocket({
  meetingId: config.meetingId,
  hello: { as: "site", site_id: config.siteId },
  onStatus(status, detail) {
    const text = statusText(S, status, detail);
    conn.textContent = text;
    conn.className = `conn conn-${status}`;
    if (status !== "connected") {
      if (joined && (pub || view)) showMediaStep("replacing");
      dropMedia();
    }
  },
  onWelcome() {
    showError("");
    if (joined) startMedia();
  },
  onState(state, changes) {
    render(state);
    if (hostState) showHostPresence(hostState, state, config.hostSiteId, S, config.hostName);
    const live = state.site(config.siteId)?.publishing;
    if (live && view && ["replacing", "reset"].includes(mediaSteps.step)) showMediaStep("recovered");
    // Before the click as well: the view is pre-warmed (media.subscribe with active: false).
    if (!view && !subscribing && state.site(config.hostSiteId)?.publishing) subscribeView();
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
    else if (msg.type === "media.reset") {
      // The media server restarted (or lost us): publish and subscribe again, nobody clicks.
      showMediaStep("reset");
      dropMedia();
      if (joined) startMedia();
      else if (socket.state.site(config.hostSiteId)?.publishing) subscribeView();
    }
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
    // A device changed while in the room: swap the camera without renegotiating; the microphone
    // goes on the sender only when the room may hear us (applySendPolicy).
    const video = senderOf(pub, "video");
    const [track] = local.getVideoTracks();
    if (video && track) await video.replaceTrack(track);
    applySendPolicy();
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
  turnViewOn(); // the pre-warmed view, if it is there: only its media is turned on
  if (socket.connected) await startMedia();
});

/** The click on a pre-warmed view: the server sends its host and speakers from now on. If that
 * fails, the view is replaced by a new (active) one, as without pre-warming. */
function turnViewOn() {
  const sub = view;
  if (!joined || !sub || viewOn) return;
  viewOn = true;
  socket.send("media.view", { on: true }).catch((error) => {
    console.warn("media.view", error?.code ?? error);
    if (view !== sub) return;
    view.close();
    view = null;
    viewOn = false;
    subscribeView();
  });
}

async function startMedia() {
  // The view does not depend on our publishing: subscribe at once, in parallel (join time).
  if (!view && socket.state.site(config.hostSiteId)?.publishing) subscribeView();
  if (publishing || pub || !local) return;
  publishing = true;
  const mine = epoch;
  let retry = false;
  try {
    const pc = await publish(socket, local, { simulcast: true, lean: lean() });
    if (mine !== epoch) {
      pc.close(); // dropped meanwhile (reconnect, media reset): publish again below
    } else {
      pub = pc;
      pubAlive = keepAlive(pc, {
        restart: () => restartPublisher(socket, pc),
        giveUp: () => {
          if (pub === pc) republish();
        },
        onStep: showMediaStep,
      });
      applySendPolicy();
    }
  } catch (error) {
    if (mine === epoch) {
      showError(format(S.joinFailed, { error: error.message }));
      retry = true; // e.g. the media server is restarting: try again shortly
    }
  } finally {
    publishing = false;
  }
  if (mine !== epoch || retry) {
    setTimeout(() => {
      if (joined && !pub && socket.connected) startMedia();
    }, mine !== epoch ? 0 : 2000);
    return;
  }
  if (!view && socket.state.site(config.hostSiteId)?.publishing) subscribeView();
}

function republish() {
  // A new offer replaces the old publisher on the server (moderation is applied to it again).
  showError(S.mediaDown);
  pubAlive?.stop();
  pubAlive = null;
  pub?.close();
  pub = null;
  if (socket.connected) startMedia();
}

/** Before the click, tell the technician whether the pre-warmed view is connected: once it is,
 * joining only turns its media on (no handshake left to wait for on a slow link). */
function watchPath(sub) {
  const update = () => {
    if (view !== sub) return;
    const ready = sub.pc?.connectionState === "connected";
    pathState.textContent = ready ? S.pathReady : S.pathConnecting;
    pathState.dataset.ready = ready ? "yes" : "no";
  };
  sub.pc?.addEventListener("connectionstatechange", update);
  update();
}

function dropMedia() {
  epoch += 1;
  pathState.textContent = config.isHost
    ? S.pathHost
    : socket.state?.site(config.hostSiteId)?.publishing
      ? S.pathConnecting
      : S.pathWaitHost;
  pathState.dataset.ready = "no";
  pubAlive?.stop();
  pubAlive = null;
  pub?.close();
  pub = null;
  view?.close();
  view = null;
  viewOn = false;
  slots = null;
  streams.clear();
}

async function subscribeView() {
  if (subscribing || !socket.connected) return;
  subscribing = true;
  pathState.textContent = S.pathConnecting;
  pathState.dataset.ready = "no";
  const mine = epoch;
  const active = joined;
  let sub = null;
  let failed = false;
  try {
    const result = await socket.send("media.subscribe", { active });
    if (mine !== epoch) throw new LiveError("stale", ""); // dropped meanwhile: subscribe again below
    slots = result.slots;
    streams.clear();
    buildSpeakerScreens();
    sub = new Subscription(
      socket,
      "view",
      placeTrack,
      () => {
        // Beyond an ICE restart: subscribe again.
        if (view !== sub) return;
        view.close();
        view = null;
        viewOn = false;
        if (joined) showError(S.mediaDown);
        setTimeout(subscribeView, 1000);
      },
      showMediaStep,
    );
    view = sub;
    viewOn = active;
    await view.start(result.jsep);
    watchPath(sub);
    showSlots(result.slots);
    if (joined) showError("");
  } catch (error) {
    failed = true;
    if (view === sub) {
      view?.close();
      view = null;
      viewOn = false;
    }
    if (joined && mine === epoch && !(error instanceof LiveError && error.code === "host_not_ready")) {
      showError(format(S.joinFailed, { error: error.message }));
    }
  } finally {
    subscribing = false;
  }
  // Clicked while the pre-warm was under way: turn it on now.
  if (view === sub && sub) turnViewOn();
  const hostLive = socket.state.site(config.hostSiteId)?.publishing;
  if (mine !== epoch && !view && hostLive) subscribeView();
  else if (failed && joined && !view && hostLive) {
    // The pre-warm (or the subscription) failed: the click still gets its view.
    setTimeout(() => {
      if (joined && !view && !subscribing) subscribeView();
    }, 1000);
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
  // The speaker's picture as large as the host's; the time left under it, never over the picture.
  speakersBox.replaceChildren(
    ...slots.speakers.map((s) =>
      el(
        "div",
        { class: "speaker-slot", hidden: true, dataset: { slot: s.video } },
        el(
          "figure",
          { class: "screen screen-speaker" },
          el("video", { autoplay: true, playsinline: true, dataset: { mid: s.video } }),
          el("figcaption", {}, el("span", { class: "who" })),
        ),
        el("p", { class: "time-left", "aria-live": "off" }),
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
    const slot = speakersBox.querySelector(`[data-slot="${s.video}"]`);
    if (!slot) continue;
    slot.hidden = s.site_id === null;
    slot.dataset.site = s.site_id ?? "";
    if (s.site_id !== null) {
      any = true;
      slot.querySelector(".who").textContent = format(S.speakerLabel, { name: socket.state.siteName(s.site_id) });
    }
  }
  noSpeaker.hidden = any;
  screensBox.classList.toggle("has-speaker", any);
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

/** Whether we send "lean": a site without the floor (not the host) that nobody may hear. */
function lean() {
  return !config.isHost && !socket.state.floor.audible.includes(config.siteId);
}

function senderOf(pc, kind) {
  return pc.getTransceivers().find((t) => t.receiver.track.kind === kind)?.sender ?? null;
}

let sendPolicy = Promise.resolve(); // setParameters calls must not overlap

/**
 * What we send (no renegotiation; Janus enforces the floor anyway): while the room may hear us
 * (the floor, or the host) the microphone and every simulcast layer; otherwise "lean" — no
 * microphone track on the sender (disabled as well) and only the lowest layer, which is all the
 * console's wall shows. On a grant both come back at once, while the server switches the slots.
 */
function applySendPolicy() {
  const audible = !lean();
  for (const track of local?.getAudioTracks() ?? []) track.enabled = audible;
  const live = Boolean(socket.state.site(config.siteId)?.publishing);
  micState.textContent = config.isHost ? S.hostIdle : audible ? S.micOpen : live ? S.idle : S.joinFirst;
  const pc = pub;
  if (!pc) return;
  sendPolicy = sendPolicy
    .then(() => sendLayers(pc, audible))
    .catch((error) => console.warn("send policy", error));
}

async function sendLayers(pc, full) {
  if (pc.signalingState === "closed") return;
  const audio = senderOf(pc, "audio");
  const mic = (full && local?.getAudioTracks()[0]) || null;
  const replacing = audio && audio.track !== mic ? audio.replaceTrack(mic) : null;
  const video = senderOf(pc, "video");
  const params = video?.getParameters();
  if (params?.encodings?.length > 1) {
    const scale = (e) => e.scaleResolutionDownBy ?? 1;
    const lowest = params.encodings.reduce((low, e) => (scale(e) > scale(low) ? e : low));
    let changed = false;
    for (const encoding of params.encodings) {
      const active = full || encoding === lowest;
      if (encoding.active !== active) {
        encoding.active = active;
        changed = true;
      }
    }
    if (changed) await video.setParameters(params);
  }
  await replacing;
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
  // The floor is for a site the room can see and hear: join (publish) first. A disabled button
  // looks disabled (app.css) and says why beside it.
  const live = Boolean(state.site(config.siteId)?.publishing);
  requestButton.disabled = !live;
  orderButton.disabled = !live;
  requestWhy.textContent = requestButton.hidden || live ? "" : joined ? S.requestWhyWait : S.requestWhyJoin;
  cancelButton.hidden = !queued;
  const declined = !holding && !queued ? (state.floor.declined ?? []).find((d) => d.site_id === config.siteId) : null;
  if (holding) floorState.textContent = S.holding;
  else if (queued) floorState.textContent = format(S.queued, { n: queued.position });
  else if (declined) floorState.textContent = format(S.declined, { t: hhmm(declined.at) });
  else floorState.textContent = "";
  floorState.className = holding
    ? "floor-state floor-holding"
    : queued
      ? "floor-state floor-queued"
      : declined
        ? "floor-state floor-declined"
        : "floor-state";
  renderQueue(state, queued);
  applySendPolicy();
  renderCheckin(state.site(config.siteId));
  renderChat(state);
  renderTimes();
}

/** The queue as every site sees it: its place, how many before it, and the list. */
function renderQueue(state, queued) {
  const queue = state.floor.queue;
  queueAhead.textContent = queued
    ? queued.position === 1
      ? S.nextInLine
      : format(S.ahead, { n: queued.position - 1 })
    : "";
  $("queue-count").textContent = format(S.queueCount, { n: queue.length });
  siteQueue.replaceChildren(
    ...(queue.length
      ? queue.map((q) =>
          el(
            "li",
            { class: q.site_id === config.siteId ? "mine" : "", dataset: { site: q.site_id } },
            state.siteName(q.site_id),
            q.site_id === config.siteId ? el("span", { class: "badge badge-queued" }, S.you) : null,
            q.kind === "point_of_order" ? el("span", { class: "badge" }, S.requestOrder) : null,
          ),
        )
      : [el("li", { class: "empty" }, S.emptyQueue)]),
  );
}

function renderTimes() {
  const now = socket.now();
  for (const figure of speakersBox.querySelectorAll(".speaker-slot[data-site]")) {
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
// The unit's roster as checkboxes (rendered by the server, pre-ticked from the site's last
// check-in), plus typed names. The count follows ticked + typed until the technician types a number
// of their own (clearing the field hands it back to the tally).

const checkinForm = $("checkin");
const delegatesInput = $("delegates");
const namesInput = $("names");
const rosterChecks = () => [...checkinForm.querySelectorAll('input[name="roster"]')];
let delegatesTouched = false;
let checkinTouched = false; // the technician changed something: the live state no longer fills the form

function typedNames() {
  return namesInput.value
    .split("\n")
    .map((n) => n.normalize("NFC").replace(/\s+/g, " ").trim())
    .filter(Boolean);
}

function checkinNames() {
  const seen = new Set();
  const out = [];
  for (const name of [...rosterChecks().filter((c) => c.checked).map((c) => c.dataset.name), ...typedNames()]) {
    const key = name.toLocaleLowerCase("vi");
    if (!seen.has(key)) {
      seen.add(key);
      out.push(name);
    }
  }
  return out.slice(0, 500);
}

function tally() {
  if (delegatesTouched) return;
  const n = checkinNames().length;
  delegatesInput.value = n ? String(n) : "";
}

function renderCheckin(site) {
  const checkin = site?.checkin;
  if (checkin) {
    $("checkin-state").textContent = format(S.checkedIn, { t: hhmm(checkin.at), n: checkin.delegates });
    if (!checkinTouched) {
      // Back in the room after a reload: show what was sent.
      checkinTouched = true;
      const sent = new Set(checkin.names);
      const boxes = rosterChecks();
      for (const box of boxes) box.checked = sent.has(box.dataset.name);
      const onRoster = new Set(boxes.map((b) => b.dataset.name));
      namesInput.value = checkin.names.filter((n) => !onRoster.has(n)).join("\n");
      delegatesInput.value = String(checkin.delegates);
      delegatesTouched = checkin.delegates !== checkinNames().length;
    }
  }
}

checkinForm.addEventListener("change", (event) => {
  if (event.target.name === "roster") {
    checkinTouched = true;
    tally();
  }
});
namesInput.addEventListener("input", () => {
  checkinTouched = true;
  tally();
});
delegatesInput.addEventListener("input", () => {
  checkinTouched = true;
  delegatesTouched = delegatesInput.value !== "";
  if (!delegatesTouched) tally();
});
tally();

checkinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  checkinTouched = true;
  await floorAction("checkin", { delegates: Number(delegatesInput.value), names: checkinNames() });
});

// ---- chat ------------------------------------------------------------------------------------

const chatList = $("chat");
const privateSeen = [];
let chatRendered = 0;

function chatLine(m) {
  const mine = m.from_site === config.siteId;
  const who = m.name ? `${S.control} · ${m.name}` : S.control;
  const from = m.from_site === null ? who : mine ? S.you : socket.state.siteName(m.from_site);
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
window.giaobanRoom = {
  socket,
  get local() { return local; },
  get pub() { return pub; },
  get view() { return view; },
  get viewOn() { return viewOn; },
  get slots() { return slots; },
  get mediaStep() { return mediaSteps.step; },
};

openDevices();
