// A unit's delegate roster ("danh sách đại biểu thường trực"): add, correct, stop inviting / invite
// again, and reorder, through /api/v1/units/{id}/roster. The server renders the list; this module
// takes it over and keeps it in step with the API's answers.

import { api, el, format, readJson } from "./common.js";

const config = readJson("gb-config");
const S = readJson("gb-strings");
const $ = (id) => document.getElementById(id);
const base = `/api/v1/units/${config.unitId}/roster`;

let entries = config.entries;
let editing = null; // id of the entry being edited

function say(text, ok = true) {
  const box = $("roster-status");
  box.textContent = text;
  box.hidden = !text;
  box.className = ok ? "notice notice-ok" : "notice notice-error";
}

async function attempt(action) {
  try {
    await action();
  } catch (error) {
    say(format(S.failed, { error: error.message || error.code }), false);
    if (error.code === "roster_order_stale") await reload();
  }
}

async function reload() {
  entries = (await api(base)).items;
  editing = null;
  render();
}

function button(label, attrs, onClick) {
  const b = el("button", { type: "button", class: "btn btn-secondary btn-small", ...attrs }, label);
  b.addEventListener("click", onClick);
  return b;
}

function actions(entry, index) {
  return el(
    "div",
    { class: "roster-actions" },
    button(S.up, { "aria-label": format(S.moveUp, { name: entry.full_name }), disabled: index === 0 }, () =>
      attempt(() => move(index, -1)),
    ),
    button(
      S.down,
      { "aria-label": format(S.moveDown, { name: entry.full_name }), disabled: index === entries.length - 1 },
      () => attempt(() => move(index, 1)),
    ),
    button(S.edit, { "aria-label": format(S.editOf, { name: entry.full_name }) }, () => {
      editing = entry.id;
      render();
      $(`edit-name-${entry.id}`)?.focus();
    }),
    button(entry.active ? S.deactivate : S.activate, { class: "btn btn-small " + (entry.active ? "btn-danger" : "btn-secondary") }, () =>
      attempt(() => setActive(entry, !entry.active)),
    ),
  );
}

function input(id, value, label, type = "text", max = 200) {
  return el("input", { id, type, value, maxlength: max, "aria-label": label, autocomplete: "off" });
}

function editRow(entry, index) {
  const save = button(S.save, { class: "btn btn-small" }, () => attempt(() => saveEdit(entry)));
  const cancel = button(S.cancel, {}, () => {
    editing = null;
    render();
  });
  const row = el(
    "tr",
    { class: "roster-editing", dataset: { id: entry.id } },
    el("td", { class: "num" }, String(index + 1)),
    el("td", {}, input(`edit-name-${entry.id}`, entry.full_name, S.fullName)),
    el("td", {}, input(`edit-position-${entry.id}`, entry.position, S.position)),
    el("td", {}, input(`edit-phone-${entry.id}`, entry.phone, S.phone, "tel", 50)),
    el("td", {}, entry.active ? S.active : S.inactive),
    el("td", {}, el("div", { class: "roster-actions" }, save, cancel)),
  );
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      save.click();
    } else if (event.key === "Escape") cancel.click();
  });
  return row;
}

function row(entry, index) {
  if (entry.id === editing) return editRow(entry, index);
  return el(
    "tr",
    { class: entry.active ? "" : "roster-off", dataset: { id: entry.id } },
    el("td", { class: "num" }, String(index + 1)),
    el("td", { class: "roster-name" }, entry.full_name),
    el("td", {}, entry.position),
    el("td", {}, entry.phone),
    el("td", {}, el("span", { class: entry.active ? "badge badge-active" : "badge badge-neutral" }, entry.active ? S.active : S.inactive)),
    config.canEdit ? el("td", {}, actions(entry, index)) : null,
  );
}

function render() {
  const body = $("roster-rows");
  if (!entries.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "empty" }, config.canEdit ? S.empty : S.emptyReadonly)));
  } else {
    body.replaceChildren(...entries.map(row));
  }
  const active = entries.filter((e) => e.active).length;
  $("roster-count").textContent = `(${format(S.count, { active, inactive: entries.length - active })})`;
}

async function move(index, step) {
  const ids = entries.map((e) => e.id);
  [ids[index], ids[index + step]] = [ids[index + step], ids[index]];
  entries = (await api(`${base}/order`, { method: "PUT", body: { ids } })).items;
  render();
  say(S.moved);
  // Keep the focus on the moved person's button, so a keyboard user can go on moving them.
  const moved = $("roster-rows").children[index + step];
  moved?.querySelectorAll("button")[step < 0 ? 0 : 1]?.focus();
}

async function setActive(entry, active) {
  const saved = await api(`${base}/${entry.id}`, { method: "PATCH", body: { active } });
  entries = entries.map((e) => (e.id === saved.id ? saved : e));
  render();
  say(format(active ? S.activated : S.deactivated, { name: saved.full_name }));
}

async function saveEdit(entry) {
  const body = {
    full_name: $(`edit-name-${entry.id}`).value.normalize("NFC"),
    position: $(`edit-position-${entry.id}`).value.normalize("NFC"),
    phone: $(`edit-phone-${entry.id}`).value.normalize("NFC"),
  };
  const saved = await api(`${base}/${entry.id}`, { method: "PATCH", body });
  entries = entries.map((e) => (e.id === saved.id ? saved : e));
  editing = null;
  render();
  say(format(S.saved, { name: saved.full_name }));
}

$("roster-add")?.addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(async () => {
    const form = event.target;
    const body = {
      full_name: form.full_name.value.normalize("NFC"),
      position: form.position.value.normalize("NFC"),
      phone: form.phone.value.normalize("NFC"),
    };
    const added = await api(base, { method: "POST", body });
    entries = [...entries, added];
    render();
    form.reset();
    form.full_name.focus();
    say(format(S.added, { name: added.full_name }));
  });
});

render();
