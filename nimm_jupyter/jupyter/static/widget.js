// nimm-jupyter live search widget: plain DOM + SVG, no dependencies.
// Model traits (see widget.py): nodes, branches, best_id, curves, best_so_far, counters,
// selected, details, finished, end_state, message, run_id, task_name, run_dir, resume, unit,
// what_if_inputs, what_if.
// Custom messages to Python: {action: "stop"}, {action: "export"}, {action: "ping", seq},
// {action: "what_if", node, trajectory, split, input, op, value} (computed in the sandbox).
// A view whose kernel is gone (comm closed by a restart/shutdown, or pings unanswered) says
// so and disables its buttons.
//
// The DOM is built once; each trait change updates only the parts that show it, and the
// tree, the change list and the code pane are keyed by node id and changed in place, so a
// live update keeps scroll positions, text selection and the hovered element.

const SVG = "http://www.w3.org/2000/svg";
const PING_EVERY_MS = 10000; // how often a live view checks that its kernel still answers
const PING_TIMEOUT_MS = 4000;

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

// Set only what differs: an unchanged attribute or text is not touched (no reflow, no
// lost selection).
function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    const s = String(v);
    if (e.getAttribute(k) !== s) e.setAttribute(k, s);
  }
}
function setText(e, text) {
  const s = text === undefined || text === null ? "" : String(text);
  if (e.textContent !== s) e.textContent = s;
}

function fmt(x, digits = 4) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

function fmtTime(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

// One colour scale for RMSE, mixed from two theme colours so it reads in light and dark.
function rmseFill(t) {
  const p = Math.round(100 * Math.min(1, Math.max(0, t)));
  return `color-mix(in srgb, var(--nimm-poor) ${p}%, var(--nimm-good))`;
}

function valScale(nodes) {
  const vals = nodes.map((n) => n.val).filter((v) => v !== null && isFinite(v) && v > 0);
  if (!vals.length) return () => 0.5;
  const lo = Math.log(Math.min(...vals)), hi = Math.log(Math.max(...vals));
  return (v) => (hi - lo < 1e-12 ? 0 : (Math.log(v) - lo) / (hi - lo));
}

const unitOf = (model) => (model.get("unit") ? ` (${model.get("unit")})` : "");

// -- tree ------------------------------------------------------------------------------
const DX = 34, DY = 46, PAD = 24, HEADER = 30, R = 9;

function layout(nodes, branches) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const depth = new Map();
  const depthOf = (id) => {
    const chain = [];
    let cur = id;
    while (byId.has(cur) && !depth.has(cur) && !chain.includes(cur)) {
      chain.push(cur);
      const p = byId.get(cur).parent;
      cur = p === null || p === undefined ? -1 : p;
    }
    let d = depth.has(cur) ? depth.get(cur) + 1 : 0;
    for (const k of chain.reverse()) depth.set(k, d++);
    return depth.get(id);
  };
  const lanes = branches.map((b) => b.id);
  for (const n of nodes) if (!lanes.includes(n.branch)) lanes.push(n.branch);
  const slot = new Map(), counts = new Map(), width = new Map(lanes.map((b) => [b, 1]));
  for (const n of nodes) {
    const key = `${n.branch}:${depthOf(n.id)}`;
    const k = counts.get(key) || 0;
    counts.set(key, k + 1);
    slot.set(n.id, k);
    width.set(n.branch, Math.max(width.get(n.branch), k + 1));
  }
  const laneX = new Map();
  let x = PAD;
  for (const b of lanes) { laneX.set(b, x); x += Math.max(width.get(b), 3) * DX + 14; }
  const pos = new Map();
  let maxDepth = 0;
  for (const n of nodes) {
    const d = depthOf(n.id);
    maxDepth = Math.max(maxDepth, d);
    pos.set(n.id, [laneX.get(n.branch) + slot.get(n.id) * DX + DX / 2, HEADER + PAD / 2 + d * DY]);
  }
  return { pos, lanes, laneX, width, W: x + PAD - 14, H: HEADER + PAD + (maxDepth + 1) * DY };
}

function nodeTip(n, unit) {
  return `#${n.id} · ${n.operator || "node"} · ${n.state}` +
    (n.val !== null && n.val !== undefined ? ` · val RMSE ${fmt(n.val)}${unit}` : "") +
    (n.parent !== null && n.parent !== undefined ? ` · from #${n.parent}` : "") +
    (n.change ? `\n${n.change}` : "") + (n.message ? `\n${n.message}` : "");
}

class Tree {
  constructor(box, select) {
    this.box = box;
    this.select = select;
    this.zoom = 1;
    this.auto = true; // fit the pane until the user zooms; "fit" turns it back on
    this.root = svg("svg", { class: "nimm-tree-svg" });
    this.lanesG = svg("g", { class: "nimm-lanes" });
    this.edgesG = svg("g", { class: "nimm-edges" });
    this.nodesG = svg("g", { class: "nimm-nodes" });
    this.root.append(this.lanesG, this.edgesG, this.nodesG);
    this.empty = el("div", "nimm-empty", "waiting for the first proposals…");
    box.append(this.empty, this.root);
    this.nodeEls = new Map();
    this.edgeEls = new Map();
    this.laneEls = new Map();
    this.size = [0, 0];
    this._pan();
  }

  _pan() { // drag the background to pan (the pane scrolls); Ctrl+wheel zooms
    let drag = null;
    this.box.addEventListener("pointerdown", (e) => {
      if (e.target.closest && e.target.closest(".nimm-node")) return;
      drag = [e.clientX, e.clientY, this.box.scrollLeft, this.box.scrollTop];
    });
    window.addEventListener("pointermove", (e) => {
      if (!drag) return;
      this.box.scrollLeft = drag[2] - (e.clientX - drag[0]);
      this.box.scrollTop = drag[3] - (e.clientY - drag[1]);
    });
    window.addEventListener("pointerup", () => { drag = null; });
    this.box.addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      this.auto = false;
      this.setZoom(this.zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15));
    }, { passive: false });
  }

  setZoom(k) {
    this.zoom = Math.min(3, Math.max(0.15, k));
    this._size();
  }

  fit() {
    const [W, H] = this.size;
    if (!W || !H || !this.box.clientWidth) { this._size(); return; } // not laid out yet
    // large trees shrink to fit (down to a readable 40%); small ones grow up to 160%
    this.setZoom(Math.max(0.4, Math.min(1.6, (this.box.clientWidth - 4) / W, (this.box.clientHeight - 4) / H)));
  }

  _size() {
    const [W, H] = this.size;
    setAttrs(this.root, { width: Math.round(W * this.zoom), height: Math.round(H * this.zoom),
      viewBox: `0 0 ${W} ${H}` });
  }

  update(nodes, branches, bestId, selected, unit) {
    this.empty.style.display = nodes.length ? "none" : "";
    this.root.style.display = nodes.length ? "" : "none";
    const { pos, lanes, laneX, width, W, H } = layout(nodes, branches);
    this.size = [W, H];
    if (this.auto) this.fit();
    else this._size();
    const info = new Map(branches.map((b) => [b.id, b]));
    lanes.forEach((b, i) => {
      let lane = this.laneEls.get(b);
      if (!lane) {
        lane = { rect: svg("rect"), text: svg("text", { class: "nimm-lane-label" }),
          label: svg("tspan"), tip: svg("title") };
        lane.text.append(lane.label, lane.tip);
        this.lanesG.append(lane.rect, lane.text);
        this.laneEls.set(b, lane);
      }
      const w = Math.max(width.get(b), 3) * DX + 6;
      const strategy = (info.get(b) || {}).strategy || "";
      const best = (info.get(b) || {}).best_val;
      setAttrs(lane.rect, { x: laneX.get(b) - 3, y: 2, width: w, height: H - 4,
        class: `nimm-lane nimm-lane-${i % 2}` });
      setAttrs(lane.text, { x: laneX.get(b), y: 16 });
      const label = `${b}: ${strategy || `branch ${b}`}`;
      const chars = Math.max(6, Math.floor(w / 6.2));
      setText(lane.label, label.length > chars ? `${label.slice(0, chars - 1)}…` : label);
      setText(lane.tip, `branch ${b}: ${strategy || "(no strategy title)"}` +
        (best !== null && best !== undefined ? ` · best val RMSE ${fmt(best)}${unit}` : ""));
    });
    const scale = valScale(nodes);
    const seen = new Set();
    for (const n of nodes) {
      seen.add(n.id);
      const [x, y] = pos.get(n.id);
      if (n.parent !== null && n.parent !== undefined && pos.has(n.parent)) {
        let edge = this.edgeEls.get(n.id);
        if (!edge) {
          edge = { g: svg("g", { class: "nimm-edge-g" }), line: svg("line", { class: "nimm-edge" }),
            hit: svg("line", { class: "nimm-edge-hit" }), tip: svg("title") };
          edge.hit.append(edge.tip);
          edge.g.append(edge.line, edge.hit);
          this.edgesG.append(edge.g);
          this.edgeEls.set(n.id, edge);
        }
        const [x1, y1] = pos.get(n.parent);
        const line = { x1, y1, x2: x, y2: y };
        setAttrs(edge.line, line);
        setAttrs(edge.hit, line);
        setText(edge.tip, `#${n.parent} → #${n.id} (${n.operator}): ${n.change || "no change stated"}`);
      }
      let g = this.nodeEls.get(n.id);
      if (!g) {
        g = svg("g", { "data-node-id": n.id });
        g.append(svg("circle", { r: R + 4, class: "nimm-best-ring" }), svg("circle", { r: R, class: "nimm-dot" }),
          svg("path", { d: "M-4,-4L4,4M4,-4L-4,4", class: "nimm-cross" }),
          svg("text", { x: R + 2, y: -R + 1, class: "nimm-node-label" }), svg("title"));
        g.addEventListener("click", () => this.select(n.id));
        this.nodesG.append(g);
        this.nodeEls.set(n.id, g);
      }
      const [, dot, , label, tip] = g.children;
      setAttrs(g, {
        class: `nimm-node nimm-state-${n.state}` + (n.id === bestId ? " nimm-best" : "") +
          (n.id === selected ? " nimm-selected" : "") + (g.classList.contains("nimm-hover") ? " nimm-hover" : ""),
        "data-status": n.status, "data-branch": n.branch, transform: `translate(${x},${y})`,
      });
      const done = n.state === "done" && n.val !== null && n.val !== undefined;
      const fill = done ? rmseFill(scale(n.val)) : "";
      if (dot.style.fill !== fill) dot.style.fill = fill;
      setText(label, n.id);
      setText(tip, nodeTip(n, unit));
    }
    for (const [id, g] of this.nodeEls) if (!seen.has(id)) { g.remove(); this.nodeEls.delete(id); }
    for (const [id, e] of this.edgeEls) if (!seen.has(id)) { e.g.remove(); this.edgeEls.delete(id); }
  }

  hover(id, on) {
    const g = this.nodeEls.get(id);
    if (g) g.classList.toggle("nimm-hover", on);
  }

  reveal(id) { // scroll a node into view when it is outside the pane (follow mode)
    const g = this.nodeEls.get(id);
    if (!g) return;
    const a = g.getBoundingClientRect(), b = this.box.getBoundingClientRect();
    if (a.top < b.top || a.bottom > b.bottom || a.left < b.left || a.right > b.right) {
      this.box.scrollTop += a.top - b.top - b.height / 2;
      this.box.scrollLeft += a.left - b.left - b.width / 2;
    }
  }
}

function legend() {
  const box = el("div", "nimm-legend");
  const item = (cls, text) => {
    const s = el("span", "nimm-legend-item");
    const sw = svg("svg", { width: 26, height: 22, viewBox: "-13 -11 26 22" });
    const g = svg("g", { class: `nimm-swatch ${cls}` }); // not .nimm-node: tests and clicks find tree nodes
    g.append(svg("circle", { r: R + 4, class: "nimm-best-ring" }), svg("circle", { r: R - 1, class: "nimm-dot" }),
      svg("path", { d: "M-4,-4L4,4M4,-4L-4,4", class: "nimm-cross" }));
    sw.append(g);
    s.append(sw, el("span", null, text));
    return s;
  };
  const ramp = el("span", "nimm-legend-item");
  const bar = el("span", "nimm-colour-bar");
  bar.style.background = `linear-gradient(to right, ${[0, 0.5, 1].map(rmseFill).join(", ")})`;
  ramp.append(el("span", null, "val RMSE: lower "), bar, el("span", null, " higher (log)"));
  box.append(ramp, item("nimm-state-running", "running"), item("nimm-state-pending", "pending"),
    item("nimm-state-failed", "failed"), item("nimm-state-cancelled", "cancelled (re-run on resume)"),
    item("nimm-state-done nimm-best", "best"), item("nimm-state-done nimm-selected", "selected"));
  return box;
}

// -- change list (keyed by node id) ----------------------------------------------------
class ChangeList {
  constructor(box, select, hover) {
    this.box = box;
    this.list = el("ol", "nimm-change-items");
    box.append(this.list);
    this.items = new Map();
    this.select = select;
    this.hover = hover;
  }

  update(nodes, selected, unit) {
    for (const n of nodes) {
      let li = this.items.get(n.id);
      if (!li) {
        li = el("li");
        li.dataset.nodeId = String(n.id);
        li.append(el("b"), el("span", "nimm-change-text"), el("span", "nimm-change-val"));
        li.addEventListener("click", () => this.select(n.id));
        li.addEventListener("mouseenter", () => this.hover(n.id, true));
        li.addEventListener("mouseleave", () => this.hover(n.id, false));
        this.list.append(li);
        this.items.set(n.id, li);
      }
      const cls = `nimm-change-item nimm-state-${n.state}` + (n.id === selected ? " nimm-selected" : "");
      if (li.className !== cls) li.className = cls;
      const [id, text, val] = li.children;
      setText(id, `#${n.id}`);
      setText(text, ` ${n.operator}${n.parent !== null && n.parent !== undefined ? ` of #${n.parent}` : ""}: ${n.change || "–"}`);
      setText(val, n.val !== null && n.val !== undefined ? ` ${fmt(n.val)}${unit}` : ` ${n.state}`);
      li.title = n.change || "";
    }
  }
}

// -- plots -----------------------------------------------------------------------------
function ticks(lo, hi, log) {
  if (log) {
    const out = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const m of hi - lo < 1.5 ? [1, 2, 3, 5] : [1]) {
        const v = Math.log10(m) + e;
        if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push(v);
      }
    }
    return out.length >= 2 ? out : [lo, ...out, hi]; // a narrow range: its ends labelled too
  }
  const span = hi - lo, step0 = span / 4, mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= 5);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(v);
  return out;
}

// A line plot redrawn only when its data changes; series = [{name, cls, points, step}].
class Plot {
  constructor(box, opts) {
    this.box = box;
    this.opts = opts;
    this.key = null;
    this.root = svg("svg", { class: opts.cls, width: 320, height: 170, viewBox: "0 0 320 170" });
    this.layer = svg("g");
    this.cursor = svg("g", { class: "nimm-readout" });
    this.root.append(this.layer, this.cursor);
    this.empty = el("div", "nimm-empty", opts.empty);
    box.append(this.empty, this.root);
    this.root.addEventListener("mousemove", (e) => this._readout(e));
    this.root.addEventListener("mouseleave", () => this.cursor.replaceChildren());
  }

  update(series) {
    const key = JSON.stringify([series, this.opts.xmax ? this.opts.xmax() : null]);
    if (key === this.key) return;
    this.key = key;
    this.series = series;
    const pts = series.flatMap((s) => s.points).filter((p) => isFinite(p[0]) && isFinite(p[1]));
    this.empty.style.display = pts.length ? "none" : "";
    this.root.style.display = pts.length ? "" : "none";
    this.layer.replaceChildren();
    if (!pts.length) return;
    const W = 320, H = 170, L = 50, Rm = 8, T = 14, B = 32;
    const logY = pts.every((p) => p[1] > 0);
    const fy = (y) => (logY ? Math.log10(y) : y);
    let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...pts.map((p) => fy(p[1]))), Math.max(...pts.map((p) => fy(p[1])))];
    if (this.opts.xmax !== undefined) x1 = Math.max(x1, this.opts.xmax());
    if (x1 === x0) x1 = x0 + 1;
    if (y1 - y0 < 1e-12) { y0 -= logY ? 0.15 : 0.5; y1 += logY ? 0.15 : 0.5; }
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - Rm);
    const sy = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    this.scale = { sx, sy, fy, x0, x1, L, W, Rm };
    const add = (tag, attrs, text) => {
      const e = svg(tag, attrs);
      if (text !== undefined) e.textContent = text;
      this.layer.append(e);
      return e;
    };
    add("line", { x1: L, y1: H - B, x2: W - Rm, y2: H - B, class: "nimm-axis" });
    add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "nimm-axis" });
    for (const v of ticks(y0, y1, logY)) {
      add("line", { x1: L, y1: sy(v), x2: W - Rm, y2: sy(v), class: "nimm-grid" });
      add("text", { x: L - 3, y: sy(v) + 3, class: "nimm-tick", "text-anchor": "end" }, fmt(logY ? 10 ** v : v, 3));
    }
    for (const v of ticks(x0, x1, false)) {
      if (this.opts.integerX && Math.abs(v - Math.round(v)) > 1e-9) continue;
      add("text", { x: sx(v), y: H - B + 11, class: "nimm-tick", "text-anchor": "middle" }, fmt(v, 3));
    }
    add("text", { x: (L + W) / 2, y: H - 4, class: "nimm-axis-label", "text-anchor": "middle" }, this.opts.xlabel);
    add("text", { x: 10, y: (T + H - B) / 2, class: "nimm-axis-label", "text-anchor": "middle",
      transform: `rotate(-90 10 ${(T + H - B) / 2})` }, this.opts.ylabel() + (logY ? ", log" : ""));
    series.forEach((s, i) => {
      const good = s.points.filter((p) => isFinite(p[0]) && isFinite(p[1]));
      if (!good.length) return;
      let d = `M${sx(good[0][0]).toFixed(1)},${sy(fy(good[0][1])).toFixed(1)}`;
      for (const p of good.slice(1)) {
        if (s.step) d += `H${sx(p[0]).toFixed(1)}`; // best-so-far holds until it improves
        d += `${s.step ? "V" : `L${sx(p[0]).toFixed(1)},`}${sy(fy(p[1])).toFixed(1)}`;
      }
      if (s.step && this.opts.xmax !== undefined) d += `H${sx(x1).toFixed(1)}`;
      add("path", { d, class: `nimm-series ${s.cls}` });
      if (good.length === 1 || s.step) {
        for (const p of good) add("circle", { cx: sx(p[0]), cy: sy(fy(p[1])), r: 2.5, class: `nimm-point ${s.cls}` });
      }
      add("text", { x: W - Rm - 4, y: T + 8 + 11 * i, class: `nimm-legend-text ${s.cls}`, "text-anchor": "end" }, s.name);
    });
  }

  _readout(e) { // the nearest point of each series to the pointer's x
    if (!this.scale || !this.series) return;
    const { sx, sy, fy, x0, x1, L, W, Rm } = this.scale;
    const box = this.root.getBoundingClientRect();
    const px = ((e.clientX - box.left) / box.width) * 320;
    const x = x0 + ((px - L) / (W - L - Rm)) * (x1 - x0);
    this.cursor.replaceChildren();
    const lines = [];
    for (const s of this.series) {
      const good = s.points.filter((p) => isFinite(p[0]) && isFinite(p[1]));
      if (!good.length) continue;
      const p = good.reduce((a, b) => (Math.abs(b[0] - x) < Math.abs(a[0] - x) ? b : a));
      this.cursor.append(svg("circle", { cx: sx(p[0]), cy: sy(fy(p[1])), r: 3.5, class: `nimm-point ${s.cls}` }));
      lines.push(`${s.name} ${fmt(p[1])} @ ${this.opts.xlabel.split(" ")[0]} ${fmt(p[0])}`);
    }
    const t = svg("text", { x: L + 4, y: 24, class: "nimm-readout-text" });
    t.textContent = lines.join(" · ");
    this.cursor.append(t);
  }
}

// -- details panel ---------------------------------------------------------------------
function kvTable(t, obj, label) {
  const rows = Object.entries(obj || {});
  t.replaceChildren();
  t.style.display = rows.length ? "" : "none";
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.append(el("th", null, label ? label(k) : k), el("td", null, typeof v === "number" ? fmt(v, 5) : v));
    t.append(tr);
  }
}

class Details {
  constructor(box) {
    this.box = box;
    this.hint = el("div", "nimm-empty", "click a node (or a change in the list) for its code, diff and metrics");
    this.title = el("div", "nimm-details-title");
    this.strategy = el("div", "nimm-strategy");
    this.change = el("div", "nimm-change");
    this.error = el("pre", "nimm-error");
    this.metrics = el("table", "nimm-metrics");
    this.params = el("table", "nimm-params");
    this.notes = el("table", "nimm-notes");
    const tabs = el("div", "nimm-tabs");
    this.codeTab = el("button", "nimm-tab nimm-tab-code", "code");
    this.diffTab = el("button", "nimm-tab nimm-tab-diff", "diff against parent");
    tabs.append(this.codeTab, this.diffTab);
    this.code = el("pre", "nimm-code");
    this.diff = el("pre", "nimm-diff");
    this.tab = "code";
    this.codeTab.addEventListener("click", () => { this.tab = "code"; this._tabs(); });
    this.diffTab.addEventListener("click", () => { this.tab = "diff"; this._tabs(); });
    this.body = el("div", "nimm-details-body");
    const cols = el("div", "nimm-details-cols");
    const left = el("div", "nimm-details-left");
    left.append(this.metrics, el("div", "nimm-subtitle", "fitted parameters"), this.params,
      el("div", "nimm-subtitle", "notes"), this.notes);
    const right = el("div", "nimm-details-right");
    right.append(tabs, this.code, this.diff);
    cols.append(left, right);
    this.body.append(this.title, this.strategy, this.change, this.error, cols);
    box.append(this.hint, this.body);
    this.shownId = undefined;
    this.key = "";
  }

  _tabs() {
    const hasDiff = !!this.d.diff;
    const tab = hasDiff ? this.tab : "code";
    this.code.style.display = tab === "code" ? "" : "none";
    this.diff.style.display = tab === "diff" ? "" : "none";
    this.diffTab.disabled = !hasDiff;
    this.codeTab.classList.toggle("nimm-tab-on", tab === "code");
    this.diffTab.classList.toggle("nimm-tab-on", tab === "diff");
  }

  update(d, unit, spend) {
    const key = JSON.stringify([d, unit, spend]);
    if (key === this.key) return; // same content: leave the DOM (scroll, selection) alone
    this.key = key;
    this.d = d;
    const has = d && d.id !== undefined;
    this.hint.style.display = has ? "none" : "";
    this.body.style.display = has ? "" : "none";
    if (!has) return;
    this.box.dataset.nodeId = String(d.id);
    const from = d.parent !== null && d.parent !== undefined ? ` · from #${d.parent}` : " · root";
    setText(this.title, `node #${d.id} · branch ${d.branch} · ${d.operator}${from} · ${d.status}` +
      (spend && d.tokens ? ` · ${d.tokens} tokens, $${Number(d.cost || 0).toFixed(3)}` : ""));
    setText(this.strategy, d.strategy ? `strategy: ${d.strategy}` : "");
    setText(this.change, d.change ? `change: ${d.change}` : "");
    setText(this.error, d.error || "");
    this.error.style.display = d.error ? "" : "none";
    const labels = { train_rmse: `train RMSE${unit}`, val_rmse: `val RMSE${unit}`,
      val_rmse_norm: "val RMSE, normalised (÷ train std)",
      "val_rmse_norm bootstrap SE": "its bootstrap standard error", epochs: "epochs",
      n_parameters: "trainable parameters", wall_time: "wall time (s)" };
    kvTable(this.metrics, d.metrics, (k) => labels[k] || k);
    kvTable(this.params, d.params);
    kvTable(this.notes, d.notes);
    this.params.previousSibling.style.display = this.params.style.display;
    this.notes.previousSibling.style.display = this.notes.style.display;
    if (this.shownId !== d.id) { // another node: its code starts at the top
      this.shownId = d.id;
      setText(this.code, d.code || "");
      this.code.scrollTop = 0;
    } else {
      setText(this.code, d.code || ""); // unchanged text is not touched: scroll survives
    }
    this.diff.replaceChildren();
    for (const line of (d.diff || "").split("\n")) {
      const cls = line.startsWith("+") && !line.startsWith("+++") ? "nimm-add"
        : line.startsWith("-") && !line.startsWith("---") ? "nimm-del" : null;
      this.diff.append(el("span", cls, `${line}\n`));
    }
    this._tabs();
  }
}

// -- what-if (node panel): a changed input schedule, forecast in the sandbox ----------------
class WhatIf {
  constructor(send) {
    this.send = send;
    this.box = el("div", "nimm-whatif");
    this.trajectory = el("input", "nimm-whatif-trajectory");
    this.trajectory.type = "number"; this.trajectory.min = "0"; this.trajectory.value = "0";
    this.split = el("select", "nimm-whatif-split");
    for (const s of ["test", "val", "train"]) this.split.append(new Option(s, s));
    this.input = el("select", "nimm-whatif-input");
    this.op = el("select", "nimm-whatif-op");
    for (const [v, t] of [["zero", "switch off"], ["scale", "scale by"], ["shift", "shift by (steps)"]]) {
      this.op.append(new Option(t, v));
    }
    this.value = el("input", "nimm-whatif-value");
    this.value.type = "number"; this.value.step = "any"; this.value.value = "2";
    this.run = el("button", "nimm-whatif-run", "what if?");
    this.status = el("div", "nimm-whatif-status");
    this.plot = svg("svg", { class: "nimm-whatif-plot", viewBox: "0 0 360 150", width: 360, height: 150 });
    const form = el("div", "nimm-whatif-form");
    form.append(el("span", null, "trajectory "), this.trajectory, this.split, this.input, this.op,
      this.value, this.run);
    this.box.append(el("div", "nimm-subtitle", "what if (forecast in the sandbox)"), form,
      this.status, this.plot);
    const showValue = () => { this.value.style.display = this.op.value === "zero" ? "none" : ""; };
    this.op.addEventListener("change", showValue);
    showValue();
    this.run.addEventListener("click", () => {
      if (this.node === undefined) return;
      setText(this.status, "running the node's model in the sandbox…");
      this.send({ action: "what_if", node: this.node, trajectory: Number(this.trajectory.value) || 0,
        split: this.split.value, input: this.input.value, op: this.op.value,
        value: Number(this.value.value) || 0 });
    });
  }

  update(node, ok, inputs, answer) {
    this.node = node;
    this.box.style.display = ok && inputs.length ? "" : "none";
    if (this.input.options.length !== inputs.length) {
      this.input.replaceChildren(...inputs.map((n) => new Option(n, n)));
    }
    // nothing selected, or an answer about another node: nothing to show (undefined !== an id)
    const mine = node !== undefined && answer && answer.node === node;
    if (!mine) { setText(this.status, ""); this.plot.replaceChildren(); return; }
    if (answer.running) { setText(this.status, "running the node's model in the sandbox…"); return; }
    if (answer.error || !answer.series) {
      setText(this.status, answer.error || ""); this.plot.replaceChildren(); return;
    }
    setText(this.status, `${answer.target}: ${answer.change} · solid: observed schedule, dashed: what-if`);
    this._draw(answer);
  }

  _draw(a) {
    const W = 360, H = 150, L = 40, R = 8, T = 8, B = 18;
    const t = a.time || [];
    const all = Object.values(a.series).flat().filter((v) => v !== null && isFinite(v));
    if (!t.length || !all.length) { this.plot.replaceChildren(); return; }
    const x0 = Math.min(...t), x1 = Math.max(...t), y0 = Math.min(...all), y1 = Math.max(...all);
    const sx = (x) => L + ((x - x0) / ((x1 - x0) || 1)) * (W - L - R);
    const sy = (y) => H - B - ((y - y0) / ((y1 - y0) || 1)) * (H - T - B);
    const kids = [svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "nimm-axis" }),
      svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "nimm-axis" })];
    for (const [v, y] of [[y1, T + 8], [y0, H - B]]) {
      const lab = svg("text", { x: 2, y, class: "nimm-tick" }); lab.textContent = fmt(v, 3); kids.push(lab);
    }
    const styles = { model: "nimm-val", "model what-if": "nimm-val nimm-dashed",
      against: "nimm-train", "against what-if": "nimm-train nimm-dashed" };
    for (const [name, ys] of Object.entries(a.series)) {
      const pts = t.map((x, i) => [x, ys[i]]).filter((p) => p[1] !== null && isFinite(p[1]));
      if (name === "observed") {
        for (const p of pts) kids.push(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 1.6, class: "nimm-observed" }));
      } else if (pts.length) {
        kids.push(svg("polyline", { points: pts.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "),
          class: `nimm-whatif-line ${styles[name] || ""}`, "data-series": name }));
      }
    }
    this.plot.replaceChildren(...kids);
  }
}

// -- the view --------------------------------------------------------------------------
function render({ model, el: root }) {
  root.classList.add("nimm-widget");
  const head = el("div", "nimm-head");
  const title = el("span", "nimm-title");
  const counters = el("div", "nimm-counters");
  const stop = el("button", "nimm-stop", "Stop");
  const exp = el("button", "nimm-export", "Export best");
  const runId = el("span", "nimm-run-id");
  head.append(title, runId, el("span", "nimm-toolbar-gap"), stop, exp);
  const msg = el("div", "nimm-message");
  const toolbar = el("div", "nimm-toolbar");
  const followBox = el("label", "nimm-follow-label");
  const follow = el("input", "nimm-follow");
  follow.type = "checkbox";
  follow.checked = true;
  followBox.append(follow, el("span", null, " follow the running node"));
  const zoomIn = el("button", "nimm-zoom-in", "+"), zoomOut = el("button", "nimm-zoom-out", "−");
  const fit = el("button", "nimm-zoom-fit", "fit");
  toolbar.append(followBox, el("span", "nimm-toolbar-gap"), el("span", null, "zoom "), zoomOut, zoomIn, fit,
    el("span", "nimm-hint", "Ctrl+wheel zooms, drag pans"));
  const body = el("div", "nimm-body");
  const treeBox = el("div", "nimm-tree");
  const listBox = el("div", "nimm-change-list");
  const side = el("div", "nimm-side");
  const curveBox = el("div", "nimm-panel");
  const curveTitle = el("div", "nimm-panel-title", "loss curve");
  const curve = el("div", "nimm-curve");
  curveBox.append(curveTitle, curve);
  const bestBox = el("div", "nimm-panel");
  const best = el("div", "nimm-best-so-far");
  bestBox.append(el("div", "nimm-panel-title", "best validation RMSE so far"), best);
  side.append(curveBox, bestBox);
  body.append(treeBox, listBox, side);
  const detailsBox = el("div", "nimm-details");
  root.append(head, counters, msg, toolbar, body, legend(), detailsBox);

  const select = (id) => {
    follow.checked = false; // a click pins the view to that node; the toggle follows again
    model.set("selected", id);
    model.save_changes();
    schedule(["selected"]);
  };
  const tree = new Tree(treeBox, select);
  const list = new ChangeList(listBox, select, (id, on) => tree.hover(id, on));
  const details = new Details(detailsBox);
  const whatIf = new WhatIf((m) => { try { model.send(m); } catch (e) { /* comm gone */ } });
  detailsBox.append(whatIf.box);
  const lossPlot = new Plot(curve, { cls: "nimm-curve-svg", xlabel: "epoch",
    ylabel: () => "RMSE, normalised", empty: "no training progress yet" });
  const bestPlot = new Plot(best, { cls: "nimm-best-svg", xlabel: "evaluations", integerX: true,
    ylabel: () => `val RMSE${unitOf(model)}`, empty: "no successful evaluation yet",
    xmax: () => (model.get("counters") || {}).evaluated || 0 });
  zoomIn.addEventListener("click", () => { tree.auto = false; tree.setZoom(tree.zoom * 1.25); });
  zoomOut.addEventListener("click", () => { tree.auto = false; tree.setZoom(tree.zoom / 1.25); });
  fit.addEventListener("click", () => { tree.auto = true; tree.fit(); });
  follow.addEventListener("change", () => schedule(["curves"]));

  // kernel liveness: a view whose kernel no longer answers says so and disables its buttons
  // (a kernel busy with a --wait search does not answer pings but still sends updates)
  let seq = 0, waiting = null, unanswered = false, lastUpdate = 0;
  const ping = () => {
    if (waiting) return;
    const mine = ++seq;
    const sent = Date.now();
    try { model.send({ action: "ping", seq: mine }); } catch (e) { /* comm gone */ }
    waiting = setTimeout(() => {
      waiting = null;
      if (lastUpdate > sent) return;
      unanswered = true;
      schedule(["message"]);
    }, PING_TIMEOUT_MS);
  };
  const onMsg = (content) => {
    if (!content || content.type !== "pong") return;
    if (waiting) { clearTimeout(waiting); waiting = null; }
    if (unanswered) { unanswered = false; schedule(["message"]); }
  };
  model.on("msg:custom", onMsg);
  // A restarted or shut-down kernel: ipywidgets marks the model's comm dead and says so with
  // "comm_live_update" (a live model's comm only ever goes from live to dead: a new kernel
  // has new models). The class is checked too: ipywidgets' own views get it.
  let commDead = false;
  const disconnected = () => commDead || root.classList.contains("jupyter-widgets-disconnected");
  const onCommLive = () => { commDead = true; schedule(["message"]); };
  model.on("comm_live_update", onCommLive);
  const send = (action) => {
    ping(); // first: sending on a closed comm throws
    try { model.send({ action }); } catch (e) { /* the ping's timeout reports it */ }
  };
  stop.addEventListener("click", () => send("stop"));
  exp.addEventListener("click", () => send("export"));
  const timer = setInterval(() => { if (!model.get("finished") || unanswered) ping(); }, PING_EVERY_MS);

  const counterEls = new Map();
  const counter = (k) => {
    if (!counterEls.has(k)) {
      const span = el("span", "nimm-counter");
      span.dataset.counter = k;
      span.append(el("b"), el("span", null, ` ${k}`));
      counters.append(span);
      counterEls.set(k, span);
    }
    return counterEls.get(k);
  };
  const showCounter = (k, value, visible = true) => {
    const span = counter(k);
    span.style.display = visible ? "" : "none";
    setText(span.firstChild, value === undefined || value === null ? "–" : value);
  };

  const parts = {
    head() {
      const fin = model.get("finished");
      setText(title, `nimm search · ${model.get("task_name") || ""} · ` +
        `${model.get("end_state") || (fin ? "finished" : "running")}`);
      setText(runId, `run ${model.get("run_id") || ""}`);
      const dead = disconnected(), gone = unanswered || dead;
      const resume = model.get("resume") || "%nimm_search --resume RUN_DIR";
      root.dataset.finished = fin ? "true" : "false";
      root.dataset.kernel = gone ? "gone" : "live";
      stop.disabled = !!fin || gone;
      exp.disabled = gone || model.get("best_id") === null || model.get("best_id") === undefined;
      setText(msg, dead
        ? "the kernel that ran this search was restarted or shut down: this view is no longer " +
          `live (Stop and Export are off). Continue the run with ${resume}`
        : unanswered
          ? "the kernel that ran this search does not answer (busy, restarted or shut down): this " +
            `view is no longer live. Continue the run with ${resume}`
          : model.get("message") || "");
      msg.classList.toggle("nimm-warning", gone);
    },
    counters() {
      const c = model.get("counters") || {};
      showCounter("evaluated", c.budget ? `${c.evaluated}/${c.budget}` : c.evaluated);
      showCounter("running", c.running);
      showCounter("failed", c.failed);
      showCounter("cancelled", c.cancelled, !!c.cancelled);
      showCounter("elapsed", fmtTime(c.elapsed));
      showCounter("left", c.eta === null || c.eta === undefined ? "–" : `≈${fmtTime(c.eta)}`, !model.get("finished"));
      showCounter("per eval", c.median_eval ? fmtTime(c.median_eval) : "–");
      showCounter("tokens", c.tokens, !!c.spend);
      showCounter("cost", `$${Number(c.cost || 0).toFixed(3)}`, !!c.spend);
    },
    tree() {
      const nodes = model.get("nodes") || [];
      const unit = unitOf(model);
      tree.update(nodes, model.get("branches") || [], model.get("best_id"), model.get("selected"), unit);
      list.update(nodes, model.get("selected"), unit);
      if (follow.checked) {
        const running = nodes.filter((n) => n.state === "running");
        if (running.length) tree.reveal(running[running.length - 1].id);
      }
    },
    curves() {
      const curves = model.get("curves") || {};
      const nodes = model.get("nodes") || [];
      let id = follow.checked ? null : model.get("selected");
      if (id === null || id === undefined || !curves[String(id)]) {
        const running = nodes.filter((n) => n.state === "running" && curves[String(n.id)]);
        id = running.length ? running[running.length - 1].id : model.get("best_id");
      }
      const pts = (id !== null && id !== undefined && curves[String(id)]) || [];
      curve.dataset.nodeId = id === null || id === undefined ? "" : String(id);
      setText(curveTitle, id === null || id === undefined ? "loss curve" : `loss curve · node #${id}`);
      lossPlot.update([
        { name: "train", cls: "nimm-train", points: pts.map((p) => [p.epoch, p.train]) },
        { name: "hold-out", cls: "nimm-val", points: pts.map((p) => [p.epoch, p.val]) },
      ]);
    },
    best() {
      const pts = model.get("best_so_far") || [];
      bestPlot.update([{ name: "best val", cls: "nimm-val", step: true, points: pts.map((p) => [p[0], p[1]]) }]);
    },
    details() {
      const d = model.get("details") || {};
      details.update(d, unitOf(model), !!(model.get("counters") || {}).spend);
      whatIf.update(d.id, d.status === "ok", model.get("what_if_inputs") || [], model.get("what_if") || {});
    },
  };
  // which parts show which traits: a change redraws only those parts
  const uses = {
    nodes: ["tree", "curves"], branches: ["tree"], best_id: ["tree", "curves", "head"],
    curves: ["curves"], best_so_far: ["best"], counters: ["counters", "best", "details"],
    selected: ["tree", "curves"], details: ["details"], finished: ["head", "counters"],
    end_state: ["head"], message: ["head"], run_id: ["head"], task_name: ["head"],
    unit: ["tree", "best", "details"], resume: ["head"], what_if: ["details"],
    what_if_inputs: ["details"],
  };
  const dirty = new Set();
  let pending = false;
  const schedule = (traits) => {
    for (const t of traits) for (const p of uses[t] || []) dirty.add(p);
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const todo = [...dirty];
      dirty.clear();
      for (const p of todo) parts[p]();
    });
  };
  const handlers = Object.keys(uses).map((t) => [t, () => {
    lastUpdate = Date.now();
    if (unanswered) { unanswered = false; schedule(["message"]); } // it speaks: it is alive
    schedule([t]);
  }]);
  for (const [t, h] of handlers) model.on(`change:${t}`, h);
  for (const p of Object.keys(parts)) parts[p]();
  requestAnimationFrame(() => { if (tree.auto) tree.fit(); }); // once the pane has a size
  ping();
  return () => {
    for (const [t, h] of handlers) model.off(`change:${t}`, h);
    model.off("msg:custom", onMsg);
    model.off("comm_live_update", onCommLive);
    clearInterval(timer);
    if (waiting) clearTimeout(waiting);
  };
}

export default { render };
