// epic-kernel reduction stepper. One renderer for the notebook output, the saved notebook and an
// nbconvert export: `_stepper.py` inlines this file and the recording (runtime/recorder.py's JSON)
// into the cell's HTML, so stepping needs no kernel and never re-runs the program. States are
// rebuilt from the recorded diffs, with a checkpoint every 64 steps so going back is cheap.
function epicStepper(root, rec) {
  "use strict";
  const steps = rec.steps, nodes = rec.nodes, n = steps.length;
  const calls = new Map(rec.calls.map((c) => [c[0], c]));
  const RULE_HELP = {
    beta: "beta: a closure is called: its body is instantiated (arguments passed as variables, known or not)",
    delta: "delta: a Python function with known arguments is called inline; its result is spliced in",
    dispatch: "dispatch: an external call (llm, a tool) has its arguments: it starts and becomes a task",
    resolve: "resolve: a task answered: its result is spliced in and what waited on it is ready again",
    project: "project: an unpack meets a pack: the names are wired to its components",
    wait: "no rule fires: an input is still pending, so the node parks on that cell until it is bound",
    error: "an input is an error value: the node's output becomes that error (only dependents fail)",
    other: "a structural step (a loop or generator unfolding) that rewrote the graph",
  };
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const nodeText = (id) => (id >= 0 && nodes[id] ? nodes[id][1] : id === -2 ? "" : "(program entry)");
  const callText = (id) => {
    const c = calls.get(id);
    return c ? `${c[1]} #${c[0]}${c[2] ? ` (line ${c[2]})` : ""}${c[8] ? " [cached answer]" : ""}` : `call #${id}`;
  };
  // steps of the loop and branch encodings (the recorder marks their IR rows): the stepper can skip them
  const plumbing = (i) => {
    const node = i < n && steps[i].n >= 0 ? nodes[steps[i].n] : null;
    return !!(node && node[3] >= 0 && rec.ir[node[3]] && rec.ir[node[3]][3]);
  };
  const nPlumbing = steps.reduce((a, _s, i) => a + (plumbing(i) ? 1 : 0), 0);
  const ruleSteps = rec.rule_steps !== undefined ? rec.rule_steps : rec.total;
  const waits = n - steps.filter((x) => ["beta", "delta", "dispatch", "resolve", "project"].includes(x.r)).length;
  const callsTotal = rec.calls_total !== undefined ? rec.calls_total : rec.calls.length;
  const runState = rec.state === "cancelled" ? "interrupted" : rec.state === "failed" ? "failed"
    : rec.truncated ? "truncated" : "done";

  // ------------------------------------------------------------------- states from diffs
  const fresh = () => ({ queue: rec.init.q.slice(), parked: new Map(), flight: new Set(), bound: new Map(),
    order: [] });
  const copy = (s) => ({ queue: s.queue.slice(), parked: new Map(s.parked), flight: new Set(s.flight),
    bound: new Map(s.bound), order: s.order.slice() });
  const apply = (s, d) => {
    if (d.q) s.queue = d.q.slice();
    else {
      if (d["q-"]) { const gone = new Set(d["q-"]); s.queue = s.queue.filter((x) => !gone.has(x)); }
      if (d["q+"]) s.queue.push(...d["q+"]);
    }
    for (const id of d["p-"] || []) s.parked.delete(id);
    for (const [id, producer, label] of d["p+"] || []) s.parked.set(id, [producer, label]);
    for (const c of d["f-"] || []) s.flight.delete(c);
    for (const c of d["f+"] || []) s.flight.add(c);
    for (const [id, value] of d.b || []) { s.bound.set(id, value); s.order.push(id); }
  };
  const EVERY = 64;
  const checkpoints = [fresh()];
  const stateAt = (k) => {
    let base = Math.min(Math.floor(k / EVERY), checkpoints.length - 1);
    const s = copy(checkpoints[base]);
    for (let i = base * EVERY; i < k; i++) {
      apply(s, steps[i]);
      if ((i + 1) % EVERY === 0 && checkpoints.length === (i + 1) / EVERY) checkpoints.push(copy(s));
    }
    return s;
  };

  // ---------------------------------------------------------------------------- layout
  root.replaceChildren();
  root.classList.add("epic-stepper-live");
  const head = el("div", "epic-stepper-head");
  const title = rec.title ? `${rec.title} · ` : "";
  const badge = el("span", "epic-stepper-state", runState);
  badge.dataset.state = runState;
  const cachedCalls = rec.calls.filter((c) => c[8]).length;
  head.append(el("b", null, "Reduction stepper"), badge,
    el("span", "epic-stepper-counts", `${title}${rec.strategy} · ${ruleSteps} steps` +
      (waits > 0 ? ` (and ${waits} waits: ${n} positions)` : "") + ` · ${callsTotal} calls` +
      (cachedCalls ? ` (${cachedCalls} from the answer cache)` : "") + ` · ${Number(rec.elapsed).toFixed(2)} s`));
  root.append(head);
  if (runState === "interrupted" || runState === "failed") {
    root.append(el("div", "epic-stepper-warn", runState === "interrupted"
      ? "This run was interrupted: the recording ends where it stopped."
      : "This run failed: the recording ends at the failure (the error is below the cell)."));
  }
  if (rec.truncated) {
    root.append(el("div", "epic-stepper-warn",
      `This run was too long to record in full: the first ${n} of its ${rec.total} positions are recorded ` +
      `(the limit is ${rec.max_steps}); it made ${callsTotal} calls in all. Step through them, or record a ` +
      "smaller program."));
  }
  const bar = el("div", "epic-stepper-controls");
  const button = (label, tip, fn, name) => {
    const b = el("button", null, label);
    b.title = tip;
    b.dataset.action = name;
    b.addEventListener("click", fn);
    bar.append(b);
    return b;
  };
  let k = 0, timer = null;
  const slider = el("input");
  slider.type = "range"; slider.min = "0"; slider.max = String(n); slider.value = "0";
  slider.className = "epic-stepper-slider";
  button("|◀", "back to the start", () => go(0), "first");
  button("◀", "one step back (←)", () => go(move(k, -1)), "back");
  button("▶", "one step forward (→)", () => go(move(k, 1)), "forward");
  button("▶|", "the end of the run", () => go(n), "last");
  button("next dispatch", "forward to just after the next step that starts a call", () => seek("dispatch", 1),
    "next-dispatch");
  button("next resolve", "forward to just after the next step where a call answers", () => seek("resolve", 1),
    "next-resolve");
  button("prev call event", "back to just after the previous dispatch or resolve", () => seek(null, -1), "prev-call");
  const play = button("play", "play the steps (about 4 a second)", () => toggle(), "play");
  const pos = el("span", "epic-stepper-pos");
  bar.append(slider, pos);
  let skip = false;
  if (nPlumbing > 0) {
    const lab = el("label", "epic-stepper-skip");
    const box = el("input");
    box.type = "checkbox";
    box.dataset.action = "skip-plumbing";
    box.addEventListener("change", () => { skip = box.checked; draw(); });
    lab.append(box, ` skip the ${nPlumbing} steps of loop and branch plumbing`);
    bar.append(lab);
  }
  root.append(bar);
  const now = el("div", "epic-stepper-now");
  root.append(now);
  const cols = el("div", "epic-stepper-cols");
  const left = el("div", "epic-stepper-col");
  const right = el("div", "epic-stepper-col");
  cols.append(left, right);
  root.append(cols);
  const box = (parent, titleText) => {
    const d = el("div", "epic-stepper-box");
    const h = el("div", "epic-stepper-box-title", titleText);
    const body = el("div", "epic-stepper-box-body");
    d.append(h, body);
    parent.append(d);
    return [h, body];
  };
  const [, srcBody] = box(left, "Cell source");
  const [, irBody] = box(left, "The program as a term (A-normal form)");
  const [queueTitle, queueBody] = box(right, "Ready queue");
  const [parkTitle, parkBody] = box(right, "Parked (waiting on a pending value)");
  const [flightTitle, flightBody] = box(right, "Calls in flight");
  const [boundTitle, boundBody] = box(right, "Values bound so far (newest first)");

  const srcLines = [];
  const srcList = el("ol", "epic-stepper-src");
  srcList.start = rec.first_line || 1;
  for (const text of (rec.source || "").replace(/\n$/, "").split("\n")) {
    const li = el("li", null, text || " ");
    srcList.append(li);
    srcLines.push(li);
  }
  srcBody.append(srcList);
  const irRows = [];
  const irList = el("div", "epic-stepper-ir");
  rec.ir.forEach(([depth, text], i) => {
    const row = el("div", "epic-ir-row", text);
    row.style.paddingLeft = `${depth * 1.5}em`;
    row.dataset.row = i;
    irList.append(row);
    irRows.push(row);
  });
  irBody.append(irList);
  if (!rec.ir.length) irBody.append(el("div", "epic-note", "(no IR: the run did not start a program)"));

  // ----------------------------------------------------------------------------- drawing
  const nodeItem = (id, extra) => {
    const li = el("li", null, nodeText(id));
    li.dataset.node = id;
    if (extra) li.append(el("span", "epic-stepper-dim", extra));
    return li;
  };
  function draw() {
    const s = stateAt(k);
    const next = k < n ? steps[k] : null;
    slider.value = String(k);
    pos.textContent = `position ${k} of ${n}` + (rec.truncated ? ` (run: ${rec.total})` : "");
    root.dataset.step = String(k);
    // what fires next, and why
    now.replaceChildren();
    const line = (label, step, which) => {
      const div = el("div", "epic-stepper-line");
      div.dataset.which = which;
      const badge = el("span", "epic-rule", step.r);
      badge.dataset.rule = step.r;
      div.append(el("span", "epic-stepper-dim", label), badge, el("code", null, nodeText(step.n)));
      if (step.c !== null && step.c !== undefined) {
        const c = calls.get(step.c);
        const what = step.r === "resolve" ? ` answered: ${c ? c[4] : ""}` : ` started: ${c ? c[3] : ""}`;
        div.append(el("span", "epic-stepper-call", `${callText(step.c)}${what}`));
      }
      if (step.r === "wait") {
        const p = (step["p+"] || []).find((x) => x[0] === step.n);
        if (p) div.append(el("span", "epic-stepper-dim", ` waits on ${p[2]}`));
      }
      return div;
    };
    if (k > 0) {
      const last = line("just fired: ", steps[k - 1], "last");
      last.append(el("div", "epic-stepper-help", RULE_HELP[steps[k - 1].r] || ""));
      now.append(last);
    }
    if (next) now.append(line("next: ", next, "next"));
    else {
      const end = { done: "the run has ended", truncated: "end of the recording (the run went on)",
        interrupted: "the run was interrupted here", failed: "the run failed here" }[runState];
      const d = el("div", "epic-stepper-line");
      d.dataset.which = "end";
      d.append(el("b", null, end), el("span", "epic-stepper-dim", rec.value ? `  value: ${rec.value}` : ""));
      now.append(d);
    }
    if (k === 0 && next) now.append(el("div", "epic-stepper-help", RULE_HELP[next.r] || ""));
    // highlight: the node about to fire, in the IR and the source
    for (const r of irRows) { r.classList.remove("epic-hot", "epic-queued", "epic-parked"); }
    for (const l of srcLines) l.classList.remove("epic-hot");
    for (const id of s.queue) { const r = nodes[id] ? irRows[nodes[id][3]] : null; if (r) r.classList.add("epic-queued"); }
    for (const id of s.parked.keys()) { const r = nodes[id] ? irRows[nodes[id][3]] : null; if (r) r.classList.add("epic-parked"); }
    if (next && nodes[next.n]) {
      const [, , line, row] = nodes[next.n];
      if (row >= 0 && irRows[row]) { irRows[row].classList.add("epic-hot"); reveal(irBody, irRows[row]); }
      const li = line ? srcLines[line - (rec.first_line || 1)] : null;
      if (li) li.classList.add("epic-hot");
    }
    // ready queue (the order the strategy takes them in depends on it: FIFO, LIFO or random)
    queueTitle.textContent = `Ready queue (${s.queue.length})`;
    const ql = el("ol", "epic-stepper-list");
    s.queue.slice(0, 40).forEach((id) => ql.append(nodeItem(id)));
    queueBody.replaceChildren(ql);
    if (s.queue.length > 40) queueBody.append(el("div", "epic-note", `… ${s.queue.length - 40} more`));
    parkTitle.textContent = `Parked (${s.parked.size})`;
    const pl = el("ul", "epic-stepper-list");
    [...s.parked].slice(0, 40).forEach(([id, [producer, label]]) => {
      const from = producer >= 0 ? ` ← ${nodeText(producer)}` : "";
      pl.append(nodeItem(id, `  waits on ${label}${from}`));
    });
    parkBody.replaceChildren(pl);
    flightTitle.textContent = `Calls in flight (${s.flight.size})`;
    const fl = el("ul", "epic-stepper-list");
    for (const cid of s.flight) {
      const c = calls.get(cid);
      const li = el("li", null, callText(cid));
      li.dataset.call = cid;
      if (c && c[8]) li.dataset.cached = "1";
      if (c) li.append(el("span", "epic-stepper-dim", `  ${c[3]}`));
      fl.append(li);
    }
    flightBody.replaceChildren(fl);
    boundTitle.textContent = `Values bound so far (${s.order.length})`;
    const bl = el("ul", "epic-stepper-list");
    const fresh = new Set(k > 0 ? (steps[k - 1].b || []).map((b) => b[0]) : []);
    s.order.slice(-30).reverse().forEach((id) => {
      const li = nodes[id] && nodes[id][0] === "unpack" ? nodeItem(-2, s.bound.get(id)) : nodeItem(id, `  = ${s.bound.get(id)}`);
      if (fresh.has(id)) li.classList.add("epic-fresh");
      bl.append(li);
    });
    boundBody.replaceChildren(bl);
  }
  // scroll only the IR box (never the notebook) so the highlighted row is visible
  function reveal(boxEl, row) {
    const top = row.offsetTop;
    if (top < boxEl.scrollTop || top > boxEl.scrollTop + boxEl.clientHeight - row.offsetHeight) {
      boxEl.scrollTop = Math.max(0, top - boxEl.clientHeight / 2);
    }
  }
  function go(to) {
    k = Math.max(0, Math.min(n, to));
    draw();
    if (k >= n) stop();
  }
  // lands just after the step (ON it: the call is in flight, or its answer spliced in)
  function seek(rule, dir) {
    for (let i = k + (dir > 0 ? 0 : -2); i >= 0 && i < n; i += dir) {
      const r = steps[i].r;
      if (rule ? r === rule : r === "dispatch" || r === "resolve") return go(i + 1);
    }
    return go(dir > 0 ? n : 0);
  }
  // one step, or with "skip plumbing" on, to the next step that is not loop or branch plumbing
  function move(from, dir) {
    let i = from + dir;
    if (skip) while (i > 0 && i < n && plumbing(i - 1)) i += dir;
    return i;
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; play.textContent = "play"; } }
  function toggle() {
    if (timer) return stop();
    if (k >= n) k = 0;
    play.textContent = "pause";
    timer = setInterval(() => go(move(k, 1)), 250);
  }
  slider.addEventListener("input", () => go(Number(slider.value)));
  root.tabIndex = 0;
  root.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") { go(move(k, 1)); e.preventDefault(); }
    if (e.key === "ArrowLeft") { go(move(k, -1)); e.preventDefault(); }
  });
  draw();
}
