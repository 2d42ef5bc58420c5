"""optimum OnnxConfig for the contract's decoder graph, its per-layer dummy KV inputs, and the registration that
lets optimum's own `main_export` / `optimum-cli export onnx` pick it for every supported model type.
"""

from __future__ import annotations

from collections import OrderedDict

from packaging import version

from . import compat

compat.install()

from optimum.exporters.onnx.config import TextDecoderWithPositionIdsOnnxConfig  # noqa: E402
from optimum.exporters.tasks import TasksManager  # noqa: E402
from optimum.utils import DummyInputGenerator, DummyTextInputGenerator, NormalizedTextConfig  # noqa: E402

from .arch import SUPPORTED, decoder_layout, text_config_of  # noqa: E402
from .patcher import DecoderPatcher  # noqa: E402

OPSET = 18
TASK = "text-generation-with-past"


class PerLayerPastKeyValuesGenerator(DummyInputGenerator):
    """Dummy `past_key_values` with each KV entry's own head count and head dim.

    optimum's generators assume one shape for all layers; Gemma 4 mixes sliding layers (head_dim,
    num_key_value_heads) with full layers (global_head_dim, num_global_key_value_heads) and has layers without
    a cache at all.
    """

    SUPPORTED_INPUT_NAMES = ("past_key_values",)

    def __init__(self, task, normalized_config, batch_size=2, sequence_length=16, **kwargs):
        self.task = task
        self.layout = decoder_layout(normalized_config.config)
        self.batch_size = batch_size
        self.sequence_length = sequence_length

    def generate(self, input_name, framework="pt", int_dtype="int64", float_dtype="fp32"):
        def tensor(entry):
            shape = (self.batch_size, entry.num_heads, self.sequence_length, entry.head_dim)
            return self.random_float_tensor(shape, framework=framework, dtype=float_dtype)

        return [(tensor(entry), tensor(entry)) for entry in self.layout.kv]


class DecoderOnnxConfig(TextDecoderWithPositionIdsOnnxConfig):
    """The graph of CONTRACT.md: past/present per KV entry, last-position logits, selected hidden states."""

    NORMALIZED_CONFIG_CLASS = NormalizedTextConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator, PerLayerPastKeyValuesGenerator)
    DUMMY_PKV_GENERATOR_CLASS = PerLayerPastKeyValuesGenerator
    DEFAULT_ONNX_OPSET = OPSET
    ATOL_FOR_VALIDATION = 1e-4
    MIN_TRANSFORMERS_VERSION = version.parse("5.5.0")
    _MODEL_PATCHER = DecoderPatcher

    def __init__(self, config, task="text-generation", int_dtype="int64", float_dtype="fp32", use_past=True,
                 use_past_in_inputs=True, preprocessors=None, hidden_layers=None):
        # `config` may be a multimodal top-level config: the graph only covers its text decoder.
        self.layout = decoder_layout(config)
        if hidden_layers is None:
            hidden_layers = range(self.layout.num_layers + 1)
        self.hidden_layers = sorted(set(int(j) for j in hidden_layers))
        super().__init__(text_config_of(config), task=task, int_dtype=int_dtype, float_dtype=float_dtype,
                         use_past=use_past, use_past_in_inputs=use_past_in_inputs, preprocessors=preprocessors)

    def add_past_key_values(self, inputs_or_outputs, direction):
        if direction == "inputs":
            name, seq_axis = "past_key_values", "past_sequence_length"
        else:
            name, seq_axis = "present", "past_sequence_length + sequence_length"
        for i in range(len(self.layout.kv)):
            inputs_or_outputs[f"{name}.{i}.key"] = {0: "batch_size", 2: seq_axis}
            inputs_or_outputs[f"{name}.{i}.value"] = {0: "batch_size", 2: seq_axis}

    @property
    def outputs(self):
        # Order matters: the patched forward returns its dict in this order and the exporter names by position.
        outputs = OrderedDict({"logits": {0: "batch_size"}})  # [B, 1, vocab]: the last position only
        self.add_past_key_values(outputs, direction="outputs")
        for j in self.hidden_layers:
            outputs[f"hidden_states.{j}"] = {0: "batch_size", 1: "sequence_length"}
        return outputs

    def post_process_exported_models(self, path, models_and_onnx_configs, onnx_files_subpaths):
        # optimum's post-processing de-duplicates tied weights; the TorchScript exporter already stores a tied
        # parameter once, and there is no decoder/decoder-with-past pair to merge: nothing to do.
        return models_and_onnx_configs, onnx_files_subpaths


_REGISTERED = False


def register() -> None:
    """Make optimum pick DecoderOnnxConfig for `text-generation-with-past` of every supported model type."""
    global _REGISTERED
    if _REGISTERED:
        return
    # optimum registers its stock configs when model_configs is imported; import it first so that ours win.
    import optimum.exporters.onnx.model_configs  # noqa: F401

    register_for_onnx = TasksManager.create_register("onnx", overwrite_existing=True)
    for model_type in SUPPORTED:
        register_for_onnx(model_type, TASK)(DecoderOnnxConfig)
    _REGISTERED = True
