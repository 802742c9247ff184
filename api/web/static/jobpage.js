// One job: its status, its live log (resumed with Last-Event-ID), its results, its ledger events.
import { follow, get, post } from "./api.js";
import { badge, el, replace, table, when } from "./dom.js";

let current = null;

export function openJob(jobId) {
  closeJob();
  const page = { jobId, stopLog: null, status: null };
  current = page;
  document.getElementById("job-title").textContent = jobId;
  document.getElementById("log-text").textContent = "";
  refreshJob();
  page.stopLog = follow(`/api/jobs/${encodeURIComponent(jobId)}/logs?follow=true`, (event) => {
    const log = document.getElementById("log-text");
    const body = JSON.parse(event.data);
    if (event.event === "log") {
      log.append(document.createTextNode(body.text));
      document.getElementById("log-state").textContent = "following";
      return false;
    }
    if (event.event === "end") {
      document.getElementById("log-state").textContent = `ended (${body.status})`;
      return true;
    }
    return false;
  });
}

export function closeJob() {
  if (current && current.stopLog) current.stopLog();
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
  } catch (error) {
    replace(box, el("p", { class: "error" }, error.message));
    replace(document.querySelector("#job-events .body"));
  }
  const terminal = page.status && ["completed", "failed", "cancelled"].includes(page.status.status);
  document.getElementById("job-cancel").hidden = !page.status || terminal;
  document.getElementById("job-download").hidden = !terminal;
}

function renderStatus(box, s) {
  const field = (name, value) => el("div", { class: "field" }, el("dt", {}, name), el("dd", {}, value ?? ""));
  replace(box, el("dl", { class: "fields" },
    field("status", badge(s.status)), field("phase", s.phase), field("reason", s.reason ?? s.finish_reason),
    field("user", s.user_id), field("competition", s.competition_id), field("project", s.project_id),
    field("node", s.node), field("queue position", s.queue_position), field("estimated start", when(s.estimated_start_at)),
    field("submitted", when(s.created_at)), field("started", when(s.started_at)), field("ended", when(s.completed_at)),
    field("exit code", s.exit_code), field("expected time", `${s.expected_time}s`)));
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
  const results = await get(`/api/results/${encodeURIComponent(current.jobId)}`);
  const text = results.results ?? results.stdout;
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "application/octet-stream" })),
    download: `${current.jobId}-results.jsonl` });
  document.body.append(link);
  link.click();
  link.remove();
}
