// The live-meeting protocol (docs/protocol.md, version 1) for the site room and the console:
// one WebSocket per tab, hello + resume, acks and errors, snapshot + versioned deltas, reconnect
// with backoff; and the WebRTC side of media.publish / media.subscribe / media.wall (the browser
// never talks to Janus: SDP and ICE candidates go through our server).

import { el, format } from "./common.js";

const PROTOCOL = 1;
const PING_EVERY_MS = 5_000;
// A socket that has heard nothing (no ack, no push) for this long is dead (a cut link leaves TCP
// half-open for minutes): drop it and reconnect. The same bound applies to hello → welcome.
const SILENCE_MS = 12_000;
// Reconnect delays; capped at 4 s so a tab is back at most ~4.5 s after the server is (app restart).
const BACKOFF_MS = [500, 1000, 2000, 4000];
const NOT_OPEN_RETRY_MS = 10_000;

/** A refusal from the server ({type:"error"}) or a lost connection. */
export class LiveError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/** Meeting state as the server pushes it: snapshot, then deltas applied in order. */
export class MeetingState {
  constructor() {
    this.version = 0;
    this.meeting = null;
    this.order = [];
    this.sites = {};
    this.floor = { holders: [], queue: [], audible: [], max_holders: 1 };
    this.chat = [];
    this.rollCall = { invited: 0, present: 0, late: 0, left: 0, absent: 0 };
  }

  load(snapshot, version) {
    this.version = version;
    this.meeting = snapshot.meeting;
    this.order = snapshot.order ?? Object.keys(snapshot.sites).map(Number);
    this.sites = snapshot.sites;
    this.floor = snapshot.floor;
    this.chat = snapshot.chat ?? [];
    this.rollCall = snapshot.roll_call ?? this.rollCall;
  }

  /** Apply one delta; false when it does not follow the version we hold (resume needed). */
  apply(delta) {
    if (delta.version !== this.version + 1) return false;
    for (const change of delta.changes) {
      if (change.path === "meeting") this.meeting = change.value;
      else if (change.path === "floor") this.floor = change.value;
      else if (change.path === "chat.append") this.chat.push(change.value);
      else if (change.path === "roll_call") this.rollCall = change.value;
      else if (change.path.startsWith("sites.")) this.sites[change.path.slice(6)] = change.value;
    }
    this.version = delta.version;
    return true;
  }

  site(id) {
    return this.sites[String(id)] ?? null;
  }

  siteName(id) {
    return this.site(id)?.name ?? `#${id}`;
  }
}

/**
 * One tab's connection. ``hello`` is {as, site_id?}; callbacks: onStatus(status, detail),
 * onState(state, changes), onMessage(msg) for pushes that are not state (media.*, chat.private),
 * onWelcome(welcome, resumed).
 */
export class LiveSocket {
  constructor({ meetingId, hello, onStatus, onState, onMessage, onWelcome }) {
    this.meetingId = meetingId;
    this.hello = hello;
    this.onStatus = onStatus ?? (() => {});
    this.onState = onState ?? (() => {});
    this.onMessage = onMessage ?? (() => {});
    this.onWelcome = onWelcome ?? (() => {});
    this.state = new MeetingState();
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.attempt = 0;
    this.everConnected = false;
    this.closed = false;
    this.serverOffset = 0; // server clock minus ours, seconds
    this.you = null;
    this.pingTimer = null;
    this.heardAt = 0; // Date.now() of the last message from the server
    this.watchdog = null;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.you !== null;
  }

  /** Seconds on the server's clock. */
  now() {
    return Date.now() / 1000 + this.serverOffset;
  }

  connect() {
    if (this.closed) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${window.location.host}/ws/meetings/${this.meetingId}`);
    this.ws = ws;
    this.you = null;
    this.nextId = 1;
    this.onStatus(this.everConnected ? "reconnecting" : "connecting");
    this.heardAt = Date.now();
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => {
      if (Date.now() - this.heardAt > SILENCE_MS) this._abandon(ws);
    }, 1000);
    ws.addEventListener("open", () => {
      const hello = { type: "hello", id: this.nextId++, protocol: PROTOCOL, ...this.hello };
      hello.resume_from = this.everConnected ? this.state.version : null;
      ws.send(JSON.stringify(hello));
    });
    ws.addEventListener("message", (event) => this._receive(ws, event.data));
    ws.addEventListener("close", (event) => this._closed(ws, event));
  }

  close() {
    this.closed = true;
    clearInterval(this.pingTimer);
    clearInterval(this.watchdog);
    this.ws?.close(1000, "bye");
  }

  /** Send a message; resolves with the ack's result, rejects with LiveError. */
  send(type, payload = {}) {
    if (!this.connected) return Promise.reject(new LiveError("disconnected", ""));
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ type, id, ...payload }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /** The server has gone silent: give up on this socket now (its close event may come much later,
   * or never, on a cut link) and reconnect with backoff. */
  _abandon(ws) {
    if (ws !== this.ws) return;
    this._closed(ws, { code: 4001 });
    try {
      ws.close(4001, "silent");
    } catch {
      // already closing
    }
  }

  _receive(ws, raw) {
    if (ws !== this.ws) return;
    this.heardAt = Date.now();
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    switch (msg.type) {
      case "welcome":
        this._welcome(msg);
        break;
      case "delta":
        if (!this.state.apply(msg)) {
          // A gap: reconnect at once and resume from what we hold.
          this.ws.close(4000, "gap");
          return;
        }
        this.onState(this.state, msg.changes);
        break;
      case "ack":
      case "error": {
        const waiter = this.pending.get(msg.id);
        if (!waiter) {
          if (msg.type === "error") this.onMessage(msg);
          return;
        }
        this.pending.delete(msg.id);
        if (msg.type === "ack") waiter.resolve(msg.result ?? null);
        else waiter.reject(new LiveError(msg.code, msg.message));
        break;
      }
      default:
        this.onMessage(msg);
    }
  }

  _welcome(msg) {
    const resumed = "deltas" in msg;
    this.serverOffset = (msg.server_time ?? Date.now() / 1000) - Date.now() / 1000;
    this.you = msg.you;
    setIceConfig(msg);
    if (resumed) {
      for (const text of msg.deltas) {
        const delta = JSON.parse(text);
        if (delta.version > this.state.version) this.state.apply(delta);
      }
      this.state.version = msg.version;
    } else {
      this.state.load(msg.snapshot, msg.version);
    }
    this.everConnected = true;
    this.attempt = 0;
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.send("ping").catch(() => {}), PING_EVERY_MS);
    this.onStatus("connected");
    this.onWelcome(msg, resumed);
    this.onState(this.state, null);
  }

  _closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this.pingTimer);
    clearInterval(this.watchdog);
    this.you = null;
    for (const waiter of this.pending.values()) waiter.reject(new LiveError("disconnected", ""));
    this.pending.clear();
    if (this.closed) return;
    if (event.code === 4401) {
      const here = window.location.pathname + window.location.search;
      window.location.assign(`/login?next=${encodeURIComponent(here)}`);
      return;
    }
    if (event.code === 4403 || event.code === 4404 || event.code === 4400) {
      this.closed = true;
      this.onStatus("refused", event.code);
      return;
    }
    let delay;
    if (event.code === 4409 && ["ended", "cancelled"].includes(this.state.meeting?.status)) {
      this.closed = true;
      this.onStatus("ended");
      return;
    }
    if (event.code === 4409) {
      delay = NOT_OPEN_RETRY_MS;
      this.onStatus("not_open", delay);
    } else {
      const base = event.code === 4000 ? 0 : BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      delay = base + Math.round(Math.random() * 400);
      this.attempt += 1;
      this.onStatus("lost", delay);
    }
    setTimeout(() => this.connect(), delay);
  }
}

// ---- media ---------------------------------------------------------------------------------

const PC_CONFIG = { iceServers: [], bundlePolicy: "max-bundle", iceTransportPolicy: "all" };
const DISCONNECTED_GRACE_MS = 3_000; // ICE "disconnected" this long → ICE restart
const RESTART_WAIT_MS = 6_000; // an ICE restart not connected by then → a new PeerConnection

/**
 * Keep a PeerConnection alive (issue 5, docs/protocol.md "Recovery"): when its ICE stays
 * "disconnected" for DISCONNECTED_GRACE_MS or turns "failed", try an ICE restart (``restart()``:
 * renegotiate with new ICE credentials through our server); if it is not connected again within
 * RESTART_WAIT_MS (or the restart is refused), ``giveUp()`` — the caller replaces the whole
 * PeerConnection (republish / resubscribe). ``onStep(step)`` shows each step to the operator:
 * "restarting", "recovered" (the restart worked), "replacing". Returns {stop()}.
 */
export function keepAlive(pc, { restart, giveUp, onStep = () => {} }) {
  let timer = null;
  let restarting = false;
  let over = false;
  const clear = () => {
    clearTimeout(timer);
    timer = null;
  };
  const fail = () => {
    if (over) return;
    over = true;
    clear();
    onStep("replacing");
    giveUp();
  };
  const tryRestart = async () => {
    if (over || restarting) return;
    restarting = true;
    onStep("restarting");
    clear();
    timer = setTimeout(fail, RESTART_WAIT_MS);
    try {
      await restart();
    } catch (error) {
      console.warn("ICE restart refused", error?.code ?? error);
      fail();
    }
  };
  pc.addEventListener("iceconnectionstatechange", () => {
    if (over || pc.signalingState === "closed") return;
    const state = pc.iceConnectionState;
    if (state === "connected" || state === "completed") {
      clear();
      if (restarting) {
        restarting = false;
        onStep("recovered");
      }
    } else if (state === "failed") {
      tryRestart();
    } else if (state === "disconnected" && !restarting && !timer) {
      timer = setTimeout(() => {
        timer = null;
        if (["disconnected", "failed"].includes(pc.iceConnectionState)) tryRestart();
      }, DISCONNECTED_GRACE_MS);
    }
  });
  return {
    stop() {
      over = true;
      clear();
    },
  };
}

/** ICE restart of a publishing PeerConnection: a new offer with new ICE credentials, answered by
 * Janus on the same publisher (media.restart); moderation stays in force. */
export async function restartPublisher(socket, pc) {
  const offer = await pc.createOffer({ iceRestart: true });
  await pc.setLocalDescription(offer);
  const result = await socket.send("media.restart", {
    target: "publisher",
    jsep: { type: offer.type, sdp: offer.sdp },
  });
  await pc.setRemoteDescription(result.jsep);
}

/** Take the ICE servers (STUN/TURN, per-tab credentials) of a welcome; `?relay=1` forces TURN relay. */
function setIceConfig(welcome) {
  if (Array.isArray(welcome.ice_servers)) PC_CONFIG.iceServers = welcome.ice_servers;
  const forced = new URLSearchParams(window.location.search).get("relay") === "1";
  PC_CONFIG.iceTransportPolicy = forced || welcome.ice_transport_policy === "relay" ? "relay" : "all";
}

/** Send our ICE candidates through the server; hold them until the server knows the handle. */
class Trickle {
  constructor(socket, target) {
    this.socket = socket;
    this.target = target;
    this.ready = false;
    this.queue = [];
  }

  add(candidate) {
    const value = candidate ? candidate.toJSON() : null;
    if (this.ready) this._send(value);
    else this.queue.push(value);
  }

  open() {
    this.ready = true;
    for (const value of this.queue.splice(0)) this._send(value);
  }

  _send(candidate) {
    this.socket.send("media.trickle", { target: this.target, candidate }).catch(() => {});
  }
}

/**
 * Publish camera + microphone: simulcast where the capture is large enough (three layers from
 * 720p, fewer below — the browser decides), SDP offer/answer through media.publish. ``lean``: start
 * with only the lowest layer active and no microphone track (a site without the floor, see room.js).
 */
export async function publish(socket, stream, { simulcast = true, lean = false } = {}) {
  const pc = new RTCPeerConnection(PC_CONFIG);
  const trickle = new Trickle(socket, "publisher");
  pc.addEventListener("icecandidate", (event) => trickle.add(event.candidate));
  const [audio] = stream.getAudioTracks();
  const [video] = stream.getVideoTracks();
  if (audio) pc.addTransceiver(lean ? "audio" : audio, { direction: "sendonly", streams: [stream] });
  if (video) {
    const height = video.getSettings().height ?? 0;
    const encodings =
      simulcast && height >= 360
        ? [
            { rid: "h", active: !lean, maxBitrate: 1_200_000 },
            { rid: "m", active: !lean, maxBitrate: 400_000, scaleResolutionDownBy: 2 },
            { rid: "l", active: true, maxBitrate: 120_000, scaleResolutionDownBy: 4 },
          ]
        : undefined;
    pc.addTransceiver(video, { direction: "sendonly", streams: [stream], sendEncodings: encodings });
  }
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  try {
    const result = await socket.send("media.publish", { jsep: { type: offer.type, sdp: offer.sdp } });
    await pc.setRemoteDescription(result.jsep);
  } catch (error) {
    pc.close();
    throw error;
  }
  trickle.open();
  return pc;
}

/**
 * A subscription (the view, or the console's wall): Janus offers, we answer with media.start.
 * ``onTrack(mid, track)`` places each track; renegotiation offers (media.offer) go to ``renegotiate``.
 */
export class Subscription {
  constructor(socket, target, onTrack, onFailed = null, onStep = null) {
    this.socket = socket;
    this.target = target; // "view" | "wall"
    this.onTrack = onTrack;
    this.onFailed = onFailed; // the PeerConnection is beyond an ICE restart: subscribe again
    this.onStep = onStep; // recovery steps (see keepAlive)
    this.pc = null;
    this.alive = null;
  }

  async answer(offer) {
    await this.pc.setRemoteDescription(offer);
    const answer = await this.pc.createAnswer();
    // DTLS: answer passive, so Janus is the DTLS client: it starts the handshake as soon as its ICE is
    // ready, with a one-packet ClientHello (Chrome's own is two packets) and a 1 s resend timer
    // (Chrome's: 1.5 s, then 3 s) — docs/media.md "Joining over a lossy link".
    answer.sdp = answer.sdp.replace(/a=setup:active/g, "a=setup:passive");
    await this.pc.setLocalDescription(answer);
    await this.socket.send("media.start", {
      jsep: { type: answer.type, sdp: answer.sdp },
      target: this.target,
    });
  }

  /** Start from an offer the server gave (media.subscribe / media.wall result). */
  async start(offer) {
    this.close();
    const pc = new RTCPeerConnection(PC_CONFIG);
    this.pc = pc;
    const trickle = new Trickle(this.socket, this.target === "wall" ? "wall" : "subscriber");
    pc.addEventListener("icecandidate", (event) => trickle.add(event.candidate));
    pc.addEventListener("track", (event) => this.onTrack(event.transceiver.mid, event.track));
    this.alive = keepAlive(pc, {
      restart: () => this.restart(),
      giveUp: () => {
        if (pc === this.pc) this.onFailed?.();
      },
      onStep: (step) => this.onStep?.(step),
    });
    trickle.open();
    await this.answer(offer);
  }

  /** ICE restart: Janus makes a new offer (configure with restart) on the same subscription. */
  async restart() {
    const result = await this.socket.send("media.restart", { target: this.target });
    await this.answer(result.jsep);
  }

  async renegotiate(offer) {
    if (this.pc) await this.answer(offer);
  }

  close() {
    this.alive?.stop();
    this.alive = null;
    this.pc?.close();
    this.pc = null;
  }
}

/** Bytes received per mid and kind (for the tests and a "signal" indicator). */
export async function inboundBytes(pc) {
  const out = {};
  if (!pc) return out;
  const stats = await pc.getStats();
  stats.forEach((report) => {
    if (report.type === "inbound-rtp") out[`${report.kind}:${report.mid}`] = report.bytesReceived;
  });
  return out;
}

/** "mm:ss" */
export function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** HH:MM of an ISO time, in Vietnam's time. */
export function hhmm(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString("vi-VN", {
    hour: "2-digit",
    minute: "2-digit",
    timeZone: "Asia/Ho_Chi_Minh",
  });
}

/** Autoplay for the host and speaker pictures: when the browser refuses sound before a click (a
 * reloaded page), play muted and show ``soundButton``, which turns the sound on. Returns the
 * function to call whenever a picture gets a stream. */
export function autoplay(videos, soundButton) {
  soundButton.addEventListener("click", () => {
    soundButton.hidden = true;
    for (const video of videos()) {
      video.muted = false;
      video.play().catch(() => {});
    }
  });
  return () => {
    for (const video of videos()) {
      if (!video.srcObject || !video.paused) continue;
      video.play().catch(() => {
        video.muted = true;
        soundButton.hidden = false;
        video.play().catch(() => {});
      });
    }
  };
}

/** The status line that shows a tab's media recovery steps (docs/protocol.md "Recovery"):
 * null | "restarting" | "replacing" | "reset" | "recovered" ("recovered" clears itself after 8 s). */
export class MediaSteps {
  constructor(element, strings) {
    this.element = element;
    this.strings = strings;
    this.step = null;
    this.timer = null;
    this.show = this.show.bind(this);
  }

  show(step) {
    this.step = step;
    clearTimeout(this.timer);
    const line = this.element;
    if (!line) return;
    const S = this.strings;
    const text = {
      restarting: S.mediaRestarting,
      replacing: S.mediaReplacing,
      reset: S.mediaReset,
      recovered: S.mediaRecovered,
    }[step];
    line.textContent = text ?? "";
    line.hidden = !text;
    line.dataset.step = step ?? "";
    line.className = step === "recovered" ? "conn conn-connected" : "conn conn-lost";
    if (step === "recovered") this.timer = setTimeout(() => this.show(null), 8000);
  }
}

/** The words for a LiveSocket status (its onStatus(status, detail)), from the page's strings. */
export function statusText(S, status, detail) {
  const seconds = Math.ceil((detail ?? 0) / 1000);
  return {
    connecting: S.connecting,
    reconnecting: S.reconnecting,
    connected: S.connected,
    lost: format(S.lost, { s: seconds }),
    not_open: format(S.notOpen, { s: seconds }),
    refused: format(S.refused, { code: detail }),
    ended: S.meetingEnded,
  }[status];
}

/** Where the host site is (LiveMeeting.presence): "absent" (not in the room), "connected" (in the
 * room, no picture yet) or "live" (sending its picture to every site). */
export function hostPresence(state, hostSiteId) {
  const host = state.site(hostSiteId);
  if (!host?.connected) return "absent";
  return host.publishing ? "live" : "connected";
}

/** Show in ``box`` what is missing while the host does not send — the headline (the page's string
 * hostAbsent or hostConnected) and what to do (hostAbsentHelp / hostConnectedHelp, with %(name)s,
 * the host's name); hidden once it sends. Returns the presence. */
export function showHostPresence(box, state, hostSiteId, S, name) {
  const presence = hostPresence(state, hostSiteId);
  box.hidden = presence === "live";
  if (box.dataset.presence !== presence) {
    box.dataset.presence = presence;
    const key = presence === "absent" ? "hostAbsent" : "hostConnected";
    if (presence !== "live") box.replaceChildren(el("strong", {}, S[key]), " ", format(S[`${key}Help`], { name }));
  }
  return presence;
}

/** The meeting's status badge (#meeting-status) of a live page, in the page's words ``names``. */
export function showMeetingStatus(state, names) {
  const status = state.meeting?.status;
  if (!status) return;
  const badge = document.getElementById("meeting-status");
  badge.textContent = names[status] ?? status;
  badge.className = `badge mstatus-${status}`;
}
