"""A small Gated DeltaNet layer (linattn.ort_models.gated_deltanet_block: projection MatMul,
CausalConvWithState, Split, L2 normalisation, gates, LinearAttention, gated RMSNorm, output
MatMul) through ONNX Runtime with linattn's plugin, in both domains and every dtype:

  - prefill compared with onnx's ReferenceEvaluator running the ai.onnx block (the
    com.microsoft block computes the same function: channels_last conv, inverse GQA);
  - float32 com.microsoft block compared with ORT's own kernels (no plugin);
  - a decode loop feeding present states back as past states, against one prefill and against
    the reference stepping the same way;
  - float16 / bfloat16 blocks run the two ops natively: no Cast node inserted by ORT next to them
    (and, as a control, ORT alone does insert them for float16 com.microsoft);
  - 1 and 2 intra-op threads give the same bits.
"""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
# every test once per shape-reading path of the plugin (conftest.py, ort_api_path)
pytestmark = pytest.mark.usefixtures("ort_api_path")
from linattn import ort as lort  # noqa: E402
from linattn import ort_models as M  # noqa: E402

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)

import onnx  # noqa: E402
from ort_testlib import fresh_rng  # noqa: E402

DOMAINS = [pytest.param("", id="ai.onnx"), pytest.param(M.CONTRIB, id="com.microsoft")]
CFG = M.GatedDeltaNetConfig(hidden=48, n_k=2, n_v=4, d_k=16, d_v=8, conv_k=4)

# Relative to the largest |y| (y is float32 after the float32 dense tail); for float16 / bfloat16
# the reference rounds at the same Cast nodes, so only a rare one-ulp difference in a rounded
# activation (2^-11 / 2^-8 relative) can propagate.
Y_TOL = {"float32": 2e-5, "float16": 2e-3, "bfloat16": 2e-2}


def shapes(domain, batch, tokens):
    conv, rec = M.block_state_shapes(domain, CFG, batch)
    return {"y": (batch, tokens, CFG.hidden), "conv_state_out": conv, "recurrent_state_out": rec}


def run_block(sess, domain, feeds):
    b, t, _ = feeds["x"].shape
    return M.run(sess, feeds, shapes(domain, b, t))


def to_reference_feeds(domain, feeds):
    """The ai.onnx block's feeds: its conv state is channels-first."""
    feeds = dict(feeds)
    if domain == M.CONTRIB:
        feeds["conv_state"] = np.ascontiguousarray(feeds["conv_state"].transpose(0, 2, 1))
    return feeds


def from_reference_conv_state(domain, state):
    return np.ascontiguousarray(state.transpose(0, 2, 1)) if domain == M.CONTRIB else state


def f64(a):
    return np.asarray(a).astype(np.float64)


def assert_rel(actual, expected, tol, what):
    a, e = f64(actual), f64(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    assert np.isfinite(a).all(), f"{what}: non-finite values"
    err = np.max(np.abs(a - e)) / max(np.max(np.abs(e)), 1e-30)
    assert err <= tol, f"{what}: max error {err:.3e} of max|expected| > {tol:.1e}"


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("dtype", M.DTYPES)
def test_block_prefill_matches_reference(domain, dtype):
    rng, seed = fresh_rng()
    feeds = M.block_feeds(domain, CFG, 2, 11, dtype=dtype, rng=rng)
    model = M.gated_deltanet_block(domain, CFG, dtype=dtype, seed=seed)
    y, conv_state, rec_state = run_block(M.session(model), domain, feeds)
    ref = M.reference(M.gated_deltanet_block("", CFG, dtype=dtype, seed=seed), to_reference_feeds(domain, feeds))
    assert_rel(y, ref[0], Y_TOL[dtype], f"y (seed {seed})")
    assert np.array_equal(f64(conv_state), f64(from_reference_conv_state(domain, ref[1]))), f"conv state (seed {seed})"
    assert_rel(rec_state, ref[2], Y_TOL[dtype], f"recurrent state (seed {seed})")


def test_block_float32_contrib_matches_ort_kernels():
    rng, seed = fresh_rng()
    feeds = M.block_feeds(M.CONTRIB, CFG, 3, 13, rng=rng)
    model = M.gated_deltanet_block(M.CONTRIB, CFG, seed=seed)
    mine = run_block(M.session(model), M.CONTRIB, feeds)
    theirs = run_block(M.session(model, plugin=False), M.CONTRIB, feeds)
    for a, e, name in zip(mine, theirs, ("y", "conv state", "recurrent state")):
        assert_rel(a, e, 2e-5, f"{name} vs ORT (seed {seed})")


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("dtype,state_dtype", [("float32", "float32"), ("float16", "float32"),
                                               ("bfloat16", "float32"), ("bfloat16", "bfloat16")])
def test_decode_loop_feeds_states_back(domain, dtype, state_dtype):
    rng, seed = fresh_rng()
    prompt, steps, batch = 5, 6, 2
    feeds = M.block_feeds(domain, CFG, batch, prompt + steps, dtype=dtype, state_dtype=state_dtype, rng=rng,
                          zero_state=True)
    x = feeds["x"]
    model = M.gated_deltanet_block(domain, CFG, dtype=dtype, state_dtype=state_dtype, seed=seed)
    ref_model = M.gated_deltanet_block("", CFG, dtype=dtype, state_dtype=state_dtype, seed=seed)
    sess = M.session(model)

    # prefill the prompt, then one token at a time, feeding the states back
    conv, rec = feeds["conv_state"], feeds["recurrent_state"]
    ref_conv, ref_rec = to_reference_feeds(domain, feeds)["conv_state"], rec
    ys, ref_ys = [], []
    for start, stop in [(0, prompt)] + [(t, t + 1) for t in range(prompt, prompt + steps)]:
        step = {"x": np.ascontiguousarray(x[:, start:stop]), "conv_state": conv, "recurrent_state": rec}
        y, conv, rec = run_block(sess, domain, step)
        ref = M.reference(ref_model, {"x": step["x"], "conv_state": ref_conv, "recurrent_state": ref_rec})
        ys.append(y)
        ref_ys.append(ref[0])
        ref_conv, ref_rec = ref[1], ref[2]
        assert np.array_equal(f64(conv), f64(from_reference_conv_state(domain, ref_conv))), f"conv state (seed {seed})"
    y_steps = np.concatenate(ys, axis=1)
    assert_rel(y_steps, np.concatenate(ref_ys, axis=1), Y_TOL[dtype], f"decoded y vs reference (seed {seed})")
    assert_rel(rec, ref_rec, Y_TOL[dtype], f"recurrent state vs reference (seed {seed})")

    # the same tokens in one call: with a float32 state only output roundings can differ
    y_all, conv_all, rec_all = run_block(sess, domain, feeds)
    assert np.array_equal(f64(conv_all), f64(conv)), f"conv state, one call vs steps (seed {seed})"
    if state_dtype == "float32":
        assert_rel(y_steps, y_all, Y_TOL[dtype], f"y, steps vs one call (seed {seed})")
        assert_rel(rec, rec_all, 1e-5, f"recurrent state, steps vs one call (seed {seed})")


def recurrent_nodes_with_inserted_casts(model, optimized):
    """Names of LinearAttention / CausalConvWithState nodes of `optimized` that read or write a
    tensor the original model does not have (what ORT's cast insertion produces)."""
    known = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    for n in model.graph.node:
        known.update(n.output)
    flagged = []
    for n in optimized.graph.node:
        if n.op_type in ("LinearAttention", "CausalConvWithState"):
            if any(t not in known for t in list(n.input) + list(n.output)):
                flagged.append(n.op_type)
    return flagged


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_runs_natively(domain, dtype, tmp_path):
    model = M.gated_deltanet_block(domain, CFG, dtype=dtype)
    path = tmp_path / "optimized.onnx"
    M.session(model, optimized_model_path=path)
    optimized = onnx.load(str(path))
    ops = [n.op_type for n in optimized.graph.node]
    assert ops.count("LinearAttention") == 1 and ops.count("CausalConvWithState") == 1, ops
    assert recurrent_nodes_with_inserted_casts(model, optimized) == []
    casts = sum(1 for n in model.graph.node if n.op_type == "Cast")
    assert ops.count("Cast") <= casts, f"ORT added Cast nodes: {ops.count('Cast')} > {casts} in the model"


def test_cast_check_sees_ort_inserted_casts(tmp_path):
    """Control: without the plugin ORT runs float16 com.microsoft nodes through inserted casts."""
    model = M.gated_deltanet_block(M.CONTRIB, CFG, dtype="float16")
    path = tmp_path / "optimized.onnx"
    M.session(model, plugin=False, optimized_model_path=path)
    assert "LinearAttention" in recurrent_nodes_with_inserted_casts(model, onnx.load(str(path)))


@pytest.mark.parametrize("domain", DOMAINS)
def test_block_threads_give_identical_bits(domain):
    rng, seed = fresh_rng()
    cfg = M.GatedDeltaNetConfig(hidden=64, n_k=4, n_v=8, d_k=16, d_v=16, conv_k=4)
    feeds = M.block_feeds(domain, cfg, 2, 19, rng=rng)
    model = M.gated_deltanet_block(domain, cfg, seed=seed)
    conv, rec = M.block_state_shapes(domain, cfg, 2)
    out_shapes = {"y": (2, 19, cfg.hidden), "conv_state_out": conv, "recurrent_state_out": rec}
    one = M.run(M.session(model, threads=1), feeds, out_shapes)
    two = M.run(M.session(model, threads=2), feeds, out_shapes)
    # y goes through ORT's own MatMuls, whose blocking may depend on the thread count
    assert np.array_equal(one[2], two[2]), f"recurrent state (seed {seed})"
    assert np.array_equal(one[1], two[1]), f"conv state (seed {seed})"
