// The meeting chat, shared by a site's room (room.js) and the chair's console (console.js), over the
// panel of templates/_chat.html: the lines of the live state and the private messages
// (chat.private), who wrote each (the control room's people by full name and unit), the "n tin mới"
// marker while the reader is not at the bottom, sending, and private replies.

import { el, format } from "./common.js";
import { hhmm } from "./live.js";

/** The person as people know them: full name and unit (older messages: the login name). */
export function person(m) {
  const name = m.name || m.user;
  if (!name) return "";
  return m.unit ? `${name}, ${m.unit}` : name;
}

export class Chat {
  /**
   * ``siteId``: the page's own site (its lines say S.you), null on the console. ``tags``: the
   * words for a private line, ``{toControl, toSite}`` (toSite may hold %(name)s, the site).
   * ``send(type, payload)`` sends and says whether it went (the page shows its own errors).
   * ``replyLabel``: a "reply" button on each line a site sent to the control room (the console).
   */
  constructor({ socket, strings, siteId = null, tags, send, replyLabel = null }) {
    Object.assign(this, { socket, S: strings, siteId, tags, send, replyLabel });
    const $ = (id) => document.getElementById(id);
    this.list = $("chat");
    this.badge = $("chat-unread");
    this.input = $("chat-text");
    this.to = $("chat-to");
    this.panel = this.list.closest(".chat-panel");
    this.rendered = 0; // how many of the state's lines are shown
    this.unread = 0;
    this.inView = true;

    this.list.addEventListener("scroll", () => this.markRead(), { passive: true });
    new IntersectionObserver(
      (entries) => {
        this.inView = entries.some((e) => e.isIntersecting);
        this.markRead();
      },
      { threshold: 0.6 },
    ).observe(this.list);
    this.badge.addEventListener("click", () => {
      this.panel.scrollIntoView({ block: "nearest" });
      this.list.scrollTop = this.list.scrollHeight;
      this.unread = 0;
      this.showUnread();
      this.input.focus({ preventScroll: true });
    });
    this.list.addEventListener("click", (event) => {
      const reply = event.target.closest("[data-reply]");
      if (reply) this.replyTo(Number(reply.dataset.reply));
    });
    $("chat-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      const value = this.to.value;
      const to = value === "all" || value === "control" ? value : Number(value);
      if (await this.send("chat.send", { text, to })) this.input.value = "";
    });
  }

  line(m) {
    const S = this.S;
    const name = this.socket.state.siteName.bind(this.socket.state);
    const who = person(m);
    const from =
      m.from_site === null ? (who ? `${S.control} · ${who}` : S.control) : m.from_site === this.siteId ? S.you : name(m.from_site);
    let tag = null;
    if (m.to === "control") tag = this.tags.toControl;
    else if (typeof m.to === "number") tag = format(this.tags.toSite, { name: name(m.to) });
    const line = el(
      "li",
      { class: m.to === "all" ? "chat-line" : "chat-line chat-private" },
      el("span", { class: "chat-meta" }, `${hhmm(m.at)} · ${from}`, tag ? ` · ${tag}` : ""),
      el("span", { class: "chat-text" }, m.text),
    );
    if (this.replyLabel && m.to === "control" && m.from_site !== null) {
      line.append(
        el("button", { type: "button", class: "btn btn-secondary btn-small", dataset: { reply: m.from_site } }, this.replyLabel),
      );
    }
    return line;
  }

  /** The state's chat (every state change): the new lines; all of them again after a reset. */
  render(state) {
    if (state.chat.length < this.rendered) {
      this.list.replaceChildren();
      this.rendered = 0;
    }
    const first = this.rendered === 0;
    for (const m of state.chat.slice(this.rendered)) {
      if (first) this.list.append(this.line(m));
      else this.append(this.line(m));
    }
    if (first) this.list.scrollTop = this.list.scrollHeight;
    this.rendered = state.chat.length;
  }

  /** A private message (chat.private): not in the shared state, only this tab's. */
  add(message) {
    this.append(this.line(message));
  }

  atBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 24;
  }

  /** A new line: stay at the bottom if the reader is there and can see it, else count it unread. */
  append(line) {
    const follow = this.atBottom();
    this.list.append(line);
    if (follow) this.list.scrollTop = this.list.scrollHeight;
    if (!follow || !this.inView || document.hidden) {
      this.unread += 1;
      this.showUnread();
    }
  }

  showUnread() {
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = format(this.S.unread, { n: this.unread });
  }

  markRead() {
    if (this.atBottom() && this.inView) {
      this.unread = 0;
      this.showUnread();
    }
  }

  /** Write privately to a site: the choice is added to "Gửi tới" if it is not there yet. */
  replyTo(siteId) {
    let option = this.to.querySelector(`option[value="${siteId}"]`);
    if (!option) {
      option = el("option", { value: siteId }, format(this.S.replyTo, { name: this.socket.state.siteName(siteId) }));
      this.to.append(option);
    }
    this.to.value = String(siteId);
    this.input.focus();
  }
}
