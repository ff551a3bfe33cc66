// epic-kernel live view (anywidget ESM). Traits: columns, header, rows, bars, trace, sot, cancellable.
// The calls table's columns and each row's cell texts come from Python (epic_kernel/runtime/calltable.py).
// Mirrors widgets/_snapshot.py (same class names and data-* attributes), but patches the DOM in
// place, so scroll position and opened/closed panels survive updates.

const STATE_COLORS = { queued: "#f9ab00", running: "#1a73e8", done: "#188038", failed: "#d93025",
  cancelled: "#80868b" };
const SVG = "http://www.w3.org/2000/svg";

// a bar's colour is its state (the legend says which); its batch is a label and the hover text
function stateColor(state) {
  return STATE_COLORS[state] || "#80868b";
}

function laneHeight(lanes) {
  return Math.max(7, Math.min(14, 240 / Math.max(1, lanes)));
}

function barTip([id, , start, end, state, batch, fn, line, tin, tout, prompt, cached]) {
  const parts = [`#${id} ${fn}${line !== null && line !== undefined ? ` (line ${line})` : ""}: ${state}` +
    (cached ? " (cached)" : ""), `${start.toFixed(3)}-${end.toFixed(3)} s, latency ${(end - start).toFixed(3)} s`,
    `tokens ${tin ?? 0} in / ${tout ?? 0} out`];
  if (batch !== null && batch !== undefined) parts.push(`batch ${batch}`);
  if (prompt) parts.push(`prompt: ${prompt}`);
  return parts.join("\n");
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function panel(root, cls, open) {
  const d = el("details", cls);
  d.open = open;
  const s = el("summary");
  d.append(s);
  root.append(d);
  return [d, s];
}

function counts(h) {
  const parts = [];
  for (const k of ["queued", "running", "done", "failed", "cancelled", "cached"]) {
    if (h[k] || k === "running" || k === "done") parts.push(`${h[k] || 0} ${k}`);
  }
  // the run's call budget beside the count (mirrors _counts() in _snapshot.py)
  const budget = h.max_calls ? ` (budget ${h.max_calls.toLocaleString("en-US")})` : "";
  return `${h.calls || 0} calls${budget}: ${parts.join(", ")}`;
}

// mirrors loading_text() in _snapshot.py
function loadingText(h) {
  if (h.loading) {
    const name = String(h.loading).split(" · ").pop();
    return `loading ${name} … ${Number(h.loading_s || 0).toFixed(0)} s (not counted in call latencies)`;
  }
  if (h.load_s !== null && h.load_s !== undefined && h.load_s >= 0.5) {
    return `model loaded in ${Number(h.load_s).toFixed(1)} s (not counted in call latencies)`;
  }
  return "";
}

function rowCells(r) {
  return r.cells || [];
}

function guard(name, fn) {
  return () => {
    try { fn(); } catch (err) { console.error(`[epic] ${name} failed to render`, err); }
  };
}

function render({ model, el: host }) {
  const root = el("div", "epic-live");
  host.append(root);

  // header: status, counters, Cancel
  const header = el("div", "epic-header");
  const status = el("span", "epic-status");
  const title = el("span", "epic-title");
  const elapsed = el("span", "epic-elapsed");
  const steps = el("span", "epic-steps");
  const callCounts = el("span", "epic-counts");
  const tokens = el("span", "epic-tokens");
  const par = el("span", "epic-parallelism");
  const config = el("span", "epic-config");
  const loading = el("span", "epic-loading");
  const cancel = el("button", "epic-cancel", "Cancel");
  cancel.title = "cancel every in-flight call (finished results are kept)";
  cancel.addEventListener("click", () => {
    model.send({ type: "cancel" });
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
  });
  header.append(status, title, elapsed, steps, callCounts, tokens, par, config, loading, cancel);
  const error = el("div", "epic-error");
  root.append(header, error);

  // calls table
  const [callsPanel, callsSummary] = panel(root, "epic-calls-panel", true);
  const scroll = el("div", "epic-calls-scroll");
  const table = el("table", "epic-calls");
  const thead = el("thead");
  const headRow = el("tr");
  const columns = model.get("columns") || [];
  for (const c of columns) headRow.append(el("th", null, c.name));
  thead.append(headRow);
  const tbody = el("tbody");
  table.append(thead, tbody);
  const callsNote = el("div", "epic-note");
  const filterBar = el("div", "epic-filter");
  let filter = "all";                     // show one state only (kept across updates)
  scroll.append(table);
  callsPanel.append(filterBar, scroll, callsNote);
  const trs = new Map();  // call id -> <tr>, reused across updates

  // token views of calls that asked for logprobs= (HTML rendered and escaped by widgets/_tokens.py)
  const tokensBox = el("div", "epic-tokens-box");
  callsPanel.after(tokensBox);

  // timeline
  const [timePanel, timeSummary] = panel(root, "epic-timeline-panel", true);
  const svg = document.createElementNS(SVG, "svg");
  svg.classList.add("epic-timeline");
  const timeNote = el("div", "epic-note");
  const legend = el("div", "epic-legend");
  const timeScroll = el("div", "epic-timeline-scroll");
  timeScroll.append(svg);
  timePanel.append(legend, timeScroll, timeNote);

  // reduction trace
  const [tracePanel, traceSummary] = panel(root, "epic-trace-panel", false);
  const rules = el("div", "epic-rules");
  const stepList = el("ol", "epic-steps");
  tracePanel.append(rules, stepList);

  // Skeleton-of-Thought
  const [sotPanel, sotSummary] = panel(root, "epic-sot", true);
  const sotQuestion = el("div", "epic-question");
  const sotList = el("ol");
  const sotNote = el("div", "epic-note");
  const sotAnswer = el("div", "epic-answer");
  const sotFold = el("details", "epic-answer-panel");
  sotFold.append(el("summary", null, "assembled answer"));
  const sotGraph = document.createElementNS(SVG, "svg");
  sotGraph.classList.add("epic-graph");
  const sotCritical = el("div", "epic-note epic-critical-path");
  sotPanel.append(sotQuestion, sotNote, sotGraph, sotCritical, sotList, sotFold, sotAnswer);

  const drawHeader = guard("header", () => {
    const h = model.get("header") || {};
    const state = h.state || "starting";
    root.dataset.state = state;
    status.dataset.state = state;
    status.textContent = state;
    title.textContent = h.title || "";
    elapsed.textContent = `${Number(h.elapsed || 0).toFixed(2)} s`;
    steps.textContent = `${h.steps || 0} steps`;
    callCounts.textContent = counts(h);
    tokens.textContent = `tokens ${h.tokens_in || 0} in / ${h.tokens_out || 0} out` +
      (h.tokens_reused ? ` (${h.tokens_reused} in reused)` : "");
    par.textContent = `parallelism ${Number(h.parallelism || 0).toFixed(1)}x`;
    config.textContent = h.strategy || h.backend ? `${h.strategy || ""} · ${h.backend || ""}` : "";
    loading.textContent = loadingText(h);
    loading.style.display = loading.textContent ? "" : "none";
    error.textContent = h.error || "";
    error.style.display = h.error ? "" : "none";
    const live = state === "running" || state === "starting";
    cancel.style.display = model.get("cancellable") && live ? "" : "none";
    callsSummary.textContent = `Calls (${h.calls || 0})`;
    const more = (h.calls || 0) - (h.rows_shown || 0);
    callsNote.textContent = more > 0 ? `… ${more} more calls not shown (all are in _epic_last.calls)` : "";
    callsPanel.style.display = h.calls ? "" : "none";
  });

  const drawFilter = (rows) => {
    const counts = {};
    for (const r of rows) counts[r.state] = (counts[r.state] || 0) + 1;
    const states = ["queued", "running", "done", "failed", "cancelled"].filter((k) => counts[k]);
    if (filter !== "all" && !counts[filter]) filter = "all";
    filterBar.style.display = states.length > 1 || rows.length > 20 ? "" : "none";
    const buttons = [["all", rows.length], ...states.map((k) => [k, counts[k]])].map(([k, n]) => {
      const b = el("button", null, `${k} ${n}`);
      b.setAttribute("aria-pressed", String(k === filter));
      b.dataset.filter = k;
      b.addEventListener("click", () => { filter = k; drawRows(); });
      return b;
    });
    filterBar.replaceChildren(el("span", null, "show: "), ...buttons);
  };

  const drawRows = guard("calls table", () => {
    const all = model.get("rows") || [];
    drawFilter(all);
    const rows = filter === "all" ? all : all.filter((r) => r.state === filter);
    const keep = new Set();
    const ordered = [];
    for (const r of rows) {
      keep.add(r.id);
      let tr = trs.get(r.id);
      if (!tr) {
        tr = el("tr");
        tr.dataset.id = r.id;
        for (let i = 0; i < columns.length; i++) tr.append(el("td"));
        trs.set(r.id, tr);
      }
      tr.dataset.state = r.state;
      const cells = rowCells(r);
      for (let i = 0; i < cells.length; i++) {
        const td = tr.children[i];
        const text = String(cells[i]);
        if (td.textContent !== text) {
          td.textContent = text;
          if (columns[i] && columns[i].long) td.title = text;
        }
      }
      ordered.push(tr);
    }
    for (const id of [...trs.keys()]) if (!keep.has(id)) trs.delete(id);
    tbody.replaceChildren(...ordered);
  });

  const drawBars = guard("timeline", () => {
    const h = model.get("header") || {};
    const bars = model.get("bars") || [];
    timePanel.style.display = bars.length ? "" : "none";
    const lanes = Math.max(1, h.lanes || 1);
    const laneH = laneHeight(lanes);
    const width = Math.max(320, Math.min(900, (host.clientWidth || 640) - 8));
    const height = lanes * laneH + 16;
    const span = h.span || 1e-9;
    const scale = width / span;
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const nodes = [];
    const load = h.load_span;
    if (load && load[1] > load[0]) {             // the model loading: a band behind the bars
      const band = document.createElementNS(SVG, "rect");
      const x0 = load[0] * scale;
      const x1 = load[1] * scale;
      band.setAttribute("class", "epic-load-band");
      band.setAttribute("x", x0.toFixed(1));
      band.setAttribute("y", "0");
      band.setAttribute("width", Math.max(1, x1 - x0).toFixed(1));
      band.setAttribute("height", String(Math.max(1, height - 14)));
      band.setAttribute("fill", "#eceff1");
      nodes.push(band);
      if (x1 - x0 > 90) {
        const t = document.createElementNS(SVG, "text");
        t.setAttribute("x", (x0 + 4).toFixed(1));
        t.setAttribute("y", "11");
        t.setAttribute("font-size", "10");
        t.setAttribute("fill", "#5f6368");
        t.textContent = h.loading ? "loading the model…" : "loading the model";
        nodes.push(t);
      }
    }
    for (const bar of bars) {
      const [id, lane, start, end, state, batch] = bar;
      const r = document.createElementNS(SVG, "rect");
      const x = start * scale;
      const y = lane * laneH;
      r.setAttribute("x", x.toFixed(1));
      r.setAttribute("y", y.toFixed(1));
      const w = (end - start) * scale;          // 1 px gap: back-to-back calls in a lane stay apart
      const shown = Math.max(1, w > 3 ? w - 1 : w);
      r.setAttribute("width", shown.toFixed(1));
      r.setAttribute("height", Math.max(1, laneH - 1).toFixed(1));
      r.setAttribute("fill", stateColor(state));
      r.dataset.state = state;
      r.dataset.id = id;
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = barTip(bar);
      r.append(tip);
      nodes.push(r);
      if (batch !== null && batch !== undefined) {
        r.dataset.batch = batch;
        if (shown >= 24 && laneH >= 10) {
          const t = document.createElementNS(SVG, "text");
          t.setAttribute("x", (x + 3).toFixed(1));
          t.setAttribute("y", (y + laneH - 3).toFixed(1));
          t.setAttribute("font-size", "9");
          t.setAttribute("fill", "#fff");
          t.setAttribute("pointer-events", "none");
          t.textContent = `b${batch}`;
          nodes.push(t);
        }
      }
    }
    for (const [x, anchor, text] of [[0, "start", "0 s"], [width, "end", `${span.toFixed(2)} s`]]) {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", x);
      t.setAttribute("y", height - 3);
      t.setAttribute("font-size", "10");
      t.setAttribute("text-anchor", anchor);
      t.textContent = text;
      nodes.push(t);
    }
    svg.replaceChildren(...nodes);
    const keys = Object.keys(STATE_COLORS).filter((k) => h[k] || k === "running" || k === "done");
    const items = keys.map((k) => {
      const s = el("span");
      const sw = el("i");
      sw.style.background = stateColor(k);
      s.append(sw, `${k} ${h[k] || 0}`);
      return s;
    });
    const firstBatch = bars.map((b) => b[5]).find((b) => b !== null && b !== undefined);
    if (h.batches && firstBatch !== undefined) {
      items.push(el("span", "epic-legend-batch",
        `label b${firstBatch} = decode batch ${firstBatch}; hover a bar for its details`));
    }
    legend.replaceChildren(...items);
    timeSummary.textContent = `Timeline (${lanes} lane${lanes === 1 ? "" : "s"})`;
    timeNote.textContent = h.bars_omitted ? `first ${h.bars_omitted} calls not drawn` : "";
  });

  const drawTrace = guard("trace", () => {
    const t = model.get("trace") || {};
    traceSummary.textContent = `Reduction trace (${t.steps || 0} steps)`;
    const spans = [];
    for (const [rule, n] of Object.entries(t.rules || {})) {
      if (!n) continue;
      const s = el("span", null, `${rule} ${n}`);
      s.dataset.rule = rule;
      spans.push(s);
    }
    rules.replaceChildren(...spans);
    const items = (t.recent || []).map(([n, rule, text]) => {
      const li = el("li", null, `${rule}: ${text}`);
      li.value = n;
      return li;
    });
    stepList.replaceChildren(...items);
    stepList.style.display = items.length ? "" : "none";
    stepList.scrollTop = stepList.scrollHeight;
  });

  const drawSot = guard("skeleton", () => {
    const s = model.get("sot") || {};
    const points = s.points || [];
    sotPanel.style.display = points.length || s.question || s.answer ? "" : "none";
    const g = s.graph;
    sotSummary.textContent = g ? `Skeleton graph (${points.length} points, ${g.edges.length} edges)`
      : `Skeleton-of-Thought (${points.length} points)`;
    drawGraph(sotGraph, sotCritical, g);
    sotQuestion.textContent = s.question || "";
    sotNote.textContent = s.note || "";
    sotNote.style.display = s.note ? "" : "none";
    // the assembled answer repeats the points: folded when there are points, shown when not
    const folded = points.length > 0 && !!s.answer;
    sotFold.style.display = folded ? "" : "none";
    if (folded) {
      if (!sotFold.contains(sotAnswer)) sotFold.append(sotAnswer);
    } else if (sotAnswer.parentNode !== sotPanel) {
      sotPanel.append(sotAnswer);
    }
    sotAnswer.textContent = s.answer || "";
    sotAnswer.style.display = s.answer ? "" : "none";
    const items = points.map((p) => {
      const li = el("li");
      li.value = p.index;
      li.dataset.index = p.index;
      li.dataset.state = p.done ? "done" : "running";
      li.append(el("b", null, p.text), el("div", "epic-expansion", p.expansion));
      return li;
    });
    sotList.replaceChildren(...items);
  });

  let shownTokens = null;
  const drawTokens = guard("tokens", () => {
    const html = model.get("tokens_html") || "";
    if (html === shownTokens) return;
    shownTokens = html;
    // keep the views a reader opened open across updates
    const opened = [...tokensBox.querySelectorAll("details.epic-tokview[open]")].map((d) => d.dataset.call);
    tokensBox.innerHTML = html;
    for (const d of tokensBox.querySelectorAll("details.epic-tokview")) {
      if (opened.includes(d.dataset.call)) d.open = true;
    }
  });

  // the skeleton graph (mirrors _snapshot._sot_graph_svg; the layout comes from widgets/_sot_graph.py)
  function drawGraph(svgEl, caption, g) {
    svgEl.style.display = g ? "" : "none";
    caption.style.display = g ? "" : "none";
    if (!g) return;
    svgEl.setAttribute("width", g.width);
    svgEl.setAttribute("height", g.height);
    svgEl.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
    const svgEl2 = (tag, attrs, text) => {
      const e = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      return e;
    };
    const defs = svgEl2("defs", {});
    const marker = svgEl2("marker", { id: "epic-arrow", viewBox: "0 0 8 8", refX: 8, refY: 4,
      markerUnits: "userSpaceOnUse", markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.append(svgEl2("path", { d: "M0,0 L8,4 L0,8 z" }));
    defs.append(marker);
    const items = [defs];
    for (const e of g.edges) {
      items.push(svgEl2("line", { class: e.critical ? "epic-edge epic-critical" : "epic-edge", x1: e.x1, y1: e.y1,
        x2: e.x2, y2: e.y2, "marker-end": "url(#epic-arrow)" }));
    }
    for (const n of g.nodes) {
      const node = svgEl2("g", { class: n.critical ? "epic-node epic-critical" : "epic-node",
        "data-index": n.index, "data-state": n.state });
      const label = n.text.length <= 20 ? n.text : n.text.slice(0, 19) + "…";
      node.append(svgEl2("title", {}, `${n.index}. ${n.text}`),
        svgEl2("circle", { cx: n.x, cy: n.y, r: 9 }),
        svgEl2("text", { x: n.x, y: n.y + 4, "text-anchor": "middle" }, String(n.index)),
        svgEl2("text", { class: "epic-node-label", x: n.x, y: n.y + 23, "text-anchor": "middle" }, label));
      items.push(node);
    }
    svgEl.replaceChildren(...items);
    const path = g.nodes.filter((n) => n.critical).map((n) => n.index);
    caption.textContent = path.length
      ? `critical path: ${path.join(" → ")} (${path.length} of ${g.nodes.length} points in a row; every other point runs beside it)`
      : `${g.depth} rounds of expansions at least (longest chain of dependencies)`;
  }

  const drawAll = () => { drawHeader(); drawRows(); drawBars(); drawTrace(); drawSot(); drawTokens(); };
  drawAll();
  const handlers = [
    ["change:header", () => { drawHeader(); drawBars(); }],
    ["change:cancellable", drawHeader],
    ["change:rows", drawRows],
    ["change:bars", drawBars],
    ["change:trace", drawTrace],
    ["change:sot", drawSot],
    ["change:tokens_html", drawTokens],
  ];
  for (const [ev, fn] of handlers) model.on(ev, fn);
  // the timeline is drawn to the host's width, which is 0 until the view is attached (Lab renders
  // a re-published view detached): redraw when the width changes, not only on data updates
  let drawnWidth = host.clientWidth;
  const resize = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
    const w = host.clientWidth;
    if (w && w !== drawnWidth) { drawnWidth = w; drawBars(); }
  }) : null;
  if (resize) resize.observe(host);
  return () => {
    for (const [ev, fn] of handlers) model.off(ev, fn);
    if (resize) resize.disconnect();
  };
}

export default { render };
