// nimm-jupyter live search widget: plain DOM + SVG, no dependencies.
// Model traits (see widget.py): nodes, branches, best_id, curves, best_so_far, counters,
// selected, details, finished, message, run_id, task_name.
// Custom messages to Python: {action: "stop"} and {action: "export"}.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function fmt(x, digits = 4) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

function fmtTime(s) {
  if (!isFinite(s)) return "–";
  s = Math.round(s);
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

// Viridis-like ramp; t in [0, 1], 0 = best (low RMSE).
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function rampColor(t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const c = RAMP[i].map((v, k) => Math.round(v + f * (RAMP[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function valScale(nodes) {
  const vals = nodes.map((n) => n.val).filter((v) => v !== null && isFinite(v) && v > 0);
  if (!vals.length) return () => 0.5;
  const lo = Math.log(Math.min(...vals));
  const hi = Math.log(Math.max(...vals));
  return (v) => (hi - lo < 1e-12 ? 0 : (Math.log(v) - lo) / (hi - lo));
}

function branchColor(b) {
  return PALETTE[((b % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

function renderTree(container, model) {
  container.replaceChildren();
  const nodes = model.get("nodes") || [];
  const branches = model.get("branches") || [];
  const bestId = model.get("best_id");
  const selected = model.get("selected");
  if (!nodes.length) {
    container.append(el("div", "nimm-empty", "waiting for the first proposals…"));
    return;
  }
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = new Map();
  const depthOf = (n) => {
    if (depth.has(n.id)) return depth.get(n.id);
    const p = n.parent !== null && byId.has(n.parent) ? byId.get(n.parent) : null;
    const d = p ? depthOf(p) + 1 : 0;
    depth.set(n.id, d);
    return d;
  };
  const laneIds = branches.length ? branches.map((b) => b.id) : [...new Set(nodes.map((n) => n.branch))];
  for (const n of nodes) if (!laneIds.includes(n.branch)) laneIds.push(n.branch);
  // Within a lane, nodes of the same depth are spread sideways.
  const slot = new Map();
  const counts = new Map();
  for (const n of nodes) {
    const key = `${n.branch}:${depthOf(n)}`;
    const k = counts.get(key) || 0;
    counts.set(key, k + 1);
    slot.set(n.id, k);
  }
  const laneWidth = laneIds.map((b) => {
    let w = 1;
    for (const [key, c] of counts) if (key.startsWith(`${b}:`)) w = Math.max(w, c);
    return w;
  });
  const dx = 26, dy = 34, pad = 22, header = 18;
  const laneX = [];
  let x0 = pad;
  laneWidth.forEach((w) => { laneX.push(x0); x0 += Math.max(w, 2) * dx + 12; });
  const maxDepth = Math.max(...nodes.map(depthOf));
  const W = x0 + pad - 12, H = header + pad + (maxDepth + 1) * dy;
  const root = svg("svg", { class: "nimm-tree-svg", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  const pos = new Map();
  for (const n of nodes) {
    const lane = laneIds.indexOf(n.branch);
    pos.set(n.id, [laneX[lane] + slot.get(n.id) * dx + dx / 2, header + pad / 2 + depthOf(n) * dy + 10]);
  }
  laneIds.forEach((b, i) => {
    const info = branches.find((x) => x.id === b) || {};
    const t = svg("text", { x: laneX[i], y: 12, class: "nimm-lane-label", fill: branchColor(b) });
    t.textContent = `branch ${b}`;
    const tip = svg("title");
    tip.textContent = info.strategy || `branch ${b}`;
    t.append(tip);
    root.append(t);
  });
  for (const n of nodes) {
    if (n.parent === null || !pos.has(n.parent)) continue;
    const [x1, y1] = pos.get(n.parent), [x2, y2] = pos.get(n.id);
    root.append(svg("line", { x1, y1, x2, y2, class: "nimm-edge", stroke: branchColor(n.branch) }));
  }
  const scale = valScale(nodes);
  for (const n of nodes) {
    const [x, y] = pos.get(n.id);
    const g = svg("g", {
      class: `nimm-node nimm-state-${n.state}` + (n.id === bestId ? " nimm-best" : "") +
        (n.id === selected ? " nimm-selected" : ""),
      "data-node-id": n.id, "data-status": n.status, "data-branch": n.branch,
      transform: `translate(${x},${y})`,
    });
    if (n.id === bestId) g.append(svg("circle", { r: 11, class: "nimm-best-ring" }));
    const fill = n.state === "failed" ? "#ffffff"
      : n.val !== null && n.val !== undefined ? rampColor(scale(n.val)) : "#dddddd";
    g.append(svg("circle", { r: 7, fill, stroke: branchColor(n.branch), class: "nimm-dot" }));
    if (n.state === "failed") {
      g.append(svg("path", { d: "M-4,-4L4,4M4,-4L-4,4", class: "nimm-cross" }));
    }
    const tip = svg("title");
    tip.textContent = `#${n.id} ${n.operator} · ${n.status}` +
      (n.val !== null && n.val !== undefined ? ` · val ${fmt(n.val)}` : "") +
      (n.change ? `\n${n.change}` : "") + (n.message ? `\n${n.message}` : "");
    g.append(tip);
    g.addEventListener("click", () => {
      model.set("selected", n.id);
      model.save_changes();
    });
    root.append(g);
  }
  container.append(root);
  const vals = nodes.map((n) => n.val).filter((v) => v !== null && isFinite(v) && v > 0);
  if (vals.length) {
    const key = el("div", "nimm-colour-key");
    const bar = el("span", "nimm-colour-bar");
    bar.style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map(rampColor).join(", ")})`;
    key.append(el("span", null, `val RMSE ${fmt(Math.min(...vals), 3)} `), bar,
      el("span", null, ` ${fmt(Math.max(...vals), 3)} (log) · ✕ failed · ring = best`));
    container.append(key);
  }
}

// A small line plot: series = [{name, cls, points: [[x, y], ...]}]; log y when all > 0.
function linePlot(container, series, opts) {
  container.replaceChildren();
  const pts = series.flatMap((s) => s.points).filter((p) => isFinite(p[0]) && isFinite(p[1]));
  if (!pts.length) {
    container.append(el("div", "nimm-empty", opts.empty));
    return;
  }
  const W = 300, H = 150, L = 46, R = 8, T = 16, B = 24;
  const logY = pts.every((p) => p[1] > 0);
  const fy = (y) => (logY ? Math.log10(y) : y);
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => fy(p[1]))), Math.max(...pts.map((p) => fy(p[1])))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (fy(y) - y0) / (y1 - y0)) * (H - T - B);
  const root = svg("svg", { class: opts.cls, width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "nimm-axis" }));
  root.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "nimm-axis" }));
  const label = (x, y, text, anchor) => {
    const t = svg("text", { x, y, class: "nimm-tick", "text-anchor": anchor });
    t.textContent = text;
    root.append(t);
  };
  const unY = (v) => (logY ? 10 ** v : v);
  label(L - 3, T + 4, fmt(unY(y1), 3), "end");
  label(L - 3, H - B, fmt(unY(y0), 3), "end");
  label(L, H - 8, fmt(x0, 3), "start");
  label(W - R, H - 8, fmt(x1, 3), "end");
  label((L + W) / 2, H - 8, opts.xlabel, "middle");
  series.forEach((s, i) => {
    const good = s.points.filter((p) => isFinite(p[0]) && isFinite(p[1]));
    if (!good.length) return;
    const d = good.map((p, k) => `${k ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    root.append(svg("path", { d, class: `nimm-series ${s.cls}` }));
    const t = svg("text", { x: W - R - 4, y: T + 2 + 11 * i, class: `nimm-legend ${s.cls}`, "text-anchor": "end" });
    t.textContent = s.name;
    root.append(t);
  });
  container.append(root);
}

function renderCurves(container, model) {
  const curves = model.get("curves") || {};
  const nodes = model.get("nodes") || [];
  let id = model.get("selected");
  if (id === null || id === undefined || !curves[String(id)]) {
    const running = nodes.filter((n) => n.state === "running" && curves[String(n.id)]);
    id = running.length ? running[running.length - 1].id : model.get("best_id");
  }
  const pts = (id !== null && id !== undefined && curves[String(id)]) || [];
  container.dataset.nodeId = id === null || id === undefined ? "" : String(id);
  const title = id === null || id === undefined ? "loss curve" : `loss curve · node #${id}`;
  container.previousSibling.textContent = title;
  linePlot(container, [
    { name: "train", cls: "nimm-train", points: pts.map((p) => [p.epoch, p.train]) },
    { name: "val", cls: "nimm-val", points: pts.map((p) => [p.epoch, p.val]) },
  ], { cls: "nimm-curve-svg", xlabel: "epoch", empty: "no training progress yet" });
}

function renderBest(container, model) {
  const pts = model.get("best_so_far") || [];
  linePlot(container, [{ name: "best val", cls: "nimm-val", points: pts.map((p) => [p[0], p[1]]) }],
    { cls: "nimm-best-svg", xlabel: "evaluations", empty: "no successful evaluation yet" });
}

function renderCounters(container, model) {
  const c = model.get("counters") || {};
  container.replaceChildren();
  const items = [
    ["evaluated", c.evaluated], ["failed", c.failed], ["running", c.running],
    ["tokens", c.tokens], ["cost", c.cost !== undefined ? `$${Number(c.cost).toFixed(3)}` : "–"],
    ["elapsed", fmtTime(c.elapsed)],
  ];
  for (const [k, v] of items) {
    const span = el("span", "nimm-counter");
    span.dataset.counter = k;
    span.append(el("b", null, v === undefined || v === null ? "–" : v), el("span", null, ` ${k}`));
    container.append(span);
  }
}

function renderDetails(container, model) {
  const d = model.get("details") || {};
  container.replaceChildren();
  if (d.id === undefined) {
    container.append(el("div", "nimm-empty", "click a node to see its code and metrics"));
    return;
  }
  container.dataset.nodeId = String(d.id);
  container.append(el("div", "nimm-details-title",
    `node #${d.id} · branch ${d.branch} · ${d.operator} · ${d.status}`));
  if (d.strategy) container.append(el("div", "nimm-strategy", d.strategy));
  if (d.change) container.append(el("div", "nimm-change", d.change));
  if (d.error) container.append(el("pre", "nimm-error", d.error));
  const table = (obj, cls) => {
    const entries = Object.entries(obj || {});
    if (!entries.length) return null;
    const t = el("table", cls);
    for (const [k, v] of entries) {
      const tr = el("tr");
      tr.append(el("th", null, k), el("td", null, typeof v === "number" ? fmt(v, 5) : v));
      t.append(tr);
    }
    return t;
  };
  const m = table(d.metrics, "nimm-metrics");
  if (m) container.append(m);
  const p = table(d.params, "nimm-params");
  if (p) { container.append(el("div", "nimm-subtitle", "fitted parameters"), p); }
  if (d.code) container.append(el("pre", "nimm-code", d.code));
}

function render({ model, el: root }) {
  root.classList.add("nimm-widget");
  const head = el("div", "nimm-head");
  const title = el("span", "nimm-title");
  const counters = el("div", "nimm-counters");
  const stop = el("button", "nimm-stop", "Stop");
  const exp = el("button", "nimm-export", "Export best");
  stop.addEventListener("click", () => model.send({ action: "stop" }));
  exp.addEventListener("click", () => model.send({ action: "export" }));
  head.append(title, counters, stop, exp);
  const msg = el("div", "nimm-message");
  const body = el("div", "nimm-body");
  const tree = el("div", "nimm-tree");
  const side = el("div", "nimm-side");
  const curveBox = el("div", "nimm-panel");
  const curve = el("div", "nimm-curve");
  curveBox.append(el("div", "nimm-panel-title", "loss curve"), curve);
  const bestBox = el("div", "nimm-panel");
  const best = el("div", "nimm-best-so-far");
  bestBox.append(el("div", "nimm-panel-title", "best validation RMSE vs evaluations"), best);
  side.append(curveBox, bestBox);
  body.append(tree, side);
  const details = el("div", "nimm-details");
  root.append(head, msg, body, details);

  const update = () => {
    const fin = model.get("finished");
    title.textContent = `nimm search ${model.get("task_name") || ""} · ${model.get("run_id") || ""}` +
      (fin ? " · finished" : "");
    root.dataset.finished = fin ? "true" : "false";
    stop.disabled = !!fin;
    exp.disabled = model.get("best_id") === null || model.get("best_id") === undefined;
    msg.textContent = model.get("message") || "";
    renderCounters(counters, model);
    renderTree(tree, model);
    renderCurves(curve, model);
    renderBest(best, model);
    renderDetails(details, model);
  };
  // Python batches trait changes; coalesce the resulting change events into one repaint.
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; update(); });
  };
  const traits = ["nodes", "branches", "best_id", "curves", "best_so_far", "counters", "selected",
    "details", "finished", "message", "run_id", "task_name"];
  for (const t of traits) model.on(`change:${t}`, schedule);
  update();
  return () => { for (const t of traits) model.off(`change:${t}`, schedule); };
}

export default { render };
