// Org tree browser: lazy tree from /api/v1/units, "as of" date, search, unit detail panel.

import { ApiError, api, el, format, formatDate, readJson } from "./common.js";

const config = readJson("gb-config");
const S = readJson("gb-strings");
const PAGE = 200;

const tree = document.getElementById("org-tree");
const treeStatus = document.getElementById("tree-status");
const treeDate = document.getElementById("tree-date");
const results = document.getElementById("results");
const resultsTitle = document.getElementById("results-title");
const resultsList = document.getElementById("results-list");
const searchForm = document.getElementById("org-search");
const searchInput = document.getElementById("q");
const asOfInput = document.getElementById("as-of");
const asOfHelp = document.getElementById("as-of-help");
const detailBody = document.getElementById("detail-body");
const detailPlaceholder = document.getElementById("detail-placeholder");

const units = new Map(); // id -> unit as last listed
let asOf = config.asOf;
let selectedId = null;
let treeGeneration = 0; // responses from an older tree (another date) are dropped
let detailGeneration = 0;

const kindLabel = (kind) => config.kinds[kind] ?? kind;
const day = (iso) => formatDate(iso, config.locale);

function listUnits(params) {
  return api("/api/v1/units", { params: { ...params, as_of: asOf } });
}

function failure() {
  return el(
    "p",
    { class: "notice notice-error", role: "alert" },
    S.loadFailed,
    " ",
    el("button", { type: "button", class: "btn btn-secondary btn-small", dataset: { retry: "1" } }, S.retry),
  );
}

// ---- tree ----------------------------------------------------------------------------------

function nodeFor(unit) {
  units.set(unit.id, unit);
  const hasChildren = unit.child_count > 0;
  const toggle = el("button", {
    type: "button",
    class: hasChildren ? "toggle" : "toggle toggle-leaf",
    "aria-expanded": hasChildren ? "false" : null,
    "aria-label": hasChildren ? format(S.expand, { name: unit.name }) : null,
    "aria-hidden": hasChildren ? null : "true",
    tabindex: hasChildren ? null : "-1",
    dataset: { action: "toggle" },
  });
  const meta = [kindLabel(unit.kind)];
  if (hasChildren) meta.push(format(S.children, { n: unit.child_count }));
  const name = el(
    "button",
    { type: "button", class: "node-name", dataset: { action: "open" } },
    el("span", { class: "nm" }, unit.name),
    el("span", { class: "node-code" }, unit.code),
    el("span", { class: "meta" }, meta.join(" · ")),
  );
  const row = el("div", { class: "node-row" }, toggle, name);
  if (unit.id === selectedId) row.classList.add("selected");
  return el("li", { class: "node", dataset: { id: unit.id } }, row, el("ul", { role: "group", hidden: true }));
}

async function fillChildren(list, params, generation, offset = 0) {
  const page = await listUnits({ ...params, limit: PAGE, offset });
  if (generation !== treeGeneration) return;
  list.querySelector(":scope > .more-row")?.remove();
  list.querySelector(":scope > .tree-status")?.remove();
  for (const unit of page.items) list.append(nodeFor(unit));
  const shown = offset + page.items.length;
  if (shown < page.total) {
    const more = el(
      "button",
      { type: "button", class: "btn btn-secondary btn-small" },
      format(S.more, { n: page.total - shown }),
    );
    more.addEventListener("click", () => fillChildren(list, params, generation, shown));
    list.append(el("li", { class: "more-row" }, more));
  }
  return page;
}

async function expand(li) {
  const toggle = li.querySelector(":scope > .node-row > .toggle");
  const list = li.querySelector(":scope > ul");
  if (!toggle || toggle.classList.contains("toggle-leaf")) return;
  const unit = units.get(Number(li.dataset.id));
  if (!li.dataset.loaded) {
    list.replaceChildren(el("li", { class: "tree-status" }, S.loading));
    list.hidden = false;
    try {
      await fillChildren(list, { parent: unit.id }, treeGeneration);
      li.dataset.loaded = "1";
    } catch {
      list.replaceChildren(el("li", {}, failure()));
      list.querySelector("[data-retry]").addEventListener("click", () => expand(li));
      return;
    }
  }
  list.hidden = false;
  toggle.setAttribute("aria-expanded", "true");
  toggle.setAttribute("aria-label", format(S.collapse, { name: unit.name }));
}

function collapse(li) {
  const toggle = li.querySelector(":scope > .node-row > .toggle");
  const unit = units.get(Number(li.dataset.id));
  li.querySelector(":scope > ul").hidden = true;
  toggle.setAttribute("aria-expanded", "false");
  toggle.setAttribute("aria-label", format(S.expand, { name: unit.name }));
}

tree.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const li = button.closest("li.node");
  if (button.dataset.action === "toggle") {
    if (button.getAttribute("aria-expanded") === "true") collapse(li);
    else expand(li);
  } else {
    showDetail(Number(li.dataset.id));
  }
});

async function loadTree() {
  treeGeneration += 1;
  const generation = treeGeneration;
  units.clear();
  tree.replaceChildren();
  treeStatus.textContent = S.loading;
  treeDate.textContent = format(S.asOfNote, { date: day(asOf) });
  // Spelled out next to the picker: its own display order follows the browser's language.
  const [y, m, d] = asOf.split("-");
  asOfHelp.textContent = format(S.chosenDate, { d: Number(d), m: Number(m), y });
  try {
    const page = await fillChildren(tree, { roots: true }, generation);
    if (generation !== treeGeneration) return;
    treeStatus.textContent = page.total ? "" : S.emptyTree;
    // One top unit: open it at once, the tree is of no use closed.
    if (page.total === 1) await expand(tree.querySelector(":scope > li.node"));
  } catch (error) {
    if (generation !== treeGeneration) return;
    treeStatus.replaceChildren(failure());
    treeStatus.querySelector("[data-retry]").addEventListener("click", loadTree);
  }
}

/** Open the tree down to a unit (its readable ancestors first) and select it. */
async function reveal(detail) {
  hideResults();
  const generation = treeGeneration;
  let list = tree;
  for (const step of [...detail.ancestors, detail]) {
    let li = list.querySelector(`:scope > li.node[data-id="${step.id}"]`);
    while (!li && list.querySelector(":scope > .more-row button")) {
      list.querySelector(":scope > .more-row button").click();
      await new Promise((resolve) => setTimeout(resolve, 150));
      li = list.querySelector(`:scope > li.node[data-id="${step.id}"]`);
    }
    if (!li || generation !== treeGeneration) {
      if (list === tree) continue; // an ancestor outside the reader's scope: start lower
      return;
    }
    if (step.id === detail.id) {
      markSelected();
      li.querySelector(":scope > .node-row").scrollIntoView({ block: "nearest" });
      return;
    }
    await expand(li);
    list = li.querySelector(":scope > ul");
  }
}

function markSelected() {
  for (const row of tree.querySelectorAll(".node-row.selected")) row.classList.remove("selected");
  const li = tree.querySelector(`li.node[data-id="${selectedId}"]`);
  li?.querySelector(":scope > .node-row").classList.add("selected");
}

// ---- search --------------------------------------------------------------------------------

let searchGeneration = 0;
let typingTimer = null;

async function search(q) {
  searchGeneration += 1;
  const generation = searchGeneration;
  results.hidden = false;
  tree.hidden = true;
  treeStatus.hidden = true;
  resultsTitle.textContent = S.loading;
  resultsList.replaceChildren();
  try {
    const page = await listUnits({ q, limit: 50 });
    if (generation !== searchGeneration) return;
    resultsTitle.textContent = page.total ? format(S.results, { n: page.total, q }) : S.noResults;
    for (const unit of page.items) {
      units.set(unit.id, unit);
      const open = el(
        "button",
        { type: "button", class: "node-name", dataset: { id: unit.id } },
        el("span", { class: "nm" }, unit.name),
        el("span", { class: "node-code" }, unit.code),
        el("span", { class: "meta" }, kindLabel(unit.kind)),
      );
      resultsList.append(el("li", {}, open));
    }
  } catch (error) {
    resultsTitle.replaceChildren(failure());
    resultsTitle.querySelector("[data-retry]").addEventListener("click", () => search(q));
  }
}

function hideResults() {
  clearTimeout(typingTimer);
  searchGeneration += 1;
  results.hidden = true;
  tree.hidden = false;
  treeStatus.hidden = false;
}

resultsList.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-id]");
  clearTimeout(typingTimer);
  if (button) showDetail(Number(button.dataset.id), { revealInTree: true });
});

document.getElementById("results-close").addEventListener("click", () => {
  hideResults();
  searchInput.value = "";
  searchInput.focus();
});

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(typingTimer);
  const q = searchInput.value.trim();
  if (q) search(q);
  else hideResults();
});

searchInput.addEventListener("input", () => {
  clearTimeout(typingTimer);
  const q = searchInput.value.trim();
  typingTimer = setTimeout(() => (q.length >= 2 ? search(q) : q.length === 0 && hideResults()), 350);
});

// ---- as-of date ----------------------------------------------------------------------------

function rememberInUrl() {
  const params = new URLSearchParams();
  if (asOf !== config.today) params.set("as_of", asOf);
  if (selectedId) params.set("unit", String(selectedId));
  const query = params.toString();
  window.history.replaceState(null, "", query ? `/org?${query}` : "/org");
}

async function setAsOf(value) {
  asOf = value || config.today;
  asOfInput.value = asOf;
  rememberInUrl();
  await loadTree();
  if (!results.hidden && searchInput.value.trim()) search(searchInput.value.trim());
  if (selectedId) await showDetail(selectedId, { revealInTree: true });
}

asOfInput.addEventListener("change", () => {
  if (asOfInput.value && asOfInput.value !== asOf) setAsOf(asOfInput.value);
});
document.getElementById("as-of-today").addEventListener("click", () => setAsOf(config.today));

// ---- detail panel --------------------------------------------------------------------------

function facts(pairs) {
  const dl = el("dl", { class: "facts" });
  for (const [term, value] of pairs) dl.append(el("dt", {}, term), el("dd", {}, value));
  return dl;
}

function table(headers, rows) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
    ),
  );
}

function sitesSection(sites) {
  if (!sites.items.length) return el("p", { class: "empty" }, S.noSites);
  return table(
    [S.siteName, S.siteStatus, S.tech],
    sites.items.map((site) => [
      el("a", { href: `/sites/${site.id}` }, site.name),
      el("span", { class: `badge badge-${site.status}` }, config.statuses[site.status] ?? site.status),
      [site.tech_name || S.unknown, site.tech_phone ? ` · ${site.tech_phone}` : ""],
    ]),
  );
}

function historySection(history) {
  const versions = table(
    [S.from, S.to, S.name, S.kind],
    history.versions.map((v) => [day(v.valid_from), v.valid_to ? day(v.valid_to) : "—", v.name, kindLabel(v.kind)]),
  );
  const events = history.events.length
    ? el(
        "ul",
        {},
        history.events.map((e) => el("li", {}, `${day(e.effective)} — ${config.events[e.kind] ?? e.kind}`)),
      )
    : el("p", { class: "empty" }, S.noEvents);
  return [el("h4", {}, S.versions), versions, el("h4", {}, S.events), events];
}

async function showDetail(id, { revealInTree = false } = {}) {
  detailGeneration += 1;
  const generation = detailGeneration;
  selectedId = id;
  markSelected();
  rememberInUrl();
  detailPlaceholder.hidden = true;
  detailBody.hidden = false;
  detailBody.replaceChildren(el("p", { class: "tree-status" }, S.loading));
  try {
    const [unit, history, sites] = await Promise.all([
      api(`/api/v1/units/${id}`, { params: { as_of: asOf } }),
      api(`/api/v1/units/${id}/history`),
      api("/api/v1/sites", { params: { unit: id, limit: 100 } }),
    ]);
    if (generation !== detailGeneration) return;
    const crumbs = unit.ancestors.map((a) => a.name).join(" › ");
    detailBody.replaceChildren(
      crumbs ? el("p", { class: "crumbs" }, `${S.parentPath}: ${crumbs}`) : "",
      el("h2", { class: "unit-title", tabindex: "-1" }, unit.name),
      facts([
        [S.code, el("span", { class: "node-code" }, unit.code)],
        [S.kind, kindLabel(unit.kind)],
        [S.validFrom, day(unit.valid_from)],
        [S.validTo, unit.valid_to ? day(unit.valid_to) : S.stillValid],
        [S.childCount, String(unit.child_count)],
        [S.sites, String(unit.site_count)],
      ]),
      el("h3", {}, S.sites),
      sitesSection(sites),
      unit.valid_to ? "" : el("p", {}, el("a", { class: "btn btn-secondary btn-small", href: `/units/${id}/roster` }, S.roster)),
      el("h3", {}, S.history),
      ...historySection(history),
    );
    if (revealInTree) await reveal(unit);
  } catch (error) {
    if (generation !== detailGeneration) return;
    const notInEffect = error instanceof ApiError && error.code === "unit_not_in_effect";
    detailBody.replaceChildren(
      notInEffect ? el("p", { class: "notice notice-warn" }, S.notInEffect) : failure(),
    );
    detailBody.querySelector("[data-retry]")?.addEventListener("click", () => showDetail(id, { revealInTree }));
  }
}

// ---- start ---------------------------------------------------------------------------------

await loadTree();
if (config.unit) await showDetail(config.unit, { revealInTree: true });
