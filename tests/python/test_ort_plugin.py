"""liblinattn_ort.so (the ONNX Runtime custom-op library) on single-node models.

Every case runs the node through ONNX Runtime with the plugin on fresh random data into
NaN-poisoned outputs and compares with onnx's ReferenceEvaluator (com.microsoft extensions
rewritten as the ai.onnx op, see ort_testlib), in both domains and every dtype combination;
float32 com.microsoft nodes are also compared with ORT's own kernel (no plugin). Further: output
types and shapes inferred at load, opset-27 models loading without any environment override,
and the plugin's errors (linattn's validation messages, NOT_IMPLEMENTED extensions).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
# every test once per shape-reading path of the plugin (conftest.py, ort_api_path)
pytestmark = pytest.mark.usefixtures("ort_api_path")
from linattn import ort as lort  # noqa: E402
from linattn import ort_models as M  # noqa: E402

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)

from ort_testlib import (  # noqa: E402
    assert_close,
    conv_inputs,
    conv_node_inputs,
    fresh_rng,
    la_inputs,
    la_node_inputs,
    reference_causal_conv,
    reference_linear_attention,
)

DOMAINS = [pytest.param("", id="ai.onnx"), pytest.param(M.CONTRIB, id="com.microsoft")]
LA_DTYPES = [("float32", "float32"), ("float16", "float16"), ("float16", "float32"), ("bfloat16", "bfloat16"),
             ("bfloat16", "float32")]
LA_CASES = {
    # name: (rule, decay kind, beta kind, H_q, H_kv, d_k, d_v, past)
    "gated_delta_head": ("gated_delta", "head", "head", 4, 4, 8, 8, True),
    "gated_delta_key_gqa": ("gated_delta", "key", "shared", 4, 2, 8, 8, False),
    "linear": ("linear", None, None, 2, 2, 8, 8, True),
    "gated_key_mqa": ("gated", "key", None, 2, 1, 8, 8, False),
    "delta_dk_ne_dv": ("delta", None, "head", 2, 2, 8, 12, True),
}


def la_output_shapes(feeds, q_heads, kv_heads):
    b, t, qw = feeds["query"].shape
    d_k, d_v = qw // q_heads, feeds["value"].shape[2] // kv_heads
    return {"output": (b, t, max(q_heads, kv_heads) * d_v), "present_state": (b, kv_heads, d_k, d_v)}


def run_la(domain, feeds, *, q_heads, kv_heads, dtype, state_dtype, plugin=True, threads=1, **attrs):
    model = M.linear_attention_model(domain, q_num_heads=q_heads, kv_num_heads=kv_heads, dtype=dtype,
                                     state_dtype=state_dtype, inputs=la_node_inputs(feeds), **attrs)
    sess = M.session(model, plugin=plugin, threads=threads)
    return M.run(sess, feeds, la_output_shapes(feeds, q_heads, kv_heads))


def expected_state_dtype(feeds, dtype, state_dtype):
    return state_dtype if "past_state" in feeds else dtype


# ---------------------------------------------------------------- LinearAttention


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("dtype,state_dtype", LA_DTYPES)
@pytest.mark.parametrize("case", sorted(LA_CASES))
def test_linear_attention_matches_reference(domain, dtype, state_dtype, case):
    rule, decay_kind, beta_kind, hq, hkv, d_k, d_v, past = LA_CASES[case]
    rng, seed = fresh_rng()
    feeds = la_inputs(rng, batch=2, tokens=7, q_heads=hq, kv_heads=hkv, d_k=d_k, d_v=d_v, rule=rule,
                      decay_kind=decay_kind, beta_kind=beta_kind, past=past, dtype=dtype, state_dtype=state_dtype)
    out, state = run_la(domain, feeds, q_heads=hq, kv_heads=hkv, dtype=dtype, state_dtype=state_dtype,
                        update_rule=rule)
    sdt = expected_state_dtype(feeds, dtype, state_dtype)
    assert out.dtype == M.np_dtype(dtype) and state.dtype == M.np_dtype(sdt)
    ref_out, ref_state = reference_linear_attention(feeds, q_heads=hq, kv_heads=hkv, dtype=dtype,
                                                    state_dtype=state_dtype, contrib=domain == M.CONTRIB,
                                                    update_rule=rule)
    assert_close(out, ref_out, dtype, f"output (seed {seed})")
    assert_close(state, ref_state, sdt, f"present_state (seed {seed})")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # onnx.reference computes inf - inf on purpose here
@pytest.mark.parametrize("dtype,state_dtype", [("float32", "float32"), ("float16", "float32")])
@pytest.mark.parametrize("where", ["query", "value", "past_state"])
def test_linear_attention_infinities_match_reference_exactly(dtype, state_dtype, where):
    """An infinite input through the plugin: NaN exactly where onnx.reference has NaN and the same
    infinities (the fused kernels' old-state-plus-rank-1 readout alone would swap some of them)."""
    rng, seed = fresh_rng()
    feeds = la_inputs(rng, batch=2, tokens=6, q_heads=4, kv_heads=2, d_k=8, d_v=12, rule="gated_delta",
                      decay_kind="key", beta_kind="head", past=True, dtype=dtype, state_dtype=state_dtype)
    arr = feeds[where]
    arr.reshape(-1)[rng.integers(arr.size)] = np.inf
    out, state = run_la("", feeds, q_heads=4, kv_heads=2, dtype=dtype, state_dtype=state_dtype)
    expected = reference_linear_attention(feeds, q_heads=4, kv_heads=2, dtype=dtype, state_dtype=state_dtype,
                                          contrib=False)
    for name, a, e in zip(("output", "present_state"), (out, state), expected):
        a64, e64 = a.astype(np.float64), e.astype(np.float64)
        assert np.array_equal(np.isnan(a64), np.isnan(e64)), f"{name}: NaN positions differ (seed {seed})"
        inf = np.isinf(e64)
        assert np.array_equal(np.isinf(a64), inf) and np.array_equal(a64[inf], e64[inf]), f"{name}: infinities (seed {seed})"
        finite = np.isfinite(e64)
        assert_close(a[finite], e[finite], dtype if name == "output" else state_dtype, f"{name} (seed {seed})")


CONTRIB_HEADS = {
    # name: (H_q, H_kv, key heads)
    "inverse_gqa": (2, 4, 4),
    "separate_key_heads": (4, 4, 2),
    "inverse_gqa_shared_keys": (2, 6, 2),  # Qwen3.5-27B's 16/48 pattern, scaled down
}


@pytest.mark.parametrize("dtype,state_dtype", [("float32", "float32"), ("float16", "float32"),
                                               ("bfloat16", "float32"), ("bfloat16", "bfloat16")])
@pytest.mark.parametrize("case", sorted(CONTRIB_HEADS))
def test_contrib_head_layouts(dtype, state_dtype, case):
    hq, hkv, hk = CONTRIB_HEADS[case]
    rng, seed = fresh_rng()
    feeds = la_inputs(rng, batch=2, tokens=6, q_heads=hq, kv_heads=hkv, d_k=8, d_v=4, rule="gated_delta",
                      decay_kind="head", beta_kind="head", past=True, dtype=dtype, state_dtype=state_dtype,
                      key_heads=hk)
    out, state = run_la(M.CONTRIB, feeds, q_heads=hq, kv_heads=hkv, dtype=dtype, state_dtype=state_dtype)
    ref_out, ref_state = reference_linear_attention(feeds, q_heads=hq, kv_heads=hkv, dtype=dtype,
                                                    state_dtype=state_dtype, contrib=True)
    assert_close(out, ref_out, dtype, f"output (seed {seed})")
    assert_close(state, ref_state, state_dtype, f"present_state (seed {seed})")
    if dtype == "float32":
        ort_out, ort_state = run_la(M.CONTRIB, feeds, q_heads=hq, kv_heads=hkv, dtype=dtype,
                                    state_dtype=state_dtype, plugin=False)
        assert_close(out, ort_out, dtype, f"output vs ORT's kernel (seed {seed})")
        assert_close(state, ort_state, dtype, f"present_state vs ORT's kernel (seed {seed})")


@pytest.mark.parametrize("case", sorted(LA_CASES))
def test_contrib_float32_matches_ort_kernel(case):
    rule, decay_kind, beta_kind, hq, hkv, d_k, d_v, past = LA_CASES[case]
    rng, seed = fresh_rng()
    feeds = la_inputs(rng, batch=3, tokens=9, q_heads=hq, kv_heads=hkv, d_k=d_k, d_v=d_v, rule=rule,
                      decay_kind=decay_kind, beta_kind=beta_kind, past=past, dtype="float32",
                      state_dtype="float32")
    kw = dict(q_heads=hq, kv_heads=hkv, dtype="float32", state_dtype="float32", update_rule=rule)
    mine = run_la(M.CONTRIB, feeds, **kw)
    theirs = run_la(M.CONTRIB, feeds, plugin=False, **kw)
    for a, e, name in zip(mine, theirs, ("output", "present_state")):
        assert_close(a, e, "float32", f"{name} vs ORT's kernel (seed {seed})")


def test_threads_give_identical_bits():
    rng, seed = fresh_rng()
    feeds = la_inputs(rng, batch=2, tokens=33, q_heads=8, kv_heads=8, d_k=16, d_v=32, rule="gated_delta",
                      decay_kind="key", beta_kind="head", past=True, dtype="float32", state_dtype="float32")
    kw = dict(q_heads=8, kv_heads=8, dtype="float32", state_dtype="float32")
    one = run_la("", feeds, threads=1, **kw)
    two = run_la("", feeds, threads=2, **kw)
    for a, b in zip(one, two):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"seed {seed}"


# ---------------------------------------------------------------- CausalConvWithState

CONV_CASES = {
    # name: (C, L, k, bias, past, activation)
    "bias_past_silu": (6, 9, 4, True, True, "silu"),
    "plain": (5, 8, 4, False, False, None),
    "swish_no_bias": (4, 7, 3, False, True, "swish"),
    "kernel_one": (4, 5, 1, True, False, None),
    "short_input_with_past": (3, 2, 5, False, True, "silu"),
    "empty_input_with_past": (3, 0, 4, True, True, None),
}


def conv_rel_max(dtype):
    """Tolerance of conv outputs relative to the tensor's largest magnitude: tight for float32;
    two ulps of T for float16/bfloat16, because the reference rounds the dot product to T before
    adding the bias and again after (SiLU), while linattn rounds once where the spec allows."""
    return {"float32": 1e-5, "float16": 2 * 2.0**-10, "bfloat16": 2 * 2.0**-7}[dtype]


def conv_output_shapes(feeds, dilation=1, channels_last=False):
    x = feeds["input"]
    span = (feeds["weight"].shape[2] - 1) * dilation
    state = (x.shape[0], span) + x.shape[2:] if channels_last else (x.shape[0], x.shape[1], span)
    return {"output": x.shape, "present_state": state}


def run_conv(domain, feeds, *, dtype, plugin=True, dilation=None, channels_last=None, activation=None, **attrs):
    model = M.causal_conv_model(domain, dtype=dtype, inputs=conv_node_inputs(feeds), activation=activation,
                                dilation=dilation, channels_last=channels_last, **attrs)
    sess = M.session(model, plugin=plugin)
    return M.run(sess, feeds, conv_output_shapes(feeds, dilation or 1, bool(channels_last)))


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("dtype", M.DTYPES)
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_causal_conv_matches_reference(domain, dtype, case):
    c, length, taps, bias, past, act = CONV_CASES[case]
    rng, seed = fresh_rng()
    feeds = conv_inputs(rng, batch=2, channels=c, length=length, taps=taps, bias=bias, past=past, dtype=dtype)
    out, state = run_conv(domain, feeds, dtype=dtype, activation=act)
    ref_out, ref_state = reference_causal_conv(feeds, dtype=dtype, activation=act)
    assert_close(out, ref_out, dtype, f"output (seed {seed})", rel_max=conv_rel_max(dtype), rel=1e-5)
    assert np.array_equal(np.asarray(state), np.asarray(ref_state)), f"present_state (seed {seed})"
    if dtype == "float32" and domain == M.CONTRIB:
        ort_out, ort_state = run_conv(domain, feeds, dtype=dtype, activation=act, plugin=False)
        assert_close(out, ort_out, dtype, f"output vs ORT's kernel (seed {seed})", rel_max=1e-5, rel=1e-5)
        assert np.array_equal(state, ort_state)


CONTRIB_CONV = {
    # name: (dilation, channels_last, channel dims)
    "dilation_2": (2, 0, None),
    "channels_last": (1, 1, None),
    "channels_last_dilation_3": (3, 1, None),
    "channels_last_two_channel_axes": (1, 1, (2, 3)),
}


@pytest.mark.parametrize("dtype", M.DTYPES)
@pytest.mark.parametrize("case", sorted(CONTRIB_CONV))
def test_contrib_conv_extensions(dtype, case):
    dilation, cl, cdims = CONTRIB_CONV[case]
    rng, seed = fresh_rng()
    channels = int(np.prod(cdims)) if cdims else 5
    for past in (False, True):
        feeds = conv_inputs(rng, batch=2, channels=channels, length=7, taps=3, bias=True, past=past, dtype=dtype,
                            dilation=dilation, channels_last=bool(cl), channel_dims=cdims)
        out, state = run_conv(M.CONTRIB, feeds, dtype=dtype, dilation=dilation, channels_last=cl,
                              activation="silu")
        ref_out, ref_state = reference_causal_conv(feeds, dtype=dtype, dilation=dilation, channels_last=bool(cl),
                                                   activation="silu")
        assert_close(out, ref_out, dtype, f"output (past={past}, seed {seed})", rel_max=conv_rel_max(dtype),
                     rel=1e-5)
        assert np.array_equal(np.asarray(state), np.asarray(ref_state)), f"present_state (past={past}, seed {seed})"


# ---------------------------------------------------------------- types, shapes, loading


def test_inferred_types_and_shapes():
    # inverse GQA with separate key heads: 2 query/key heads, 4 value heads, d_k 8, d_v 6
    shapes = {"query": ["B", "T", 2 * 8], "key": ["B", "T", 2 * 8], "value": ["B", "T", 4 * 6],
              "past_state": ["B", 4, 8, 6], "decay": ["B", "T", 4], "beta": ["B", "T", 4]}
    model = M.linear_attention_model(M.CONTRIB, q_num_heads=2, kv_num_heads=4, dtype="float16",
                                     state_dtype="float32", shapes=shapes)
    outs = {o.name: o for o in M.session(model).get_outputs()}
    assert outs["output"].type == "tensor(float16)" and outs["output"].shape == ["B", "T", 24]
    assert outs["present_state"].type == "tensor(float)" and outs["present_state"].shape == ["B", 4, 8, 6]

    model = M.linear_attention_model("", q_num_heads=4, kv_num_heads=2, dtype="bfloat16",
                                     inputs=("query", "key", "value", "", "decay"), update_rule="gated",
                                     shapes={"query": [3, 5, 32], "key": [3, 5, 16], "value": [3, 5, 20],
                                             "decay": [3, 5, 2]})
    outs = {o.name: o for o in M.session(model).get_outputs()}
    assert outs["output"].type == "tensor(bfloat16)" and outs["output"].shape == [3, 5, 40]
    assert outs["present_state"].type == "tensor(bfloat16)" and outs["present_state"].shape == [3, 2, 8, 10]

    model = M.causal_conv_model(M.CONTRIB, dtype="bfloat16", inputs=("input", "weight"), channels_last=1,
                                dilation=2, shapes={"input": ["B", "L", 2, 6], "weight": [12, 1, 4]})
    outs = {o.name: o for o in M.session(model).get_outputs()}
    assert outs["output"].shape == ["B", "L", 2, 6]
    assert outs["present_state"].type == "tensor(bfloat16)" and outs["present_state"].shape == ["B", 6, 2, 6]


def test_one_session_serves_many_shapes():
    model = M.linear_attention_model("", q_num_heads=2, kv_num_heads=2, dtype="float32")
    sess = M.session(model)
    for b, t in ((1, 1), (3, 17), (2, 0)):
        rng, seed = fresh_rng()
        feeds = la_inputs(rng, batch=b, tokens=t, q_heads=2, kv_heads=2, d_k=8, d_v=8, rule="gated_delta",
                          decay_kind="head", beta_kind="head", past=True, dtype="float32", state_dtype="float32")
        out, state = M.run(sess, feeds, la_output_shapes(feeds, 2, 2))
        ref_out, ref_state = reference_linear_attention(feeds, q_heads=2, kv_heads=2, dtype="float32",
                                                        state_dtype="float32", contrib=False)
        assert_close(out, ref_out, "float32", f"output {b}x{t} (seed {seed})")
        assert_close(state, ref_state, "float32", f"state {b}x{t} (seed {seed})")


def test_opset27_loads_without_environment_override(tmp_path):
    assert "ALLOW_RELEASED_ONNX_OPSET_ONLY" not in os.environ
    model = M.linear_attention_model("", q_num_heads=2, kv_num_heads=2, dtype="float32")
    path = tmp_path / "optimized.onnx"
    M.session(model, optimized_model_path=path)
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["LinearAttention"], f"the plugin should take the node over, got {ops}"


def test_domains_choice_keeps_ort_fusions_working():
    """x*sigmoid(x) is fused by ORT into com.microsoft QuickGelu: with the plugin's com.microsoft
    domain registered, a model that does not import com.microsoft fails to load (see
    linattn.ort.domains_for_model); registering ai.onnx only avoids it."""
    from onnx import helper

    x = helper.make_tensor_value_info("x", 1, [2, 3])
    graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
                              "silu", [x], [helper.make_tensor_value_info("y", 1, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    assert lort.domains_for_model(model) == "ai.onnx"
    sess = M.session(model, domains="ai.onnx")
    x = np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], x / (1 + np.exp(-x)), rtol=1e-6)
    with pytest.raises(Exception, match="QuickGelu"):
        M.session(model, domains="all")


# ---------------------------------------------------------------- errors


def test_state_window_out_of_range():
    model = M.linear_attention_model(M.CONTRIB, q_num_heads=2, kv_num_heads=2, state_window=9)
    with pytest.raises(Exception, match="state_window must be in \\[0, 8\\], got 9"):
        M.session(model)


def test_conv_ndim_2_is_not_implemented():
    model = M.causal_conv_model(M.CONTRIB, ndim=2)
    with pytest.raises(Exception, match="ndim=2 is not implemented by linattn"):
        M.session(model)


def test_bad_update_rule_is_reported():
    model = M.linear_attention_model("", q_num_heads=2, kv_num_heads=2, update_rule="fancy")
    with pytest.raises(Exception, match="update_rule 'fancy'"):
        M.session(model)


def test_linattn_validation_message_reaches_the_caller():
    """A decay of the wrong width passes ORT (symbolic shapes) and is caught by linattn, whose
    message (naming the argument) comes back as the ORT error."""
    rng, _ = fresh_rng()
    feeds = la_inputs(rng, batch=1, tokens=3, q_heads=2, kv_heads=2, d_k=8, d_v=8, rule="gated_delta",
                      decay_kind="head", beta_kind="head", past=False, dtype="float32", state_dtype="float32")
    feeds["decay"] = np.zeros((1, 3, 5), np.float32)
    model = M.linear_attention_model("", q_num_heads=2, kv_num_heads=2, inputs=la_node_inputs(feeds))
    sess = M.session(model)
    with pytest.raises(Exception, match=r"LinearAttention-27 \(linattn\).*decay"):
        M.run(sess, feeds)


def test_bad_heads_are_reported_with_linattn_message():
    """q_num_heads that do not divide the query width: linattn's shape check rejects it (ORT
    1.32 does not act on an error from a custom op's inference function, so the message comes
    with the first run)."""
    model = M.linear_attention_model("", q_num_heads=3, kv_num_heads=2,
                                     shapes={"query": [1, 2, 32], "key": [1, 2, 32], "value": [1, 2, 32]},
                                     inputs=("query", "key", "value"), update_rule="linear")
    feeds = {n: np.ones((1, 2, 32), np.float32) for n in ("query", "key", "value")}
    with pytest.raises(Exception, match=r"LinearAttention-27 \(linattn\).*q_num_heads"):
        M.run(M.session(model), feeds)


def test_unknown_domains_value_is_rejected():
    so = ort.SessionOptions()
    with pytest.raises(Exception, match="linattn.domains"):
        lort.register(so, domains="ai.onnx,bogus")


# ---------------------------------------------------------------- attribute types and state shapes


def _la_model(domain, **attrs):
    heads = {"q_num_heads": 2, "kv_num_heads": 2}
    heads.update({k: attrs.pop(k) for k in list(attrs) if k in heads})
    return M.linear_attention_model(domain, inputs=("query", "key", "value", "", "decay", "beta"), **heads, **attrs)


WRONG_TYPES = [
    # (op, domains, attribute, value written by helper.make_node, expected type, actual type)
    ("la", DOMAINS, "scale", 2, "FLOAT", "INT"),
    ("la", DOMAINS, "update_rule", 1, "STRING", "INT"),
    ("la", DOMAINS, "q_num_heads", 2.0, "INT", "FLOAT"),
    ("la", DOMAINS, "kv_num_heads", "2", "INT", "STRING"),
    ("la", DOMAINS, "chunk_size", 64.0, "INT", "FLOAT"),
    ("la", [M.CONTRIB], "state_window", 0.0, "INT", "FLOAT"),
    ("conv", DOMAINS, "activation", 1, "STRING", "INT"),
    ("conv", [M.CONTRIB], "dilation", 1.0, "INT", "FLOAT"),
    ("conv", [M.CONTRIB], "channels_last", "0", "INT", "STRING"),
    ("conv", [M.CONTRIB], "state_length", 3.0, "INT", "FLOAT"),
]


@pytest.mark.parametrize("op,domains,name,value,expected,actual", WRONG_TYPES,
                         ids=[f"{c[0]}-{c[2]}-{c[5]}" for c in WRONG_TYPES])
def test_attribute_of_the_wrong_type_is_rejected_at_session_creation(op, domains, name, value, expected, actual):
    """An attribute of the wrong type (scale=2 is an INT) used to run with the attribute's default;
    it is rejected when the session is created, in ORT's own wording."""
    for domain in [d.values[0] if hasattr(d, "values") else d for d in domains]:
        model = _la_model(domain, **{name: value}) if op == "la" else M.causal_conv_model(domain, **{name: value})
        pattern = rf"Mismatched attribute type in '.*{name}'\. Expected: '{expected}', actual: '{actual}'"
        with pytest.raises(Exception, match=pattern):
            M.session(model)


def test_attribute_type_error_matches_ort_alone():
    """ORT's own com.microsoft kernel rejects the same node with the same wording."""
    model = _la_model(M.CONTRIB, scale=2)
    with pytest.raises(Exception, match=r"Mismatched attribute type .*Expected: 'FLOAT', actual: 'INT'"):
        M.session(model, plugin=False)


def _conv_channels_last_feeds(past_shape):
    rng, _ = fresh_rng()
    feeds = conv_inputs(rng, batch=1, channels=12, length=5, taps=4, bias=False, past=False, dtype="float32",
                        channels_last=True, channel_dims=(2, 6))
    feeds["past_state"] = rng.standard_normal(past_shape).astype(np.float32)
    return feeds


@pytest.mark.parametrize("past_shape", [(1, 3, 3, 4), (1, 3, 12), (1, 3, 2, 6, 1), (1, 3, 6, 2)])
def test_conv_channels_last_state_must_have_the_input_channel_axes(past_shape):
    """channels_last input (B, L, d_1, ..., d_n) takes a past_state (B, (k-1)*dilation, d_1, ..., d_n):
    one with other channel axes (same channel count) is rejected naming past_state, as ORT does."""
    feeds = _conv_channels_last_feeds(past_shape)
    model = M.causal_conv_model(M.CONTRIB, inputs=conv_node_inputs(feeds), channels_last=1)
    with pytest.raises(Exception, match=r"past_state: expected shape \(B, \(k-1\)\*dilation, d_1, \.\.\., d_n\)"):
        M.run(M.session(model), feeds)
    with pytest.raises(Exception):  # ORT's own kernel agrees
        M.run(M.session(model, plugin=False), feeds)
    good = _conv_channels_last_feeds((1, 3, 2, 6))
    out, state = M.run(M.session(model), good)
    assert out.shape == (1, 5, 2, 6) and state.shape == (1, 3, 2, 6)


def test_conv_state_length_is_checked_at_session_creation():
    """state_length other than (k-1)*dilation is refused when the session is created if the
    weight's shape is known then (README), else at the first run."""
    shapes = {"input": [1, 4, 5], "weight": [4, 1, 4]}
    model = M.causal_conv_model(M.CONTRIB, inputs=("input", "weight"), shapes=shapes, state_length=7)
    with pytest.raises(Exception, match=r"state_length=7 is not implemented by linattn"):
        M.session(model)
    assert M.session(M.causal_conv_model(M.CONTRIB, inputs=("input", "weight"), shapes=shapes, state_length=3))
    model = M.causal_conv_model(M.CONTRIB, inputs=("input", "weight"), state_length=7)
    sess = M.session(model)
    feeds = {"input": np.ones((1, 4, 5), np.float32), "weight": np.ones((4, 1, 4), np.float32)}
    with pytest.raises(Exception, match=r"state_length=7 is not implemented by linattn"):
        M.run(sess, feeds)


def test_string_attribute_with_a_nul_byte_is_rejected():
    """'gated_delta\\0x' is not gated_delta (a C string would stop at the NUL)."""
    with pytest.raises(Exception, match="update_rule contains a NUL byte"):
        M.session(_la_model("", update_rule="gated_delta\0x"))
    with pytest.raises(Exception, match="activation contains a NUL byte"):
        M.session(M.causal_conv_model(M.CONTRIB, activation="silu\0"))
