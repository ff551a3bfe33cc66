"""Decoding programs side by side (`epic_kernel.decode_compare`, `%%epic --decode`), the judge
(`programs.judge`) and the sampled programs (`programs.sampling`), on the simulated model with
scripted answers and scripted judges. The real judge (llama-server) is in test_judge_engine.py."""

from __future__ import annotations

import json
import re

import pytest

from epic_kernel import decode_compare
from epic_kernel.llm.sim import SimBackend
from epic_kernel.programs import best_of_n, judge_pair, judge_rank, net_win_rate, self_consistency
from epic_kernel.programs.decoding import (
    DECODING_PROGRAMS,
    DecodingComparison,
    register_decoding_program,
    rotated,
)
from epic_kernel.programs.judge import combine, parse_order, parse_score_pair, score_side
from epic_kernel.programs.sampling import extract_answer, majority, parse_rating
from epic_kernel.programs.sot import sim_script
from epic_kernel.runtime.events import clock

FASTCHAT = r"\[The Start of Assistant 1's Answer\]\n(.*?)\n\n\[The End of Assistant 1's Answer\].*?" \
           r"\[The Start of Assistant 2's Answer\]\n(.*?)\n\n\[The End of Assistant 2's Answer\]"
LLMZOO = r"\[Assistant 1\]\n(.*?)\n\n\[End of Assistant 1\].*?\[Assistant 2\]\n(.*?)\n\n\[End of Assistant 2\]"


def by_length(request, m) -> str:
    """A judge that prefers the longer answer, wherever it is shown."""
    a, b = len(m.group(1)), len(m.group(2))
    return f"{8 if a > b else 3 if a < b else 5} {3 if a > b else 8 if a < b else 5}\nThe longer one is better."


def rank_by_length(request, m) -> str:
    a, b = len(m.group(1)), len(m.group(2))
    return "Assistant 1 > Assistant 2" if a >= b else "Assistant 2 > Assistant 1"


def length_judge() -> SimBackend:
    return SimBackend(latency=0.0, answers=[(FASTCHAT, by_length), (LLMZOO, rank_by_length)])


def biased_judge() -> SimBackend:
    """Always prefers whatever is shown first: both orders must cancel it out."""
    return SimBackend(latency=0.0, answers=[(FASTCHAT, "9 2\nAssistant 1 is better."),
                                            (LLMZOO, "Assistant 1 > Assistant 2")])


# ------------------------------------------------------------------------------------ the judge
def test_fastchat_parse_like_the_sot_repository():
    assert parse_score_pair("8 3\nbecause") == (8.0, 3.0)
    assert parse_score_pair("7.5, 9\n") == (7.5, 9.0)
    assert parse_score_pair("Scores below.\nI give (6, 4) overall.") == (6.0, 4.0)
    assert parse_score_pair("Both are fine.") is None
    assert parse_score_pair("(1, 2) then (3, 4)") is None          # ambiguous: not a verdict


def test_llmzoo_order_parse():
    assert parse_order("Ranking: Assistant 2 > Assistant 1", 2) == [2, 1]
    assert parse_order("Assistant 1 = Assistant 2", 2) == [1, 1]
    assert parse_order("Assistant 1 >= Assistant 2", 2) == [1, 2]
    assert parse_order("Assistant 1 is good", 2) is None
    assert parse_order("Assistant 3 > Assistant 1", 2) is None


def test_a_verdict_that_flips_with_the_order_is_a_tie_and_unparsed_is_never_a_win():
    win = combine("fastchat", score_side("8 2", 0), score_side("2 8", 1))
    assert win["verdict"] == "win" and win["consistent"] is True
    flip = combine("fastchat", score_side("8 2", 0), score_side("8 2", 1))
    assert flip["verdict"] == "tie" and flip["consistent"] is False
    half = combine("fastchat", score_side("8 2", 0), score_side("no idea", 1))
    assert half["verdict"] == "unparsed" and half["consistent"] is None
    rate = net_win_rate(["win", "unparsed", "unparsed", "loss", "win"])
    assert rate == {"net_win_rate": 0.2, "questions": 5, "win": 2, "tie": 0, "loss": 1, "unparsed": 2}
    assert net_win_rate([])["net_win_rate"] is None
    with pytest.raises(ValueError, match="not a verdict"):
        net_win_rate(["great"])


def test_position_biased_judge_is_cancelled_by_the_two_orders():
    long, short = "A long and complete answer with detail.", "Short."
    for judged in (judge_pair("Q?", long, short, backend=biased_judge()),
                   judge_pair("Q?", short, long, backend=biased_judge()),
                   judge_rank("Q?", long, short, "coherence", backend=biased_judge())):
        assert judged["verdict"] == "tie" and judged["consistent"] is False
        assert judged["forward"]["verdict"] == "win" and judged["backward"]["verdict"] == "loss"
        assert judged["forward"]["reply"] and judged["backward"]["reply"]     # raw outputs kept
    fair = judge_pair("Q?", long, short, backend=length_judge())
    assert fair["verdict"] == "win" and fair["consistent"] is True
    assert judge_pair("Q?", short, long, backend=length_judge())["verdict"] == "loss"
    assert judge_rank("Q?", long, short, "general", backend=length_judge())["verdict"] == "win"


def test_judge_calls_run_in_parallel():
    judge = length_judge()
    res = judge_pair.run("Q?", "a b c", "d", backend=judge)
    a, b = res.calls
    assert a.start < b.end and b.start < a.end             # both orders in flight at once


# -------------------------------------------------------------------------------- sampled programs
def test_extract_and_vote():
    assert extract_answer("So 17 * 3 = 51.") == "51"
    assert extract_answer("It costs 1,000 dollars.") == "1000"
    assert extract_answer("**Paris.**\nIt is the capital.") == "paris"
    assert majority(["a", "b", "b", "a"]) == ("a", {"a": 2, "b": 2})          # ties: the first seen
    assert parse_rating("Rating: 7/10") == 7.0 and parse_rating("ten") == 0.0


def seeded(request, m) -> str:
    return {0: "I think 41.", 1: "It is 42.", 2: "Surely 42", 3: "Maybe 40."}[request.params.seed % 10]


def test_self_consistency_votes_over_parallel_samples():
    backend = SimBackend(answers=[(r"What is 6 \* 7", seeded)])
    res = self_consistency.run("What is 6 * 7?", n=4, seed=0, backend=backend)
    out = res.value
    assert out["extracted"] == ["41", "42", "42", "40"] and out["votes"] == {"41": 1, "42": 2, "40": 1}
    assert out["chosen"] == 1 and out["answer"] == "It is 42."
    assert {c.batch_id for c in res.calls} == {res.calls[0].batch_id}      # the samples decoded as one batch
    seq = self_consistency.run("What is 6 * 7?", n=4, seed=0, backend=backend, strategy="sequential")
    assert seq.value == out and len({c.batch_id for c in seq.calls}) == 4
    custom = self_consistency("What is 6 * 7?", n=4, backend=backend, extract=lambda s: s.split()[0])
    assert custom["votes"] == {"I": 1, "It": 1, "Surely": 1, "Maybe": 1} and custom["chosen"] == 0


def test_best_of_n_with_a_function_and_with_the_model_as_judge():
    backend = SimBackend(answers=[(r"Rate how well", lambda r, m: "9" if "42" in r.messages[-1]["content"] else "2"),
                                  (r"What is 6 \* 7", seeded)])
    out = best_of_n("What is 6 * 7?", n=4, score=len, backend=backend)
    assert out["scores"] == [11.0, 9.0, 9.0, 9.0] and out["chosen"] == 0 and out["ratings"] == []
    judged = best_of_n("What is 6 * 7?", n=4, backend=backend)
    assert judged["scores"] == [2.0, 9.0, 9.0, 2.0] and judged["chosen"] == 1 and judged["answer"] == "It is 42."
    assert judged["ratings"] == ["2", "9", "9", "2"]


# ---------------------------------------------------------------------------------- decode_compare
def test_rotation():
    names = ["normal", "sot", "sot-r"]
    assert [rotated(names, k)[0] for k in range(4)] == ["normal", "sot", "sot-r", "normal"]


def test_programs_are_timed_alone_in_rotated_order_and_judged_after_them():
    judged_at: list[float] = []

    def judge_reply(request, m):
        judged_at.append(clock())
        return by_length(request, m)

    backend = SimBackend(scripts=[sim_script], answers=[(FASTCHAT, judge_reply)])
    names = ["normal", "sot", "sot-r", "sot-stream", "self-consistency", "best-of-n"]
    questions = [{"question": "How do I sleep better?", "category": "generic", "question_id": 7},
                 {"question": "Why is the sky blue?", "category": "knowledge", "question_id": 9}]
    cmp = decode_compare(questions, programs=names, backend=backend, judge="self", n=3)
    assert cmp.finished and [q.question_id for q in cmp.questions] == [7, 9]
    assert cmp.questions[0].order == names and cmp.questions[1].order == names[1:] + names[:1]
    for q in cmp.questions:
        spans = sorted((r.result.start, r.result.start + r.result.elapsed) for r in q.runs.values())
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))     # never two at once
        for name, r in q.runs.items():
            assert r.ok and r.answer and r.elapsed > 0 and r.tokens_out > 0 and r.prefilled > 0
            assert r.first_token is not None and 0 <= r.first_token <= r.elapsed
            assert r.lanes and all(lane[2] <= r.elapsed + 1e-3 for lane in r.lanes)
            if name != "normal":
                assert set(q.verdicts[name]) == {"fastchat"}
    q0, q1 = cmp.questions
    last_run_q0 = max(r.result.start + r.result.elapsed for r in q0.runs.values())
    first_run_q1 = min(r.result.start for r in q1.runs.values())
    q0_judging = [t for t in judged_at if t < first_run_q1]
    assert len(q0_judging) == 2 * 5 and min(q0_judging) >= last_run_q0     # after its runs, before the next
    sot = q0.runs["sot"]
    assert sot.used_sot and len(sot.points) >= 2 and len(sot.expansions) == len(sot.points)
    assert max(b[3] for b in sot.batches) == len(sot.points)               # the expansions: one batch
    sc = q0.runs["self-consistency"]
    assert len(sc.samples) == 3 and sc.chosen is not None and "votes" in sc.detail
    rows = {r["program"]: r for r in cmp.table()}
    assert rows["normal"]["median_speedup"] == 1.0 and rows["sot"]["max_batch"] >= 2
    assert rows["sot"]["net_win"]["fastchat"]["questions"] == 2
    by_cat = cmp.net_win_rates("sot", "fastchat")
    assert set(by_cat) == {"overall", "generic", "knowledge"}


def test_a_judge_on_another_backend_and_llmzoo_metrics():
    backend = SimBackend(scripts=[sim_script])
    cmp = decode_compare("How do I sleep better?", programs=["normal", "sot"], backend=backend,
                         judge=biased_judge(), protocols=("fastchat", "llmzoo"), metrics=("general", "integrity"))
    v = cmp.questions[0].verdicts["sot"]
    assert set(v) == {"fastchat", "llmzoo-general", "llmzoo-integrity"}
    assert all(x["verdict"] == "tie" for x in v.values())
    assert cmp.table()[1]["net_win"]["llmzoo-integrity"]["net_win_rate"] == 0.0


def test_bad_arguments_say_what_is_accepted():
    with pytest.raises(ValueError, match="unknown decoding program 'greedy'"):
        decode_compare("Q?", programs=["greedy"], backend="sim")
    with pytest.raises(ValueError, match="unknown judge protocol"):
        decode_compare("Q?", backend="sim", protocols=["gpt"])
    with pytest.raises(ValueError, match="unknown LLMZoo metric"):
        decode_compare("Q?", backend="sim", metrics=["beauty"])


def test_a_registered_program_joins_and_a_failure_is_shown_not_averaged():
    from epic_kernel import epic

    @epic
    def shout(question, max_tokens=64):
        return llm(question + " Answer in capitals.", max_tokens=max_tokens).upper()    # noqa: F821

    register_decoding_program("shout", shout, label="SHOUT")
    try:
        backend = SimBackend(answers=[(r"explode", lambda r, m: 1 / 0)])
        cmp = decode_compare(["Hi there", "please explode"], programs=["normal", "shout"], backend=backend)
    finally:
        DECODING_PROGRAMS.pop("shout")
    assert cmp.questions[0].runs["shout"].answer.isupper()
    bad = cmp.questions[1].runs["shout"]
    assert not bad.ok and bad.error
    assert {r["program"]: r["failed"] for r in cmp.table()} == {"normal": 1, "shout": 1}


def test_view_escapes_model_output_and_survives_save_and_load(tmp_path):
    from epic_kernel.widgets import DecodeView, decode_html, decode_text

    evil = "<script>alert(1)</script>"
    backend = SimBackend(scripts=[sim_script], answers=[(r"^Why", evil)])
    cmp = decode_compare("Why <b>?", programs=["normal", "sot", "self-consistency"], backend=backend,
                         judge=biased_judge(), n=2)
    page = decode_html(cmp, title="In [3]")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Why &lt;b&gt;?" in page
    assert page.count('class="epic-decode-card"') == 3
    assert re.search(r'<li data-sample="\d" data-chosen="true">', page)
    assert "flipped with the order: a tie" in page and "9 2" in page                 # raw judge reply kept
    assert 'class="epic-decode-first"' in page and "decode batch" in page
    path = cmp.save(tmp_path / "cmp.json")
    back = DecodingComparison.load(path)
    assert json.loads(path.read_text())["table"] == cmp.table() == back.table()
    assert decode_html(back, title="In [3]") == page                  # the reopened view is the same view
    bundle = DecodeView(back)._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"} and "SoT" in decode_text(back)


# --------------------------------------------------------------------------------------- the magic
@pytest.fixture(scope="module")
def ip(tmp_path_factory):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    tmp = tmp_path_factory.mktemp("ipython")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp / "ipython"))
        mp.setenv("EPIC_CACHE_DIR", str(tmp / "cache"))
        mp.delenv("EPIC_VIEW", raising=False)
        cfg = Config()
        cfg.HistoryManager.hist_file = ":memory:"
        shell = InteractiveShell.instance(config=cfg)
        shell.run_line_magic("load_ext", "epic_kernel")
        yield shell
        shell.run_line_magic("unload_ext", "epic_kernel")
        InteractiveShell.clear_instance()


def test_decode_magic(ip, capsys):
    ip.user_ns["answers"] = SimBackend(scripts=[sim_script])
    ip.user_ns["judge"] = biased_judge()
    ip.run_cell_magic("epic", "--decode normal,sot,sot-r,sot-stream --backend answers --judge judge --view text "
                              "--out cmp", "How do I sleep better?\n")
    cmp = ip.user_ns["cmp"]
    assert ip.user_ns["_epic_decode"] is cmp and cmp.programs == ["normal", "sot", "sot-r", "sot-stream"]
    assert cmp.questions[0].question == "How do I sleep better?" and cmp.judge.startswith("sim")
    out = capsys.readouterr().out
    assert "decoding comparison" in out and "streaming SoT" in out
    html = ip.display_formatter.formatters["text/html"].lookup(cmp)(cmp)    # decode_compare's value: the view
    assert 'class="epic-live epic-snapshot epic-decode"' in html


def test_decode_magic_errors(ip):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="unknown decoding program nope"):
        ip.run_cell_magic("epic", "--decode normal,nope --backend sim", "Q?")
    with pytest.raises(UsageError, match="drop --strategy"):
        ip.run_cell_magic("epic", "--decode --strategy sequential --backend sim", "Q?")
    with pytest.raises(UsageError, match="the cell holds the question"):
        ip.run_cell_magic("epic", "--decode --backend sim", "  \n")


# ------------------------------------------------------------------------------------ the benchmark
def test_bench_decoding_quick_on_the_sim_resumes_and_caches_verdicts(tmp_path, capsys):
    from benchmarks import bench_decoding

    argv = ["--quick", "--backend", "sim", "--judge", "self", "--out", str(tmp_path), "--name", "d",
            "--part", "answer,judge,report"]
    first = bench_decoding.main(argv)
    qs = first["questions"]
    assert set(qs) == {"1", "11"} and all(len(q["runs"]) == 6 for q in qs.values())
    judge = first["meta"]["judge"]
    assert all(set(q["verdicts_by_judge"][judge]["sot"]) == {"fastchat", "llmzoo-general"} for q in qs.values())
    assert first["meta"]["settings"]["seed"] == 0 and "seed 0 + k" in first["meta"]["seeds"]
    again = bench_decoding.main(argv)                         # resumed: nothing answered or judged again
    assert again["questions"] == json.loads((tmp_path / "d.json").read_text())["questions"] == qs
    md = (tmp_path / "d.md").read_text()
    assert "| generic | 1 |" in md and "Net win rate vs normal decoding (fastchat / llmzoo-general)" in md


def test_judge_an_existing_comparison_without_answering_again():
    from epic_kernel.programs import judge_comparison

    backend = SimBackend(scripts=[sim_script])
    cmp = decode_compare(["How do I sleep better?", "Why is the sky blue?"], programs=["normal", "sot"], backend=backend)
    before = {q.question_id: q.runs["sot"].answer for q in cmp.questions}
    calls = backend.stats.requests
    judge_comparison(cmp, length_judge(), protocols=("fastchat", "llmzoo"), metrics=("coherence",))
    assert {q.question_id: q.runs["sot"].answer for q in cmp.questions} == before
    assert backend.stats.requests == calls                                   # the answer model was not asked
    assert all(set(q.verdicts["sot"]) == {"fastchat", "llmzoo-coherence"} for q in cmp.questions)
    assert cmp.judge.startswith("sim") and cmp.protocols == ["fastchat", "llmzoo"]
    assert cmp.table()[1]["net_win"]["fastchat"]["questions"] == 2
