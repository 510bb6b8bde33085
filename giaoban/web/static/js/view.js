// The meeting view, shared by a site's room (room.js) and the chair's console (console.js): the
// subscription to the host slot and the speaker slots (media.subscribe), each arriving track put in
// its picture, the slots shown as the floor changes (media.slots), the speaker screens and, under
// them, the time left of each turn. The page keeps what is its own (errors, the join click, the
// path line) through the hooks it passes.

import { el, format } from "./common.js";
import { LiveError, Subscription, autoplay, clock } from "./live.js";

const nothing = () => {};

export class MeetingView {
  /**
   * ``active()``: whether the view should send now (the room: after "Vào phòng họp"; the console:
   * always); while it is false the view is pre-warmed (connected, nothing sent) until ``turnOn``.
   * Hooks: ``onStep(step)`` recovery steps (MediaSteps.show), ``onConnecting()`` a subscription is
   * under way, ``onReady(sub)`` it is up, ``onLost()`` it was beyond an ICE restart (subscribed
   * again), ``onFailed(error)`` subscribing failed while active (not for "host_not_ready").
   * ``timeLeft``: each speaker screen has the time left of its turn under the picture.
   */
  constructor({
    socket,
    strings,
    hostSiteId,
    screensBox = null,
    timeLeft = false,
    active = () => true,
    onStep = nothing,
    onConnecting = nothing,
    onReady = nothing,
    onLost = nothing,
    onFailed = nothing,
  }) {
    // The elements of both pages (meeting_room.html, meeting_console.html), by the same ids.
    const $ = (id) => document.getElementById(id);
    const [hostVideo, hostWait, speakersBox, noSpeaker] = ["host-video", "host-wait", "speakers", "no-speaker"].map($);
    Object.assign(this, { socket, S: strings, hostSiteId, hostVideo, hostWait, speakersBox, noSpeaker, screensBox });
    Object.assign(this, { timeLeft, active, onStep, onConnecting, onReady, onLost, onFailed });
    this.sub = null; // Subscription (host + speakers)
    // Whether the server sends anything on it: a pre-warmed view is connected with nothing sent,
    // the click only turns it on (media.view) — docs/protocol.md.
    this.on = false;
    this.slots = null; // {host: {site_id, video, audio}, speakers: [...]}
    this.subscribing = false;
    this.streams = new Map(); // slot video mid -> MediaStream of the slot (video and audio)
    this.epoch = 0; // bumped whenever the view is dropped: late answers of older attempts are discarded
    this.play = autoplay(() => [hostVideo, ...speakersBox.querySelectorAll("video")], $("sound"));
  }

  /** Whether the host site sends its picture (only then is there something to subscribe to). */
  hostLive() {
    return Boolean(this.socket.state?.site(this.hostSiteId)?.publishing);
  }

  /** Subscribe when there is no view yet and the host sends. */
  ensure() {
    if (!this.sub && !this.subscribing && this.hostLive()) this.subscribe();
  }

  /** Close the view (reconnect, media reset, meeting ended). */
  drop() {
    this.epoch += 1;
    this.sub?.close();
    this.sub = null;
    this.on = false;
    this.slots = null;
    this.streams.clear();
  }

  renegotiate(jsep) {
    this.sub?.renegotiate(jsep).catch(console.warn);
  }

  async subscribe() {
    const socket = this.socket;
    if (this.subscribing || !socket.connected) return;
    this.subscribing = true;
    this.onConnecting();
    const mine = this.epoch;
    const active = this.active();
    let sub = null;
    let failed = false;
    try {
      const result = await socket.send("media.subscribe", { active });
      if (mine !== this.epoch) throw new LiveError("stale", ""); // dropped meanwhile: subscribe again below
      this.slots = result.slots;
      this.streams.clear();
      this.buildScreens();
      sub = new Subscription(
        socket,
        "view",
        (mid, track) => this.placeTrack(mid, track),
        () => {
          // Beyond an ICE restart: subscribe again.
          if (this.sub !== sub) return;
          this.closeSub();
          this.onLost();
          setTimeout(() => this.subscribe(), 1000);
        },
        this.onStep,
      );
      this.sub = sub;
      this.on = active;
      await sub.start(result.jsep);
      this.showSlots(result.slots);
      this.onReady(sub);
    } catch (error) {
      failed = true;
      if (this.sub === sub) this.closeSub();
      if (this.active() && mine === this.epoch && !(error instanceof LiveError && error.code === "host_not_ready")) {
        this.onFailed(error);
      }
    } finally {
      this.subscribing = false;
    }
    // Asked to send while the pre-warm was under way: turn it on now.
    if (this.sub === sub && sub) this.turnOn();
    if (mine !== this.epoch && !this.sub && this.hostLive()) this.subscribe();
    else if (failed && this.active() && !this.sub && this.hostLive()) {
      // The pre-warm (or the subscription) failed: try again shortly.
      setTimeout(() => {
        if (this.active() && !this.sub && !this.subscribing) this.subscribe();
      }, 1000);
    }
  }

  closeSub() {
    this.sub?.close();
    this.sub = null;
    this.on = false;
  }

  /** The click on a pre-warmed view: the server sends its host and speakers from now on. If that
   * fails, the view is replaced by a new (active) one, as without pre-warming. */
  turnOn() {
    const sub = this.sub;
    if (!this.active() || !sub || this.on) return;
    this.on = true;
    this.socket.send("media.view", { on: true }).catch((error) => {
      console.warn("media.view", error?.code ?? error);
      if (this.sub !== sub) return;
      this.closeSub();
      this.subscribe();
    });
  }

  /** A track arrived on mid ``mid``: put it in its slot's stream (video and audio share one). */
  placeTrack(mid, track) {
    const slots = this.slots;
    if (!slots) return;
    const slot = [slots.host, ...slots.speakers].find((s) => s.video === mid || s.audio === mid);
    if (!slot) return;
    if (!this.streams.has(slot.video)) this.streams.set(slot.video, new MediaStream());
    const stream = this.streams.get(slot.video);
    stream.addTrack(track);
    const video =
      slot === slots.host ? this.hostVideo : this.speakersBox.querySelector(`video[data-mid="${slot.video}"]`);
    if (video && video.srcObject !== stream) video.srcObject = stream;
    this.play();
  }

  /** One screen per speaker slot, hidden until the slot has a site. The speaker's picture as large
   * as the host's; the time left (``timeLeft``) under it, never over the picture. */
  buildScreens() {
    const screen = (s) => {
      const figure = el(
        "figure",
        { class: "screen screen-speaker" },
        el("video", { autoplay: true, playsinline: true, dataset: { mid: s.video } }),
        el("figcaption", {}, el("span", { class: "who" })),
      );
      if (!this.timeLeft) {
        figure.hidden = true;
        figure.dataset.slot = s.video;
        return figure;
      }
      return el(
        "div",
        { class: "speaker-slot", hidden: true, dataset: { slot: s.video } },
        figure,
        el("p", { class: "time-left", "aria-live": "off" }),
      );
    };
    // "Nobody speaks" stays where the page put it (the console: first in the speakers' box).
    const keep = this.noSpeaker.parentNode === this.speakersBox ? [this.noSpeaker] : [];
    this.speakersBox.replaceChildren(...keep, ...this.slots.speakers.map(screen));
  }

  /** The slots now (media.slots, or the subscription's own): who is on each screen. */
  showSlots(message) {
    if (!this.slots) return;
    this.slots = { host: { ...this.slots.host, ...message.host }, speakers: message.speakers };
    this.hostWait.hidden = message.host.site_id !== null;
    let any = false;
    for (const s of message.speakers) {
      const slot = this.speakersBox.querySelector(`[data-slot="${s.video}"]`);
      if (!slot) continue;
      slot.hidden = s.site_id === null;
      slot.dataset.site = s.site_id ?? "";
      if (s.site_id !== null) {
        any = true;
        const name = this.socket.state.siteName(s.site_id);
        slot.querySelector(".who").textContent = format(this.S.speakerLabel, { name });
      }
    }
    this.noSpeaker.hidden = any;
    this.screensBox?.classList.toggle("has-speaker", any);
    this.renderTimes();
    this.play();
  }

  /** The time left under each speaker's screen (``timeLeft``); call it every second. */
  renderTimes() {
    if (!this.timeLeft) return;
    const now = this.socket.now();
    for (const slot of this.speakersBox.querySelectorAll(".speaker-slot[data-site]")) {
      const holder = this.socket.state.floor.holders.find((h) => String(h.site_id) === slot.dataset.site);
      const left = holder?.expires_at ? Date.parse(holder.expires_at) / 1000 - now : null;
      slot.querySelector(".time-left").textContent = left === null ? "" : format(this.S.timeLeft, { t: clock(left) });
    }
  }
}
