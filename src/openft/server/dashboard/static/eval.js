"use strict";
// One eval report: the arms side by side (the best value of each metric marked), then every
// held-out example with each arm's answer.
const evalId = document.getElementById("eval").dataset.evalId;
const METRICS = [
  // key, label, format, better: "high" | "low" | null
  ["exact_match", "exact match", (v) => `${Math.round(v * 100)}%`, "high"],
  ["similarity", "similarity to reference", (v) => v.toFixed(3), "high"],
  ["json_valid", "valid JSON", (v) => `${Math.round(v * 100)}%`, "high"],
  ["preferred_rate", "closer to preferred than non-preferred (DPO)", (v) => `${Math.round(v * 100)}%`, "high"],
  ["schema_valid", "valid against the schema", (v) => `${Math.round(v * 100)}%`, "high"],
  ["mean_output_tokens", "output tokens (mean)", (v) => v.toFixed(1), null],
  ["mean_prompt_tokens", "prompt tokens (mean)", (v) => v.toFixed(1), "low"],
  ["mean_latency_seconds", "latency here (s, mean)", (v) => v.toFixed(2), "low"],
  ["cost_per_1k_requests_usd", "OpenAI $ per 1K requests", (v) => `$${v.toFixed(4)}`, "low"],
  ["local_seconds_per_1k_requests", "time here per 1K requests", (v) => fmtDuration(v), "low"],
];

async function load() {
  const report = await api(`/openft/evals/${evalId}`);
  document.getElementById("eval-summary").textContent =
    `${report.model} vs ${report.base_model} on ${report.examples.length} held-out examples from ${report.file}; ` +
    `${report.shots} shots and the system message from ${report.training_file}; ${fmtTime(report.created_at)}.`;
  const arms = report.arms;
  const table = document.getElementById("eval-metrics");
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "metric"),
    arms.map((arm) => el("th", { class: arm.name === report.ranking[0] ? "best-arm" : null, "data-arm": arm.name },
      arm.run_id ? el("a", { href: `/evals/${report.api_eval_id}/runs/${arm.run_id}` }, arm.title) : arm.title,
      el("br"), el("small", {}, arm.model)))));
  table.tBodies[0].replaceChildren(...METRICS.filter(([key]) => arms.some((arm) => arm.metrics[key] !== null)).map(([key, label, format, better]) => {
    const values = arms.map((arm) => arm.metrics[key]);
    const best = better === "high" ? Math.max(...values) : better === "low" ? Math.min(...values) : null;
    return el("tr", { "data-metric": key }, el("th", {}, label),
      values.map((v) => el("td", { class: best !== null && v === best ? "best" : null }, v === null ? "—" : format(v))));
  }));
  const titles = Object.fromEntries(arms.map((arm) => [arm.name, arm.title]));
  document.getElementById("eval-ranking").textContent = "Ranking: " + report.ranking.map((name) => titles[name]).join(" > ");
  const prices = report.prices;
  document.getElementById("eval-prices").textContent =
    `Costs at OpenAI's ${prices.model} prices${prices.reference ? " (for reference: not an OpenAI model)" : ""}: ` +
    `base $${prices.usd_per_1m_tokens_base.input} in / $${prices.usd_per_1m_tokens_base.output} out, fine-tuned ` +
    `$${prices.usd_per_1m_tokens_fine_tuned.input} / $${prices.usd_per_1m_tokens_fine_tuned.output} per 1M tokens; ` +
    "tokens counted with the local tokenizer. Time here is each arm's requests batched on this server.";

  const samples = document.getElementById("eval-samples");
  samples.tHead.replaceChildren(el("tr", {}, el("th", {}, "prompt"), el("th", {}, "reference"), arms.map((arm) => el("th", {}, arm.title))));
  samples.tBodies[0].replaceChildren(...report.examples.map((example, i) => el("tr", {},
    el("td", {}, example.prompt.filter((m) => m.role !== "system").map((m) => m.content).join("\n")),
    el("td", {}, example.reference),
    arms.map((arm) => {
      const sample = arm.samples[i];
      return el("td", { class: sample.exact_match ? "exact" : null, title: `similarity ${sample.similarity}` }, sample.output);
    }))));
}

load().catch(pageError);
