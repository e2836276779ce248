"use strict";
// Stored completions (GET /v1/openft/chat/completions, newest first), one conversation, and
// "Distill": POST /v1/openft/chat/completions/export with the selected ids and a fine-tune.
const selected = new Set();
let after = null;

function filters() {
  const params = {};
  const value = (id) => document.getElementById(id).value.trim();
  if (value("filter-model")) params.model = value("filter-model");
  if (value("filter-text")) params.text = value("filter-text");
  if (value("filter-since")) params.since = Math.floor(new Date(value("filter-since")).getTime() / 1000);
  if (value("filter-until")) params.until = Math.floor(new Date(value("filter-until")).getTime() / 1000) + 86400;
  for (const pair of value("filter-metadata").split(",")) {
    const [key, ...rest] = pair.split("=");
    if (key.trim() && rest.length) params[`metadata[${key.trim()}]`] = rest.join("=").trim();
  }
  return params;
}

function row(completion) {
  const reply = completion.choices.length ? completion.choices[0].message.content || "(tool call)" : "";
  const box = el("input", {
    type: "checkbox",
    checked: selected.has(completion.id),
    onchange: (event) => (event.target.checked ? selected.add(completion.id) : selected.delete(completion.id)),
  });
  const meta = Object.entries(completion.metadata || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  return el("tr", { "data-id": completion.id },
    el("td", {}, box),
    el("td", {}, el("a", { href: "#", onclick: (event) => { event.preventDefault(); openConversation(completion); } }, completion.id)),
    el("td", {}, completion.model), el("td", {}, reply.slice(0, 200)),
    el("td", {}, meta), el("td", {}, statusBadge(completion.status)), el("td", {}, fmtTime(completion.created)));
}

async function loadLogs(reset = true) {
  const body = document.querySelector("#logs tbody");
  if (reset) { after = null; body.replaceChildren(); }
  const params = { ...filters(), limit: 50 };
  if (after) params.after = after;
  const page = await api("/openft/chat/completions", { params });
  body.append(...page.data.map(row));
  after = page.data.length ? page.data[page.data.length - 1].id : after;
  document.getElementById("more").hidden = !page.has_more;
}

async function openConversation(completion) {
  const messages = await apiAll(`/chat/completions/${completion.id}/messages`);
  const reply = completion.choices.length ? completion.choices[0].message : null;
  const items = messages.map((m) => el("li", {}, el("strong", {}, `${m.role}: `), m.content || JSON.stringify(m.tool_calls || "")));
  if (reply) items.push(el("li", {}, el("strong", {}, "assistant (stored reply): "), reply.content || JSON.stringify(reply.tool_calls)));
  document.getElementById("conversation-id").textContent = `${completion.id} · ${completion.model} · ${completion.status}`;
  document.getElementById("conversation-messages").replaceChildren(...items);
  document.getElementById("conversation").hidden = false;
}

async function loadBases() {
  const bases = (await api("/models")).data.filter((m) => !m.id.startsWith("ft:"));
  document.getElementById("distill-model").replaceChildren(...bases.map((m) => el("option", { value: m.id }, m.id)));
}

document.getElementById("log-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  loadLogs().catch(pageError);
});
document.getElementById("more").addEventListener("click", () => loadLogs(false).catch(pageError));
document.getElementById("select-all").addEventListener("change", (event) => {
  for (const box of document.querySelectorAll("#logs tbody input[type=checkbox]")) {
    box.checked = event.target.checked;
    const id = box.closest("tr").dataset.id;
    event.target.checked ? selected.add(id) : selected.delete(id);
  }
});
document.getElementById("distill-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("distill-status");
  const button = document.getElementById("distill");
  status.classList.remove("error");
  if (!selected.size) return showError(status, "Select the completions to distill first.");
  button.disabled = true;
  try {
    show(status, `Distilling ${selected.size} completions: writing, checking and uploading the file…`);
    const exported = await api("/openft/chat/completions/export", {
      method: "POST",
      json: {
        ids: [...selected],
        held_out: Number(document.getElementById("distill-held-out").value),
        fine_tune: {
          model: document.getElementById("distill-model").value,
          suffix: document.getElementById("distill-suffix").value || null,
        },
      },
    });
    if (exported.job) location.href = `/jobs/${exported.job.id}`;
    else showError(status, "The data check found errors: " + JSON.stringify(exported.check.training.errors.slice(0, 3)));
  } catch (error) {
    showError(status, error);
  } finally {
    button.disabled = false;
  }
});

loadBases().catch(pageError);
loadLogs().catch(pageError);
