"""SmolLM2-135M-Instruct (`just smollm2`): the ChatML golden fixture always; parity, greedy decoding, manifest and
tokenizer when models/smollm2-135m-instruct has been exported (skipped otherwise: it is git-ignored)."""

import json

import numpy as np
import pytest

from conftest import EXPORT_DIR, MODELS
from oc_export.parity import against_goldens, against_torch
from oc_export.runtime import OrtDecoder

NAME = "smollm2-135m-instruct"
FOLDER = MODELS / NAME
FIXTURE = EXPORT_DIR / "fixtures" / "smollm2_chatml_renders.json"
DEFAULT_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
exported = pytest.mark.skipif(not (FOLDER / "goldens.json").is_file(),
                              reason=f"models/{NAME} is not exported (just smollm2)")
# fp32 noise through 30 layers (the residual stream reaches ~5e3): measured at worst 9e-6 rel on hidden states and
# 1.1e-4 abs on logits (export-report.json); the tolerances leave ~10x headroom
HIDDEN_REL, LOGITS_ABS = 1e-4, 2e-3


@pytest.fixture(scope="module")
def fixture():
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def render(template: str, messages, add_generation_prompt: bool, special_tokens: dict) -> str:
    """The template rendered as transformers renders chat templates (sandboxed Jinja2, trim/lstrip blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            **special_tokens)


def test_fixture_covers_the_template(fixture):
    cases = {c["name"]: c for c in fixture["cases"]}
    assert {"default_system_user_only", "explicit_system", "multi_turn", "exchange", "control_tokens_in_user",
            "control_tokens_in_assistant"} <= set(cases)
    ids = fixture["control_token_ids"]
    assert ids == {"<|im_start|>": 1, "<|im_end|>": 2, "<|endoftext|>": 0}
    for case in fixture["cases"]:
        rendered = case["rendered"]
        assert rendered == render(fixture["chat_template"], case["messages"], case["add_generation_prompt"],
                                  fixture["special_tokens"]), case["name"]
        has_system = case["messages"][0]["role"] == "system"
        assert rendered.startswith(DEFAULT_SYSTEM) != has_system, case["name"]
        assert rendered.endswith("<|im_start|>assistant\n") == case["add_generation_prompt"], case["name"]
        turns = len(case["messages"]) + (not has_system) + case["add_generation_prompt"]
        safe = case["safe_input_ids"]
        # the template's own turn markers, and no others, in the control-token-safe ids
        assert safe.count(1) == turns and safe.count(2) == turns - case["add_generation_prompt"], case["name"]
        if case["message_has_control_text"]:
            assert case["input_ids"].count(1) > turns, case["name"]  # HF's tokenizer lets the text forge turns
        else:
            assert case["input_ids"] == safe, case["name"]
    for name in ("default_system_user_only", "explicit_system", "multi_turn"):
        with_prompt, without = cases[name], cases[f"{name}_no_generation_prompt"]
        assert with_prompt["rendered"] == without["rendered"] + "<|im_start|>assistant\n"
        assert with_prompt["input_ids"][: len(without["input_ids"])] == without["input_ids"]


@exported
def test_fixture_matches_the_exported_tokenizer(fixture):
    from transformers import AutoTokenizer

    from oc_export.smollm2 import content_spans, safe_ids

    tokenizer = AutoTokenizer.from_pretrained(FOLDER, local_files_only=True)
    assert tokenizer.chat_template == fixture["chat_template"]
    for case in fixture["cases"]:
        rendered = tokenizer.apply_chat_template(case["messages"], tokenize=False,
                                                 add_generation_prompt=case["add_generation_prompt"])
        assert rendered == case["rendered"], case["name"]
        assert tokenizer(rendered, add_special_tokens=False)["input_ids"] == case["input_ids"], case["name"]
        spans = content_spans(rendered, case["messages"])
        assert safe_ids(tokenizer, rendered, spans) == case["safe_input_ids"], case["name"]


@exported
def test_tokenizer_splits_digits_like_smollm2():
    """The GGUF conversion alone would pre-tokenize with plain GPT-2 rules: `x  1` -> x, Ġ, Ġ, 1."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FOLDER, local_files_only=True)
    ids = tokenizer("x  1 and 2024", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["x", "ĠĠ", "1", "Ġand", "Ġ", "2", "0", "2", "4"]
    assert tokenizer("Hello", add_special_tokens=True)["input_ids"] == [19556]  # no bos added


@exported
def test_manifest():
    manifest = json.loads((FOLDER / "manifest.json").read_text())
    assert manifest["architecture"]["model_type"] == "llama"
    assert (manifest["num_layers"], manifest["hidden_size"], manifest["vocab_size"]) == (30, 576, 49152)
    assert len(manifest["kv_cache"]) == 30 and {(k["num_heads"], k["head_dim"]) for k in manifest["kv_cache"]} == {
        (3, 64)}
    assert [h["index"] for h in manifest["hidden_states"]] == list(range(31))
    assert manifest["special_tokens"] == {"bos": 1, "pad": 2, "unk": 0, "eos": [0, 2]}
    assert manifest["chat_template"] == {"file": "tokenizer_config.json", "key": "chat_template"}
    assert manifest["source"]["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


@exported
def test_goldens_reproduced_by_onnx():
    result = against_goldens(FOLDER)
    assert result["hidden"]["rel"] < HIDDEN_REL and not result["hidden"]["nan"], result["hidden"]
    assert result["logits"]["abs"] < LOGITS_ABS, result["logits"]
    assert result["greedy_all_match"], [(g["prompt"], g["ort"], g["hf"]) for g in result["greedy"]]


@exported
def test_onnx_matches_transformers(reference):
    """Full, incremental, chunked and left-padded batched decoding of a real chat exchange."""
    model, _ = reference(NAME)
    decoder = OrtDecoder(FOLDER)
    goldens = json.loads((FOLDER / "goldens.json").read_text())
    ids = goldens["exchanges"][1]["input_ids"]  # the chat exchange about France
    result = against_torch(decoder, model, np.asarray(ids))
    for check, value in result.items():
        assert not value["nan"], (check, value)
        limit = LOGITS_ABS if "logits" in check else None
        assert value["rel"] < HIDDEN_REL if limit is None else value["abs"] < limit, (check, value)


@exported
def test_export_report_greedy_answers():
    """The report's greedy answers (40 tokens) to a harmful and a benign prompt: ORT == HF generate."""
    report = json.loads((FOLDER / "export-report.json").read_text())
    assert report["parity"]["goldens"]["greedy_all_match"]
    samples = report["parity"]["samples"]
    assert len(samples) == 2 and all(s["match"] for s in samples), samples
    assert all(len(s["ort_ids"]) > 10 for s in samples)
