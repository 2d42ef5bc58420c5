"""Fresh exports: the optimum-cli path gives the same graph, fp16 parity, layer selection, Llama support."""

import json

import numpy as np
import onnx
import torch

from conftest import MODELS, run_cli
from oc_export.exporter import export
from oc_export.parity import against_torch, errors
from oc_export.runtime import OrtDecoder


def interface(path):
    model = onnx.load(str(path), load_external_data=False)

    def describe(values):
        return [(v.name, v.type.tensor_type.elem_type,
                 [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim])
                for v in values]

    return describe(model.graph.input), describe(model.graph.output)


def test_optimum_cli_produces_the_same_graph(tmp_path):
    result = run_cli("export", "onnx", "--task", "text-generation-with-past", "--model",
                     MODELS / "tiny-gemma4" / "source", tmp_path, module="oc_export.optimum_cli")
    assert result.returncode == 0, result.stderr[-3000:]
    assert interface(tmp_path / "model.onnx") == interface(MODELS / "tiny-gemma4" / "model.onnx")
    ours, theirs = OrtDecoder(MODELS / "tiny-gemma4"), OrtDecoder(tmp_path)
    ids = np.random.default_rng(3).integers(0, 640, size=(2, 20))
    mask = np.ones((2, 20), dtype=np.int64)
    mask[1, :5] = 0
    a, b = ours.forward(ids, mask), theirs.forward(ids, mask)
    step = np.ones((2, 21), dtype=np.int64)
    step[1, :5] = 0
    a2 = ours.run(ids[:, :1], step, ours.next_past(a))
    b2 = theirs.run(ids[:, :1], step, theirs.next_past(b))
    for first, second in ((a, b), (a2, b2)):
        assert first.keys() == second.keys()
        for name in first:
            assert np.allclose(first[name], second[name], atol=1e-5, rtol=1e-5), name


def test_fp16_export_parity(tmp_path, reference):
    """fp16 tolerance = what fp16 itself costs: the graph may deviate from the fp32 reference at most 3x as much
    as transformers' own fp16 forward does (measured: torch fp16 1.8e-2 rel, graph 2.0e-2 to 3.3e-2)."""
    from transformers import AutoModelForCausalLM

    from oc_export.parity import torch_forward, worst

    source = MODELS / "tiny-gemma4" / "source"
    manifest = export(source, tmp_path, dtype="fp16", goldens=False)
    assert manifest["graph"]["dtype"] == "float16" and {k["dtype"] for k in manifest["kv_cache"]} == {"float16"}
    decoder = OrtDecoder(tmp_path)  # ONNX Runtime's CPU provider runs every op of the fp16 graph
    assert decoder.float_dtype == np.float16
    model, _ = reference("tiny-gemma4")
    ids = np.random.default_rng(5).integers(0, 640, size=40)
    half = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float16, attn_implementation="eager").eval()
    ref_hidden, _ = torch_forward(model, ids[None])
    half_hidden, _ = torch_forward(half, ids[None])
    budget = 3 * worst(errors(h, r) for h, r in zip(half_hidden, ref_hidden))["rel"]
    assert budget < 0.1
    result = against_torch(decoder, model, ids, split=24)
    for check, value in result.items():
        assert not value["nan"] and value["rel"] < budget, (check, value, budget)


def test_layer_selection(tmp_path, reference):
    manifest = export(MODELS / "tiny-qwen3" / "source", tmp_path, layers="-1,0,-3", goldens=False)
    assert [h["index"] for h in manifest["hidden_states"]] == [0, 2, 4]
    assert manifest["goldens"] is None and not (tmp_path / "goldens.json").exists()
    decoder = OrtDecoder(tmp_path)
    assert [n for n in decoder.output_names if n.startswith("hidden")] == [
        "hidden_states.0", "hidden_states.2", "hidden_states.4"]
    model, _ = reference("tiny-qwen3")
    result = against_torch(decoder, model, np.arange(30) * 7 % 500, split=20)
    assert all(v["abs"] < 2e-4 for v in result.values()), result


def test_llama_is_supported(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    source = tmp_path / "source"
    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(source)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        (source / file).write_bytes((MODELS / "tiny-qwen3" / "source" / file).read_bytes())
    manifest = export(source, tmp_path / "out", goldens=False)
    assert manifest["architecture"]["model_type"] == "llama" and len(manifest["kv_cache"]) == 2
    model.set_attn_implementation("eager")
    result = against_torch(OrtDecoder(tmp_path / "out"), model, np.arange(24) * 5 % 512, split=16)
    assert all(v["abs"] < 1e-4 for v in result.values()), result
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["sliding_window"] is None
    assert errors([1.0], [1.0])["abs"] == 0.0


def test_external_data_layout(tmp_path, monkeypatch):
    """Graphs over 2 GB are stored as model.onnx + model.onnx_data; forced here on a tiny model."""
    monkeypatch.setenv("FORCE_ONNX_EXTERNAL_DATA", "1")  # optimum's switch for the >2 GB code path
    manifest = export(MODELS / "tiny-qwen3" / "source", tmp_path, goldens=False)
    graph = manifest["graph"]
    assert graph["external_data"] == "model.onnx_data" and (tmp_path / "model.onnx_data").is_file()
    assert graph["size_bytes"] == (tmp_path / "model.onnx").stat().st_size + (tmp_path / "model.onnx_data").stat().st_size
    ours, committed = OrtDecoder(tmp_path), OrtDecoder(MODELS / "tiny-qwen3")
    ids = np.arange(12).reshape(1, -1) * 11
    a, b = ours.forward(ids), committed.forward(ids)
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in b)


def test_gemma3_conditional_generation_folder(tmp_path):
    """A multimodal Gemma 3 folder (as gemma-3-4b and larger ship) is exported as its text decoder."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    text = dict(vocab_size=640, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                layer_types=["sliding_attention", "sliding_attention", "full_attention", "full_attention"],
                max_position_embeddings=512, initializer_range=0.1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_id=9,
                          boi_token_index=7, eoi_token_index=8)
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    source = tmp_path / "source"
    model.save_pretrained(source)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        (source / file).write_bytes((MODELS / "tiny-gemma3" / "source" / file).read_bytes())
    manifest = export(source, tmp_path / "out", goldens=False)
    assert manifest["architecture"] == {"model_type": "gemma3_text", "source_model_type": "gemma3",
                                        "source_class": "Gemma3ForConditionalGeneration"}
    model.set_attn_implementation("eager")
    ids = np.random.default_rng(0).integers(10, 640, size=40)  # text ids (Gemma 3 embeds in-vocab image ids as is)
    result = against_torch(OrtDecoder(tmp_path / "out"), model, ids, split=24)
    assert all(v["abs"] < 1e-4 for v in result.values()), result
