"""Record a run's reduction step by step, in plain data, so a view can show any step forward or back.

Why a recording and not a replay: stepping back must be exact and must not call a model again, so
the stepper never re-runs anything; it reads what this recorder wrote while the run went on. The
recording is JSON-ready (lists, dicts, strings, numbers) so the same data feeds the live notebook
view, the static HTML saved in a notebook and an nbconvert export.

How it hooks in: the evaluator calls `recorder.step(ev, rule, node)` after each step of its traced
loop (`rule` is None when the node could not fire and parked); resolve steps happen outside that
loop, so the recorder is also an observer: a `step` event with rule "resolve" is followed, once the
answer is spliced in, by the call's `call.done` / `call.failed` / `call.cancelled` / `call.stream`
event, and that is when the resolve is recorded. Everything else is read from the evaluator without
changing it: the ready queue, the nodes parked on pending cells (found by walking from the queued,
in-flight and parked nodes' outputs to the cells' waiters), the calls in flight and the values the
fired nodes' outputs got.

Format (`Recorder.recording()`): `ir` (the program's statements, one row each), `nodes` (every node
that was ever queued, parked or fired: kind, text, line, IR row), `calls`, `init` (the state before
the first step) and `steps`, each a diff to the state after it:

    {"r": rule, "n": node fired, "c": call id (dispatch/resolve) or None, "t": seconds since start,
     "k": the evaluator's step count, "q": full queue | "q-"/"q+": removed / appended node ids,
     "p-": unparked node ids, "p+": [[node, producer node or -1, what it waits on]],
     "f-"/"f+": calls that left / entered flight, "b": [[node, value]] outputs newly bound}

State k (after k steps) = init with steps[0..k-1] applied in order; the node about to fire in state
k is steps[k]["n"]. Only the first `max_steps` steps are kept; `truncated` says the run went on.
"""

from __future__ import annotations

import itertools
import re
import reprlib
import types
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

from ..lang.ir import Call, Def, Function, Global, Pack, Prim, Unpack
from .events import Event, clock
from .graph import PENDING, CallNode, Cell, Closure, ErrorVal, PackVal, UnpackNode

__all__ = ["MAX_STEPS", "Recorder", "iter_states", "show_value", "state_at"]

# the translator's loop closures and the intrinsics of its encodings: their steps are "plumbing"
# (the stepper can skip them), the program's own calls and operators are not
_LOOP_FUNCTIONS = ("loop", "body", "done", "next", "stop")
_PLUMBING_OPS = ("%bool", "%next", "%iter", "%loop_again", "%loop_exit")
MAX_STEPS = 3000          # a few thousand steps: a teaching-sized program, a recording of a few MB at most
_MAX_WATCH = 4000         # outputs whose values are followed for the bindings panel
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = 6


class Recorder:
    """Attach to one run (`run_async(..., recorder=Recorder())`), then read `recording()`."""

    def __init__(self, *, max_steps: int = MAX_STEPS):
        self.max_steps = max_steps
        self.ev: Any = None
        self.steps: list[dict[str, Any]] = []
        self.total = 0                              # steps seen, also those past the cap
        self.truncated = False
        self.nodes: list[list[Any]] = []            # node id -> [kind, text, line, IR row]
        self._ids: dict[int, int] = {}              # id(node object) -> node id
        self._keep: list[Any] = []                  # node objects, so their id() stays theirs
        self.ir: list[list[Any]] = []               # [depth, text, line]
        self._ir_call: dict[int, tuple[int, Call]] = {}   # Var id of a call's output -> (row, statement)
        self._ir_unpack: dict[tuple[int | None, int], int] = {}
        self._names: dict[int, str] = {}            # Var id -> the top-level name the program gives it
        self._folded: dict[int, str] = {}           # Var id of a constant/host name -> how uses show it
        self._church: set[int] = set()              # Var ids of Church booleans and the thunks they pick
        self._loops: set[int] = set()               # Var ids of loop closures
        self._instances: Counter[int] = Counter()
        self._mirror: deque[Any] = deque()          # the ready queue as of the last recorded step
        self._queued: set[int] = set()              # id() of the node objects in it
        self._parked: dict[int, list[Any]] = {}     # node id -> [producer node id, what it waits on]
        self._producers: dict[int, int] = {}        # id(an output cell) -> node id
        self._flight: dict[int, int] = {}           # call id -> node id that dispatched it
        self._pending_out: dict[int, list[tuple[int, Cell]]] = {}   # id(root cell) -> outputs not bound yet
        self._watched = 0
        self._calls: dict[int, Any] = {}            # call id -> CallRecord
        self._seen_calls = 0
        self._pending: bool = False                 # a resolve step announced, not yet spliced in
        self._flight_final: int | None = None       # the call a recorded resolve ends
        self._flight_shown: set[int] = set()
        self.init: dict[str, Any] = {"q": []}

    # ----------------------------------------------------------------------------------- hooks
    def step(self, ev: Any, rule: str | None, node: Any) -> None:
        """Called by the evaluator after each step of its traced loop: `node` just fired `rule`
        (None: it could not fire and parked, or it took an error value)."""
        if self.ev is None:
            self._begin(ev, node)
        if self._pending:
            self._resolved(None)
        self.total += 1
        if self.truncated:
            return
        nid = self._nid(node)
        call = None
        if len(ev.calls) > self._seen_calls:
            for rec in ev.calls[self._seen_calls:]:
                self._calls[rec.id] = rec
                self._flight[rec.id] = nid
                call = rec.id
            self._seen_calls = len(ev.calls)
        if rule is None:
            rule = "wait" if self._parked_cell(node) is not None else "error" if _is_error(node) else "other"
        self._record(rule, nid, call, node)

    def on_event(self, event: Event) -> None:
        """Observer: completes resolve steps (see the module docstring); never raises."""
        kind = event.kind
        if self.ev is None:
            return
        if self.truncated:
            self.total += kind == "step" and event.data.get("rule") == "resolve"
            return
        if kind == "step" and event.data.get("rule") == "resolve":
            if self._pending:
                self._resolved(None)
            self._pending = True
            self.total += 1
        elif kind in ("call.done", "call.failed", "call.cancelled", "call.stream") and event.call is not None:
            rec = event.call
            self._calls.setdefault(rec.id, rec)
            if self._pending:
                self._resolved(rec, final=kind != "call.stream")
            elif kind != "call.stream":
                self._flight.pop(rec.id, None)      # cancelled at the end: leaves flight unrecorded

    # ------------------------------------------------------------------------------- recording
    def recording(self, *, title: str = "", source: str = "", first_line: int = 1,
                  value: str = "", state: str = "") -> dict[str, Any]:
        """The run as JSON-ready data (see the module docstring)."""
        ev = self.ev
        t0 = ev.start if ev is not None else 0.0
        calls = []
        for cid in sorted(self._calls):
            c = self._calls[cid]
            calls.append([cid, c.fn, c.user_line if c.user_line is not None else c.site_line, c.args_preview,
                          c.result_preview, c.state, round(c.start - t0, 4),
                          None if c.end is None else round(c.end - t0, 4), bool(c.cached)])
        return {"version": 1, "title": title, "strategy": getattr(ev, "strategy", ""), "source": source,
                "first_line": first_line, "ir": self.ir, "nodes": self.nodes, "calls": calls,
                "init": self.init, "steps": self.steps, "total": self.total, "truncated": self.truncated,
                "max_steps": self.max_steps, "value": value, "state": state,
                "calls_total": len(ev.calls) if ev is not None else len(calls),
                "rule_steps": ev.steps if ev is not None else 0,
                "elapsed": round((ev.end or clock()) - ev.start, 4) if ev is not None else 0.0}

    # -------------------------------------------------------------------------------- internals
    def _begin(self, ev: Any, node: Any) -> None:
        """The first step is the program's entry: before it, that node was the whole state."""
        self.ev = ev
        clo = node.fn.val if isinstance(node, CallNode) else None
        if isinstance(clo, Closure):
            self._build_ir(clo.tmpl.fn)
        self.init = {"q": [self._nid(node)]}
        self._mirror = deque([node])
        self._queued = {id(node)}

    def _record(self, rule: str, nid: int, call: int | None, node: Any) -> None:
        """One step: what changed, found from the node that fired and the nodes it queued (never by
        walking the whole graph: a step costs about what the evaluator's step did)."""
        ev = self.ev
        entry: dict[str, Any] = {"r": rule, "n": nid, "c": call, "t": round(clock() - ev.start, 4), "k": ev.steps}
        appended = self._diff_queue(entry)
        self._diff_parked(entry, node, appended, deep=rule in ("wait", "other"))
        self._diff_flight(entry)
        bound = self._newly_bound(node)
        if bound:
            entry["b"] = bound
        self.steps.append(entry)
        if len(self.steps) >= self.max_steps:
            self.truncated = True

    def _resolved(self, rec: Any, final: bool = True) -> None:
        """Record the announced resolve, now that its answer is spliced in."""
        self._pending = False
        if rec is None:                                    # a stream began: its pump is the newest flight
            rec = next((r for _n, r in reversed(list(self.ev.inflight.values()))), None)
            final = False
        cid = None if rec is None else rec.id
        nid = self._flight.get(cid, -1) if cid is not None else -1
        self._flight_final = cid if final else None
        self._record("resolve", nid, cid, self._keep[nid] if nid >= 0 else None)

    def _nid(self, node: Any) -> int:
        key = id(node)
        nid = self._ids.get(key)
        if nid is None:
            nid = len(self.nodes)
            self._ids[key] = nid
            self._keep.append(node)
            self.nodes.append(self._describe(node))
            outs = _outputs(node)
            for c in outs:
                self._producers[id(c)] = nid
            if outs and isinstance(node, (CallNode, UnpackNode)) and self._watched < _MAX_WATCH:
                self._watched += 1
                self._pending_out.setdefault(id(_root(outs[0])), []).append((nid, outs[0]))
        return nid

    def _describe(self, node: Any) -> list[Any]:
        if isinstance(node, CallNode):
            site = node.site
            name = site.name or "call"
            what = "enter the program" if name == "<program>" else name
            row = -1
            if node.origin is None:
                if site.uid == 0 and name == "<program>":
                    row = 0
                elif site.uid in self._ir_call:
                    row = self._ir_call[site.uid][0]
            text = what + _at(site.line)
            if row > 0:
                self._instances[row] += 1
                k = self._instances[row]
                text = self.ir[row][1] + (f"  #{k}" if k > 1 else "")
            return ["call", text, site.line, row]
        if isinstance(node, UnpackNode):
            row = self._ir_unpack.get((node.line, len(node.outs)), -1)
            text = self.ir[row][1] if row >= 0 else f"unpack{_at(node.line)}"
            return ["unpack", text, node.line, row]
        out = getattr(node, "out", None)
        if out is not None and hasattr(node, "site"):     # the pending end of a stream
            return ["stream", f"stream of {node.site.name or 'call'}{_at(node.site.line)}", node.site.line, -1]
        return ["emit", "the next loop iterations (emitted a chunk at a time)", None, -1]

    # ------------------------------------------------------------------------------- the state
    def _diff_queue(self, entry: dict[str, Any]) -> list[Any]:
        """The queue's change since the last step; returns the nodes that entered it.

        The evaluator only takes from and adds to the ends of its queue (FIFO: the front and the
        back; LIFO: the back), so the change is found from the ends in O(change), and checked there;
        a `random` run (which swaps inside the queue) or anything unexpected is diffed in full."""
        q, mirror = self.ev.queue, self._mirror
        n_old, n_new = len(mirror), len(q)
        gone: list[Any] | None = None
        kept = 0
        if self.ev.strategy == "opportunistic":            # popleft / append
            for r in range(min(n_old, 8) + 1):
                kept = n_old - r
                if kept <= n_new and (kept == 0 or (q[0] is mirror[r] and q[kept - 1] is mirror[-1])):
                    gone = [mirror.popleft() for _ in range(r)]
                    break
        elif self.ev.strategy != "random":                  # pop / append at the back
            for r in range(min(n_old, 8) + 1):
                kept = n_old - r
                if kept <= n_new and (kept == 0 or (q[kept - 1] is mirror[kept - 1] and q[0] is mirror[0])):
                    gone = [mirror.pop() for _ in range(r)][::-1]
                    break
        if gone is None:                                    # a full diff
            before = self._queued
            now = list(q)
            self._mirror = deque(now)
            self._queued = {id(n) for n in now}
            entry["q"] = [self._nid(n) for n in now]
            return [n for n in now if id(n) not in before]
        appended = [q[i] for i in range(kept, n_new)]
        for n in gone:
            self._queued.discard(id(n))
        if gone:
            entry["q-"] = [self._ids[id(n)] for n in gone]
        if appended:
            mirror.extend(appended)
            self._queued.update(map(id, appended))
            entry["q+"] = [self._nid(n) for n in appended]
        return appended

    def _diff_parked(self, entry: dict[str, Any], node: Any, appended: list[Any], deep: bool) -> None:
        """Woken nodes are back in the queue; new parked ones wait on a cell next to the node that
        fired (its inputs and outputs), on an output of a node it queued, or on a stream's tail."""
        parked = self._parked
        woken = [nid for nid in (self._ids[id(n)] for n in appended) if nid in parked]
        for nid in woken:
            del parked[nid]
        cells: list[Cell] = []
        if node is not None:
            cells += _inputs(node)
            cells += _outputs(node)
        for n in appended:
            cells += _outputs(n)
        for n, _rec in self.ev.inflight.values():
            if not isinstance(n, CallNode):           # the pending end of a stream
                cells += _outputs(n)
        queued = self._queued
        added = []
        if deep and self._ids[id(node)] not in parked and id(node) not in queued:
            deep = self._parked_cell(node)              # the fired node parked on a cell inside an argument
            if deep is not None:
                cells.append(deep)
        roots: set[int] = set()
        for c in cells:
            root = _root(c)
            if id(root) in roots or not root.waiters:
                continue
            roots.add(id(root))
            for w in root.waiters:
                wid = self._nid(w)
                if wid not in parked and id(w) not in queued:
                    parked[wid] = [self._producers.get(id(root), -1), self._waits_on(w, root)]
                    added.append([wid, *parked[wid]])
        if woken:
            entry["p-"] = woken
        if added:
            entry["p+"] = added

    def _diff_flight(self, entry: dict[str, Any]) -> None:
        done = self._flight_final
        if done is not None:
            self._flight.pop(done, None)
            self._flight_final = None
        old = self._flight_shown
        now = set(self._flight)
        if now - old:
            entry["f+"] = sorted(now - old)
        if old - now:
            entry["f-"] = sorted(old - now)
        self._flight_shown = now

    @staticmethod
    def _parked_cell(node: Any) -> Cell | None:
        """The cell the node waits on: one of its inputs, or a cell inside one (an element of a list
        argument that host code needs whole), searched through packs and closures."""
        stack = list(_inputs(node))
        seen: set[int] = set()
        while stack and len(seen) < 20_000:
            root = _root(stack.pop())
            if id(root) in seen:
                continue
            seen.add(id(root))
            if root.waiters and any(w is node for w in root.waiters):
                return root
            v = root.val
            if v.__class__ is PackVal:
                stack.extend(v.items)
            elif v.__class__ is Closure:
                stack.extend(v.captured)
                stack.extend(v.defaults)
        return None

    def _waits_on(self, node: Any, root: Cell) -> str:
        """The name of the input the node waits for (an IR variable where the node is a statement)."""
        if isinstance(node, CallNode):
            stmt = self._ir_call.get(node.site.uid, (0, None))[1] if node.origin is None else None
            if _root(node.fn) is root:
                return self._op(stmt.fn) if stmt is not None else "the callee"
            for i, a in enumerate(node.args):
                if _root(a) is root:
                    if stmt is not None and len(stmt.args) == len(node.args):
                        return self._var(stmt.args[i])
                    return f"argument {i + 1}"
            if node.io_in is not None and _root(node.io_in) is root:
                return "the print token (the prints before it)"
            return "a value inside an argument"
        if isinstance(node, UnpackNode):
            return "the value it unpacks"
        return "a pending value"

    def _var(self, v: Any) -> str:
        name = self._names.get(v.id)
        return f"{v!r} ({name})" if name else repr(v)

    def _newly_bound(self, node: Any) -> list[list[Any]]:
        """Outputs bound by this step. A step binds or forwards only its own node's outputs, so only
        the outputs waiting under those cells are looked at; forwarded ones move to their new root."""
        if node is None:
            return []
        keys = set()
        for c in _outputs(node):
            keys.add(id(c))
            keys.add(id(_root(c)))
        out = []
        for key in keys:
            for nid, cell in self._pending_out.pop(key, ()):
                root = _root(cell)
                if root.val is PENDING:
                    self._pending_out.setdefault(id(root), []).append((nid, cell))
                elif self.nodes[nid][3] != 0:               # the program's entry: its value is the result
                    out.append([nid, self._unpacked(nid) if self.nodes[nid][0] == "unpack"
                                else show_value(root.val)])
        return out

    def _unpacked(self, nid: int) -> str:
        """An unpack binds several names: `has15 = True, x16 = 'a', next17 = (pending)`."""
        node = self._keep[nid]
        row = self.nodes[nid][3]
        names = None
        if row >= 0:
            names = self.ir[row][1].split(" := ", 1)[0].strip("()").split(", ")
        if names is None or len(names) != len(node.outs):
            names = [f"output {i + 1}" for i in range(len(node.outs))]
        parts = []
        for name, c in zip(names, node.outs, strict=True):
            v = _root(c).val
            parts.append(f"{name} = {'(pending)' if v is PENDING else show_value(v)}")
        return ", ".join(parts)

    # ------------------------------------------------------------------------------------- IR
    def _build_ir(self, fn: Function) -> None:
        exports = list(fn.exports)
        ret = next((s for s in fn.body if isinstance(s, Pack) and s.out is fn.ret), None)
        if ret is not None and exports:
            for name, v in zip(exports, ret.items[1:], strict=False):
                self._names.setdefault(v.id, name)
        self._rows(fn, 0, header=f"fun {fn.name}({_params(fn)})")

    def _fold(self, fn: Function) -> None:
        """Constants, operators and host names are shown where they are used (`%add('Write a poem
        about ', v4)`, `llm(v30)`), not as rows of their own: a student reads one line per step.
        A constant the program names itself (`mood = "calm"`) keeps its row."""
        for s in fn.body:
            if isinstance(s, Prim) and (s.out.name in ("", "c") or s.out.name.startswith("%")):
                self._folded[s.out.id] = _fmt(s.value)
            elif isinstance(s, Global) and not s.soft:
                self._folded[s.out.id] = s.name
            elif isinstance(s, Def):
                self._fold(s.fn)

    def _op(self, v: Any) -> str:
        """An operand as the term shows it: a folded constant, or the variable."""
        return self._folded.get(v.id) or repr(v)

    def _rows(self, fn: Function, depth: int, header: str, plumbing: bool = False) -> None:
        if depth == 0:
            self._fold(fn)
        self.ir.append([depth, header, fn.line, plumbing])
        pad = depth + 1
        loopish = fn.name in _LOOP_FUNCTIONS
        for s in fn.body:
            line = getattr(s, "line", None)
            if isinstance(s, Prim):
                if s.out.id not in self._folded:
                    self.ir.append([pad, f"{s.out!r} := {_fmt(s.value)}", line, False])
            elif isinstance(s, Global):
                if s.out.id not in self._folded:
                    self.ir.append([pad, f"{s.out!r} := global? {s.name}", line, True])
            elif isinstance(s, Pack):
                br = "[]" if s.kind == "list" else "()"
                self.ir.append([pad, f"{s.out!r} := {br[0]}{', '.join(map(self._op, s.items))}{br[1]}", line,
                                plumbing or loopish])
            elif isinstance(s, Unpack):
                self._ir_unpack.setdefault((line, len(s.outs)), len(self.ir))
                self.ir.append([pad, f"({', '.join(self._var(o) for o in s.outs)}) := {s.src!r}", line,
                                plumbing or loopish])
            elif isinstance(s, Call):
                n = len(s.args) - len(s.kwnames)
                args = [self._op(a) for a in s.args[:n]]
                args += [f"{k}={self._op(a)}" for k, a in zip(s.kwnames, s.args[n:], strict=True)]
                self._ir_call[s.out.id] = (len(self.ir), s)
                callee = self._op(s.fn)
                self.ir.append([pad, f"{self._var(s.out)} := {callee}({', '.join(args)})", line,
                                plumbing or callee in _PLUMBING_OPS or s.fn.id in self._church
                                or (loopish and s.fn.id in self._loops)])
                if callee in ("%bool", "%loop_again") or s.fn.id in self._church:
                    self._church.add(s.out.id)          # a Church boolean, or the thunk it picked
            elif isinstance(s, Def):
                if s.fn.name == "loop":
                    self._loops.add(s.out.id)
                self._rows(s.fn, pad, header=f"{s.out!r} := fun {s.fn.name}({_params(s.fn)})",
                           plumbing=plumbing or s.fn.name in ("done", "next", "stop"))
        self.ir.append([pad, f"return {self._op(fn.ret)}", None, plumbing or loopish])


def state_at(recording: dict[str, Any], k: int) -> dict[str, Any]:
    """The state after `k` steps, rebuilt from the diffs (what the stepper computes in JavaScript;
    here for tests and text output): queue, parked {node: [producer, label]}, flight (call ids),
    bound {node: value}."""
    return next(itertools.islice(iter_states(recording), k, None))


def iter_states(recording: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The state before the first step, then after each recorded step (a fresh dict each time)."""
    queue = list(recording["init"]["q"])
    parked: dict[int, list[Any]] = {}
    flight: set[int] = set()
    bound: dict[int, str] = {}

    def state() -> dict[str, Any]:
        return {"queue": list(queue), "parked": dict(parked), "flight": sorted(flight), "bound": dict(bound)}

    yield state()
    for s in recording["steps"]:
        if "q" in s:
            queue = list(s["q"])
        else:
            gone = set(s.get("q-", ()))
            queue = [x for x in queue if x not in gone] + list(s.get("q+", ()))
        for nid in s.get("p-", ()):
            parked.pop(nid, None)
        for nid, producer, label in s.get("p+", ()):
            parked[nid] = [producer, label]
        flight -= set(s.get("f-", ()))
        flight |= set(s.get("f+", ()))
        for nid, value in s.get("b", ()):
            bound[nid] = value
        yield state()


def show_value(v: Any) -> str:
    """A short text for a bound value (what the bindings panel shows)."""
    cls = v.__class__
    if cls is PackVal:
        if v.kind == "cons":
            return "a stream (chunks so far, tail pending)"
        items = []
        for c in v.items[:6]:
            iv = _root(c).val
            items.append("(pending)" if iv is PENDING else show_value(iv) if iv.__class__ is not PackVal
                         else f"<{iv.kind}>")
        more = ", …" if len(v.items) > 6 else ""
        br = "[]" if v.kind == "list" else "()"
        return f"{br[0]}{', '.join(items)}{more}{br[1]}"
    if cls is Closure:
        return f"<fun {v.tmpl.name}>"
    if cls is ErrorVal:
        return f"error: {type(v.error).__name__}: {v.error}"[:120]
    name = getattr(v, "epic_name", None)
    if name:
        return str(name)
    return _host(v)


def _host(v: Any) -> str:
    """A host value as a student reads it: `' '.join` (not `<built-in method join of str object at
    0x7f...>`), `len`, and no memory addresses."""
    owner = getattr(v, "__self__", None)
    if isinstance(v, (types.BuiltinMethodType, types.MethodType)) and owner is not None \
            and not isinstance(owner, types.ModuleType):
        return f"{_repr.repr(owner)}.{v.__name__}  (a method)"
    if isinstance(v, (types.BuiltinFunctionType, types.FunctionType)):
        return f"{v.__name__}  (a function)"
    return _ADDRESS.sub("", _repr.repr(v))


def _root(c: Cell) -> Cell:
    while c.fwd is not None:              # no path compression: the recorder only reads
        c = c.fwd
    return c


def _outputs(n: Any) -> list[Cell]:
    if isinstance(n, CallNode):
        return [c for c in (n.out, n.io_out) if c is not None]
    if isinstance(n, UnpackNode):
        return list(n.outs)
    out = getattr(n, "out", None)
    return [out] if isinstance(out, Cell) else []


def _inputs(n: Any) -> list[Cell]:
    if isinstance(n, CallNode):
        return [n.fn, *n.args, *([n.io_in] if n.io_in is not None else [])]
    if isinstance(n, UnpackNode):
        return [n.src]
    return []


def _is_error(node: Any) -> bool:
    out = getattr(node, "out", None)
    return isinstance(out, Cell) and _root(out).val.__class__ is ErrorVal


def _params(fn: Function) -> str:
    return ", ".join(map(repr, fn.params))


def _fmt(value: Any) -> str:
    name = getattr(value, "epic_name", None)
    if name:
        return str(name)
    r = _ADDRESS.sub("", repr(value))
    return r if len(r) <= 40 else r[:37] + "..."


def _at(line: int | None) -> str:
    return f" (line {line})" if line else ""
