"use strict";
// Eval reports, and a form that runs one: upload the held-out file, then POST /v1/openft/evals.
async function loadEvals() {
  const evals = await apiAll("/openft/evals");
  document.querySelector("#evals tbody").replaceChildren(...evals.map((e) => {
    const best = e.arms.find((arm) => arm.name === e.ranking[0]);
    return el("tr", {},
      el("td", {}, el("a", { href: `/evals/${e.id}` }, e.id)),
      el("td", {}, e.model), el("td", {}, e.examples.length),
      el("td", {}, best.title), el("td", {}, fmtTime(e.created_at)));
  }));
}

async function loadApiRuns() {
  const evals = await api("/evals", { params: { order: "desc", limit: 20 } });
  const rows = [];
  for (const evaluation of evals.data) {
    const runs = await api(`/evals/${evaluation.id}/runs`, { params: { order: "desc", limit: 20 } });
    for (const run of runs.data) {
      const counts = run.result_counts;
      rows.push(el("tr", {},
        el("td", {}, evaluation.name || evaluation.id),
        el("td", {}, el("a", { href: `/evals/${evaluation.id}/runs/${run.id}` }, run.name)),
        el("td", {}, run.model || "—"), el("td", {}, statusBadge(run.status)),
        el("td", {}, `${counts.passed}/${counts.total}`), el("td", {}, fmtTime(run.created_at))));
    }
  }
  document.querySelector("#api-runs tbody").replaceChildren(...rows);
}

async function loadModels() {
  const tuned = (await api("/models")).data.filter((m) => m.id.startsWith("ft:"));
  document.getElementById("eval-model").replaceChildren(...tuned.map((m) => el("option", { value: m.id }, m.id)));
}

document.getElementById("eval-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("eval-status");
  const button = document.getElementById("run-eval");
  status.classList.remove("error");
  button.disabled = true;
  try {
    const form = new FormData();
    form.append("file", document.getElementById("eval-file").files[0]);
    form.append("purpose", "evals");
    const file = await api("/files", { method: "POST", form });
    show(status, `Running the eval on ${file.filename}: four arms, each a run of its examples together…`);
    const report = await api("/openft/evals", {
      method: "POST",
      json: {
        model: document.getElementById("eval-model").value,
        file: file.id,
        shots: Number(document.getElementById("eval-shots").value),
        max_tokens: Number(document.getElementById("eval-max-tokens").value),
      },
    });
    location.href = `/evals/${report.id}`;
  } catch (error) {
    showError(status, error);
  } finally {
    button.disabled = false;
  }
});

loadModels().catch(pageError);
loadEvals().catch(pageError);
loadApiRuns().catch(pageError);
