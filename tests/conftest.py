"""Shared pytest fixtures. Nothing here touches the network: HF_HUB_OFFLINE is forced before any import."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-init 0.13 M-param Llama + BPE tokenizer (left padding, chat template), built offline in ~0.1 s."""
    pytest.importorskip("transformers")
    from epic_kernel.testing.tinylm import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tinylm") / "tiny", "tiny")


@pytest.fixture(scope="session")
def tiny_trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny Llama after 100 CPU training steps (~2 s): it answers "The cat" with a sentence ending in EOS."""
    pytest.importorskip("transformers")
    from epic_kernel.testing.tinylm import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tinylm") / "tiny-trained", "tiny", train_steps=100)
