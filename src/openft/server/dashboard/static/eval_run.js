"use strict";
// One run of an eval (the Evals API's `report_url`): pass rate per criterion, then every row
// with its sample, each criterion's score and pass/fail, filterable. Reloads while it runs.
const runCard = document.getElementById("eval-run");
const evalId = runCard.dataset.evalId;
const runId = runCard.dataset.runId;
let items = [];

function pct(passed, failed) {
  const total = passed + failed;
  return total ? `${Math.round((passed / total) * 100)}%` : "—";
}

function sampleText(item) {
  const sample = item.sample || {};
  if (sample.error) return `error: ${sample.error.message}`;
  return (sample.output || []).map((message) => message.content || JSON.stringify(message.tool_calls || "")).join("\n");
}

function showItems() {
  const status = document.getElementById("item-status").value;
  const criterion = document.getElementById("item-criterion").value;
  const text = document.getElementById("item-text").value.toLowerCase();
  const shown = items.filter((item) =>
    (!status || item.status === status) &&
    (!criterion || item.results.some((r) => r.id === criterion && !r.passed)) &&
    (!text || (JSON.stringify(item.datasource_item) + sampleText(item)).toLowerCase().includes(text)));
  document.getElementById("run-items").tBodies[0].replaceChildren(...shown.map((item) => el("tr", { "data-status": item.status },
    el("td", {}, item.datasource_item_id),
    el("td", {}, el("pre", {}, JSON.stringify(item.datasource_item, null, 1))),
    el("td", {}, sampleText(item)),
    el("td", {}, item.results.map((r) => el("div", { class: r.passed ? "exact" : null, title: r.error || "" },
      `${r.name}: ${fmtNumber(r.score)} ${r.passed ? "✓" : "✗"}${r.error ? ` (${r.error})` : ""}`))),
    el("td", {}, statusBadge(item.status)))));
}

async function load() {
  const [evaluation, run] = await Promise.all([api(`/evals/${evalId}`), api(`/evals/${evalId}/runs/${runId}`)]);
  document.getElementById("run-name").textContent = `${evaluation.name || evalId} · ${run.name}`;
  const counts = run.result_counts;
  document.getElementById("run-summary").replaceChildren(statusBadge(run.status),
    ` ${counts.total} rows graded: ${counts.passed} passed, ${counts.failed} failed, ${counts.errored} errored` +
    `${run.model ? `; sampled from ${run.model}` : ""}; created ${fmtTime(run.created_at)}.` +
    (run.error ? ` ${run.error.message}` : ""));
  const types = Object.fromEntries(evaluation.testing_criteria.map((c) => [c.id, c]));
  document.getElementById("run-criteria").tBodies[0].replaceChildren(...run.per_testing_criteria_results.map((r) => el("tr", {},
    el("th", {}, (types[r.testing_criteria] || {}).name || r.testing_criteria),
    el("td", {}, (types[r.testing_criteria] || {}).type || ""),
    el("td", {}, r.passed), el("td", {}, r.failed), el("td", { "data-pass-rate": "" }, pct(r.passed, r.failed)))));
  document.getElementById("run-usage").textContent = run.per_model_usage.map((u) =>
    `${u.model_name}: ${u.invocation_count} calls, ${u.prompt_tokens} prompt + ${u.completion_tokens} completion tokens`).join("; ");
  const criterion = document.getElementById("item-criterion");
  if (criterion.options.length === 1) {
    criterion.append(...evaluation.testing_criteria.map((c) => el("option", { value: c.id }, c.name || c.id)));
  }
  items = await apiAll(`/evals/${evalId}/runs/${runId}/output_items`);
  showItems();
  if (run.status === "queued" || run.status === "in_progress") setTimeout(() => load().catch(pageError), 2000);
}

for (const id of ["item-status", "item-criterion"]) document.getElementById(id).addEventListener("change", showItems);
document.getElementById("item-text").addEventListener("input", showItems);
load().catch(pageError);
