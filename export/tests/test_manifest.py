"""manifest.json of the committed tiny exports: contract keys, names and shapes that agree with the graph,
special tokens, files, hashes; and the tokenizer.json pipeline the Rust side uses reproduces HF's token ids."""

import json

import onnx
import pytest
from tokenizers import Tokenizer

from conftest import MODELS, TINY
from oc_export.manifest import model_hash, sha256_file

KEYS = ["schema_version", "format", "model_hash", "source", "architecture", "num_layers", "hidden_size",
        "vocab_size", "max_position_embeddings", "sliding_window", "graph", "inputs", "logits", "hidden_states",
        "kv_cache", "shared_kv_layers", "special_tokens", "chat_template", "tokenizer", "exporter", "goldens"]
EXPECTED = {
    "tiny-gemma4": dict(model_type="gemma4_text", source_model_type="gemma4",
                        source_class="Gemma4ForConditionalGeneration", layers=6, sliding=16,
                        kv=[(0, 1, 16, "sliding"), (1, 1, 16, "sliding"), (2, 2, 32, "full"), (3, 1, 16, "sliding")],
                        shared=[(4, 3), (5, 2)], eot="<turn|>", template=("chat_template.jinja", None)),
    "tiny-gemma3": dict(model_type="gemma3_text", source_model_type="gemma3_text", source_class="Gemma3ForCausalLM",
                        layers=6, sliding=16, kv=[(i, 2, 16, "full" if i in (2, 5) else "sliding") for i in range(6)],
                        shared=[], eot="<end_of_turn>", template=("tokenizer_config.json", "chat_template")),
    "tiny-qwen3": dict(model_type="qwen3", source_model_type="qwen3", source_class="Qwen3ForCausalLM", layers=4,
                       sliding=None, kv=[(i, 2, 16, "full") for i in range(4)], shared=[], eot="<|im_end|>",
                       template=("tokenizer_config.json", "chat_template")),
}


def load(name):
    return json.loads((MODELS / name / "manifest.json").read_text())


@pytest.mark.parametrize("name", TINY)
def test_manifest_matches_contract_and_graph(name):
    m, want, folder = load(name), EXPECTED[name], MODELS / name
    assert list(m) == KEYS and m["schema_version"] == 1 and m["format"] == "open-constitution/onnx-decoder"
    assert (m["architecture"]["model_type"], m["architecture"]["source_model_type"],
            m["architecture"]["source_class"]) == (want["model_type"], want["source_model_type"], want["source_class"])
    assert m["num_layers"] == want["layers"] and m["sliding_window"] == want["sliding"]
    assert [(k["layer"], k["num_heads"], k["head_dim"], k["attention"]) for k in m["kv_cache"]] == want["kv"]
    assert [(s["layer"], s["uses_kv_of"]) for s in m["shared_kv_layers"]] == want["shared"]
    graph = onnx.load(str(folder / m["graph"]["file"]), load_external_data=False)
    inputs = {i.name: i for i in graph.graph.input}
    outputs = {o.name: o for o in graph.graph.output}
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]

    def dims(value):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]

    for i, kv in enumerate(m["kv_cache"]):
        assert kv["past_key"] == f"past_key_values.{i}.key" and kv["present_value"] == f"present.{i}.value"
        for name_ in (kv["past_key"], kv["past_value"]):
            assert dims(inputs[name_])[1] == kv["num_heads"] and dims(inputs[name_])[3] == kv["head_dim"]
        for name_ in (kv["present_key"], kv["present_value"]):
            assert dims(outputs[name_])[1] == kv["num_heads"] and dims(outputs[name_])[3] == kv["head_dim"]
    assert len(inputs) == 3 + 2 * len(m["kv_cache"])
    assert [h["index"] for h in m["hidden_states"]] == list(range(want["layers"] + 1))
    assert m["hidden_states"][0]["meaning"] == "embeddings" and "final norm" in m["hidden_states"][-1]["meaning"]
    assert set(outputs) == {"logits"} | {h["name"] for h in m["hidden_states"]} | {
        n for kv in m["kv_cache"] for n in (kv["present_key"], kv["present_value"])}
    assert dims(outputs["logits"])[1:] == [1, m["vocab_size"]]
    assert m["graph"]["sha256"] == sha256_file(folder / "model.onnx") and m["graph"]["opset"] == 18
    assert m["graph"]["external_data"] is None and m["graph"]["dtype"] == "float32"


@pytest.mark.parametrize("name", TINY)
def test_manifest_tokens_files_and_identity(name):
    m, want, folder = load(name), EXPECTED[name], MODELS / name
    source = folder / m["source"]["path"]
    assert m["source"]["path"] == "source" and source.is_dir()
    assert m["model_hash"] == model_hash([{"file": w["file"], "sha256": sha256_file(source / w["file"])}
                                          for w in m["source"]["weights"]])
    vocab = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab(with_added_tokens=True)
    assert vocab[want["eot"]] in m["special_tokens"]["eos"]
    generation = json.loads((source / "generation_config.json").read_text())
    assert set(generation["eos_token_id"]) <= set(m["special_tokens"]["eos"])
    if name != "tiny-qwen3":
        assert (m["special_tokens"]["pad"], m["special_tokens"]["bos"], m["special_tokens"]["unk"]) == (0, 2, 3)
    assert (m["chat_template"]["file"], m["chat_template"]["key"]) == want["template"]
    for file in m["tokenizer"]["files"] + [m["chat_template"]["file"], "goldens.json", "goldens.safetensors"]:
        assert (folder / file).is_file(), file
    assert m["goldens"] == {"json": "goldens.json", "tensors": "goldens.safetensors"}


@pytest.mark.parametrize("name", TINY)
def test_rust_side_tokenization_matches_goldens(name):
    """tokenizer.json through the `tokenizers` library (what the Rust crate does) gives HF's ids: plain text with
    the default special tokens, chat-template text without, and the safe tokenization of the control-token
    exchange with special tokens matched only outside the user's text."""
    folder = MODELS / name
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    goldens = json.loads((folder / "goldens.json").read_text())
    for record in goldens["exchanges"] + goldens["generations"]:
        assert tok.encode(record["text"], add_special_tokens=not record["chat_template"]).ids == record["input_ids"]
    control = [r for r in goldens["exchanges"] if "control_token_test" in r]
    assert len(control) == 1
    test = control[0]["control_token_test"]
    text, (u0, u1) = control[0]["text"], test["user_text_char_range"]
    end_id = test["control_token_id"]
    assert test["hf_tokenizes_as_special"]
    assert control[0]["input_ids"].count(end_id) > test["safe_input_ids"].count(end_id)
    tok.encode_special_tokens = True
    user = tok.encode(text[u0:u1], add_special_tokens=False).ids
    tok.encode_special_tokens = False
    safe = (tok.encode(text[:u0], add_special_tokens=False).ids + user
            + tok.encode(text[u1:], add_special_tokens=False).ids)
    assert user == test["safe_user_ids"] and safe == test["safe_input_ids"]
    assert end_id not in user
