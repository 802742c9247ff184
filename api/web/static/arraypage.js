// One job array: its counts per state, each task (a link to its job page), and a button that
// cancels every task not yet ended in one request (one write on the server).
import { get, post } from "./api.js";
import { badge, el, replace } from "./dom.js";

let current = null;

export function openArray(arrayId) {
  current = { arrayId };
  document.getElementById("array-title").textContent = arrayId;
  refreshArray();
}

export function closeArray() {
  current = null;
}

// A task's stream names the array: the tasks' ids share the array id's first 20 characters. A user's
// change stream carries bare positions (no stream): any change may be the array's.
export function arrayOpen(streamId) {
  if (current === null) return false;
  return streamId === undefined || String(streamId).startsWith(`job-${current.arrayId.slice(0, 20)}`);
}

export async function refreshArray() {
  const page = current;
  if (!page) return;
  const box = document.querySelector("#array-status .body");
  try {
    const doc = await get(`/api/arrays/${encodeURIComponent(page.arrayId)}`);
    if (page !== current) return;
    const counts = Object.entries(doc.counts).filter(([, n]) => n).map(([name, n]) => `${n} ${name}`).join(" · ");
    const rows = doc.task_list.map((t) => el("tr", { "data-task": t.index },
      el("td", {}, t.index), el("td", {}, el("a", { href: `#/job/${encodeURIComponent(t.job_id)}`, class: "job" }, t.job_id)),
      el("td", { class: "job-status" }, badge(t.status)), el("td", {}, t.reason ?? t.phase),
      el("td", {}, t.exit_code ?? ""), el("td", {}, t.params ? el("code", {}, JSON.stringify(t.params)) : "")));
    replace(box, el("p", { id: "array-counts" }, `${doc.tasks} tasks, at most ${doc.width} at once: ${counts}`),
      el("table", {}, el("thead", {}, el("tr", {}, ["index", "task", "status", "reason", "exit", "parameters"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
    document.getElementById("array-cancel").hidden = doc.done;
  } catch (error) {
    replace(box, el("p", { class: "error" }, error.message));
  }
}

export async function cancelArray() {
  if (!current) return;
  try {
    await post(`/api/arrays/${encodeURIComponent(current.arrayId)}/cancel`);
  } catch (error) {
    replace(document.querySelector("#array-status .body"), el("p", { class: "error" }, error.message));
    return;
  }
  await refreshArray();
}
