"use strict";
// One job: status and progress, loss/accuracy charts from its metrics events, checkpoints,
// events, and the cancel/pause/resume buttons. Polled every 2 s until the job has finished.
// A DPO job adds its reward margin and reward accuracy charts (trainer/dpo.py's metrics).
const jobId = document.getElementById("job").dataset.jobId;
const TERMINAL = ["succeeded", "failed", "cancelled"];
const LOSS = [
  ["train_loss", "train", "#2563eb", false],
  ["valid_loss", "validation", "#dc2626", true],
  ["full_valid_loss", "full validation", "#16a34a", false],
];
const ACCURACY = [
  ["train_mean_token_accuracy", "train", "#2563eb", false],
  ["valid_mean_token_accuracy", "validation", "#dc2626", true],
  ["full_valid_mean_token_accuracy", "full validation", "#16a34a", false],
];
const MARGIN = [
  ["train_rewards_margins", "train", "#2563eb", false],
  ["valid_rewards_margins", "validation", "#dc2626", true],
  ["full_valid_rewards_margins", "full validation", "#16a34a", false],
];
const REWARD_ACCURACY = [
  ["train_rewards_accuracies", "train", "#2563eb", false],
  ["valid_rewards_accuracies", "validation", "#dc2626", true],
  ["full_valid_rewards_accuracies", "full validation", "#16a34a", false],
];

let timer;

function series(metrics, specs) {
  return specs.map(([key, name, color, dashed]) => ({
    name, color, dashed,
    points: metrics.filter((m) => typeof m[key] === "number").map((m) => [m.step, m[key]]),
  }));
}

async function refresh() {
  const [job, events, checkpoints] = await Promise.all([
    api(`/fine_tuning/jobs/${jobId}`),
    apiAll(`/fine_tuning/jobs/${jobId}/events`, 1000),
    apiAll(`/fine_tuning/jobs/${jobId}/checkpoints`),
  ]);
  renderJob(job, events);
  const metrics = events.filter((e) => e.type === "metrics" && e.data).map((e) => e.data).sort((a, b) => a.step - b.step);
  drawChart(document.getElementById("loss-chart"), series(metrics, LOSS));
  drawChart(document.getElementById("accuracy-chart"), series(metrics, ACCURACY));
  const dpo = job.method && job.method.type === "dpo";
  document.getElementById("preference-charts").hidden = !dpo;
  if (dpo) {
    drawChart(document.getElementById("margin-chart"), series(metrics, MARGIN));
    drawChart(document.getElementById("reward-accuracy-chart"), series(metrics, REWARD_ACCURACY));
  }
  renderCheckpoints(checkpoints);
  document.getElementById("events").replaceChildren(...events.map((e) =>
    el("li", { class: `event ${e.level}` }, el("time", {}, fmtTime(e.created_at)), " ", e.message)));
  clearTimeout(timer);  // one polling loop, even after a button's own refresh
  if (!TERMINAL.includes(job.status)) timer = setTimeout(() => refresh().catch(pageError), 2000);
}

function renderJob(job, events) {
  const status = document.getElementById("job-status");
  status.className = `status ${job.status}`;
  status.textContent = job.status;
  const last = events.find((e) => e.type === "metrics" && e.data);
  const bar = document.getElementById("job-progress-bar");
  const fraction = job.status === "succeeded" ? 1 : last ? last.data.step / last.data.total_steps : 0;
  bar.style.width = `${Math.round(fraction * 100)}%`;
  let progress = last ? `Step ${last.data.step} of ${last.data.total_steps}` : "Not started";
  if (job.status === "running" && job.estimated_finish) {
    progress += ` · about ${fmtDuration(Math.max(0, job.estimated_finish - Date.now() / 1000))} left`;
  }
  document.getElementById("job-progress").textContent = progress;
  // a DPO job's hyperparameters are in its method only (top-level null, as OpenAI's)
  const method = job.method ? job.method.type : "supervised";
  const hp = job.method ? job.method[method].hyperparameters : job.hyperparameters;
  const details = [
    ["model", job.model],
    ["fine-tuned model", job.fine_tuned_model ? el("a", { href: `/playground?b=${encodeURIComponent(job.fine_tuned_model)}&a=${encodeURIComponent(job.model)}` }, job.fine_tuned_model) : "—"],
    ["training file", job.training_file],
    ["validation file", job.validation_file || "—"],
    ["method", method],
    ["hyperparameters", `n_epochs ${hp.n_epochs}, batch_size ${hp.batch_size}, learning_rate_multiplier ${hp.learning_rate_multiplier}`
      + (method === "dpo" ? `, beta ${hp.beta}` : "")],
    ["trained tokens", job.trained_tokens ? job.trained_tokens.toLocaleString() : "—"],
    ["created", fmtTime(job.created_at)],
    ["finished", fmtTime(job.finished_at) || "—"],
  ];
  if (job.error) details.push(["error", `${job.error.code}: ${job.error.message}`]);
  document.getElementById("job-details").replaceChildren(...details.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  document.getElementById("pause").hidden = job.status !== "running";
  document.getElementById("resume").hidden = job.status !== "paused";
  document.getElementById("cancel").hidden = TERMINAL.includes(job.status);
  // A job distilled from stored completions (Logs page) kept some apart for its eval.
  const heldOut = job.metadata && job.metadata.held_out_file;
  const evalButton = document.getElementById("eval-held-out");
  evalButton.hidden = !(heldOut && job.status === "succeeded");
  evalButton.onclick = async () => {
    evalButton.disabled = true;
    try {
      const report = await api("/openft/evals", { method: "POST", json: { model: job.fine_tuned_model, file: heldOut } });
      location.href = `/evals/${report.id}`;
    } catch (error) {
      pageError(error);
    } finally {
      evalButton.disabled = false;
    }
  };
}

function renderCheckpoints(checkpoints) {
  document.querySelector("#checkpoints tbody").replaceChildren(...checkpoints.map((c) => el("tr", {},
    el("td", {}, c.step_number),
    el("td", {}, el("code", {}, c.fine_tuned_model_checkpoint)),
    el("td", {}, Object.entries(c.metrics).filter(([k]) => k !== "step").map(([k, v]) => `${k} ${fmtNumber(v)}`).join(", ")),
    el("td", {}, el("a", { href: `/playground?a=${encodeURIComponent(c.fine_tuned_model_checkpoint)}` }, "Chat")))));
}

for (const action of ["pause", "resume", "cancel"]) {
  document.getElementById(action).addEventListener("click", async () => {
    if (action === "cancel" && !confirm("Cancel this job?")) return;
    try {
      await api(`/fine_tuning/jobs/${jobId}/${action}`, { method: "POST" });
      await refresh();
    } catch (error) {
      pageError(error);
    }
  });
}

refresh().catch(pageError);
