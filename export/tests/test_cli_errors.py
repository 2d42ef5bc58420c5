"""Bad input: each is one line on stderr (`oc_export: error: ...`), exit code 2, no traceback.

The first cases run the real command line in a subprocess; the rest call the same `main()` in-process (the
subprocess start-up is the expensive part on a shared machine).
"""

import json
import os

import pytest

from conftest import MODELS, run_cli
from oc_export.__main__ import main

SOURCE = MODELS / "tiny-qwen3" / "source"


def assert_one_line_error(code, stderr, *fragments):
    assert code == 2, (code, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("oc_export: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_folder(tmp_path):
    result = run_cli("export", tmp_path / "nope", tmp_path / "out")
    assert_one_line_error(result.returncode, result.stderr, "does not exist")


def test_unsupported_architecture(tmp_path):
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 32,
              "n_head": 2, "vocab_size": 100}
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_cli("export", tmp_path, tmp_path / "out")
    assert_one_line_error(result.returncode, result.stderr, "unsupported architecture", "gpt2", "GPT2LMHeadModel",
                          "gemma4", "qwen3")


def in_process(capsys, *args):
    code = main(["export", *map(str, args)])
    return code, capsys.readouterr().err


def test_not_a_model_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(*in_process(capsys, tmp_path, tmp_path / "out"), "not a Hugging Face model folder",
                          "config.json")


@pytest.mark.parametrize("layers,fragment", [("9", "out of range"), ("-6", "out of range"), ("x", "bad layer")])
def test_bad_layer_index(tmp_path, capsys, layers, fragment):
    assert_one_line_error(*in_process(capsys, SOURCE, tmp_path / "out", "--layers", layers), fragment)
    assert not (tmp_path / "out").exists()


def test_output_not_writable(tmp_path, capsys):
    if os.geteuid() == 0:
        target = "/proc/oc-export-test/out"  # root ignores permission bits; /proc refuses new folders
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "out"
    assert_one_line_error(*in_process(capsys, SOURCE, target), "not writable")


def test_output_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert_one_line_error(*in_process(capsys, SOURCE, tmp_path / "file"), "not a folder")


def test_bad_dtype(tmp_path, capsys):
    assert_one_line_error(*in_process(capsys, SOURCE, tmp_path / "out", "--dtype", "int4"), "unsupported --dtype")


def test_output_is_the_source(capsys):
    assert_one_line_error(*in_process(capsys, SOURCE, SOURCE), "is the model folder")
