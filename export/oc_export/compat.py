"""Restores the few transformers names that optimum-onnx 0.1.0 imports but transformers 5.x moved or removed.

optimum-onnx 0.1.0 declares `transformers<4.58`, while Gemma 4 needs transformers >= 5.5, so it is installed
with `--no-deps` (see export/requirements-nodeps.txt). Importing it under 5.x then fails on three names.
`install()` puts them back (idempotently) before anything imports `optimum.exporters.onnx`; nothing here
changes transformers' behaviour, it only re-exports what moved or provides the trivial old semantics.
"""

from __future__ import annotations

import importlib

_INSTALLED = False


def _get_parameter_dtype(module):
    """transformers 4.x's `modeling_utils.get_parameter_dtype`: the dtype of the first floating parameter."""
    import torch

    last = None
    for tensor in list(module.parameters()) + list(module.buffers()):
        last = tensor.dtype
        if tensor.is_floating_point():
            return tensor.dtype
    return last if last is not None else torch.float32


def _no_misplaced_generation_parameters(self):
    # transformers 5.x keeps generation parameters out of model configs entirely, so there is never anything
    # to move into the generation config: `{}` is the correct answer, not a workaround.
    return {}


def install() -> None:
    """Make `import optimum.exporters.onnx` work under transformers 5.x. Safe to call more than once."""
    global _INSTALLED
    if _INSTALLED:
        return
    import transformers.modeling_utils as modeling_utils
    import transformers.utils.generic as generic
    from transformers import PretrainedConfig

    if not hasattr(modeling_utils, "get_parameter_dtype"):
        modeling_utils.get_parameter_dtype = _get_parameter_dtype
    if not hasattr(generic, "_CAN_RECORD_REGISTRY") or not hasattr(generic, "OutputRecorder"):
        capturing = importlib.import_module("transformers.utils.output_capturing")
        generic._CAN_RECORD_REGISTRY = capturing._CAN_RECORD_REGISTRY
        generic.OutputRecorder = capturing.OutputRecorder
    if not hasattr(PretrainedConfig, "_get_non_default_generation_parameters"):
        PretrainedConfig._get_non_default_generation_parameters = _no_misplaced_generation_parameters
    _INSTALLED = True
