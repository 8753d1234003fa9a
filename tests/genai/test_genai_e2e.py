"""End to end in onnxruntime-genai 0.18: the tiny random Qwen3.5 exported by the genai model
builder (tests/fixtures/genai, made by scripts/make-genai-fixtures) generates greedily from a
fixed prompt without and with liblinattn_ort.so (`custom_ops_library` in genai_config.json).
Token ids must be identical, the first-step logits within 1e-4 of their largest magnitude, and the plugin's
call counter must show every linear-attention node of the model run on linattn at every
model run (prefill + each decode step).

Runs in the .venv-genai venv (scripts/test-genai), not in `make test`'s venv."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime_genai")
import genai_run as G  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "genai")
PLUGIN = os.environ.get("LINATTN_ORT_LIBRARY", os.path.join(ROOT, "build", "liblinattn_ort.so"))
NEW_TOKENS = 20
PROMPT = np.array([[5, 17, 33, 101, 7, 250, 3, 9, 120, 64, 2, 311, 45, 78, 199, 10]], np.int32)

if not os.path.exists(PLUGIN):
    pytest.skip(f"{PLUGIN} not built", allow_module_level=True)


def run_pair(variant, tmp_path):
    fixture = os.path.join(FIXTURES, variant)
    plain = G.prepare(fixture, str(tmp_path / "ort"), None)
    with_plugin = G.prepare(fixture, str(tmp_path / "linattn"), PLUGIN)
    tok_a, logits_a, *_ = G.generate(plain, PROMPT, NEW_TOKENS)
    before = G.kernel_calls(with_plugin)
    tok_b, logits_b, *_ = G.generate(with_plugin, PROMPT, NEW_TOKENS)
    after = G.kernel_calls(with_plugin)
    calls = {op: after[op] - before[op] for op in after}
    return tok_a, logits_a, tok_b, logits_b, calls, G.node_counts(plain)


def check_outputs(tok_a, logits_a, tok_b, logits_b):
    assert len(tok_a) == NEW_TOKENS, tok_a
    assert tok_b == tok_a, f"token ids differ:\n ORT    {tok_a}\n linattn {tok_b}"
    assert logits_a.shape == logits_b.shape and np.all(np.isfinite(logits_b))
    # relative to the logits' scale: fp32 sums in another order move logits near 0 by ~1e-6
    err = np.abs(logits_b.astype(np.float64) - logits_a)
    scale = np.max(np.abs(logits_a))
    assert err.max() <= 1e-4 * scale, f"first-step logits: worst |diff| {err.max():.3e}, max|logit| {scale:.3e}"


def test_default_export_runs_on_linattn(tmp_path):
    tok_a, logits_a, tok_b, logits_b, calls, nodes = run_pair("default", tmp_path)
    check_outputs(tok_a, logits_a, tok_b, logits_b)
    runs = NEW_TOKENS  # the prefill, then one run per generated token after the first
    for op in ("LinearAttention", "CausalConvWithState", "GatedRMSNorm", "LinearAttentionGate"):
        assert nodes[op] == 3, f"the fixture should have 3 {op} nodes: {nodes}"
        assert calls[op] == nodes[op] * runs, f"{op}: {calls[op]} calls on linattn, expected {nodes[op]} x {runs}"


def test_gated_delta_net_export_runs_on_linattn(tmp_path):
    """The linear_attn_op=gated_delta_net export: the plugin takes every GatedDeltaNet,
    CausalConvWithState and GatedRMSNorm node and must leave the results unchanged."""
    tok_a, logits_a, tok_b, logits_b, calls, nodes = run_pair("gdn", tmp_path)
    check_outputs(tok_a, logits_a, tok_b, logits_b)
    assert nodes["GatedDeltaNet"] == 3, nodes
    for op in ("GatedDeltaNet", "CausalConvWithState", "GatedRMSNorm"):
        assert calls[op] == nodes[op] * NEW_TOKENS, f"{op}: {calls[op]} calls on linattn"
