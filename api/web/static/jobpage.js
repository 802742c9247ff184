// One job: its status, its live stdout and stderr (resumed with Last-Event-ID), its submitted code and
// config, its results file, its ledger events.
import { fetchFile, follow, get, post } from "./api.js";
import { badge, el, replace, seconds, table, when } from "./dom.js";
import { renderGpu } from "./gpuchart.js";

let current = null;

const STREAMS = { stdout: "log-text", stderr: "err-text" };
const GPU_REFRESH_MS = 5000; // samples are no ledger events: the chart is polled while the job runs

export function openJob(jobId) {
  closeJob();
  const page = { jobId, stops: [], status: null, submission: null, gpuDone: false, artifacts: null };
  current = page;
  document.getElementById("job-artifacts").hidden = true;
  document.getElementById("job-title").textContent = jobId;
  for (const id of Object.values(STREAMS)) document.getElementById(id).textContent = "";
  replace(document.querySelector("#job-submission .body"));
  replace(document.querySelector("#job-gpu .body"));
  showStream("stdout");
  refreshJob();
  for (const [stream, id] of Object.entries(STREAMS)) {
    const path = `/api/jobs/${encodeURIComponent(jobId)}/logs?follow=true&stream=${stream}`;
    page.stops.push(follow(path, (event) => followed(stream, id, event)));
  }
  const timer = setInterval(() => refreshGpu(page), GPU_REFRESH_MS);
  page.stops.push(() => clearInterval(timer));
}

// The job's GPU samples and summary (GET /api/jobs/{id}/gpu), drawn by gpuchart.js.
async function refreshGpu(page) {
  if (page.gpuDone || page !== current) return;
  const box = document.querySelector("#job-gpu .body");
  try {
    const doc = await get(`/api/jobs/${encodeURIComponent(page.jobId)}/gpu?limit=600`);
    if (page !== current) return;
    renderGpu(box, doc);
    page.gpuDone = ["completed", "failed", "cancelled"].includes(doc.status);
  } catch (error) {
    replace(box, el("p", { class: "error" }, error.message));
  }
}

// One stream's SSE events into its tab; the stdout stream also says where the log is.
function followed(stream, id, event) {
  const body = JSON.parse(event.data);
  if (event.event === "log") {
    document.getElementById(id).append(document.createTextNode(body.text));
    if (stream === "stdout") document.getElementById("log-state").textContent = "following";
    return false;
  }
  if (event.event === "end") {
    if (body.pruned) document.getElementById(id).append(document.createTextNode(body.pruned)); // retention removed it
    if (stream === "stdout") document.getElementById("log-state").textContent = `ended (${body.status})`;
    return true;
  }
  return false;
}

// The tabs: one console stream shown at a time.
export function showStream(stream) {
  for (const [name, id] of Object.entries(STREAMS)) {
    document.getElementById(id).hidden = name !== stream;
    document.getElementById(`tab-${name}`).setAttribute("aria-selected", String(name === stream));
  }
}

export function closeJob() {
  if (current) current.stops.forEach((stop) => stop());
  current = null;
}

export function jobOpen(streamId) {
  return current !== null && (streamId === undefined || streamId === `job-${current.jobId}`);
}

export async function refreshJob() {
  const page = current;
  if (!page) return;
  const box = document.querySelector("#job-status .body");
  try {
    const [status, events] = await Promise.all([
      get(`/api/status/${encodeURIComponent(page.jobId)}`),
      get(`/api/jobs/${encodeURIComponent(page.jobId)}/events`),
    ]);
    if (page !== current) return;
    page.status = status;
    renderStatus(box, status);
    renderEvents(events);
    if (!page.submission) page.submission = renderSubmission(page.jobId);
    refreshGpu(page);
  } catch (error) {
    replace(box, el("p", { class: "error" }, error.message));
    replace(document.querySelector("#job-events .body"));
  }
  const terminal = page.status && ["completed", "failed", "cancelled"].includes(page.status.status);
  document.getElementById("job-cancel").hidden = !page.status || terminal;
  // Only a job that wrote a results file has one to download (its console is in the tabs above).
  document.getElementById("job-download").hidden = !(terminal && page.status.has_results);
  if (terminal && !page.artifacts) page.artifacts = renderArtifacts(page.jobId);
}

// What the job left under outputs/, each a download (the list answers only the job's owner and admins).
async function renderArtifacts(jobId) {
  const section = document.getElementById("job-artifacts");
  const box = section.querySelector(".body");
  try {
    const doc = await get(`/api/jobs/${encodeURIComponent(jobId)}/artifacts`);
    if (!current || current.jobId !== jobId) return true;
    section.hidden = doc.artifacts.length === 0 && !doc.pruned && doc.skipped.length === 0;
    const rows = doc.artifacts.map((a) => el("tr", {},
      el("td", {}, el("a", { href: "#", class: "artifact", onclick: (e) => { e.preventDefault(); downloadArtifact(jobId, a.path); } }, a.path)),
      el("td", {}, a.size), el("td", {}, el("code", {}, a.digest.slice(0, 16)))));
    replace(box, doc.message ? el("p", { class: "pruned" }, doc.message) : null, table(["path", "bytes", "sha256"], rows),
      doc.skipped.map((s) => el("p", { class: "skipped" }, `not kept: ${s}`)));
  } catch (error) {
    replace(box, el("p", { class: "error" }, error.message));
  }
  return true;
}

async function downloadArtifact(jobId, path) {
  try {
    const encoded = path.split("/").map(encodeURIComponent).join("/");
    const file = await fetchFile(`/api/jobs/${encodeURIComponent(jobId)}/artifacts/${encoded}`);
    const link = el("a", { href: URL.createObjectURL(file.blob), download: file.name || path.split("/").pop() });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    replace(document.querySelector("#job-artifacts .body"), el("p", { class: "error" }, error.message));
  }
}

function renderStatus(box, s) {
  const field = (name, value) => el("div", { class: "field" }, el("dt", {}, name), el("dd", {}, value ?? ""));
  replace(box, el("dl", { class: "fields" },
    field("status", badge(s.status)), field("phase", s.phase), field("reason", s.finish_reason_text ?? s.reason),
    field("user", s.user_id), field("competition", s.competition_id), field("project", s.project_id),
    field("node", s.node), field("queue position", s.queue_position), field("estimated start", when(s.estimated_start_at)),
    field("submitted", when(s.created_at)), field("started", when(s.started_at)), field("ended", when(s.completed_at)),
    field("duration", seconds(s.duration_s)), field("exit code", s.exit_code),
    field("expected time", seconds(s.expected_time)), field("entrypoint", s.entrypoint),
    field("resumed from", s.resume_from ? el("a", { href: `#/job/${s.resume_from}` }, s.resume_from) : null)));
}

// The code and config as submitted (the API answers only the job's owner and admins).
async function renderSubmission(jobId) {
  const box = document.querySelector("#job-submission .body");
  try {
    const doc = await get(`/api/jobs/${encodeURIComponent(jobId)}/submission`);
    if (!current || current.jobId !== jobId) return true;  // another job's page by now
    replace(box, el("h3", {}, "config"), el("pre", { class: "log code", id: "job-config" }, JSON.stringify(doc.config, null, 2)),
      el("h3", {}, "code"), el("pre", { class: "log code", id: "job-code" }, doc.code));
  } catch (error) {
    replace(box, el("p", { class: "error" }, error.message));
  }
  return true;
}

function renderEvents(doc) {
  const rows = doc.events.map((e) => el("tr", {},
    el("td", {}, e.position), el("td", {}, when(e.recorded_at)), el("td", {}, e.type), el("td", {}, e.actor),
    el("td", {}, el("code", {}, JSON.stringify(e.event)))));
  replace(document.querySelector("#job-events .body"), table(["position", "recorded", "event", "actor", "payload"], rows));
}

export async function cancelJob() {
  if (!current) return;
  try {
    await post(`/api/cancel/${encodeURIComponent(current.jobId)}`);
  } catch (error) {
    replace(document.querySelector("#job-status .body"), el("p", { class: "error" }, error.message));
  }
  await refreshJob();
}

export async function downloadResults() {
  if (!current) return;
  try {
    const file = await fetchFile(`/api/jobs/${encodeURIComponent(current.jobId)}/results-file`);
    const link = el("a", { href: URL.createObjectURL(file.blob), download: file.name || `${current.jobId}-results.jsonl` });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    replace(document.querySelector("#job-status .body"), el("p", { class: "error" }, error.message));
  }
}
