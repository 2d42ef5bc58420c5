"""`open-constitution serve` through the official `openai` client: streaming and non-streaming
chat completions, usage, the `guard` object, and `content_filter` when the guard pauses. Skipped
(with the reason) when the release binary is not built."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import MODELS, REPO

BIN = REPO / "target" / "release" / "open-constitution"
MODEL = "tiny-gemma4"

openai = pytest.importorskip("openai", reason="the openai client is not installed (export/requirements.txt)")
pytestmark = pytest.mark.skipif(not BIN.is_file(), reason=f"{BIN} is not built: run `cargo build --release`")


def _run(*args: str) -> None:
    r = subprocess.run([str(BIN), *args, "-q"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def probe() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="oc-serve-"))
    store, probe = tmp / "store", tmp / "probe"
    _run("extract", "--model", str(MODELS / MODEL), "--data", "data/examples/examples.jsonl", "--out", str(store),
         "--layers", "-2")
    _run("train", "--activations", str(store), "--layer", "-2", "--out", str(probe), "--alphas", "1")
    return probe


def _serve(probe: Path, *flags: str):
    proc = subprocess.Popen(
        [str(BIN), "serve", "--model", str(MODELS / MODEL), "--probe", str(probe), "--port", "0", "--threads", "1",
         "--api-key", "test-key", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on http://"), line
    client = openai.OpenAI(base_url=line.removeprefix("listening on ") + "/v1", api_key="test-key", max_retries=0)
    return proc, client


@pytest.fixture(scope="module")
def calm(probe):
    proc, client = _serve(probe, "--threshold", "1", "--pause-threshold", "1")
    yield client
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def _ask(client, **kw):
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Tell me about cats."}],
                                          **kw)


def test_models_lists_the_served_model(calm):
    assert [m.id for m in calm.models.list()] == [MODEL]


def test_non_streaming_completion_has_usage_and_guard(calm):
    r = _ask(calm, max_tokens=10)
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 10 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model_extra["guard"]["status"] == "completed"


def test_streaming_gives_the_same_text_and_usage(calm):
    whole = _ask(calm, max_tokens=10)
    chunks = list(_ask(calm, max_tokens=10, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_wrong_model_and_bad_key_raise_the_clients_errors(calm, probe):
    with pytest.raises(openai.NotFoundError):
        calm.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        _ask(calm, max_tokens=10, temperature=5)
    bad = openai.OpenAI(base_url=str(calm.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_a_pause_is_content_filter(probe):
    proc, client = _serve(probe, "--threshold", "0", "--pause-threshold", "0", "--probe-every-n-tokens", "4")
    try:
        r = _ask(client, max_tokens=12)
        assert r.choices[0].finish_reason == "content_filter"
        assert r.choices[0].message.content == ""
        assert r.model_extra["guard"]["status"] == "paused"
        chunks = list(_ask(client, max_tokens=12, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""
        assert chunks[-1].choices[0].finish_reason == "content_filter"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
