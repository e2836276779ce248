"use strict";
// The key is checked against the API before it is kept.
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  const problem = document.getElementById("login-error");
  const response = await fetch("/v1/models", { headers: { Authorization: `Bearer ${key}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    return showError(problem, (body.error && body.error.message) || `HTTP ${response.status}`);
  }
  localStorage.setItem(KEY_STORAGE, key);
  const next = new URLSearchParams(location.search).get("next");
  // Only a path on this server: never an absolute URL taken from the query string.
  location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
});
