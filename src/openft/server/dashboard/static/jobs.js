"use strict";
// The jobs list, refreshed every 3 s while any job is active.
const ACTIVE = ["validating_files", "queued", "running"];

async function refresh() {
  const jobs = await apiAll("/fine_tuning/jobs");
  const rows = await Promise.all(jobs.map(async (job) => {
    const progress = ACTIVE.includes(job.status) || job.status === "paused" ? await jobProgress(job.id) : null;
    const eta = job.status === "running" && job.estimated_finish ? fmtDuration(Math.max(0, job.estimated_finish - Date.now() / 1000)) : "";
    return el("tr", { "data-job-id": job.id },
      el("td", {}, el("a", { href: `/jobs/${job.id}` }, job.id)),
      el("td", {}, job.model),
      el("td", {}, statusBadge(job.status)),
      el("td", {}, progress ? progressCell(progress) : job.status === "succeeded" ? "done" : ""),
      el("td", {}, eta),
      el("td", {}, job.fine_tuned_model || ""),
      el("td", {}, fmtTime(job.created_at)));
  }));
  document.querySelector("#jobs tbody").replaceChildren(...rows);
  document.getElementById("no-jobs").hidden = jobs.length > 0;
  if (jobs.some((job) => ACTIVE.includes(job.status))) setTimeout(() => refresh().catch(pageError), 3000);
}

function progressCell({ step, total }) {
  return el("span", {}, el("progress", { max: total, value: step }), ` ${step}/${total}`);
}

refresh().catch(pageError);
