"""The GPU benchmark of issue 7, end to end in one run (driven by benches/gpu/run.sh, which sets the environment):
build the E2B-shaped model with random weights, export it (fp16), then measure our `extract` and guarded decode
against transformers on the same ids, and print the table with the ratios.

Stages (each one's result is a JSON file under WORK/results/; finished model, export and data are reused by a rerun
on the same machine, measurements always rerun):
  model    make_model.py -> WORK/src              export   oc_export export --dtype fp16 -> WORK/onnx
  data     make_data.py -> WORK/data              extract  open-constitution extract (all layers, timed)
  parity   parity.py: our extract on this device vs the PyTorch goldens of the committed tiny models (fp32, fp16)
  decode   open-constitution bench decode (batch 1; unguarded, guarded, guarded without IoBinding)
  hf       hf_baselines.py (transformers batched bf16, the seed's loop, HF generate); by default it runs while the
           export runs (the export is CPU-bound on 2 threads, the baselines GPU-bound), --serial runs it after
  placement  open-constitution extract --profile on 8 rows: which provider ran each node (last: the budget may skip it)
A failing stage is reported and the stages that do not need it still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Sizes for the GPU run and for the tiny CPU dry run (--tiny), where a flag does not set them.
DEFAULTS = {"max_examples": (None, 24), "batch_tokens": (16384, 4096), "max_batch": (128, 16),
            "new_tokens": (128, 16), "hf_new_tokens": (64, 16), "hf_batch_sizes": ("64,128", "8,16"),
            "seed_examples": (64, 8)}
EXTRACT_LINE = re.compile(r"extracted (\d+) rows \((\d+) tokens\) in [\d.]+ s: ([\d.]+) examples/s, ([\d.]+) tokens/s")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class GpuMemory(threading.Thread):
    """Peak `memory.used` of GPU 0 while a command runs (nvidia-smi every 100 ms), minus the level before it."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.samples = threading.Event(), []
        self.base = self.read()

    @staticmethod
    def read():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, timeout=5).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def run(self):
        while not self.stop.wait(0.1):
            v = self.read()
            if v is not None:
                self.samples.append(v)

    def peak_gib(self):
        if self.base is None or not self.samples:
            return None
        return (max(self.samples) - self.base) / 1024


def run(cmd, *, env=None, timeout=None, gpu=False):
    """Runs `cmd`; returns (stdout, stderr, wall seconds, peak host RSS GiB, peak GPU GiB). Raises on failure."""
    log("$ " + " ".join(map(str, cmd)))
    mem = GpuMemory() if gpu else None
    if mem:
        mem.start()
    start = time.monotonic()
    with open(os.devnull) as devnull:
        proc = subprocess.Popen(list(map(str, cmd)), env=env, stdin=devnull, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer:
        timer.start()
    streams = {}
    readers = [threading.Thread(target=lambda k, f: streams.__setitem__(k, f.read()), args=(k, f))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    # wait4 (not communicate) so the rusage is this process's own peak RSS.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    out, err = streams["out"], streams["err"]
    wall = time.monotonic() - start
    if timer:
        timer.cancel()
    if mem:
        mem.stop.set()
        mem.join()
    if proc.returncode != 0:
        sys.stderr.write(err[-4000:])
        raise RuntimeError(f"{Path(str(cmd[0])).name} exited with {proc.returncode} after {wall:.0f} s"
                           + (" (timeout)" if timeout and wall >= timeout else ""))
    return out, err, wall, usage.ru_maxrss / 2**20, mem.peak_gib() if mem else None


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = Path(a.work)
        self.results = self.work / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.py = [a.python]
        self.py_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in [str(REPO / "export"), os.environ.get("PYTHONPATH", "")] if p), PYTHONUNBUFFERED="1")
        # ONNX Runtime's library path only for our binary (it breaks the host Python's _ssl there).
        self.rs_env = dict(os.environ)
        if os.environ.get("ORT_LD_LIBRARY_PATH"):
            self.rs_env["LD_LIBRARY_PATH"] = os.environ["ORT_LD_LIBRARY_PATH"]
        self.gpu = a.device != "cpu"
        self.deadline = time.monotonic() + a.budget if a.budget else None

    def timeout(self, limit):
        """A stage's time limit: its own, cut so the whole run ends --budget seconds after it began (with 20 s
        left for the report)."""
        if self.deadline is None:
            return limit
        left = self.deadline - time.monotonic() - 20
        if left < 15:
            raise RuntimeError("skipped: the --budget is spent")
        return min(limit, left)

    def save(self, name, value):
        (self.results / f"{name}.json").write_text(json.dumps(value, indent=2) + "\n")
        return value

    def model(self):
        meta = self.work / "src" / "bench_meta.json"
        if meta.exists() and json.loads(meta.read_text()).get("tiny") == self.a.tiny:
            log("model: reusing " + str(meta.parent))
            return json.loads(meta.read_text())
        shutil.rmtree(self.work / "src", ignore_errors=True)
        shutil.rmtree(self.work / "onnx", ignore_errors=True)  # an export of another model
        cmd = self.py + [HERE / "make_model.py", self.work / "src", "--seed", "0",
                         "--device", "cuda" if self.gpu else "cpu"] + (["--tiny"] if self.a.tiny else [])
        _, err, wall, *_ = run(cmd, env=self.py_env, timeout=self.timeout(self.a.stage_timeout))
        log(f"model built in {wall:.0f} s")
        return json.loads(meta.read_text())

    def export(self):
        manifest = self.work / "onnx" / "manifest.json"
        if manifest.exists():
            log("export: reusing " + str(manifest.parent))
            return False
        shutil.rmtree(self.work / "onnx", ignore_errors=True)
        _, err, wall, rss, _ = run(self.py + ["-m", "oc_export", "export", self.work / "src", self.work / "onnx",
                                              "--dtype", "fp16", "--no-goldens"], env=self.py_env,
                                   timeout=self.timeout(self.a.export_timeout))
        log(err.strip().splitlines()[-1] if err.strip() else "exported")
        self.save("export", {"seconds": wall, "peak_rss_gib": rss})
        return True

    def data(self, vocab):
        cmd = self.py + [HERE / "make_data.py", self.a.workload, self.work / "data", "--vocab", vocab]
        if self.a.max_examples:
            cmd += ["--max-examples", self.a.max_examples]
        out, *_ = run(cmd, env=self.py_env)
        return json.loads(out.strip().splitlines()[-1])

    def rt_args(self):
        return ["--device", self.a.device, "--model", self.work / "onnx"]

    def extract(self, flops_per_token):
        """The timed extract (not profiled: with CUDA, ONNX Runtime's profiler may trace every kernel)."""
        out_dir = self.work / "acts"
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = [self.a.bin, "-q", "extract", *self.rt_args(), "--data", self.work / "data" / "data.jsonl",
               "--out", out_dir, "--layers", self.a.layers, "--batch-tokens", self.a.batch_tokens,
               "--max-batch", self.a.max_batch, "--warmup-batches", self.a.warmup_batches]
        out, _, wall, rss, gpu = run(cmd, env=self.rs_env, timeout=self.timeout(self.a.stage_timeout), gpu=self.gpu)
        m = EXTRACT_LINE.search(out)
        if not m:
            raise RuntimeError(f"unexpected extract output: {out!r}")
        # The rates carry more digits than the printed seconds.
        rows, tokens, tokens_per_s = int(m[1]), int(m[2]), float(m[4])
        secs = tokens / tokens_per_s
        return self.save("extract", {
            "examples": rows, "tokens": tokens, "seconds": secs, "wall_seconds_with_load": wall,
            "examples_per_s": rows / secs, "tokens_per_s": tokens / secs,
            "tflops": tokens * flops_per_token / secs / 1e12, "peak_gpu_gib": gpu, "peak_rss_gib": rss,
            "layers": self.a.layers, "batch_tokens": self.a.batch_tokens, "max_batch": self.a.max_batch,
            "warmup_batches": self.a.warmup_batches, "line": out.strip()})

    def placement(self):
        """Which provider runs each node: a small extract (8 rows, all layers) with ONNX Runtime's profile."""
        out_dir, prefix = self.work / "acts-profiled", self.work / "profile" / "extract"
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(prefix.parent, ignore_errors=True)
        cmd = [self.a.bin, "-q", "extract", *self.rt_args(), "--data", self.work / "data" / "data.jsonl",
               "--out", out_dir, "--max-examples", "8", "--profile", prefix]
        _, err, *_ = run(cmd, env=self.rs_env, timeout=self.timeout(self.a.stage_timeout))
        placement = err[err.find("node placement"):].strip()
        log(placement)
        return self.save("placement", {"report": placement})

    def decode(self):
        cmd = [self.a.bin, "-q", "bench", "decode", *self.rt_args(), "--prompts-file",
               self.work / "data" / "prompts.txt", "--max-prompts", self.a.gen_prompts, "--max-new-tokens",
               self.a.new_tokens, "--compare-io-binding", "--json", self.results / "decode.json"]
        _, _, wall, rss, gpu = run(cmd, env=self.rs_env, timeout=self.timeout(self.a.stage_timeout), gpu=self.gpu)
        d = json.loads((self.results / "decode.json").read_text())
        return self.save("decode", d | {"wall_seconds_with_load": wall, "peak_gpu_gib": gpu, "peak_rss_gib": rss})

    def parity(self):
        """Our extract on this device against the PyTorch goldens of the committed tiny models (fp32 with TF32 off,
        and the fp16 export), seconds of work: the numbers behind the speed are right."""
        cmd = self.py + [HERE / "parity.py", "--bin", self.a.bin, "--device", self.a.device,
                         "--work", self.work / "parity"]
        env = dict(self.rs_env, PYTHONPATH=self.py_env["PYTHONPATH"])
        env.pop("LD_LIBRARY_PATH", None)  # parity.py is Python; it passes ORT's path to the binary
        env["OC_CHILD_LD_LIBRARY_PATH"] = self.rs_env.get("LD_LIBRARY_PATH", "")
        out, *_ = run(cmd, env=env, timeout=self.timeout(self.a.stage_timeout))
        result = json.loads(out.strip().splitlines()[-1])
        log(f"parity: {result}")
        return self.save("parity", result)

    def hf(self):
        cmd = self.py + [HERE / "hf_baselines.py", self.work / "src", self.work / "data" / "ids.json",
                         "--device", "cuda" if self.gpu else "cpu", "--batch-sizes", self.a.hf_batch_sizes,
                         "--seed-examples", self.a.seed_examples, "--gen-prompts", self.a.hf_gen_prompts,
                         "--new-tokens", self.a.hf_new_tokens]
        out, *_ = run(cmd, env=self.py_env, timeout=self.timeout(self.a.stage_timeout))
        return self.save("hf", json.loads(out.strip().splitlines()[-1]))


def attempt(name, fn, errors):
    try:
        fn()
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
        errors[name] = str(exc)
        log(f"{name} FAILED: {exc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny E2B-like model and few examples (CPU dry run)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--work", default="/tmp/ocbench")
    ap.add_argument("--out", default=None, help="write results.json (every stage) and report.md here")
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "open-constitution"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--workload", default=str(HERE / "workload_gemma3_tokens.json"))
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--layers", default="all", help="our extract's --layers (the baselines pool every layer)")
    ap.add_argument("--batch-tokens", type=int, default=None, help="our extract's (16384; tiny 4096)")
    ap.add_argument("--max-batch", type=int, default=None, help="our extract's (128; tiny 16)")
    ap.add_argument("--warmup-batches", type=int, default=1, help="untimed extract batches first (GPU setup)")
    ap.add_argument("--gen-prompts", type=int, default=4)
    ap.add_argument("--hf-gen-prompts", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens per prompt and mode, ours (128; tiny 16)")
    ap.add_argument("--hf-new-tokens", type=int, default=None, help="tokens per prompt, HF generate (64; tiny 16)")
    ap.add_argument("--hf-batch-sizes", default=None, help="transformers batch sizes (64,128; tiny 8,16)")
    ap.add_argument("--seed-examples", type=int, default=None, help="examples for the seed's loop (64; tiny 8)")
    ap.add_argument("--skip", default="", help="comma list of stages to skip: parity,extract,decode,placement,hf")
    ap.add_argument("--serial", action="store_true",
                    help="run the transformers baselines after the export, not during it (the export is CPU-bound "
                         "on 2 threads; the baselines are GPU-bound)")
    ap.add_argument("--budget", type=int, default=None,
                    help="seconds for the whole run: stages are cut or skipped so a report comes out in time")
    ap.add_argument("--stage-timeout", type=int, default=240)
    ap.add_argument("--export-timeout", type=int, default=420)
    a = ap.parse_args()
    for key, (full, tiny) in DEFAULTS.items():
        if getattr(a, key) is None:
            setattr(a, key, tiny if a.tiny else full)
    b, skip, errors = Bench(a), set(a.skip.split(",")), {}
    started = time.monotonic()
    try:
        meta = b.model()
        log(f"model: {meta['params'] / 1e9:.3g}B parameters, {meta['flops_per_token'] / 1e9:.3g} GFLOP/token")
        log(f"workload: {b.data(meta['config']['vocab_size'])}")
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        log(f"model FAILED: {exc}")
        b.save("errors", {"model": str(exc)})
        sys.exit(1)
    if "parity" not in skip:
        attempt("parity", b.parity, errors)
    hf = threading.Thread(target=attempt, args=("hf", b.hf, errors))
    overlap = "hf" not in skip and not a.serial
    if overlap:
        hf.start()
    exported = []
    attempt("export", lambda: exported.append(b.export()), errors)
    if overlap:
        hf.join()
    elif "hf" not in skip:
        attempt("hf", b.hf, errors)
    if "export" not in errors:
        if "extract" not in skip:
            attempt("extract", lambda: b.extract(meta["flops_per_token"]), errors)
        if "decode" not in skip:
            attempt("decode", b.decode, errors)
        if "placement" not in skip:
            attempt("placement", b.placement, errors)
    b.save("errors", errors)
    name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"], capture_output=True,
                          text=True).stdout.strip() if b.gpu and shutil.which("nvidia-smi") else "CPU"
    b.save("run", {"total_seconds": time.monotonic() - started, "device_name": name, "overlap_hf_with_export": overlap and any(exported),
                   "args": vars(a)})
    subprocess.run([a.python, HERE / "report.py", b.results], check=False)
    if a.out:  # two files: the device tool brings back at most 8
        Path(a.out).mkdir(parents=True, exist_ok=True)
        merged = {f.stem: json.loads(f.read_text()) for f in sorted(b.results.glob("*.json"))}
        (Path(a.out) / "results.json").write_text(json.dumps(merged, indent=2) + "\n")
        shutil.copy(b.results / "report.md", Path(a.out) / "report.md")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
