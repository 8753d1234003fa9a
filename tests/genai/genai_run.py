"""Runs an exported model folder with onnxruntime-genai, with or without liblinattn_ort.so, and
reads the plugin's kernel-call counter. Shared by tests/genai/test_genai_e2e.py and
scripts/demo-genai."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import time

import numpy as np

LINEAR_OPS = ("LinearAttention", "CausalConvWithState", "GatedRMSNorm", "LinearAttentionGate", "GatedDeltaNet")


def prepare(fixture: str, dest: str, plugin: str | None, threads: int | None = None) -> str:
    """Copies the model folder to dest; with plugin (a path to liblinattn_ort.so) the library goes
    next to the model and genai_config.json's decoder session options name it."""
    shutil.copytree(fixture, dest)
    path = os.path.join(dest, "genai_config.json")
    with open(path) as f:
        cfg = json.load(f)
    so = cfg["model"]["decoder"]["session_options"]
    if plugin:
        shutil.copy(plugin, os.path.join(dest, os.path.basename(plugin)))
        so["custom_ops_library"] = os.path.basename(plugin)
    if threads:
        so["intra_op_num_threads"] = threads
    with open(path, "w") as f:
        json.dump(cfg, f, indent=4)
    return dest


def kernel_calls(model_dir: str) -> dict[str, int]:
    """The plugin's Compute calls per op name (all zero without the plugin). ctypes opens the
    same file genai loaded, so it gets the same (already loaded) library."""
    lib_path = os.path.join(model_dir, "liblinattn_ort.so")
    if not os.path.exists(lib_path):
        return dict.fromkeys(LINEAR_OPS, 0)
    lib = ctypes.CDLL(lib_path)
    lib.linattn_ort_kernel_calls.restype = ctypes.c_uint64
    lib.linattn_ort_kernel_calls.argtypes = [ctypes.c_char_p]
    return {op: int(lib.linattn_ort_kernel_calls(op.encode())) for op in LINEAR_OPS}


def node_counts(model_dir: str) -> dict[str, int]:
    """Nodes per linear-attention op type in model.onnx."""
    import onnx

    graph = onnx.load(os.path.join(model_dir, "model.onnx"), load_external_data=False).graph
    return {op: sum(n.op_type == op for n in graph.node) for op in LINEAR_OPS}


def generate(model_dir: str, prompt: np.ndarray, new_tokens: int):
    """Greedy generation: returns (token ids, first-step logits, prefill seconds, decode seconds,
    decode steps timed)."""
    import onnxruntime_genai as og

    model = og.Model(model_dir)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=int(prompt.shape[1]) + new_tokens, do_sample=False)
    gen = og.Generator(model, params)
    t0 = time.perf_counter()
    gen.append_tokens(prompt.astype(np.int32))
    logits = np.array(gen.get_logits(), np.float32)
    t1 = time.perf_counter()
    tokens = []
    gen.generate_next_token()  # picks from the prefill's logits: no model run
    tokens.append(int(gen.get_next_tokens()[0]))
    t2 = time.perf_counter()
    while len(tokens) < new_tokens and not gen.is_done():
        gen.generate_next_token()
        tokens.append(int(gen.get_next_tokens()[0]))
    t3 = time.perf_counter()
    del gen, model
    return tokens, logits, t1 - t0, t3 - t2, len(tokens) - 1
