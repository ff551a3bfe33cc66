"""The SoT panel's graph drawing for skeleton graphs: where each point's node and each edge go.

`sot(question, graph=True)` sends its edges (point i -> point j: j is written with i's text) and
its critical path in a `program.sot.graph` event. The layout is computed here, once, so the live
view (live.js) and the static snapshot (_snapshot.py) draw the same picture: a point sits in the
column of its depth (1 + the deepest point it depends on), so a column is a round of expansions
that can run together, and the columns read left to right in the order the evaluator can run them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COL_W", "ROW_H", "graph_layout"]

COL_W, ROW_H, PAD, PAD_X = 160, 46, 14, 76       # a label sits under its node, centred


def graph_layout(points: list[dict[str, Any]], edges: list, critical: list) -> dict[str, Any]:
    """{"nodes": [{index, text, state, x, y, depth, critical}], "edges": [{from, to, x1, y1, x2, y2,
    critical}], "width", "height", "depth"}. States: "done", "running" (text is streaming in),
    "waiting" (no text yet: for a point with edges, its dependencies are still being written).
    Edges naming a point that is not (yet) in `points` are left out."""
    known = {p["index"]: p for p in points}
    needs: dict[int, list[int]] = {i: [] for i in known}
    pairs = [(int(a), int(b)) for a, b in edges if int(a) in known and int(b) in known]
    for a, b in pairs:
        needs[b].append(a)
    depth: dict[int, int] = {}
    for i in known:                                   # points arrive in skeleton order; edges point back
        depth[i] = 1 + max((depth.get(d, 0) for d in needs[i]), default=0)
    rows: dict[int, int] = {}
    nodes = []
    on_path = {int(i) for i in critical}
    for i, p in known.items():
        row = rows.get(depth[i], 0)
        rows[depth[i]] = row + 1
        state = "done" if p.get("done") else "running" if p.get("expansion") else "waiting"
        nodes.append({"index": i, "text": p.get("text", ""), "state": state, "depth": depth[i],
                      "x": PAD_X + (depth[i] - 1) * COL_W, "y": PAD + row * ROW_H, "critical": i in on_path})
    where = {n["index"]: n for n in nodes}
    crit_edges = set(zip(critical, critical[1:], strict=False))
    lines = [{"from": a, "to": b, "x1": where[a]["x"] + 10, "y1": where[a]["y"], "x2": where[b]["x"] - 10,
              "y2": where[b]["y"], "critical": (a, b) in crit_edges} for a, b in pairs]
    most = max(depth.values(), default=0)
    return {"nodes": nodes, "edges": lines, "depth": most,
            "width": PAD_X * 2 + max(0, most - 1) * COL_W,
            "height": PAD + max(rows.values(), default=1) * ROW_H}
