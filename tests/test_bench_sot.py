"""The SoT benchmark's own machinery (record, replay, report) on the sim backend: behaviour, not speed."""

from __future__ import annotations

import json

from benchmarks import bench_sot


def test_live_then_replay_on_the_sim_backend(tmp_path):
    out, rec = tmp_path / "results", tmp_path / "recordings"
    args = ["--model", "sim", "--questions", "1,21", "--max-tokens", "48", "--speed", "20",
            "--out", str(out), "--recordings", str(rec)]
    bench_sot.main(args)
    results = json.loads((out / "sot.json").read_text())
    assert sorted(results["live"]) == ["1", "21"]
    for qid, row in results["live"].items():
        assert (rec / f"q{int(qid):02d}.jsonl").exists()
        assert set(row["modes"]) == set(bench_sot.MODES)
        assert row["order"] == bench_sot.rotated(list(bench_sot.MODES), int(qid))
        sot = row["modes"]["sot"]
        assert sot["used_sot"] and sot["points"] >= 2 and sot["calls"] == sot["points"] + 1
        assert row["modes"]["sot-seq"]["answer"] == sot["answer"]     # same program, another strategy
        assert row["modes"]["normal"]["calls"] == 1
    # replay gave every mode its own recorded answers back (main() exits otherwise)
    assert sorted(results["replay"]["questions"]) == ["1", "21"]
    md = (out / "sot.md").read_text()
    assert "| generic | 1 |" in md and "| roleplay | 1 |" in md and "## Replay" in md
    assert (out / "sot.png").stat().st_size > 0
    # a second run skips what is recorded and keeps the rows
    bench_sot.main([*args, "--part", "live"])
    assert json.loads((out / "sot.json").read_text())["live"] == results["live"]


def test_subset_takes_the_first_questions_of_each_category():
    qs = bench_sot.load_questions()
    subset = bench_sot.pick(qs, "subset", 2)
    cats = [q["category"] for q in subset]
    assert len(subset) == 18 and all(cats.count(c) == 2 for c in set(cats))
    assert [q["question_id"] for q in subset][:2] == [1, 2]
