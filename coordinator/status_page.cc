// The live status page served at "/": one self-contained HTML document.
// Its script polls /status once a second and redraws the loss and accuracy
// curves (inline SVG, one point per finished epoch) and the cluster.
//
// Elements tests and scripts may rely on: svg#loss-chart and
// svg#accuracy-chart carry data-epochs (epochs drawn); path#train-loss-path,
// path#test-loss-path and path#test-accuracy-path carry data-points; the
// nodes are div.node elements in #cluster with data-role, data-id and
// data-state; #phase holds the job's phase.
#include "coordinator/status_board.h"

namespace pstrain {

const std::string& StatusPageHtml() {
  static const std::string page = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pstrain</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
  h1 { font-size: 1.3em; margin: 0 0 0.3em 0; }
  .line { margin: 0.2em 0; color: #444; }
  .bar { width: 480px; height: 10px; background: #ddd; border-radius: 5px; overflow: hidden; }
  .bar > div { height: 100%; background: #3b7dd8; width: 0; }
  .charts { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
  svg { background: #fff; border: 1px solid #ccc; }
  svg text { font-size: 11px; fill: #444; }
  .axis { stroke: #888; stroke-width: 1; }
  .grid { stroke: #eee; stroke-width: 1; }
  #cluster { display: flex; flex-wrap: wrap; gap: 0.5em; }
  .node { border: 1px solid #999; border-radius: 4px; padding: 0.4em 0.6em; min-width: 9em;
          font-size: 0.85em; background: #fff; }
  .node.live { border-color: #2e8b57; }
  .node.joining { border-color: #d4a017; }
  .node.dead { border-color: #c0392b; background: #fbeaea; color: #888; }
  .node b { display: block; }
  #error { color: #c0392b; }
</style>
</head>
<body>
<h1 id="title">pstrain</h1>
<div class="line"><span id="phase">connecting</span> &middot; <span id="epoch"></span>
  &middot; <span id="rate"></span> &middot; <span id="members"></span></div>
<div class="bar"><div id="progress"></div></div>
<div class="line" id="error"></div>
<div class="charts">
  <svg id="loss-chart" width="480" height="280" data-epochs="0"></svg>
  <svg id="accuracy-chart" width="480" height="280" data-epochs="0"></svg>
</div>
<h2 style="font-size:1.05em">Cluster</h2>
<div id="cluster"></div>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent, text) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v, digits) {
  return (v === null || v === undefined || !isFinite(v)) ? "-" : Number(v).toFixed(digits);
}
// Draws `series` (each {id, label, color, values}) against epochs 1..n.
function chart(svg, title, series, fixedMin, fixedMax, digits) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = 52, R = 16, T = 28, B = 36;
  const n = Math.max(0, ...series.map(s => s.values.length));
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of s.values) if (v !== null && isFinite(v)) {
    lo = Math.min(lo, v); hi = Math.max(hi, v);
  }
  if (fixedMin !== null) lo = Math.min(fixedMin, lo);
  if (fixedMax !== null) hi = Math.max(fixedMax, hi);
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { hi = lo + 1; }
  const pad = (hi - lo) * 0.05;
  if (fixedMin === null) lo -= pad;
  if (fixedMax === null) hi += pad;
  const xs = i => L + (n <= 1 ? (W - L - R) / 2 : (W - L - R) * i / (n - 1));
  const ys = v => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  el("text", {x: L, y: 16, "font-weight": "bold"}, svg, title);
  for (let k = 0; k <= 4; ++k) {
    const v = lo + (hi - lo) * k / 4, y = ys(v);
    el("line", {x1: L, x2: W - R, y1: y, y2: y, class: "grid"}, svg);
    el("text", {x: L - 6, y: y + 4, "text-anchor": "end"}, svg, v.toFixed(digits));
  }
  const step = Math.max(1, Math.ceil(n / 10));
  for (let i = 0; i < n; i += step) {
    el("line", {x1: xs(i), x2: xs(i), y1: H - B, y2: H - B + 4, class: "axis"}, svg);
    el("text", {x: xs(i), y: H - B + 16, "text-anchor": "middle"}, svg, String(i + 1));
  }
  el("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle"}, svg, "epoch");
  el("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"}, svg);
  el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}, svg);
  let lx = W - R - 8;
  for (const s of series.slice().reverse()) {
    const t = el("text", {x: lx, y: 16, "text-anchor": "end"}, svg, s.label);
    lx -= t.getComputedTextLength ? t.getComputedTextLength() + 6 : s.label.length * 6 + 6;
    el("rect", {x: lx - 10, y: 8, width: 10, height: 10, fill: s.color}, svg);
    lx -= 18;
  }
  for (const s of series) {
    let d = "", points = 0;
    s.values.forEach((v, i) => {
      if (v === null || !isFinite(v)) return;
      d += (points === 0 ? "M" : " L") + xs(i).toFixed(1) + " " + ys(v).toFixed(1);
      ++points;
      el("circle", {cx: xs(i), cy: ys(v), r: 2.5, fill: s.color}, svg);
    });
    el("path", {id: s.id, d: d, fill: "none", stroke: s.color, "stroke-width": 2,
                "data-points": points}, svg);
  }
  svg.setAttribute("data-epochs", n);
}
function nodeBox(n, role) {
  const d = document.createElement("div");
  d.className = "node " + n.state;
  d.dataset.role = role; d.dataset.id = n.id; d.dataset.state = n.state;
  const b = document.createElement("b");
  b.textContent = role + " " + n.id + " \u00b7 " + n.state;
  d.appendChild(b);
  let text = "pid " + n.pid + " on " + n.host;
  if (role === "server") text += "\n" + n.endpoint;
  else text += "\nstep " + fmt(n.step_s * 1000, 1) + " ms \u00b7 " + fmt(n.samples_per_s, 0) +
               " samples/s\nthis epoch " + n.epoch_samples;
  for (const line of text.split("\n")) {
    const s = document.createElement("div");
    s.textContent = line;
    d.appendChild(s);
  }
  return d;
}
function render(s) {
  document.title = "pstrain " + s.job + " \u00b7 " + s.phase;
  document.getElementById("title").textContent = "pstrain \u00b7 " + s.job;
  document.getElementById("phase").textContent = s.phase;
  document.getElementById("epoch").textContent = "epoch " + s.epoch + "/" + s.epochs +
      " (" + fmt(s.progress.fraction * 100, 0) + "%)";
  const rate = s.phase === "training" && s.progress.samples > 0 ? s.progress.samples_per_s :
      (s.last ? s.last.samples_per_s : 0);
  document.getElementById("rate").textContent = fmt(rate, 0) + " samples/s";
  document.getElementById("members").textContent = s.workers_live + " worker(s), " +
      s.servers_live + " server(s) live, " + s.failures + " failure(s), " + s.consistency;
  document.getElementById("progress").style.width = (s.progress.fraction * 100) + "%";
  document.getElementById("error").textContent = s.message || "";
  const h = s.history;
  chart(document.getElementById("loss-chart"), "Loss", [
    {id: "train-loss-path", label: "train", color: "#3b7dd8", values: h.map(e => e.train_loss)},
    {id: "test-loss-path", label: "test", color: "#e67e22", values: h.map(e => e.test_loss)},
  ], 0, null, 3);
  chart(document.getElementById("accuracy-chart"), "Test accuracy", [
    {id: "test-accuracy-path", label: "test accuracy", color: "#2e8b57",
     values: h.map(e => e.test_accuracy)},
  ], null, 1, 3);
  const cluster = document.getElementById("cluster");
  while (cluster.firstChild) cluster.removeChild(cluster.firstChild);
  for (const n of s.servers) cluster.appendChild(nodeBox(n, "server"));
  for (const n of s.workers) cluster.appendChild(nodeBox(n, "worker"));
}
let timer = null;
function poll() {
  fetch("/status", {cache: "no-store"})
    .then(r => r.json())
    .then(s => { render(s); if (s.phase !== "done" && s.phase !== "failed") schedule(); })
    .catch(() => {
      document.getElementById("phase").textContent = "disconnected (the job has ended?)";
      schedule();
    });
}
function schedule() { clearTimeout(timer); timer = setTimeout(poll, 1000); }
poll();
</script>
</body>
</html>
)html";
  return page;
}

}  // namespace pstrain
