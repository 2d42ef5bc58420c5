"""The ModelPatcher that turns a transformers 5.x causal LM into the graph of CONTRACT.md while optimum traces it.

optimum-onnx 0.1.0's stock `ModelPatcher` is written for transformers 4.x (legacy tuple caches,
`from_legacy_cache`, `check_model_inputs`); under 5.x it must be replaced, not patched. This patcher keeps
optimum's protocol (`__enter__` swaps `model.forward`, `__exit__` restores it) and supplies a forward with the
contract's flat signature:

    forward(input_ids, attention_mask, position_ids, past_key_values=[(k0, v0), (k1, v1), ...])
      -> {"logits", "present.{i}.key", "present.{i}.value", ..., "hidden_states.{j}", ...}

It calls the model's own text decoder, so every architecture detail (per-layer embeddings, KV sharing, sliding
windows, RoPE variants) stays transformers' code.
"""

from __future__ import annotations

import torch
from optimum.exporters.onnx.model_patcher import ModelPatcher
from transformers.cache_utils import DummyLayer, DynamicCache, DynamicLayer
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from .arch import placeholder_token_ids


def locate_decoder(model):
    """(text decoder module, lm_head) of a causal LM or of a multimodal conditional-generation model."""
    decoder = model.get_decoder()
    lm_head = model.get_output_embeddings()
    if decoder is None or lm_head is None or decoder is model:
        raise RuntimeError(f"cannot find the text decoder and lm_head of {type(model).__name__}")
    return decoder, lm_head


def build_cache(layout, past_key_values) -> DynamicCache:
    """A DynamicCache whose layers already hold the flat past tensors.

    The tensors are assigned directly: going through `update()` on an empty layer concatenates with an empty
    tensor, which the TorchScript exporter turns into a wrong rank-1 Concat. Every cache-owning layer is a
    plain (full-length) DynamicLayer, also for sliding-window layers: the graph keeps all past positions and the
    sliding-window mask enforces the window, so results are exact for any length. Layers that reuse another
    layer's KV (Gemma 4 `num_kv_shared_layers`) get transformers' DummyLayer, as in its own caches.
    """
    owned = layout.kv_index_of_layer
    layers = []
    for i in range(layout.num_layers):
        if i in owned:
            key, value = past_key_values[owned[i]]
            layer = DynamicLayer()
            layer.keys, layer.values = key, value
            layer.device = key.device
            layer.is_initialized = True
        else:
            layer = DummyLayer()
        layers.append(layer)
    cache = DynamicCache()
    cache.layers = layers
    cache.layer_class_to_replicate = None
    return cache


def fp16_safe_eager_mask(*args, **kwargs):
    """transformers' eager mask with a masked value of finfo.min / 2 instead of finfo.min.

    In fp16, `score + finfo.min` overflows to -inf for any score below -16; a fully masked row (a left-padding
    query) then becomes NaN after softmax, the NaN lands in the cache of the padded slot, and `0 * NaN` spreads it
    to every real token. Half the minimum cannot overflow and still gives masked keys exactly zero weight.
    """
    mask = eager_mask(*args, **kwargs)
    if mask is not None and mask.dtype == torch.float16:
        mask = mask.clamp(min=torch.finfo(torch.float16).min / 2)
    return mask


class DecoderPatcher(ModelPatcher):
    """Replaces `model.forward` by the contract's forward while optimum exports or validates the model."""

    def __init__(self, config, model, model_kwargs=None):
        # ModelPatcher.__init__ is deliberately not called: it wraps the forward with transformers-4.x logic.
        self._model = model
        self.real_config = config
        self.model_kwargs = model_kwargs or {}  # optimum passes logits_to_keep=0 here; the graph keeps 1
        self.orig_forward_name = "forward"
        self.orig_forward = model.forward
        self._patching_specs = []
        layout = config.layout
        hidden_layers = list(config.hidden_layers)
        decoder, lm_head = locate_decoder(model)
        self._decoder = decoder
        softcap = layout.final_logit_softcapping
        placeholders, pad_id = placeholder_token_ids(model.config)

        def forward(input_ids, attention_mask, position_ids, past_key_values):
            if placeholders:
                is_placeholder = input_ids == placeholders[0]
                for token in placeholders[1:]:
                    is_placeholder = is_placeholder | (input_ids == token)
                input_ids = torch.where(is_placeholder, torch.full_like(input_ids, pad_id), input_ids)
            cache = build_cache(layout, past_key_values)
            out = decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                output_hidden_states=True,
                return_dict=True,
            )
            # logits_to_keep=1: only the last position's logits leave the graph (a 262k vocabulary is ~1 MB per
            # token in fp32); extraction and decoding need no more. `select` + `unsqueeze` (not `[:, -1:]`) gives
            # the graph a static length 1, so optimum need not reload and rewrite the whole model to fix the axis.
            logits = lm_head(out.last_hidden_state[:, -1, :].unsqueeze(1))
            if softcap is not None:
                logits = torch.tanh(logits / softcap) * softcap
            result = {"logits": logits}
            for i, entry in enumerate(layout.kv):
                layer = cache.layers[entry.layer]
                result[f"present.{i}.key"] = layer.keys
                result[f"present.{i}.value"] = layer.values
            for j in hidden_layers:
                result[f"hidden_states.{j}"] = out.hidden_states[j]
            return result

        self.patched_forward = forward

    def __enter__(self):
        # Eager attention: the reference the goldens use, and a plain MatMul/Softmax graph with the mask always
        # materialised (sdpa may pick `is_causal` from the traced shapes).
        # Only the text decoder is switched: a multimodal model's towers may not support the previous setting.
        self._saved_attn = self._decoder.config._attn_implementation
        self._decoder.set_attn_implementation("eager")
        self._saved_eager_mask = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get("eager")
        if self.real_config.float_dtype == "fp16":
            ALL_MASK_ATTENTION_FUNCTIONS.register("eager", fp16_safe_eager_mask)
        # Gemma 4 iterates a set of layer types when it builds RoPE tables; Python's per-process string hashing
        # would then order the graph's nodes differently on every run. A sorted list makes the bytes reproducible.
        self._saved_types = getattr(self._decoder, "unique_layer_types", None)
        if isinstance(self._saved_types, set):
            self._decoder.unique_layer_types = sorted(self._saved_types)
        setattr(self._model, self.orig_forward_name, self.patched_forward)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        setattr(self._model, self.orig_forward_name, self.orig_forward)
        if isinstance(self._saved_types, set):
            self._decoder.unique_layer_types = self._saved_types
        if self._saved_eager_mask is not None:
            ALL_MASK_ATTENTION_FUNCTIONS.register("eager", self._saved_eager_mask)
        if self._saved_attn and self._saved_attn != "eager":
            self._decoder.set_attn_implementation(self._saved_attn)
