"""`tiny-models` is deterministic: rebuilding tiny-gemma4 gives the committed weights, tokenizer and goldens."""

import json

from conftest import MODELS
from oc_export.tiny_models import build

SAME_BYTES = ["source/model.safetensors", "source/tokenizer.json", "source/tokenizer_config.json",
              "source/chat_template.jinja", "source/config.json", "source/generation_config.json",
              "goldens.json", "tokenizer.json", "chat_template.jinja"]


def same_goldens(fresh, committed):
    """PyTorch's float results are reproducible on one CPU, not across instruction sets (AVX2 and
    AVX-512 kernels differ in the last bit): same tensors, shapes and values within 1e-5 (measured: 3.1e-6 at the
    last layer between an AVX2 EPYC and the machine that committed them)."""
    from safetensors.numpy import load_file
    import numpy as np

    a, b = load_file(str(fresh)), load_file(str(committed))
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_rebuild_matches_committed(tmp_path):
    out = build("tiny-gemma4", tmp_path)
    committed = MODELS / "tiny-gemma4"
    for name in SAME_BYTES:
        assert (out / name).read_bytes() == (committed / name).read_bytes(), name
    same_goldens(out / "goldens.safetensors", committed / "goldens.safetensors")
    fresh = json.loads((out / "manifest.json").read_text())
    saved = json.loads((committed / "manifest.json").read_text())
    fresh["source"]["path"] = saved["source"]["path"]  # absolute outside the repository
    if fresh["exporter"] != saved["exporter"]:  # ONNX bytes may differ across library versions, nothing else
        fresh["graph"], fresh["exporter"] = saved["graph"], saved["exporter"]
    assert fresh == saved
