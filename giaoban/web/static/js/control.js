// The control room ("Phòng điều khiển"): connection health of every invited site, polled from
// GET /api/v1/meetings/{id}/quality every 2 s. Grid or list, problems first; alerts with a beep and
// an "Đã biết" button (POST …/alerts/{id}/ack, kept in the meeting log); a site's last 30 minutes
// as inline SVG charts in a dialog.

import { api, el, format, readJson } from "./common.js";
import { showHostPresence } from "./live.js";

const config = readJson("gb-config");
const S = readJson("gb-strings");
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;
const RANK = { red: 0, amber: 1, waiting: 2, green: 3 };
const SYMBOL = { green: "✓", amber: "!", red: "✕", waiting: "…" };
const TIME = new Intl.DateTimeFormat(config.locale === "en" ? "en-GB" : "vi-VN", {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
  timeZone: "Asia/Ho_Chi_Minh",
});

const state = {
  data: null,
  view: localStorage.getItem("gb-control-view") || "grid",
  sort: localStorage.getItem("gb-control-sort") || "problems",
  onlyProblems: false,
  seenAlerts: null, // Set of alert ids seen at least once (null before the first answer)
  history: null, // site id shown in the dialog
  audio: null,
  lastOk: null,
};

const base = `/api/v1/meetings/${config.meetingId}`;

// --- formatting ---------------------------------------------------------------------------------

const clock = (iso) => (iso ? TIME.format(new Date(iso)) : "");
const num = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const kbps = (v) => (v === null || v === undefined ? "–" : String(Math.round(v)));
const pct = (v) => (v === null || v === undefined ? "–" : `${num(v, 1)}%`);

function ago(iso, connected) {
  if (connected) return S.now;
  if (!iso) return S.never;
  const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  return seconds < 120 ? format(S.ago, { n: seconds }) : format(S.agoMin, { n: Math.round(seconds / 60) });
}

function why(site) {
  if (site.level === "waiting") return S.waiting;
  if (!site.reasons.length) return S.green;
  return site.reasons.map((r) => S.reasons[r] ?? r).join(", ");
}

function techcheck(site) {
  const tc = site.techcheck;
  if (!tc) return { short: S.techcheck.noneShort, text: S.techcheck.none, cls: "q-muted" };
  if (tc.status === "ready") return { short: S.techcheck.readyShort, text: S.techcheck.ready, cls: "" };
  const reason = tc.reason ? `: ${tc.reason}` : "";
  return { short: S.techcheck.failedShort, text: `${S.techcheck.failed}${reason}`, cls: "q-bad" };
}

function layers(site) {
  return site.layers_total ? format(S.layer, { n: site.layers, total: site.layers_total }) : "–";
}

function lossClass(v) {
  const th = state.data.thresholds;
  if (v === null || v === undefined) return "";
  return v >= th.loss_red ? "q-bad" : v >= th.loss_amber ? "q-warn" : "";
}

function rttClass(v) {
  const th = state.data.thresholds;
  if (v === null || v === undefined) return "";
  return v >= th.rtt_red ? "q-bad" : v >= th.rtt_amber ? "q-warn" : "";
}

const worst = (a, b) => (a === null || a === undefined ? b : b === null || b === undefined ? a : Math.max(a, b));

// --- the wall -----------------------------------------------------------------------------------

function ordered(sites) {
  const list = sites.map((s, i) => ({ s, i }));
  if (state.onlyProblems) {
    for (let k = list.length - 1; k >= 0; k--) if (list[k].s.level === "green") list.splice(k, 1);
  }
  const byName = (a, b) => a.s.name.localeCompare(b.s.name, "vi");
  if (state.sort === "problems") {
    list.sort((a, b) => RANK[a.s.level] - RANK[b.s.level] || b.s.alerts.length - a.s.alerts.length || a.i - b.i);
  } else if (state.sort === "name") list.sort(byName);
  return list.map((x) => x.s);
}

/** "Điểm cầu Tỉnh ủy Đồng Tháp" → "Đồng Tháp", "Cơ quan thường trực Ban Tổ chức Trung ương tại Đà Nẵng" →
 * "CQTT tại Đà Nẵng" (cơ quan thường trực): what tells the tiles apart (the full name is in the tooltip). */
function shortName(name) {
  return name
    .replace(/^Điểm cầu\s+/iu, "")
    .replace(/^(Tỉnh ủy|Thành ủy|Đảng ủy)\s+/iu, "")
    .replace(/^Cơ quan thường trực\s.*?\s(tại\s.+)$/iu, "CQTT $1") // "… tại Đà Nẵng" tells them apart
    .replace(/\bTrung ương\b/gu, "TW");
}

function tile(site) {
  const tc = techcheck(site);
  const rtt = worst(site.rtt_ms, site.down_rtt_ms);
  const loss = worst(site.loss_pct, site.down_loss_pct);
  let third;
  let fourth;
  let thirdTitle = "";
  let fourthTitle = "";
  if (!site.connected) {
    third = ago(site.last_seen, false);
    fourth = "";
  } else if (site.in_kbps === null && site.out_kbps === null) {
    third = format(S.tabs, { n: site.tabs });
    fourth = "";
  } else {
    third = format(S.tileDelay, { rtt: num(rtt), loss: pct(loss) });
    thirdTitle = format(S.tileDelayHelp, { rtt: num(rtt), loss: pct(loss), jitter: num(worst(site.jitter_ms, site.down_jitter_ms)) });
    fourth = format(S.tileRate, { up: kbps(site.in_kbps), down: kbps(site.out_kbps) });
    fourthTitle = format(S.tileRateHelp, { up: kbps(site.in_kbps), down: kbps(site.out_kbps), layers: layers(site) });
  }
  const title = [
    `${site.name} (${site.unit_name})`,
    why(site),
    format(S.tipDelay, { up: num(site.rtt_ms), down: num(site.down_rtt_ms) }),
    format(S.tipLoss, { up: pct(site.loss_pct), down: pct(site.down_loss_pct) }),
    format(S.tipJitter, { up: num(site.jitter_ms), down: num(site.down_jitter_ms) }),
    format(S.tipRate, { up: kbps(site.in_kbps), down: kbps(site.out_kbps) }),
    layers(site),
    tc.text,
  ].join("\n");
  return el(
    "li",
    { dataset: { site: site.site_id } },
    el(
      "button",
      {
        type: "button",
        class: `q-tile q-${site.level}${site.alerts.length ? " q-alerting" : ""}`,
        title,
        dataset: { site: site.site_id },
      },
      el(
        "span",
        { class: "q-name" },
        el("span", { class: `q-sym q-${site.level}`, "aria-label": S[site.level] }, SYMBOL[site.level]),
        site.host ? el("span", { class: "q-host" }, S.host) : el("span", { class: "q-host", hidden: true }),
        el("span", { class: "q-label" }, shortName(site.name)),
      ),
      el(
        "span",
        { class: "q-line" },
        el("span", { class: "q-why" }, why(site)),
        el(
          "span",
          { class: "q-media", title: S.mediaHelp },
          el("span", { class: site.video ? "" : "q-off" }, "▶"),
          el("span", { class: site.audio ? "" : "q-off" }, "♪"),
        ),
      ),
      // Without figures the tech check goes on the third line: every tile of a waiting wall is short.
      fourth
        ? el("span", { class: "q-fig", title: thirdTitle }, third)
        : el(
            "span",
            { class: "q-line" },
            el("span", { class: "q-fig" }, third),
            el("span", { class: `q-tc ${tc.cls}`, title: tc.text }, tc.short),
          ),
      fourth
        ? el(
            "span",
            { class: "q-line" },
            el("span", { class: "q-fig", title: fourthTitle }, fourth),
            el("span", { class: `q-tc ${tc.cls}`, title: tc.text }, tc.short),
          )
        : null,
    ),
  );
}

/**
 * Make ``old`` look like ``fresh`` without replacing it: same tags in the same places get the new
 * attributes and text, so a tile under the pointer stays the same element and a click on it lands.
 * Where the shape differs the node is swapped (rare: a tile changes shape only with its state).
 */
function morph(old, fresh) {
  if (old.nodeType === Node.TEXT_NODE && fresh.nodeType === Node.TEXT_NODE) {
    if (old.data !== fresh.data) old.data = fresh.data;
    return old;
  }
  if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) {
    old.replaceWith(fresh);
    return fresh;
  }
  for (const attr of [...old.attributes]) if (!fresh.hasAttribute(attr.name)) old.removeAttribute(attr.name);
  for (const attr of fresh.attributes) if (old.getAttribute(attr.name) !== attr.value) old.setAttribute(attr.name, attr.value);
  const a = [...old.childNodes];
  const b = [...fresh.childNodes];
  for (let i = 0; i < b.length; i++) {
    if (i < a.length) morph(a[i], b[i]);
    else old.append(b[i]);
  }
  for (let i = b.length; i < a.length; i++) a[i].remove();
  return old;
}

/** Show ``items`` in ``container`` keyed by data-site: existing elements are updated in place and
 * moved only when the order changed; nothing is rebuilt on each poll. */
function syncKeyed(container, sites, build) {
  const existing = new Map([...container.children].map((node) => [node.dataset.site, node]));
  const wanted = sites.map((site) => {
    const fresh = build(site);
    const old = existing.get(String(site.site_id));
    existing.delete(String(site.site_id));
    return old ? morph(old, fresh) : fresh;
  });
  for (const node of existing.values()) node.remove();
  wanted.forEach((node, i) => {
    if (container.children[i] !== node) container.insertBefore(node, container.children[i] ?? null);
  });
}

function row(site) {
  const tc = techcheck(site);
  const loss = worst(site.loss_pct, site.down_loss_pct);
  const rtt = worst(site.rtt_ms, site.down_rtt_ms);
  return el(
    "tr",
    { class: `q-${site.level}`, dataset: { site: site.site_id }, tabindex: "0" },
    el("td", { class: "q-site", title: `${site.name} (${site.unit_name})` }, site.name),
    el("td", { class: "q-level" }, `${SYMBOL[site.level]} ${why(site)}`),
    el("td", {}, site.connected ? format(S.tabs, { n: site.tabs }) : "–"),
    el("td", {}, el("span", { class: site.video ? "" : "q-off" }, "▶"), " ", el("span", { class: site.audio ? "" : "q-off" }, "♪")),
    el("td", { class: `num ${rttClass(rtt)}` }, num(rtt)),
    el("td", { class: `num ${lossClass(loss)}` }, pct(loss)),
    el("td", { class: "num" }, num(worst(site.jitter_ms, site.down_jitter_ms))),
    el("td", { class: "num" }, kbps(site.in_kbps)),
    el("td", { class: "num" }, kbps(site.out_kbps)),
    el("td", {}, layers(site)),
    el("td", {}, ago(site.last_seen, site.connected)),
    el("td", { class: tc.cls }, tc.text),
  );
}

function render() {
  const data = state.data;
  if (!data) return;
  for (const key of ["green", "amber", "red", "waiting"]) $(`n-${key}`).textContent = data.counts[key] ?? 0;
  $("count-waiting").hidden = !data.counts.waiting;
  $("n-connected").textContent = `${data.counts.connected}/${data.counts.invited}`;
  const sites = ordered(data.sites);
  const grid = state.view === "grid";
  $("grid").hidden = !grid;
  $("list-wrap").hidden = grid;
  $("view-grid").setAttribute("aria-pressed", String(grid));
  $("view-list").setAttribute("aria-pressed", String(!grid));
  $("view-grid").classList.toggle("btn-secondary", !grid);
  $("view-list").classList.toggle("btn-secondary", grid);
  if (grid) syncKeyed($("grid"), sites, tile);
  else syncKeyed($("list-body"), sites, row);
  renderAlerts();
  if (state.history !== null) refreshHistory();
  const bySite = { site: (id) => data.sites.find((x) => x.site_id === id) ?? null };
  showHostPresence($("host-state"), bySite, config.hostSiteId, S, config.hostName);
}

// --- alerts -------------------------------------------------------------------------------------

function siteName(id) {
  return state.data.sites.find((s) => s.site_id === id)?.name ?? `#${id}`;
}

function alertText(a) {
  const rule = S.rules[a.rule] ?? a.rule;
  let value = "";
  if (a.value !== null && a.rule === "loss_high") value = ` (${num(a.value, 1)}%)`;
  if (a.value !== null && a.rule === "rtt_high") value = ` (${num(a.value)} ms)`;
  return `${clock(a.raised_at)} · ${shortName(siteName(a.site_id))} — ${rule}${value}${a.open ? "" : ` (${S.cleared})`}`;
}

function renderAlerts() {
  const pending = state.data.alerts.filter((a) => a.acked_at === null);
  const fresh = state.seenAlerts === null ? [] : pending.filter((a) => !state.seenAlerts.has(a.id));
  if (state.seenAlerts === null) state.seenAlerts = new Set();
  const freshIds = new Set(fresh.map((a) => a.id));
  for (const a of state.data.alerts) state.seenAlerts.add(a.id);
  const items = pending.map((a) =>
    el(
      "li",
      { class: `q-alert${a.open ? "" : " cleared"}${freshIds.has(a.id) ? " new" : ""}`, dataset: { alert: a.id } },
      el("span", {}, alertText(a)),
      el("button", { type: "button", class: "btn btn-secondary", dataset: { ack: a.id } }, S.ack),
    ),
  );
  $("alerts").replaceChildren(...(items.length ? items : [el("li", { class: "none" }, S.noAlerts)]));
  if (fresh.some((a) => a.open)) beep();
}

async function ack(id, button) {
  button.disabled = true;
  try {
    await api(`${base}/alerts/${id}/ack`, { method: "POST" });
    const alert = state.data.alerts.find((a) => a.id === id);
    if (alert) alert.acked_at = new Date().toISOString();
    renderAlerts();
  } catch (error) {
    button.disabled = false;
    $("conn").textContent = format(S.ackFailed, { error: error.message });
  }
}

function soundButton() {
  const on = state.audio && state.audio.state === "running";
  $("sound").textContent = on ? S.soundOn : S.soundOff;
  $("sound").setAttribute("aria-pressed", String(Boolean(on)));
}

function enableSound() {
  if (!state.audio) state.audio = new AudioContext();
  state.audio.resume().then(soundButton, soundButton);
}

function beep() {
  const ctx = state.audio;
  if (!ctx || ctx.state !== "running") return;
  const t = ctx.currentTime;
  for (const [start, freq] of [
    [0, 880],
    [0.25, 660],
    [0.5, 880],
  ]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t + start);
    gain.gain.exponentialRampToValueAtTime(0.3, t + start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.2);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t + start);
    osc.stop(t + start + 0.22);
  }
}

// --- history ------------------------------------------------------------------------------------

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const W = 940;
const H = 110;
const PAD = { l: 46, r: 8, t: 16, b: 16 };

function chart(title, points, now, series, limit, withBand) {
  const span = 30 * 60;
  const x = (t) => PAD.l + ((t - (now - span)) / span) * (W - PAD.l - PAD.r);
  let max = limit ? limit * 1.2 : 0;
  for (const p of points) for (const s of series) if (p[s.index] !== null) max = Math.max(max, p[s.index]);
  max = max > 0 ? max * 1.1 : 1;
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H + (withBand ? 8 : 0)}`, class: "q-chart", role: "img", "aria-label": title });
  root.append(svg("text", { x: PAD.l, y: 11, class: "q-title" }, title));
  root.append(svg("line", { x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, class: "axis" }));
  root.append(svg("line", { x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: H - PAD.b, class: "axis" }));
  root.append(svg("text", { x: PAD.l - 4, y: PAD.t + 8, "text-anchor": "end" }, max >= 10 ? Math.round(max) : max.toFixed(1)));
  root.append(svg("text", { x: PAD.l - 4, y: H - PAD.b, "text-anchor": "end" }, "0"));
  for (const m of [30, 20, 10, 0]) {
    root.append(svg("text", { x: x(now - m * 60), y: H - 3, "text-anchor": m === 30 ? "start" : m === 0 ? "end" : "middle" }, m ? format(S.minutesAgo, { n: m }) : clock(new Date(now * 1000).toISOString())));
  }
  if (limit) root.append(svg("line", { x1: PAD.l, y1: y(limit), x2: W - PAD.r, y2: y(limit), class: "limit" }));
  for (const s of series) {
    let run = [];
    const flush = () => {
      if (run.length > 1) root.append(svg("polyline", { points: run.join(" "), class: s.cls }));
      run = [];
    };
    for (const p of points) {
      if (p[s.index] === null) flush();
      else run.push(`${x(p[0]).toFixed(1)},${y(p[s.index]).toFixed(1)}`);
    }
    flush();
  }
  if (withBand) {
    const step = (W - PAD.l - PAD.r) / (span / (state.data?.period ?? 2));
    for (const p of points) root.append(svg("rect", { x: x(p[0]).toFixed(1), y: H - 2, width: Math.max(step, 1).toFixed(1), height: 8, class: `band-${p[1]}` }));
  }
  return root;
}

async function refreshHistory() {
  const id = state.history;
  if (id === null) return;
  const site = state.data.sites.find((s) => s.site_id === id);
  if (site) {
    $("history-title").textContent = format(S.historyTitle, { name: site.name });
    $("history-now").textContent = [why(site), `RTT ${num(worst(site.rtt_ms, site.down_rtt_ms))} ms`, `${num(worst(site.loss_pct, site.down_loss_pct), 1)}%`, `↑${kbps(site.in_kbps)} ↓${kbps(site.out_kbps)} kbit/s`, layers(site), techcheck(site).text].join(" · ");
  }
  let history;
  try {
    history = await api(`${base}/quality/${id}/history`);
  } catch {
    return;
  }
  if (state.history !== id) return;
  const points = history.points;
  const box = $("history-charts");
  if (!points.length) {
    box.replaceChildren(el("p", {}, S.noHistory));
    return;
  }
  const now = points[points.length - 1][0];
  const th = state.data.thresholds;
  // fields: t, level, rtt_ms, loss_pct, jitter_ms, in_kbps, out_kbps
  box.replaceChildren(
    chart(S.chartRtt, points, now, [{ index: 2, cls: "line" }], th.rtt_red, true),
    chart(S.chartLoss, points, now, [{ index: 3, cls: "line" }], th.loss_red, false),
    chart(S.chartJitter, points, now, [{ index: 4, cls: "line" }], th.jitter_red, false),
    chart(S.chartRate, points, now, [{ index: 5, cls: "line" }, { index: 6, cls: "line2" }], 0, false),
  );
}

function openHistory(id) {
  state.history = id;
  $("history-charts").replaceChildren();
  const dialog = $("history");
  if (!dialog.open) dialog.showModal();
  refreshHistory();
}

// --- polling and events -------------------------------------------------------------------------

async function poll() {
  try {
    state.data = await api(`${base}/quality`);
    state.lastOk = new Date();
    $("conn").textContent = format(S.updated, { t: clock(state.data.sampled_at ?? state.lastOk.toISOString()) });
    $("conn").className = "conn conn-connected";
    render();
  } catch (error) {
    if (state.lastOk) {
      $("conn").textContent = format(S.stale, { t: clock(state.lastOk.toISOString()) });
      $("conn").className = "conn conn-lost";
    } else {
      $("conn").textContent = error.message || "…";
      $("conn").className = "conn conn-lost";
    }
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

$("view-grid").addEventListener("click", () => {
  state.view = "grid";
  localStorage.setItem("gb-control-view", "grid");
  render();
});
$("view-list").addEventListener("click", () => {
  state.view = "list";
  localStorage.setItem("gb-control-view", "list");
  render();
});
$("sort").value = state.sort;
$("sort").addEventListener("change", (e) => {
  state.sort = e.target.value;
  localStorage.setItem("gb-control-sort", state.sort);
  render();
});
$("only-problems").addEventListener("change", (e) => {
  state.onlyProblems = e.target.checked;
  render();
});
$("sound").addEventListener("click", enableSound);
$("alerts").addEventListener("click", (e) => {
  const button = e.target.closest("[data-ack]");
  if (button) ack(Number(button.dataset.ack), button);
});
for (const container of [$("grid"), $("list-body")]) {
  container.addEventListener("click", (e) => {
    const item = e.target.closest("[data-site]");
    if (item) openHistory(Number(item.dataset.site));
  });
}
$("list-body").addEventListener("keydown", (e) => {
  const item = e.target.closest("[data-site]");
  if (item && (e.key === "Enter" || e.key === " ")) {
    e.preventDefault();
    openHistory(Number(item.dataset.site));
  }
});
$("history-close").addEventListener("click", () => $("history").close());
$("history").addEventListener("close", () => {
  state.history = null;
});

window.giaobanControl = state;
soundButton();
poll();
