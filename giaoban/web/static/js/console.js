// The control room: speaker queue with grant / revoke and a countdown per turn, the roll-call
// board, the paged wall of all sites (low simulcast layer) and chat with private replies.

import { el, format, readJson } from "./common.js";
import { Chat } from "./chat.js";
import { LiveError, LiveSocket, MediaSteps, Subscription, clock, showHostPresence, showMeetingStatus, statusText } from "./live.js";
import { MeetingView } from "./view.js";

const config = readJson("gb-config");
const S = readJson("gb-strings");
const $ = (id) => document.getElementById(id);
const canChair = Boolean(config.canChair);

const conn = $("conn");
const errorBox = $("console-error");
const holdersList = $("holders");
const queueList = $("queue");
const wallList = $("wall");
let wall = null; // Subscription of the wall
let wallInfo = null; // {page, pages, tiles}
let wallPage = 1;
let wallBusy = false;
const wallStreams = new Map(); // wall mid -> MediaStream

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

// Recovery steps of the console's own media (docs/protocol.md "Recovery").
const mediaSteps = new MediaSteps($("media-state"), S);
const showMediaStep = mediaSteps.show;

async function act(type, payload = {}) {
  try {
    const result = await socket.send(type, payload);
    showError("");
    return { ok: true, result };
  } catch (error) {
    showError(format(S.sendFailed, { error: error.message }));
    return { ok: false, result: null };
  }
}

const socket = new LiveSocket({
  meetingId: config.meetingId,
  hello: { as: "console" },
  onStatus(status, detail) {
    conn.textContent = statusText(S, status, detail);
    conn.className = `conn conn-${status}`;
    if (status !== "connected") dropMedia();
  },
  onState(state, changes) {
    render(state);
    showHostPresence($("host-state"), state, config.hostSiteId, S, config.hostName);
    view.ensure();
    if (!wall && !wallBusy && state.order.some((id) => state.site(id)?.publishing)) openWall(wallPage);
    if (view.sub && ["replacing", "reset"].includes(mediaSteps.step)) showMediaStep("recovered");
    if (changes?.some((c) => c.path === "meeting") && state.meeting.status === "ended") {
      showError(S.meetingEnded);
      dropMedia();
    }
  },
  onMessage(msg) {
    if (msg.type === "media.slots") view.showSlots(msg);
    else if (msg.type === "media.wall") showWall(msg);
    else if (msg.type === "media.offer") {
      if (msg.target === "wall") wall?.renegotiate(msg.jsep).catch(console.warn);
      else view.renegotiate(msg.jsep);
    } else if (msg.type === "chat.private") chat.add(msg.message);
    else if (msg.type === "media.reset") {
      // The media server restarted: subscribe again once the host publishes (onState).
      showMediaStep("reset");
      dropMedia();
    }
  },
});

// The host and the speakers (view.js).
const view = new MeetingView({
  socket,
  strings: S,
  hostSiteId: config.hostSiteId,
  onStep: showMediaStep,
  onFailed: (error) => showError(error.message),
});

socket.connect();

function dropMedia() {
  view.drop();
  wall?.close();
  wall = null;
  wallInfo = null;
  wallStreams.clear();
}

// ---- the wall --------------------------------------------------------------------------------

async function openWall(page) {
  wallBusy = true;
  try {
    const result = await socket.send("media.wall", { page, renew: !wall });
    if (result === null) return;
    if (result.jsep) {
      wallStreams.clear();
      wall = new Subscription(
        socket,
        "wall",
        (mid, track) => {
          const stream = new MediaStream([track]);
          wallStreams.set(mid, stream);
          const video = wallList.querySelector(`video[data-mid="${mid}"]`);
          if (video) video.srcObject = stream;
        },
        () => {
          // Beyond an ICE restart: ask for a fresh subscription.
          wall?.close();
          wall = null;
          setTimeout(() => {
            if (!wall && !wallBusy && socket.connected) openWall(wallPage);
          }, 1000);
        },
        showMediaStep,
      );
      showWall(result);
      await wall.start(result.jsep);
    } else {
      showWall(result);
    }
  } catch (error) {
    wall?.close();
    wall = null;
    if (!(error instanceof LiveError && error.code === "no_video")) showError(error.message);
  } finally {
    wallBusy = false;
  }
}

function showWall(info) {
  wallInfo = info;
  wallPage = info.page;
  renderWall(socket.state);
}

$("wall-prev").addEventListener("click", () => turnPage(-1));
$("wall-next").addEventListener("click", () => turnPage(1));

function pages() {
  return Math.max(1, Math.ceil(socket.state.order.length / 24));
}

async function turnPage(step) {
  const page = Math.min(pages(), Math.max(1, wallPage + step));
  if (page === wallPage) return;
  wallPage = page;
  if (wall) await openWall(page);
  else renderWall(socket.state);
}

function badge(text, kind) {
  return el("span", { class: `badge badge-${kind}` }, text);
}

/** The wall's order, as the server pages it (giaoban.meetings.order.wall_order): the host, the
 * floor holders, the sites sending a picture, then the others, each group in the meeting's order. */
function wallOrder(state) {
  const holders = new Set(state.floor.holders.map((h) => h.site_id));
  const rank = (id) => (id === config.hostSiteId ? 0 : holders.has(id) ? 1 : state.site(id)?.publishing ? 2 : 3);
  return state.order
    .map((id, i) => [rank(id), i, id])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .map((x) => x[2]);
}

function renderWall(state) {
  const perPage = 24;
  // The server's page when we have it (its tiles name their sites), else the same rule here.
  const served = wallInfo && wallInfo.page === wallPage ? wallInfo.tiles.map((t) => t.site_id).filter((id) => id !== null) : null;
  const ids = served ?? wallOrder(state).slice((wallPage - 1) * perPage, wallPage * perPage);
  $("wall-page").textContent = format(S.page, { page: wallPage, pages: pages() });
  $("wall-prev").disabled = wallPage <= 1;
  $("wall-next").disabled = wallPage >= pages();
  const holders = new Set(state.floor.holders.map((h) => h.site_id));
  const queued = new Map(state.floor.queue.map((q) => [q.site_id, q.position]));
  const tiles = ids.map((id, i) => {
    const site = state.site(id);
    const tileInfo = wallInfo && wallInfo.page === wallPage ? wallInfo.tiles[i] : null;
    const classes = ["tile"];
    if (!site.connected) classes.push("tile-off");
    if (holders.has(id)) classes.push("tile-holding");
    else if (queued.has(id)) classes.push("tile-queued");
    const badges = [];
    if (id === config.hostSiteId) badges.push(badge(S.hostBadge, "neutral"));
    if (holders.has(id)) badges.push(badge(S.holdingBadge, "holding"));
    else if (queued.has(id)) badges.push(badge(format(S.queuedBadge, { n: queued.get(id) }), "queued"));
    badges.push(
      site.connected
        ? badge(site.publishing ? S.publishingBadge : S.connectedBadge, site.publishing ? "active" : "neutral")
        : badge(S.disconnectedBadge, "inactive"),
    );
    if (site.checkin) badges.push(badge(format(S.delegates, { n: site.checkin.delegates }), "neutral"));
    let video = null;
    if (tileInfo && tileInfo.site_id === id) {
      video = el("video", { autoplay: true, playsinline: true, muted: true, dataset: { mid: tileInfo.mid } });
      video.muted = true;
      const stream = wallStreams.get(tileInfo.mid);
      if (stream) video.srcObject = stream;
      video.hidden = !tileInfo.video;
    }
    const actions = [];
    if (canChair && !holders.has(id) && id !== config.hostSiteId && site.connected) {
      actions.push(el("button", { type: "button", class: "btn btn-small", dataset: { grant: id } }, S.grant));
    }
    actions.push(
      el("button", { type: "button", class: "btn btn-secondary btn-small", dataset: { reply: id } }, S.message),
    );
    return el(
      "li",
      { class: classes.join(" "), dataset: { site: id } },
      el(
        "div",
        { class: "tile-video" },
        video,
        tileInfo?.video ? null : el("span", { class: "tile-novideo" }, S.noVideo),
      ),
      el("div", { class: "tile-name" }, el("span", { class: "node-code" }, site.code || id), " ", site.name),
      el("div", { class: "tile-badges" }, badges),
      el("div", { class: "tile-actions" }, actions),
    );
  });
  // Keep playing <video> elements where the tile still shows the same stream (no flicker).
  const old = new Map([...wallList.querySelectorAll("video[data-mid]")].map((v) => [v.dataset.mid, v]));
  for (const tile of tiles) {
    const video = tile.querySelector("video[data-mid]");
    const previous = video && old.get(video.dataset.mid);
    if (previous && previous.srcObject === video.srcObject) {
      previous.hidden = video.hidden;
      video.replaceWith(previous);
    }
  }
  wallList.replaceChildren(...tiles);
  for (const v of wallList.querySelectorAll("video")) v.play?.().catch(() => {});
}

wallList.addEventListener("click", (event) => {
  const grant = event.target.closest("[data-grant]");
  if (grant) grantFloor(Number(grant.dataset.grant));
  const reply = event.target.closest("[data-reply]");
  if (reply) chat.replyTo(Number(reply.dataset.reply));
});

// ---- the floor -------------------------------------------------------------------------------

function limit() {
  const value = $("limit")?.value;
  return value ? Number(value) : undefined;
}

function grantFloor(siteId) {
  const payload = { site_id: siteId };
  const seconds = limit();
  if (seconds) payload.seconds = seconds;
  return act("floor.grant", payload);
}

function renderFloor(state) {
  const now = socket.now();
  const holders = state.floor.holders.map((h) => {
    const left = h.expires_at ? Date.parse(h.expires_at) / 1000 - now : null;
    const spoken = now - Date.parse(h.granted_at) / 1000;
    const time = left === null ? format(S.elapsed, { t: clock(spoken) }) : format(S.timeLeft, { t: clock(left) });
    const item = el(
      "li",
      { class: left !== null && left < 30 ? "floor-item floor-ending" : "floor-item", dataset: { site: h.site_id } },
      el("span", { class: "floor-name" }, state.siteName(h.site_id), h.dropped ? ` (${S.dropped})` : ""),
      el("span", { class: "countdown num", dataset: { expires: h.expires_at ?? "", granted: h.granted_at } }, time),
    );
    if (canChair) {
      item.append(
        el(
          "span",
          { class: "floor-actions" },
          el("button", { type: "button", class: "btn btn-danger btn-small", dataset: { revoke: h.site_id } }, S.revoke),
          h.expires_at
            ? el("button", { type: "button", class: "btn btn-secondary btn-small", dataset: { extend: h.site_id } }, S.extend)
            : null,
        ),
      );
    }
    return item;
  });
  holdersList.replaceChildren(...(holders.length ? holders : [el("li", { class: "empty" }, S.noHolder)]));
  const full = state.floor.holders.length >= state.floor.max_holders;
  const queue = state.floor.queue.map((q) => {
    const item = el(
      "li",
      { class: "floor-item", dataset: { site: q.site_id } },
      el(
        "span",
        { class: "floor-name" },
        `${q.position}. ${state.siteName(q.site_id)}`,
        q.kind === "point_of_order" ? el("span", { class: "badge badge-queued" }, S.pointOfOrder) : null,
        q.dropped ? ` (${S.dropped})` : "",
      ),
      el("span", { class: "waited num", dataset: { since: q.requested_at ?? "" } }, waited(q.requested_at, now)),
    );
    if (canChair) {
      item.append(
        el(
          "span",
          { class: "floor-actions" },
          el("button", { type: "button", class: "btn btn-small", disabled: full || q.dropped, dataset: { grant: q.site_id } }, S.grant),
          el(
            "button",
            { type: "button", class: "btn btn-danger btn-small", title: format(S.declineHelp, { name: state.siteName(q.site_id) }), dataset: { decline: q.site_id } },
            S.decline,
          ),
        ),
      );
    }
    return item;
  });
  queueList.replaceChildren(...(queue.length ? queue : [el("li", { class: "empty" }, S.emptyQueue)]));
  const max = $("max-holders");
  if (max && document.activeElement !== max) max.value = String(state.floor.max_holders);
}

/** "chờ 1 phút 20 giây": how long a site has been waiting for the floor. */
function waited(since, now) {
  if (!since) return "";
  const seconds = Math.max(0, Math.floor(now - Date.parse(since) / 1000));
  const m = Math.floor(seconds / 60);
  const sec = seconds % 60;
  return m ? format(S.waitedMin, { m, s: sec }) : format(S.waitedSec, { s: sec });
}

function tickCountdowns() {
  const now = socket.now();
  for (const span of queueList.querySelectorAll(".waited")) span.textContent = waited(span.dataset.since, now);
  for (const span of holdersList.querySelectorAll(".countdown")) {
    const expires = span.dataset.expires;
    if (expires) span.textContent = format(S.timeLeft, { t: clock(Date.parse(expires) / 1000 - now) });
    else span.textContent = format(S.elapsed, { t: clock(now - Date.parse(span.dataset.granted) / 1000) });
  }
}
setInterval(tickCountdowns, 1000);

for (const list of [holdersList, queueList]) {
  list.addEventListener("click", (event) => {
    const grant = event.target.closest("[data-grant]");
    if (grant) grantFloor(Number(grant.dataset.grant));
    const revoke = event.target.closest("[data-revoke]");
    if (revoke) act("floor.revoke", { site_id: Number(revoke.dataset.revoke) });
    const extend = event.target.closest("[data-extend]");
    if (extend) act("floor.extend", { site_id: Number(extend.dataset.extend), seconds: 60 });
    const decline = event.target.closest("[data-decline]");
    if (decline) {
      decline.disabled = true;
      act("floor.decline", { site_id: Number(decline.dataset.decline) }).then(({ ok }) => {
        if (!ok) decline.disabled = false;
      });
    }
  });
}
$("max-holders")?.addEventListener("change", (event) => act("floor.config", { max_holders: Number(event.target.value) }));

// ---- roll call -------------------------------------------------------------------------------

function renderRoll(state) {
  // The server's one partition of the invited sites (giaoban/live/attendance.py): on time +
  // late + absent + left = invited, the same totals as the attendance sheet.
  const counts = state.rollCall;
  const absent = state.order.map((id) => state.site(id)).filter((site) => site?.attendance === "absent");
  $("n-present").textContent = counts.present;
  $("n-late").textContent = counts.late;
  $("n-absent").textContent = counts.absent;
  $("n-left").textContent = counts.left;
  $("roll-total").textContent = format(S.rollTotal, { invited: counts.invited, here: counts.present + counts.late });
  $("absent-count").textContent = absent.length;
  const reported = state.order.map((id) => state.site(id).checkin).filter(Boolean);
  $("delegates-total").textContent = format(S.delegatesTotal, {
    n: reported.reduce((sum, c) => sum + c.delegates, 0),
    sites: reported.length,
  });
  $("absent").replaceChildren(
    ...(absent.length
      ? absent.map((s) => el("li", {}, el("span", { class: "node-code" }, s.code), " ", s.name))
      : [el("li", { class: "empty" }, S.noneAbsent)]),
  );
}

// ---- chat (chat.js) -----------------------------------------------------------------------------

const chat = new Chat({
  socket,
  strings: S,
  tags: { toControl: S.privateFrom, toSite: S.privateTo },
  send: async (type, payload) => (await act(type, payload)).ok,
  replyLabel: S.reply,
});

// ---- everything ------------------------------------------------------------------------------

function render(state) {
  showMeetingStatus(state, config.statuses);
  renderFloor(state);
  renderRoll(state);
  renderWall(state);
  chat.render(state);
}

// For the end-to-end tests and for support staff in the browser console.
window.giaobanConsole = {
  socket,
  get view() {
    return view.sub;
  },
  get slots() {
    return view.slots;
  },
  get wall() {
    return wall;
  },
  get mediaStep() {
    return mediaSteps.step;
  },
};
