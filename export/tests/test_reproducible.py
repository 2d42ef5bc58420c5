"""`tiny-models` is deterministic: rebuilding tiny-gemma4 gives the committed weights, tokenizer and goldens."""

import json

from conftest import MODELS
from oc_export.tiny_models import build

SAME_BYTES = ["source/model.safetensors", "source/tokenizer.json", "source/tokenizer_config.json",
              "source/chat_template.jinja", "source/config.json", "source/generation_config.json",
              "goldens.json", "goldens.safetensors", "tokenizer.json", "chat_template.jinja"]


def test_rebuild_matches_committed(tmp_path):
    out = build("tiny-gemma4", tmp_path)
    committed = MODELS / "tiny-gemma4"
    for name in SAME_BYTES:
        assert (out / name).read_bytes() == (committed / name).read_bytes(), name
    fresh = json.loads((out / "manifest.json").read_text())
    saved = json.loads((committed / "manifest.json").read_text())
    fresh["source"]["path"] = saved["source"]["path"]  # absolute outside the repository
    if fresh["exporter"] != saved["exporter"]:  # ONNX bytes may differ across library versions, nothing else
        fresh["graph"], fresh["exporter"] = saved["graph"], saved["exporter"]
    assert fresh == saved
