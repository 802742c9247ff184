// A job's GPU use on its page: the summary in words and an inline SVG chart of each GPU's
// utilisation (solid) and memory in use (dashed), 0-100 % of the card, over the samples served by
// /api/jobs/{id}/gpu. No chart library: a few polylines.
import { el, replace } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 120;
const COLOURS = ["#2b7bb9", "#d9822b", "#3a9e5c", "#b93b8f", "#7a6ad8", "#8c8c8c", "#c9a227", "#4fb3bf"];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child);
  return node;
}

function line(points, t0, span, value, colour, dashed) {
  const xy = points.map((p) => {
    const x = span > 0 ? ((Date.parse(p.at) - t0) / span) * W : 0;
    return `${x.toFixed(1)},${(H - (Math.min(100, Math.max(0, value(p))) / 100) * H).toFixed(1)}`;
  });
  const attrs = { points: xy.join(" "), fill: "none", stroke: colour, "stroke-width": 1.5 };
  if (dashed) attrs["stroke-dasharray"] = "4 3";
  return svg("polyline", attrs);
}

export function gpuChart(points) {
  const t0 = Date.parse(points[0].at);
  const span = Date.parse(points[points.length - 1].at) - t0;
  const byGpu = new Map();
  for (const p of points) byGpu.set(p.index, [...(byGpu.get(p.index) ?? []), p]);
  const lines = [...byGpu.entries()].flatMap(([index, series], i) => {
    const colour = COLOURS[i % COLOURS.length];
    return [
      line(series, t0, span, (p) => p.util, colour, false),
      line(series, t0, span, (p) => (p.mem_total_mib ? (100 * p.mem_used_mib) / p.mem_total_mib : 0), colour, true),
      svg("title", {}, `GPU ${index}`),
    ];
  });
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "gpu-chart", role: "img", "aria-label": "GPU utilisation and memory" },
    svg("rect", { x: 0, y: 0, width: W, height: H, fill: "none", stroke: "#ccc" }), ...lines);
}

function summaryText(doc) {
  const s = doc.summary;
  if (!s) return doc.gpus ? "No summary yet (or no telemetry from this node)." : "No GPU held: no telemetry.";
  return `Mean utilisation ${s.mean_util}% (peak ${s.peak_util}%), memory peak ${s.peak_mem_mib} of ${s.card_mem_mib} MiB, ` +
    `GPU-hours used ${s.gpu_hours_used.toFixed(4)} of ${s.gpu_hours_held.toFixed(4)} held.`;
}

export function renderGpu(box, doc) {
  const idle = doc.gpu_idle ? el("p", { class: "error" }, `Flagged idle (policy: ${doc.gpu_idle}).`) : null;
  const chart = doc.points.length > 1
    ? [gpuChart(doc.points), el("p", { class: "hint" }, "solid: utilisation %, dashed: memory % of the card")]
    : [el("p", {}, "No samples yet.")];
  replace(box, el("p", {}, summaryText(doc)), idle, ...chart);
}
