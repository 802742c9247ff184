// The dashboard page: sign-in, routing, the time slider, and live refresh from the event stream.
import { follow, get, HttpError, post, token } from "./api.js";
import { el, replace, seconds, when } from "./dom.js";
import { arrayOpen, cancelArray, closeArray, openArray, refreshArray } from "./arraypage.js";
import { cancelJob, closeJob, downloadResults, jobOpen, openJob, refreshJob, showStream } from "./jobpage.js";
import { renderJobs, renderLanes, renderNodes, renderQueue, renderUsage, renderUtilisation } from "./panels.js";

const state = { asOf: null, head: 0, who: null, stopEvents: null, cursors: [], before: null, loading: null, again: false };
const $ = (id) => document.getElementById(id);
const body = (panel) => document.querySelector(`#panel-${panel} .body`);

function asOfParam() { return state.asOf === null ? {} : { as_of: state.asOf }; }

function filters() {
  const form = new FormData($("job-filters"));
  return Object.fromEntries([...form.entries()].filter(([, v]) => v !== ""));
}

async function panel(name, path, params, render) {
  try {
    const doc = await get(path, { ...asOfParam(), ...params });
    render(body(name), doc);
    body(name).dataset.position = doc.position;
    return doc;
  } catch (error) {
    replace(body(name), el("p", { class: "error" }, error instanceof HttpError ? error.message : String(error)));
    return null;
  }
}

// One refresh at a time; events that arrive meanwhile ask for one more, so bursts coalesce.
async function loadAll() {
  if (state.loading) { state.again = true; return state.loading; }
  state.loading = (async () => {
    do {
      state.again = false;
      const isAdmin = Boolean(state.who && state.who.is_admin);
      const span = { window: $("window").value };
      const work = [
        panel("nodes", "/dashboard/data/nodes", {}, (box, doc) => renderNodes(box, doc, { isAdmin, onDrain: drain })),
        panel("queue", "/dashboard/data/queue", {}, renderQueue),
        panel("lanes", "/dashboard/data/lanes", span, (box, doc) => renderLanes(box, doc, (id) => { location.hash = `#/job/${id}`; })),
        panel("util", "/dashboard/data/utilisation", span, renderUtilisation),
      ];
      if (state.who) {
        work.push(panel("jobs", "/dashboard/data/jobs", { ...filters(), before: state.before }, (box, doc) => {
          renderJobs(box, doc);
          $("next-page").disabled = doc.next_before === null;
          $("next-page").dataset.before = doc.next_before ?? "";
        }));
        work.push(panel("usage", "/dashboard/data/usage", span, renderUsage));
      }
      const [nodes] = await Promise.all(work);
      if (nodes) showInstant(nodes);
    } while (state.again);
    state.loading = null;
  })();
  return state.loading;
}

function showInstant(doc) {
  const slider = $("slider");
  if (doc.live) {
    state.head = Math.max(state.head, doc.position);
    slider.max = state.head;
    slider.value = state.head;
  } else {
    slider.value = doc.position;
  }
  $("asof-label").textContent = doc.live ? `live · position ${doc.position}` : `position ${doc.position} · ${when(doc.at)}`;
  $("live").classList.toggle("on", doc.live);
  document.body.classList.toggle("past", !doc.live);
}

function setAsOf(value) {
  state.asOf = value === null || (/^\d+$/.test(value) && Number(value) >= state.head) ? null : value;
  loadAll();
}

async function drain(node, on) {
  await post(`/api/admin/nodes/${encodeURIComponent(node)}/${on ? "drain" : "undrain"}`).catch((e) => alert(e.message));
  loadAll();
}

function listen() {
  if (state.stopEvents) state.stopEvents();
  // Admins follow the ledger's own event stream. A user's carries only their jobs' events and a
  // visitor gets none, so they follow the bare positions (enough to know that something moved).
  const admin = Boolean(state.who && state.who.is_admin);
  const path = admin ? `/api/events/stream?after=${state.head}` : "/dashboard/data/changes";
  state.stopEvents = follow(path, (event) => {
    const record = JSON.parse(event.data);
    state.head = Math.max(state.head, record.position);
    $("slider").max = state.head;
    if (state.asOf === null) {
      $("slider").value = state.head;
      loadAll();
    }
    if (jobOpen(record.stream)) refreshJob();
    if (arrayOpen(record.stream)) refreshArray();
    return false;
  }, { lastId: admin ? String(state.head) : null });
}

async function signIn(secret) {
  token.set(secret);
  const ledger = await get("/dashboard/data/ledger").catch((error) => { token.clear(); throw error; });
  if (!ledger.signed_in) { token.clear(); throw new Error("Invalid token"); }
  return ledger;
}

async function start() {
  let ledger;
  try { ledger = await get("/dashboard/data/ledger"); } catch (error) { token.clear(); ledger = await get("/dashboard/data/ledger"); }
  state.who = ledger.signed_in;
  state.head = ledger.head;
  $("slider").max = ledger.head;
  $("slider").value = ledger.head;
  $("signin").hidden = Boolean(state.who);
  $("whoami").hidden = !state.who;
  $("who").textContent = state.who ? `${state.who.user_id}${state.who.is_admin ? " (admin)" : ""}` : "";
  document.body.classList.toggle("anonymous", !state.who);
  document.body.classList.toggle("admin", Boolean(state.who && state.who.is_admin));
  listen();
  route();
}

function route() {
  const match = location.hash.match(/^#\/job\/(.+)$/);
  const array = location.hash.match(/^#\/array\/(.+)$/);
  $("overview").hidden = Boolean(match || array);
  $("jobpage").hidden = !match;
  $("arraypage").hidden = !array;
  closeArray();
  if (array && state.who) { closeJob(); openArray(decodeURIComponent(array[1])); return; }
  if (match && state.who) { openJob(decodeURIComponent(match[1])); return; }
  closeJob();
  loadAll();
}

// Elapsed times advance every second between events (a display clock, not a request).
function tick() {
  if (state.asOf !== null) return;
  for (const cell of document.querySelectorAll(".elapsed[data-started]")) {
    if (!cell.dataset.started) continue;
    cell.textContent = `${seconds((Date.now() - Date.parse(cell.dataset.started)) / 1000)} / ${seconds(Number(cell.dataset.expected))}`;
  }
}

function bind() {
  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try { await signIn($("token").value.trim()); $("token").value = ""; await start(); }
    catch (error) { $("signin-error").textContent = error.message; }
  });
  $("signout").addEventListener("click", () => { token.clear(); closeJob(); location.hash = "#/"; start(); });
  let timer = null;
  $("slider").addEventListener("input", () => {
    clearTimeout(timer);
    const value = $("slider").value;
    timer = setTimeout(() => setAsOf(value), 120);
  });
  $("live").addEventListener("click", () => setAsOf(null));
  $("window").addEventListener("change", () => loadAll());
  $("asof-form").addEventListener("submit", (event) => { event.preventDefault(); setAsOf($("asof-time").value.trim() || null); });
  $("job-filters").addEventListener("submit", (event) => { event.preventDefault(); state.before = null; state.cursors = []; loadAll(); });
  $("next-page").addEventListener("click", () => { state.cursors.push(state.before); state.before = $("next-page").dataset.before || null; loadAll(); });
  $("first-page").addEventListener("click", () => { state.before = null; state.cursors = []; loadAll(); });
  $("job-cancel").addEventListener("click", cancelJob);
  $("array-cancel").addEventListener("click", cancelArray);
  $("job-download").addEventListener("click", downloadResults);
  for (const stream of ["stdout", "stderr"]) $(`tab-${stream}`).addEventListener("click", () => showStream(stream));
  window.addEventListener("hashchange", route);
  setInterval(tick, 1000);
}

bind();
start();
