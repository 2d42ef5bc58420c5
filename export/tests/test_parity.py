"""The committed tiny exports against transformers: goldens, full/incremental/chunked/batched-padded decoding."""

import numpy as np
import pytest

from conftest import MODELS, TINY
from oc_export.parity import against_goldens, against_torch
from oc_export.runtime import OrtDecoder

ABS, REL = 2e-4, 2e-5  # measured ~5e-5 abs / ~6e-6 rel at worst (Gemma 4); fp32 noise only


@pytest.mark.parametrize("name", TINY)
def test_goldens_reproduced_by_onnx(name):
    result = against_goldens(MODELS / name)
    assert result["hidden"]["rel"] < REL and not result["hidden"]["nan"], result["hidden"]
    assert result["logits"]["abs"] < ABS, result["logits"]
    assert result["greedy_all_match"], result["greedy"]


@pytest.mark.parametrize("name", TINY)
def test_onnx_matches_transformers(name, reference):
    model, _ = reference(name)
    decoder = OrtDecoder(MODELS / name)
    # 40 random ids over the whole vocabulary (special and placeholder ids included), longer than the window 16
    ids = np.random.default_rng(7).integers(0, decoder.manifest["vocab_size"], size=40)
    result = against_torch(decoder, model, ids, split=24)
    for check, value in result.items():
        assert not value["nan"], (check, value)
        assert value["abs"] < ABS or value["rel"] < REL, (check, value)
