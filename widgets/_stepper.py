"""The reduction stepper's output: `%%epic --step` and `%epic step` display a `Stepper`.

Why HTML with an inline script and not an ipywidget: the recording is complete when the view
appears and never changes, so stepping needs nothing from the kernel. One self-contained HTML
output (the recording as JSON, `stepper.js`, `stepper.css`) therefore works the same in the running
notebook, in the saved notebook after the kernel is gone, and in an nbconvert export, with no widget
model to lose. Where scripts do not run (an untrusted notebook, a sanitizing viewer), the output
still shows a static table of every recorded step (rule, node, queue, parked, calls in flight),
which the script hides when it takes over.
"""

from __future__ import annotations

import html
import itertools
import json
import os
from pathlib import Path
from typing import Any

from epic_kernel.runtime.recorder import iter_states

from ._tokens import tokens_panel_html

__all__ = ["Stepper", "counts_text", "run_state", "stepper_html", "stepper_text"]

_HERE = Path(__file__).parent
_STATIC_ROWS = 400                    # steps listed in the script-free fallback table
_uid = itertools.count(1)


class Stepper:
    """A recorded run, displayed as the stepper (HTML) or a step list (text)."""

    def __init__(self, recording: dict[str, Any]):
        self.recording = recording

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": stepper_html(self.recording), "text/plain": stepper_text(self.recording)}

    def __repr__(self) -> str:
        return stepper_text(self.recording)


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element (no `</script>`, no `<!--`)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def stepper_html(rec: dict[str, Any]) -> str:
    uid = f"{os.getpid()}-{next(_uid)}"
    js = (_HERE / "stepper.js").read_text(encoding="utf-8")
    css = (_HERE / "stepper.css").read_text(encoding="utf-8")
    boot = ("(function(){" + js +
            "var s=document.currentScript;var root=s&&s.parentNode;"
            f"if(!root||!root.dataset){{root=document.querySelector('[data-epic-stepper=\"{uid}\"]');}}"
            "if(!root||root.dataset.ready)return;root.dataset.ready='1';"
            "var data=JSON.parse(root.querySelector('script.epic-stepper-data').textContent);"
            "var mount=document.createElement('div');root.appendChild(mount);root.classList.add('epic-stepper-live');"
            "try{epicStepper(mount,data);}catch(e){console.error('[epic] stepper failed',e);"
            "root.classList.remove('epic-stepper-live');}})();")
    return (f'<div class="epic-stepper" data-epic-stepper="{uid}" data-steps="{len(rec["steps"])}">'
            f"<style>{css}</style>"
            f'<div class="epic-stepper-static">{_static_html(rec)}</div>'
            f'<script type="application/json" class="epic-stepper-data">'
            f'{_script_json({k: v for k, v in rec.items() if k != "tokens"})}</script>'
            f"<script>{boot}</script></div>" + tokens_panel_html(rec.get("tokens") or []))


def run_state(rec: dict[str, Any]) -> str:
    """done | interrupted | failed | truncated: what the stepper labels the run."""
    state = rec.get("state", "")
    if state == "cancelled":
        return "interrupted"
    if state == "failed":
        return "failed"
    return "truncated" if rec["truncated"] else "done"


def counts_text(rec: dict[str, Any]) -> str:
    """The run's counts, the same everywhere: reduction steps (what `--compare` and the live view
    count), the waits the stepper also shows, and every call the run made (not only recorded ones)."""
    rule_steps = rec.get("rule_steps", rec["total"])
    waits = sum(s["r"] not in _RULES for s in rec["steps"])
    calls = rec.get("calls_total", len(rec["calls"]))
    cached = sum(bool(c[8]) for c in rec["calls"] if len(c) > 8)
    return (f"{rule_steps} steps" + (f" (and {waits} waits: {len(rec['steps'])} positions)" if waits else "")
            + f" · {calls} calls" + (f" ({cached} from the answer cache)" if cached else ""))


_RULES = ("beta", "delta", "dispatch", "resolve", "project")


def _static_html(rec: dict[str, Any]) -> str:
    """What shows where scripts do not run: the run, the IR and a table of the recorded steps."""
    nodes, calls = rec["nodes"], {c[0]: c for c in rec["calls"]}
    state = run_state(rec)
    head = (f'<div class="epic-stepper-head"><b>Reduction stepper</b> <span class="epic-stepper-state" '
            f'data-state="{state}">{state}</span> <span>{_e(rec.get("title", ""))} '
            f'{_e(rec["strategy"])} · {counts_text(rec)} · {rec.get("elapsed", 0):.2f} s</span></div>')
    warn = (f'<div class="epic-stepper-warn">This run was too long to record in full: the first '
            f'{len(rec["steps"])} of its {rec["total"]} positions are recorded (the limit is {rec["max_steps"]}).</div>'
            if rec["truncated"] else "")
    if state in ("interrupted", "failed"):
        warn += f'<div class="epic-stepper-warn">This run {"was interrupted" if state == "interrupted" else "failed"}: ' \
                "the recording ends where it stopped.</div>"
    note = ('<div class="epic-note">(Scripts do not run here, so the stepper\'s buttons are missing: '
            "trust the notebook or open its HTML export to step through the run. Every recorded step "
            "is listed below.)</div>")
    ir = "\n".join("  " * depth + _e(text) for depth, text, *_rest in rec["ir"])
    rows = []
    for i, (step, state) in enumerate(zip(rec["steps"], itertools.islice(iter_states(rec), 1, None), strict=False)):
        if i >= _STATIC_ROWS:
            break
        node = nodes[step["n"]][1] if step["n"] >= 0 else ""
        call = ""
        if step.get("c") is not None and step["c"] in calls:
            c = calls[step["c"]]
            call = f"{c[1]} #{c[0]}" + (" (cached answer)" if len(c) > 8 and c[8] else "")
        rows.append(f'<tr data-rule="{_e(step["r"])}"><td>{i + 1}</td><td>{_e(step["r"])}</td><td>{_e(node)}</td>'
                    f"<td>{_e(call)}</td><td>{len(state['queue'])}</td><td>{len(state['parked'])}</td>"
                    f"<td>{len(state['flight'])}</td></tr>")
    more = len(rec["steps"]) - len(rows)
    more_note = f'<div class="epic-note">… {more} more steps (the stepper shows all)</div>' if more > 0 else ""
    table = ('<table class="epic-stepper-steps"><thead><tr><th>step</th><th>rule</th><th>node</th><th>call</th>'
             "<th>queue</th><th>parked</th><th>in flight</th></tr></thead><tbody>" + "".join(rows) +
             "</tbody></table>")
    return (f"{head}{warn}{note}<details><summary>The program as a term</summary><pre>{ir}</pre></details>"
            f"<details open><summary>Steps</summary>{table}{more_note}</details>")


def stepper_text(rec: dict[str, Any], *, max_steps: int = 200) -> str:
    """A step list for consoles and `text/plain`."""
    nodes = rec["nodes"]
    lines = [f"reduction stepper [{run_state(rec)}]: {rec['strategy']} · {counts_text(rec)} · "
             f"{rec.get('elapsed', 0):.2f} s"]
    if rec["truncated"]:
        lines.append(f"  too long to record in full: the first {len(rec['steps'])} of {rec['total']} positions")
    for i, (step, state) in enumerate(zip(rec["steps"], itertools.islice(iter_states(rec), 1, None), strict=False)):
        if i >= max_steps:
            lines.append(f"  … {len(rec['steps']) - max_steps} more steps")
            break
        node = nodes[step["n"]][1] if step["n"] >= 0 else ""
        lines.append(f"  {i + 1:>5} {step['r']:<9} {node[:70]:<70} queue {len(state['queue']):>3} · "
                     f"parked {len(state['parked']):>3} · in flight {len(state['flight'])}")
    return "\n".join(lines)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)
