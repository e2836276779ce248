// Shared by every page: the API key, `api()` over the /v1 JSON API, and small DOM helpers.
// Data is always inserted as text (never innerHTML): file names and model output are untrusted.
"use strict";

const KEY_STORAGE = "openft.apiKey";

class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.error = error || {};
  }
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE);
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// Calls /v1`path`. `json` is sent as the JSON body, `form` as multipart. A 401 sends the browser
// to the login page (the server has keys and this browser has none, or a revoked one).
async function api(path, { method = "GET", json, form, params } = {}) {
  const headers = authHeaders();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const query = params ? "?" + new URLSearchParams(params) : "";
  const response = await fetch(`/v1${path}${query}`, { method, headers, body });
  if (response.status === 401 && document.body.dataset.page !== "login") {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    throw new ApiError(401, { message: "Log in with an API key." });
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error);
  return data;
}

// Every page of a cursor-paged list (`limit` per request).
async function apiAll(path, limit = 100) {
  const items = [];
  let after;
  for (;;) {
    const page = await api(path, { params: after ? { limit, after } : { limit } });
    items.push(...page.data);
    if (!page.has_more || !page.data.length) return items;
    after = page.data[page.data.length - 1].id;
  }
}

// el("a", {href: "/x", class: "y"}, "text", child) → an element; strings become text nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(node, ...children) {
  node.replaceChildren(...children);
  node.hidden = false;
}

function showError(node, error) {
  node.classList.add("error");
  show(node, error instanceof ApiError ? error.message : String(error));
}

function fmtTime(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "";
}

function fmtDuration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function fmtNumber(value, digits = 3) {
  return typeof value === "number" ? Number(value.toFixed(digits)).toLocaleString() : "";
}

function statusBadge(status) {
  return el("span", { class: `status ${status}` }, status);
}

// The latest training progress of a job: {step, total} from its newest metrics event.
async function jobProgress(jobId) {
  const events = await api(`/fine_tuning/jobs/${jobId}/events`, { params: { limit: 50 } });
  const last = events.data.find((e) => e.type === "metrics" && e.data);
  return last ? { step: last.data.step, total: last.data.total_steps } : null;
}

function pageError(error) {
  showError(document.getElementById("page-error"), error);
}

document.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  if (apiKey()) logout.hidden = false;
  logout.addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    location.href = "/login";
  });
});
