// A site's room: camera/microphone check, joining (publish + subscribe through our server), the
// host large and the current speaker beside it, "xin phát biểu", check-in and chat.

import { el, format, readJson } from "./common.js";
import { Chat } from "./chat.js";
import {
  LiveSocket,
  MediaSteps,
  statusText,
  clock,
  hhmm,
  keepAlive,
  publish,
  restartPublisher,
  showHostPresence,
  showMeetingStatus,
} from "./live.js";
import { MeetingView } from "./view.js";

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
const floorState = $("floor-state");
const requestButton = $("request");
const orderButton = $("request-order");
const cancelButton = $("cancel");
const requestWhy = $("request-why");
const queueAhead = $("queue-ahead");
const siteQueue = $("site-queue");
const micState = $("mic-state");

let local = null; // MediaStream from the camera and microphone
let joined = false; // the technician pressed "Vào phòng họp"
let pub = null; // RTCPeerConnection publishing
let publishing = false;
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
      if (joined && (pub || view.sub)) showMediaStep("replacing");
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
    if (live && view.sub && ["replacing", "reset"].includes(mediaSteps.step)) showMediaStep("recovered");
    // Before the click as well: the view is pre-warmed (media.subscribe with active: false).
    view.ensure();
    if (changes?.some((c) => c.path === "meeting") && state.meeting.status === "ended") {
      showError(S.meetingEnded);
      dropMedia();
      joined = false;
    }
  },
  onMessage(msg) {
    if (msg.type === "media.slots") view.showSlots(msg);
    else if (msg.type === "media.offer" && msg.target === "view") view.renegotiate(msg.jsep);
    else if (msg.type === "chat.private") chat.add(msg.message);
    else if (msg.type === "media.reset") {
      // The media server restarted (or lost us): publish and subscribe again, nobody clicks.
      showMediaStep("reset");
      dropMedia();
      if (joined) startMedia();
      else if (view.hostLive()) view.subscribe();
    }
  },
});

// ---- the host and the speakers (view.js) ---------------------------------------------------------
// Before "Vào phòng họp" the view is pre-warmed (connected, nothing sent); the click turns it on.

const view = new MeetingView({
  socket,
  strings: S,
  hostSiteId: config.hostSiteId,
  screensBox: $("screens"),
  timeLeft: true,
  active: () => joined,
  onStep: showMediaStep,
  onConnecting() {
    pathState.textContent = S.pathConnecting;
    pathState.dataset.ready = "no";
  },
  onReady(sub) {
    watchPath(sub);
    if (joined) showError("");
  },
  onLost() {
    if (joined) showError(S.mediaDown);
  },
  onFailed(error) {
    showError(format(S.joinFailed, { error: error.message }));
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
  view.turnOn(); // the pre-warmed view, if it is there: only its media is turned on
  if (socket.connected) await startMedia();
});

async function startMedia() {
  // The view does not depend on our publishing: subscribe at once, in parallel (join time).
  if (!view.sub && view.hostLive()) view.subscribe();
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
  if (!view.sub && view.hostLive()) view.subscribe();
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
    if (view.sub !== sub) return;
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
  view.drop();
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
  showMeetingStatus(state, config.statuses);
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
  chat.render(state);
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
  view.renderTimes();
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
    return true;
  } catch (error) {
    showError(format(S.sendFailed, { error: error.message }));
    return false;
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

// ---- chat (chat.js) -----------------------------------------------------------------------------

const chat = new Chat({
  socket,
  strings: S,
  siteId: config.siteId,
  tags: { toControl: S.privateTo, toSite: S.privateFrom },
  send: floorAction,
});

// For the end-to-end tests and for support staff in the browser console.
window.giaobanRoom = {
  socket,
  get local() { return local; },
  get pub() { return pub; },
  get view() { return view.sub; },
  get viewOn() { return view.on; },
  get slots() { return view.slots; },
  get mediaStep() { return mediaSteps.step; },
};

openDevices();
