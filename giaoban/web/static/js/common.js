// Shared by every page: JSON API calls (session cookie + CSRF header), translated strings,
// element building without innerHTML, and two small form behaviours.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the JSON API. Unsafe methods carry the session's CSRF token in X-CSRF-Token. */
export async function api(path, { method = "GET", params = {}, body } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, String(value));
  }
  const headers = { Accept: "application/json" };
  if (UNSAFE.has(method)) headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    // The session ended (timeout, logout elsewhere): go to the login and come back here.
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(here)}`);
    throw new ApiError(401, "not_authenticated", "");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, data?.error?.code ?? "http_error", data?.error?.message ?? "");
  }
  return data;
}

/** The JSON a page embeds in <script type="application/json" id="...">. */
export function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
}

/** Fill "%(name)s" placeholders, as the server-side gettext strings use them. */
export function format(template, values = {}) {
  return template.replace(/%\((\w+)\)s/g, (whole, key) => (key in values ? String(values[key]) : whole));
}

/** Build an element; strings become text nodes, so data never turns into markup. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "hidden") node.hidden = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An ISO date (yyyy-mm-dd) the way the reader writes dates. */
export function formatDate(iso, locale) {
  if (!iso) return "";
  const [y, m, d] = iso.split("-");
  return locale === "vi" ? `${d}/${m}/${y}` : iso;
}

const PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

function randomPassword(length = 14) {
  const out = [];
  const bytes = new Uint8Array(1);
  const limit = 256 - (256 % PASSWORD_ALPHABET.length); // no modulo bias
  while (out.length < length) {
    crypto.getRandomValues(bytes);
    if (bytes[0] < limit) out.push(PASSWORD_ALPHABET[bytes[0] % PASSWORD_ALPHABET.length]);
  }
  return out.join("");
}

// <form data-confirm="Question?">: ask before sending.
document.addEventListener("submit", (event) => {
  const question = event.target?.dataset?.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// <button data-generate-password="input-id">: fill the field with a random password.
document.addEventListener("click", (event) => {
  const button = event.target.closest?.("[data-generate-password]");
  if (!button) return;
  const input = document.getElementById(button.dataset.generatePassword);
  if (!input) return;
  input.value = randomPassword();
  input.focus();
  input.select();
});

/** The same key as giaoban.text.search_key: "Hà Nội", "ha noi" and "HA NOI" agree. */
export function searchKey(value) {
  return value
    .normalize("NFD")
    .replace(/\p{M}/gu, "")
    .replace(/đ/g, "d")
    .replace(/Đ/g, "D")
    .toLowerCase()
    .replace(/\s+/g, " ")
    .trim();
}

// <input data-filter="table-id" data-filter-count="span-id">: show only the rows whose data-key
// (giaoban.text.search_key of the row, written by the server) holds every typed word.
function filterRows(input) {
  const table = document.getElementById(input.dataset.filter);
  if (!table) return;
  const words = searchKey(input.value).split(" ").filter(Boolean);
  const rows = [...table.querySelectorAll("tbody tr[data-key]")];
  let shown = 0;
  for (const row of rows) {
    const match = words.every((w) => row.dataset.key.includes(w));
    row.hidden = !match;
    if (match) shown += 1;
  }
  const count = document.getElementById(input.dataset.filterCount ?? "");
  if (count) count.textContent = words.length ? format(count.dataset.template, { n: shown, total: rows.length }) : "";
  const none = document.getElementById(`${table.id.replace(/-table$/, "")}-none`);
  if (none) none.hidden = shown > 0;
}
document.addEventListener("input", (event) => {
  if (event.target?.dataset?.filter) filterRows(event.target);
});
