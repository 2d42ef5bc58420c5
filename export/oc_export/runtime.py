"""A small ONNX Runtime driver for exported folders: what the Rust side does, in Python, for tests and reports.

It reads every name from the graph and the manifest's `kv_cache` (or, without a manifest, from the graph's
`past_key_values.*` inputs), builds position ids with the contract's padding rule and runs prefill,
incremental decoding and greedy generation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NP_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def position_ids_for(mask: np.ndarray) -> np.ndarray:
    """Contract rule: position = cumsum(mask) - 1 over real tokens, padded slots get 1 (as transformers does)."""
    pos = np.cumsum(mask, axis=1) - 1
    return np.where(mask == 0, 1, pos).astype(np.int64)


class OrtDecoder:
    def __init__(self, folder, graph: str = "model.onnx", threads: int = 1):
        import onnxruntime as ort

        self.folder = Path(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the machine is shared: keep tests light
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.folder / graph), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        manifest = self.folder / "manifest.json"
        self.manifest = json.loads(manifest.read_text()) if manifest.is_file() else None
        self.past_names = sorted((n for n in self.inputs if n.startswith("past_key_values.")),
                                 key=lambda n: (int(n.split(".")[1]), n))
        self.float_dtype = NP_DTYPES[self.inputs[self.past_names[0]].type] if self.past_names else np.float32

    def empty_past(self, batch: int) -> dict:
        past = {}
        for name in self.past_names:
            shape = self.inputs[name].shape  # [batch, heads, past, head_dim] with heads/head_dim static
            past[name] = np.zeros((batch, shape[1], 0, shape[3]), dtype=self.float_dtype)
        return past

    def run(self, input_ids, attention_mask, past: dict, position_ids=None) -> dict:
        """One call: new tokens `input_ids` [B, S], `attention_mask` [B, P+S] over cached + new positions."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        if position_ids is None:
            position_ids = position_ids_for(attention_mask)[:, -input_ids.shape[1]:]
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids, **past}
        values = self.session.run(None, feeds)
        return dict(zip(self.output_names, values))

    @staticmethod
    def next_past(outputs: dict) -> dict:
        return {name.replace("present.", "past_key_values.", 1): value
                for name, value in outputs.items() if name.startswith("present.")}

    def forward(self, input_ids, attention_mask=None) -> dict:
        """Prefill of whole (optionally left-padded) sequences, no cache."""
        input_ids = np.atleast_2d(np.asarray(input_ids, dtype=np.int64))
        if attention_mask is None:
            attention_mask = np.ones_like(input_ids)
        return self.run(input_ids, attention_mask, self.empty_past(input_ids.shape[0]))

    def greedy(self, input_ids, max_new_tokens: int, eos_ids) -> list[int]:
        """Greedy decoding of one sequence; stops after (and including) the first eos id."""
        ids = np.asarray([input_ids], dtype=np.int64)
        mask = np.ones_like(ids)
        out = self.run(ids, mask, self.empty_past(1))
        generated = []
        for _ in range(max_new_tokens):
            token = int(np.argmax(out["logits"][0, -1]))
            generated.append(token)
            if token in eos_ids:
                break
            mask = np.concatenate([mask, np.ones((1, 1), dtype=np.int64)], axis=1)
            out = self.run(np.asarray([[token]]), mask, self.next_past(out))
        return generated
