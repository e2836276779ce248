"use strict";
// Upload → the data check report → a job on the file.
const uploadResult = document.getElementById("upload-result");
const checkReport = document.getElementById("check-report");

document.getElementById("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("upload-file").files[0];
  const form = new FormData();
  form.append("file", file);
  form.append("purpose", "fine-tune");
  uploadResult.classList.remove("error");
  show(uploadResult, `Uploading ${file.name}…`);
  checkReport.hidden = true;
  try {
    const uploaded = await api("/files", { method: "POST", form });
    show(uploadResult, `Uploaded ${uploaded.filename} as `, el("code", {}, uploaded.id), ` (${uploaded.bytes} bytes). Checking…`);
    loadFiles().catch(pageError);
    await checkFile(uploaded.id);
  } catch (error) {
    showError(uploadResult, error);
  }
});

async function checkFile(fileId) {
  show(checkReport, el("p", { class: "muted" }, `Checking ${fileId}…`));
  const report = await api(`/openft/files/${fileId}/check`);
  show(checkReport, ...renderReport(report));
  show(uploadResult, "Checked ", el("code", {}, fileId), report.ok ? ": ready to train." : ": fix the errors before training.");
  if (report.ok) offerJob(fileId, report);
}

function renderReport(report) {
  const training = report.training;
  const parts = [el("h2", {}, "Data check ", el("span", { class: report.ok ? "status succeeded" : "status failed", id: "check-ok" }, report.ok ? "OK" : "errors"))];
  for (const [title, issues, cls] of [["Errors", training.errors, "error"], ["Warnings", training.warnings, "warning"]]) {
    if (!issues.length) continue;
    parts.push(el("h3", {}, `${title} (${issues.length})`),
      el("ul", { class: cls }, issues.slice(0, 50).map((i) => el("li", {}, el("code", {}, i.code), " ", i.message))));
  }
  const stats = training.stats;
  if (stats) {
    const dist = (d) => `min ${d.min}, median ${d.median}, mean ${fmtNumber(d.mean, 1)}, max ${d.max}`;
    const rows = [
      ["examples", stats.examples],
      ["tokens per example", dist(stats.tokens_per_example)],
      ["tokens (one epoch)", stats.tokens.toLocaleString()],
      ["trained tokens", stats.trained_tokens.toLocaleString()],
      ["examples truncated", stats.truncated_lines.length],
    ];
    const hp = report.hyperparameters;
    rows.push(["hyperparameters (auto)", `n_epochs ${hp.n_epochs}, batch_size ${hp.batch_size}, learning_rate_multiplier ${hp.learning_rate_multiplier}`]);
    if (report.cost) rows.push(["cost at OpenAI", `$${fmtNumber(report.cost.usd, 4)} (${report.billed_tokens.toLocaleString()} billed tokens at ${report.cost.model}'s $${report.cost.usd_per_1k_tokens} / 1K)`]);
    if (report.eta) rows.push(["time here", `~${fmtDuration(report.eta.seconds)} at ${fmtNumber(report.eta.tokens_per_second, 0)} tokens/s`]);
    parts.push(el("table", { class: "details", id: "check-stats" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
  }
  return parts;
}

async function offerJob(fileId) {
  document.getElementById("job-training-file").value = fileId;
  const models = (await api("/models")).data.filter((m) => m.owned_by === "system");
  const select = document.getElementById("job-model");
  select.replaceChildren(...models.map((m) => el("option", { value: m.id, selected: m.id === "gpt-3.5-turbo" }, m.id)));
  const files = (await apiAll("/files")).filter((f) => f.purpose === "fine-tune" && f.id !== fileId);
  document.getElementById("job-validation-file").replaceChildren(
    el("option", { value: "" }, "none"), ...files.map((f) => el("option", { value: f.id }, `${f.filename} (${f.id})`)));
  document.getElementById("job-card").hidden = false;
}

document.getElementById("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const value = (id) => document.getElementById(id).value.trim();
  const hyperparameters = {};
  if (value("job-n-epochs")) hyperparameters.n_epochs = Number(value("job-n-epochs"));
  if (value("job-batch-size")) hyperparameters.batch_size = Number(value("job-batch-size"));
  if (value("job-lr")) hyperparameters.learning_rate_multiplier = Number(value("job-lr"));
  const body = { training_file: value("job-training-file"), model: value("job-model"), hyperparameters };
  if (value("job-suffix")) body.suffix = value("job-suffix");
  if (value("job-validation-file")) body.validation_file = value("job-validation-file");
  try {
    const job = await api("/fine_tuning/jobs", { method: "POST", json: body });
    location.href = `/jobs/${job.id}`;
  } catch (error) {
    showError(document.getElementById("job-error"), error);
  }
});

async function loadFiles() {
  const files = await apiAll("/files");
  document.querySelector("#files tbody").replaceChildren(...files.map((f) => el("tr", {},
    el("td", {}, el("code", {}, f.id)), el("td", {}, f.filename), el("td", {}, f.purpose),
    el("td", {}, f.bytes.toLocaleString()), el("td", {}, fmtTime(f.created_at)),
    el("td", {}, f.purpose === "fine-tune" ? el("button", { class: "link", onclick: () => checkFile(f.id).catch(pageError) }, "Check / train") : ""))));
}

loadFiles().catch(pageError);
