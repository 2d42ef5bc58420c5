"""`oc_export export MODEL_DIR OUT_DIR`: optimum's `main_export` with our OnnxConfig, then the contract's folder
(graph, tokenizer files, goldens, manifest). User errors are raised as ExportError before any heavy work starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .arch import check_model_dir, decoder_layout, raw_num_layers, resolve_layers
from .errors import ExportError
from .manifest import TOKENIZER_FILES, dump_json

DTYPES = ("fp32", "fp16")
GRAPH_FILES = ("model.onnx", "model.onnx_data")

log = logging.getLogger("oc_export")


def prepare_out_dir(out_dir: Path) -> Path:
    """Creates OUT_DIR and proves it is writable, so an unwritable target fails in a second, not after export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output path {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ExportError(f"output directory {out_dir} is not writable: {exc.strerror or exc}") from None
    return out_dir


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def limit_threads() -> None:
    """At most 2 torch threads: the export is memory-bound and this machine's cores are shared."""
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def load_config(model_dir: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:  # a broken config.json is the user's input, not our bug
        raise ExportError(f"cannot load {model_dir / 'config.json'}: {exc}") from None


def run_main_export(model_dir: Path, staging: Path, onnx_config, dtype: str) -> None:
    """The ONNX export proper, through optimum's public API."""
    from optimum.exporters.onnx import main_export

    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        # optimum's own check compares with an absolute tolerance and logs "[x] values not close enough" for any
        # model whose residual stream is large (Gemma: ~1e5), although it then only warns; our parity checks are
        # relative. Its real failures (output names, shapes) still raise.
        logging.getLogger("optimum").setLevel(logging.CRITICAL)
    main_export(
        str(model_dir),
        output=staging,
        task="text-generation-with-past",
        custom_onnx_configs={"model": onnx_config},
        opset=onnx_config.DEFAULT_ONNX_OPSET,
        dtype=dtype,
        no_post_process=True,
        library_name="transformers",
        local_files_only=True,
        # Folding would store a second, transposed copy of a tied embedding (1.07 -> 1.74 GB for Gemma 3 270M)
        # and costs time and memory; ONNX Runtime folds what it needs when it loads the graph.
        do_constant_folding=False,
        # optimum's own check runs the graph on ONNX Runtime's CPU provider, which lacks fp16 kernels for some
        # ops: fp16 graphs are checked by the tests instead.
        do_validation=dtype == "fp32",
    )


def install_graph(staging: Path, out_dir: Path) -> None:
    for name in GRAPH_FILES:
        target = out_dir / name
        if target.exists():
            target.unlink()  # a stale model.onnx_data from an earlier, larger export must not survive
        if (staging / name).exists():
            shutil.move(str(staging / name), target)


def copy_tokenizer_files(model_dir: Path, out_dir: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out_dir / name)
            copied.append(name)
        elif (out_dir / name).exists():
            (out_dir / name).unlink()
    return copied


def export(model_dir, out_dir, layers: str = "all", dtype: str = "fp32", goldens: bool = True,
           hub_id: str | None = None) -> dict:
    """Exports MODEL_DIR's text decoder into OUT_DIR; returns the manifest plus timing in `_stats`."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    # Every user error is detected here, before the slow imports (torch, transformers) start.
    raw = check_model_dir(model_dir)
    if dtype not in DTYPES:
        raise ExportError(f"unsupported --dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    hidden_layers = resolve_layers(layers, raw_num_layers(raw))
    if out_dir.resolve() == model_dir.resolve():
        raise ExportError(f"output folder {out_dir} is the model folder: choose another one (e.g. its parent)")
    prepare_out_dir(out_dir)
    limit_threads()
    config = load_config(model_dir)
    layout = decoder_layout(config)

    from . import goldens as golden_refs
    from . import manifest as manifest_mod
    from . import onnx_config as onnx_config_mod

    onnx_config_mod.register()
    onnx_config = onnx_config_mod.DecoderOnnxConfig(config, float_dtype=dtype, hidden_layers=hidden_layers)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as staging:
        log.info("exporting %s (%s, %d layers, %d KV entries) to ONNX", model_dir, layout.model_type,
                 layout.num_layers, len(layout.kv))
        run_main_export(model_dir, Path(staging), onnx_config, dtype)
        install_graph(Path(staging), out_dir)
    export_seconds = time.monotonic() - started
    export_peak_rss_mb = peak_rss_mb()
    tokenizer_files = copy_tokenizer_files(model_dir, out_dir)

    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    try:
        generation_config = GenerationConfig.from_pretrained(model_dir, local_files_only=True)
    except OSError:
        generation_config = None
    specials = manifest_mod.special_tokens(tokenizer, config, generation_config)
    goldens_seconds = None
    if goldens:
        started = time.monotonic()
        log.info("computing PyTorch goldens")
        model, tokenizer = golden_refs.load_reference(model_dir)
        golden_refs.write(out_dir, model, tokenizer, layout.num_layers, specials["eos"], specials["pad"])
        del model
        goldens_seconds = time.monotonic() - started
    else:
        for name in ("goldens.json", "goldens.safetensors"):
            if (out_dir / name).exists():
                (out_dir / name).unlink()
    manifest = manifest_mod.build(
        source=model_dir, out_dir=out_dir, config=config, layout=layout, hidden_layers=hidden_layers, dtype=dtype,
        tokenizer=tokenizer, generation_config=generation_config, tokenizer_files=tokenizer_files, hub_id=hub_id,
        goldens=goldens)
    dump_json(manifest, out_dir / "manifest.json")
    manifest["_stats"] = {"export_seconds": export_seconds, "goldens_seconds": goldens_seconds,
                          "peak_rss_mb_after_export": export_peak_rss_mb, "peak_rss_mb": peak_rss_mb()}
    return manifest
