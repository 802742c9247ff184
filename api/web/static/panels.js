// The overview panels: each takes its data document and redraws its section.
import uPlot from "./uPlot.esm.js";
import { badge, clock, el, hidden, replace, seconds, table, when } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function jobLink(ref, short = false) {
  if (!ref.job_id) return hidden();
  const text = short && ref.job_id.length > 12 ? `${ref.job_id.slice(0, 10)}…` : ref.job_id;
  return el("a", { href: `#/job/${encodeURIComponent(ref.job_id)}`, class: "job", title: ref.job_id }, text);
}

export function renderNodes(box, doc, { isAdmin, onDrain }) {
  const rows = doc.nodes.map((n) => {
    const job = n.current_job;
    const why = n.down_reason ?? n.drain_reason;
    const reason = why ? el("div", { class: "muted reason" }, why) : null;
    const current = job ? el("div", {},
      job.job_id ? jobLink(job) : hidden("a job"),
      job.user_id ? el("span", { class: "muted" }, ` by ${job.user_id}`) : null,
      el("div", { class: "elapsed", "data-started": job.started_at || "", "data-expected": job.expected_time || 0 },
        `${seconds(job.elapsed_s)} / ${seconds(job.expected_time)}`)) : el("span", { class: "muted" }, "none");
    const action = isAdmin && doc.live
      ? el("button", { type: "button", class: "small", onclick: () => onDrain(n.name, !n.drained) }, n.drained ? "Undrain" : "Drain")
      : null;
    return el("tr", { "data-node": n.name },
      el("td", {}, n.name), el("td", { class: "node-state" }, badge(n.status), reason),
      el("td", {}, current), el("td", {}, `${n.running}/${n.slots}`),
      el("td", {}, String(n.queue_length)), el("td", {}, seconds(n.total_wait_time)), el("td", {}, action));
  });
  replace(box, table(["node", "state", "current job (elapsed / expected)", "slots", "queued", "wait", ""], rows),
    doc.slurm ? slurmNodes(doc.slurm) : null);
}

// With a [slurm] table: the cluster's partitions and nodes as sinfo shows them.
function slurmNodes(slurm) {
  const parts = slurm.partitions.map((p) => `${p.name}: ${p.nodes} node(s), ${p.gpus} GPU(s)`).join(" · ");
  const rows = slurm.nodes.map((n) => el("tr", { "data-slurm-node": n.name },
    el("td", {}, n.name), el("td", {}, badge(n.state), n.reason ? el("div", { class: "muted reason" }, n.reason) : null),
    el("td", {}, n.partitions.join(", ")), el("td", {}, `${n.gpus_used}/${n.gpus}`)));
  return el("div", { class: "slurm" },
    el("p", { class: "muted" }, `Slurm${slurm.reachable ? "" : " (unreachable: " + (slurm.error || "") + ")"}: ${parts || "no partitions"}`),
    table(["Slurm node", "state", "partitions", "GPUs used"], rows));
}

// The score's factors (docs/user-guide.md): fair share, age and priority level, and their weighted sum.
function factors(q) {
  if (q.score === null || q.score === undefined) return "";
  return `score ${q.score.toFixed(3)} · fair share ${q.fairshare.toFixed(3)} · age ${q.age.toFixed(3)} · priority ${q.priority}`;
}

export function renderQueue(box, doc) {
  const rows = doc.queue.map((q) => el("tr", {},
    el("td", {}, q.queue_position ?? "–"), el("td", {}, jobLink(q, true)), el("td", {}, q.user_id ?? ""),
    el("td", {}, q.competition_id ?? ""), el("td", { class: "reason" }, q.reason ?? q.phase),
    el("td", { class: "factors nowrap" }, factors(q)),
    el("td", {}, q.node ?? ""), el("td", { class: "nowrap" }, clock(q.estimated_start_at)), el("td", {}, seconds(q.waiting_s))));
  const plan = el("p", { class: "muted plan" }, "Plan: ",
    doc.plan.map((p) => `${p.node} ${p.queue_length} queued, free in ${seconds(p.wait_s)}`).join(" · ") || "no nodes");
  // The panel holds the head of the queue; a long queue is read page by page from GET /api/queue.
  const more = doc.pending_total > doc.queue.length
    ? el("p", { class: "muted more" }, `The first ${doc.queue.length} of ${doc.pending_total} pending jobs; every one, page by page: GET /api/queue.`)
    : null;
  replace(box, doc.queue.length ? table(["#", "job", "user", "competition", "reason", "why this place", "node", "starts", "waiting"], rows)
    : el("p", { class: "muted" }, "The queue is empty."), more, plan);
}

// An array's tasks on this page as one row, at its first task's place, linking to the array's page.
function arrayRows(jobs) {
  const arrays = new Map();
  const rows = [];
  for (const j of jobs) {
    if (!j.array_id) { rows.push(j); continue; }
    if (!arrays.has(j.array_id)) { arrays.set(j.array_id, []); rows.push({ array: j.array_id, tasks: arrays.get(j.array_id) }); }
    arrays.get(j.array_id).push(j);
  }
  return rows;
}

function arrayRow(row) {
  const first = row.tasks[0];
  const count = (status) => row.tasks.filter((t) => t.status === status).length;
  const status = count("running") ? "running" : count("pending") ? "pending" : first.status;
  const counts = ["pending", "running", "completed", "failed", "cancelled"].filter(count).map((s) => `${count(s)} ${s}`).join(" · ");
  return el("tr", { "data-array": row.array },
    el("td", {}, el("a", { href: `#/array/${encodeURIComponent(row.array)}`, class: "job array" }, `array ${row.array}`)),
    el("td", {}, first.user_id), el("td", {}, first.competition_id), el("td", { class: "job-status" }, badge(status)),
    el("td", {}, `${row.tasks.length} task(s) here: ${counts}`), el("td", {}, ""), el("td", {}, when(first.created_at)), el("td", {}, ""));
}

export function renderJobs(box, doc) {
  const rows = arrayRows(doc.jobs).map((j) => j.array ? arrayRow(j) : el("tr", { "data-job": j.job_id },
    el("td", {}, jobLink(j)), el("td", {}, j.user_id), el("td", {}, j.competition_id),
    el("td", { class: "job-status" }, badge(j.status)), el("td", {}, j.reason ?? j.finish_reason_text ?? j.finish_reason ?? ""),
    el("td", {}, j.node ?? ""), el("td", {}, when(j.created_at)), el("td", {}, j.exit_code ?? "")));
  const total = doc.total === null ? "" : doc.total > 10000 ? "10000+ jobs" : `${doc.total} jobs`;
  replace(box, el("p", { class: "muted" }, total),
    table(["job", "user", "competition", "status", "reason", "node", "submitted", "exit"], rows));
}

export function renderLanes(box, doc, onPick) {
  // The axis starts at the first segment (not at the window's start): short histories stay readable.
  const until = Date.parse(doc.at);
  const first = Math.min(until, ...doc.segments.map((s) => s.start_ms));
  const since = Math.max(Date.parse(doc.since), first - (until - first) * 0.05 - 1000);
  const span = Math.max(1, until - since);
  const rows = doc.nodes.flatMap((n) => Array.from({ length: n.slots }, (_, slot) => ({ key: `${n.name}/${slot}`,
    label: n.slots > 1 ? `${n.name} #${slot}` : n.name })));
  const width = 1000, lane = 26, left = 110, height = lane * rows.length + 22;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "lanes");
  const add = (parent, tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    parent.append(node);
    return node;
  };
  const x = (ms) => left + ((ms - since) / span) * (width - left - 10);
  rows.forEach((r, i) => {
    add(svg, "text", { x: 4, y: i * lane + 17, class: "lane-name" }, r.label);
    add(svg, "line", { x1: left, x2: width - 10, y1: i * lane + lane, y2: i * lane + lane, class: "lane-line" });
  });
  for (const s of doc.segments) {
    const row = rows.findIndex((r) => r.key === `${s.node}/${s.slot}`);
    if (row < 0) continue;
    const kind = s.kind === "run" ? `run ${s.status}` : s.planned ? "wait planned" : "wait";
    const rect = add(svg, "rect", { x: x(s.start_ms), y: row * lane + (s.kind === "run" ? 4 : 9), height: s.kind === "run" ? 18 : 8,
      width: Math.max(1.5, x(s.end_ms) - x(s.start_ms)), class: `seg ${kind}` });
    add(rect, "title", {}, `${s.job_id ?? "another user's job"} ${s.kind} ${when(new Date(s.start_ms).toISOString())} → ${when(new Date(s.end_ms).toISOString())}`);
    if (s.job_id) rect.addEventListener("click", () => onPick(s.job_id));
  }
  add(svg, "text", { x: left, y: height - 4, class: "axis" }, when(new Date(since).toISOString()));
  add(svg, "text", { x: width - 10, y: height - 4, class: "axis end" }, when(doc.at));
  const legend = el("p", { class: "legend muted" }, [["wait", "waiting"], ["wait planned", "planned"], ["run", "running"],
    ["run completed", "completed"], ["run failed", "failed"], ["run cancelled", "cancelled"]]
    .map(([kind, label]) => el("span", {}, el("i", { class: `swatch ${kind}` }), label)));
  const queue = doc.pending_total > doc.pending_drawn
    ? el("p", { class: "muted more" }, `Planned waits of the first ${doc.pending_drawn} of ${doc.pending_total} pending jobs.`) : null;
  replace(box, svg, legend, doc.truncated ? el("p", { class: "muted" }, "Showing the newest jobs of the window.") : null, queue);
}

let chart = null;
export function renderUtilisation(box, doc) {
  const data = [doc.times, doc.percent];
  if (chart && chart.root.isConnected) { chart.setData(data); return; }
  box.replaceChildren();
  chart = new uPlot({
    width: Math.max(280, box.clientWidth || 480), height: 180,
    scales: { y: { range: [0, 100] } },
    series: [{}, { label: "busy slots %", stroke: "#2b6cb0", fill: "rgba(43,108,176,0.15)" }],
    axes: [{}, { values: (u, ticks) => ticks.map((t) => `${t}%`) }],
  }, data, box);
}

export function renderUsage(box, doc) {
  const rows = doc.users.map((u) => el("tr", {},
    el("td", {}, u.user_id), el("td", {}, u.jobs), el("td", {}, u.running), el("td", {}, u.gpu_hours >= 1 ? `${u.gpu_hours.toFixed(2)} h` : seconds(u.gpu_hours * 3600)),
    el("td", {}, u.success_rate_percent === null ? "–" : `${u.success_rate_percent}%`),
    el("td", {}, `${u.completed}/${u.failed}/${u.cancelled}`)));
  replace(box, rows.length ? table(["user", "jobs", "running", "GPU time", "success", "ok/failed/cancelled"], rows)
    : el("p", { class: "muted" }, "No jobs in this window."));
}
