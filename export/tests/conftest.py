"""Shared fixtures: paths, the committed tiny models, a CLI runner, and in-process exports cached per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPORT_DIR = Path(__file__).resolve().parents[1]
REPO = EXPORT_DIR.parent
MODELS = REPO / "models"
TINY = ("tiny-gemma4", "tiny-gemma3", "tiny-qwen3")

sys.path.insert(0, str(EXPORT_DIR))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_cli(*args, module: str = "oc_export", timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(EXPORT_DIR)}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="session", autouse=True)
def light_torch():
    import torch

    torch.set_num_threads(1)  # the suite shares 2 cores with other work


@pytest.fixture(scope="session")
def reference():
    """transformers models of the committed tiny sources (fp32, eager), loaded once."""
    from oc_export.goldens import load_reference

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_reference(MODELS / name / "source")
        return cache[name]

    return get
