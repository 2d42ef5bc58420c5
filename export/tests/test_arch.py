"""Layouts derived from real configs (no weights needed): the Gemma 4 E2B text config inside a conditional-
generation config, and the Gemma 3 270M config shape; plus layer-index resolution."""

import json
from pathlib import Path

import pytest

from oc_export.arch import decoder_layout, resolve_layers
from oc_export.errors import ExportError

E2B = Path("/work/shared/gpu/gemma4_e2b_text_config.json")


@pytest.mark.skipif(not E2B.is_file(), reason="the shared E2B config is not on this machine")
def test_gemma4_e2b_layout():
    from transformers import Gemma4Config

    text = {k: v for k, v in json.loads(E2B.read_text()).items() if not k.startswith("_")}
    layout = decoder_layout(Gemma4Config(text_config=text))  # as in google/gemma-4-E2B-it's config.json
    assert layout.model_type == "gemma4_text" and layout.num_layers == 35 and layout.sliding_window == 512
    assert [e.layer for e in layout.kv] == list(range(15))  # the last 20 layers own no cache
    for entry in layout.kv:
        full = entry.layer in (4, 9, 14)
        assert (entry.num_heads, entry.head_dim, entry.attention) == (1, 512 if full else 256,
                                                                      "full" if full else "sliding")
    owners = dict(layout.shared_kv)
    assert sorted(owners) == list(range(15, 35))
    assert {owners[i] for i in owners if (i + 1) % 5 == 0} == {14} and {owners[i] for i in owners
                                                                        if (i + 1) % 5} == {13}
    assert layout.final_logit_softcapping == 30.0


def test_resolve_layers():
    assert resolve_layers("all", 6) == list(range(7))
    assert resolve_layers("-1,-4, 0,2,2", 6) == [0, 2, 3, 6]
    for bad in ("7", "-8", "1,x", ","):
        with pytest.raises(ExportError):
            resolve_layers(bad, 6)
