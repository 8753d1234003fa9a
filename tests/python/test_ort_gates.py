"""com.microsoft GatedRMSNorm and LinearAttentionGate through liblinattn_ort.so, against ONNX
Runtime's own CPU kernels (float32, float16) on fresh random data, and against a float64 numpy
oracle for bfloat16 (which ORT's CPU provider does not register for these ops). Outputs are
NaN-poisoned before the run, so an unwritten element fails. Also: the plugin really runs the
nodes (its call counter), output types/shapes inferred at load, and ORT's wording for bad
inputs and attributes."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
# every test once per shape-reading path of the plugin (conftest.py, ort_api_path)
pytestmark = pytest.mark.usefixtures("ort_api_path")
from linattn import ort as lort  # noqa: E402
from linattn import ort_models as M  # noqa: E402

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)

from ort_testlib import assert_close, fresh_rng  # noqa: E402


def kernel_calls(op):
    lib = ctypes.CDLL(lort.library_path())
    lib.linattn_ort_kernel_calls.restype = ctypes.c_uint64
    lib.linattn_ort_kernel_calls.argtypes = [ctypes.c_char_p]
    return lib.linattn_ort_kernel_calls(op.encode())


def cast(x, dtype):
    return x.astype(M.np_dtype(dtype))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------- GatedRMSNorm

RMS_CASES = {
    # name: (X shape, C)
    "prefill_heads": ((2, 33, 4 * 64), 64),
    "decode": ((1, 1, 4 * 64), 64),
    "odd_c": ((3, 5, 2 * 37), 37),
    "rank2_c_full": ((7, 48), 48),
    "rank4": ((2, 3, 2, 32), 16),
    "rank5": ((1, 2, 3, 2, 16), 16),
    "empty": ((0, 3, 64), 64),
}


def rms_reference(x, scale, gate, eps, silu):
    x, scale, gate = (np.asarray(v, np.float64) for v in (x, scale, gate))
    c = scale.shape[0]
    rows = x.reshape(-1, c)
    inv = 1.0 / np.sqrt(np.mean(rows * rows, axis=1, keepdims=True) + eps)
    g = gate.reshape(-1, c)
    act = g * sigmoid(g) if silu else sigmoid(g)
    return (rows * inv * scale * act).reshape(x.shape)


def rms_feeds(rng, shape, c, dtype):
    mag = np.exp(rng.uniform(-2, 2))
    return {"X": cast(mag * rng.standard_normal(shape), dtype), "scale": cast(rng.standard_normal(c), dtype),
            "gate": cast(3 * rng.standard_normal(shape), dtype)}


def run_rms(feeds, shape, c, dtype, plugin, threads=1, **attrs):
    model = M.gated_rms_norm_model(x_shape=list(shape), scale_len=c, dtype=dtype, **attrs)
    return M.run(M.session(model, plugin=plugin, threads=threads), feeds, {"Y": shape})[0]


@pytest.mark.parametrize("activation", [None, "silu", "swish", "sigmoid"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("case", list(RMS_CASES))
def test_gated_rms_norm_matches_ort_kernel(case, dtype, activation):
    shape, c = RMS_CASES[case]
    rng, seed = fresh_rng()
    feeds = rms_feeds(rng, shape, c, dtype)
    attrs = {"epsilon": float(rng.choice([1e-6, 1e-5, 0.5]))}
    if activation:
        attrs["activation"] = activation
    before = kernel_calls("GatedRMSNorm")
    got = run_rms(feeds, shape, c, dtype, True, **attrs)
    assert kernel_calls("GatedRMSNorm") == before + 1, "the node did not run on linattn"
    what = f"GatedRMSNorm {case} {dtype} {attrs} seed={seed}"
    if dtype == "bfloat16":
        ref = rms_reference(feeds["X"], feeds["scale"], feeds["gate"], attrs["epsilon"], activation != "sigmoid")
        assert_close(got, ref, dtype, what, rel_max=1e-6, rel=2e-5)
    else:
        ref = run_rms(feeds, shape, c, dtype, False, **attrs)
        # ORT sums the squares sequentially, linattn in 16 lanes: both fp32, rounded once to T
        assert_close(got, ref, dtype, what, rel_max=1e-6, rel=2e-5)


def test_gated_rms_norm_threads_give_identical_bits():
    rng, seed = fresh_rng()
    shape, c = (4, 512, 4 * 64), 64
    feeds = rms_feeds(rng, shape, c, "float32")
    one = run_rms(feeds, shape, c, "float32", True, threads=1)
    two = run_rms(feeds, shape, c, "float32", True, threads=2)
    assert np.array_equal(one.view(np.uint32), two.view(np.uint32)), f"seed={seed}"


def test_gated_rms_norm_errors_use_ort_wording():
    rng, _ = fresh_rng()
    feeds = rms_feeds(rng, (2, 3, 64), 64, "float32")
    feeds["gate"] = feeds["gate"][:, :2]
    model = M.gated_rms_norm_model(x_shape=None, scale_len=None)
    with pytest.raises(Exception, match="gate must have the same shape as X"):
        M.session(model).run(None, feeds)
    feeds = rms_feeds(rng, (2, 3, 64), 48, "float32")
    with pytest.raises(Exception, match="multiple of the scale length"):
        M.session(model).run(None, feeds)
    bad = M.gated_rms_norm_model(x_shape=[2, 3, 64], scale_len=64, activation="relu")
    with pytest.raises(Exception, match="activation must be one of: silu, swish, sigmoid"):
        M.session(bad)


# ---------------------------------------------------------------- LinearAttentionGate

# "decode" to "rank4" take the plugin's by-pointer call (linattn_linear_attention_gate_packed),
# "long" (over 2048 gates) and "empty" the tensor call
GATE_SHAPES = {"prefill": (2, 37, 4), "decode": (1, 1, 32), "rank1": (5,), "rank4": (2, 3, 4, 6), "empty": (0, 4),
               "long": (1, 700, 4)}


def gate_feeds(rng, shape, dtype, with_b):
    h = shape[-1]
    feeds = {"a": cast(4 * rng.standard_normal(shape), dtype), "dt_bias": rng.standard_normal(h).astype(np.float32),
             "decay_scale": (-np.exp(rng.uniform(-3, 2, h))).astype(np.float32)}
    if feeds["a"].size > 1:
        feeds["a"].flat[0], feeds["a"].flat[1] = 60, -60  # softplus's linear and exponential ends
    if with_b:
        feeds["b"] = cast(4 * rng.standard_normal(shape), dtype)
    return feeds


def run_gate(feeds, shape, dtype, plugin, with_beta):
    model = M.linear_attention_gate_model(a_shape=list(shape), dtype=dtype, with_b="b" in feeds, with_beta=with_beta)
    outs = {"decay": shape}
    if with_beta:
        outs["beta"] = shape
    return M.run(M.session(model, plugin=plugin), feeds, outs)


@pytest.mark.parametrize("beta", ["beta", "no_beta", "b_without_beta"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("case", list(GATE_SHAPES))
def test_linear_attention_gate_matches_ort_kernel(case, dtype, beta):
    shape = GATE_SHAPES[case]
    rng, seed = fresh_rng()
    with_beta = beta == "beta"
    feeds = gate_feeds(rng, shape, dtype, beta != "no_beta")
    before = kernel_calls("LinearAttentionGate")
    got = run_gate(feeds, shape, dtype, True, with_beta)
    assert kernel_calls("LinearAttentionGate") == before + 1, "the node did not run on linattn"
    what = f"LinearAttentionGate {case} {dtype} {beta} seed={seed}"
    if dtype == "bfloat16":
        a = np.asarray(feeds["a"], np.float64) + feeds["dt_bias"].astype(np.float64)
        refs = [feeds["decay_scale"] * np.logaddexp(0.0, a)]
        if with_beta:
            refs.append(sigmoid(np.asarray(feeds["b"], np.float64)))
    else:
        refs = run_gate(feeds, shape, dtype, False, with_beta)
    for name, g, r in zip(["decay", "beta"], got, refs):
        assert_close(g, r, dtype, f"{what} {name}", rel_max=1e-6, rel=2e-6)


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 700, 4)], ids=["decode", "long"])
def test_linear_attention_gate_io_bound_in_place(shape):
    """decay bound to a's buffer and beta to b's (one OrtValue each) give the bits of separate
    outputs; the buffers swapped are refused with linattn's message."""
    rng, seed = fresh_rng()
    feeds = gate_feeds(rng, shape, "float32", True)
    model = M.linear_attention_gate_model(a_shape=list(shape), with_b=True, with_beta=True)
    sess = M.session(model)
    want = sess.run(None, feeds)

    def run(decay_to, beta_to):
        values = {k: ort.OrtValue.ortvalue_from_numpy(v.copy()) for k, v in feeds.items()}
        io = sess.io_binding()
        for k, v in values.items():
            io.bind_ortvalue_input(k, v)
        io.bind_ortvalue_output("decay", values[decay_to])
        io.bind_ortvalue_output("beta", values[beta_to])
        sess.run_with_iobinding(io)
        return values

    values = run("a", "b")
    for name, got, ref in zip(["decay", "beta"], [values["a"].numpy(), values["b"].numpy()], want):
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), f"{name} in place differs, seed={seed}"
    with pytest.raises(Exception, match="beta: may share only b's buffer"):
        run("b", "a")


def test_linear_attention_gate_concurrent_runs_identical_bits():
    """Concurrent runs of one session (one kernel instance), decode-sized and long calls
    alternating in each thread: every run gives the bits of a run made alone."""
    import threading

    rng, seed = fresh_rng()
    model = M.linear_attention_gate_model(a_shape=None, with_b=True, with_beta=True)
    sess = M.session(model)
    cases = [gate_feeds(rng, shape, "float32", True) for shape in [(1, 1, 4), (1, 700, 4), (2, 3, 4)]]
    want = [sess.run(None, f) for f in cases]
    bad = []

    def worker(t):
        for i in range(60):
            k = (i + t) % len(cases)
            got = sess.run(None, cases[k])
            if not all(np.array_equal(g.view(np.uint32), w.view(np.uint32)) for g, w in zip(got, want[k])):
                bad.append((t, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not bad, f"runs differing from a run made alone: {bad[:5]}, seed={seed}"


def test_linear_attention_gate_errors_use_ort_wording():
    rng, _ = fresh_rng()
    feeds = gate_feeds(rng, (2, 3, 4), "float32", True)
    feeds["b"] = feeds["b"][:, :2]
    model = M.linear_attention_gate_model(a_shape=None)
    with pytest.raises(Exception, match="b must have the same shape as a"):
        M.session(model).run(None, feeds)
    feeds = gate_feeds(rng, (2, 3, 4), "float32", True)
    feeds["dt_bias"] = feeds["dt_bias"][:3]
    with pytest.raises(Exception, match="dt_bias"):
        M.session(model).run(None, feeds)


def test_inferred_types_and_shapes():
    """Outputs keep the first input's type and shape (symbolic dims included) at load time."""
    from onnx import helper, shape_inference  # noqa: F401

    rms = M.gated_rms_norm_model(x_shape=["batch", "seq", 128], scale_len=64, dtype="float16")
    sess = M.session(rms)
    out = sess.get_outputs()[0]
    assert out.type == "tensor(float16)" and out.shape == ["batch", "seq", 128], out
    gate = M.linear_attention_gate_model(a_shape=["batch", "seq", 4], dtype="bfloat16")
    outs = M.session(gate).get_outputs()
    assert [(o.type, o.shape) for o in outs] == [("tensor(bfloat16)", ["batch", "seq", 4])] * 2, outs


@pytest.mark.parametrize("with_b", [True, False], ids=["b", "no_b"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_unknown_input_shape_keeps_the_input_type(dtype, with_b):
    """An input of unknown shape (no rank) still gives outputs of its type at load time (ORT would
    otherwise take the type of another input, float32 decay_scale without b, and refuse an f16/bf16
    model), and the node runs with the same bits as with a known shape."""
    rng, seed = fresh_rng()
    shape = (2, 3, 4)
    onnx_type = "tensor(float)" if dtype == "float32" else f"tensor({dtype})"
    feeds = gate_feeds(rng, shape, dtype, with_b)
    gate = M.linear_attention_gate_model(a_shape=None, dtype=dtype, with_b=with_b, with_beta=with_b)
    sess = M.session(gate)
    assert [o.type for o in sess.get_outputs()] == [onnx_type] * (2 if with_b else 1)
    outs = {"decay": shape, "beta": shape} if with_b else {"decay": shape}
    got = M.run(sess, feeds, outs)
    want = run_gate(feeds, shape, dtype, True, with_b)
    for name, g, w in zip(["decay", "beta"], got, want):
        assert np.array_equal(g.view(np.uint8), w.view(np.uint8)), f"{name} {dtype} seed={seed}"
    x_shape, c = (1, 2, 2 * 16), 16
    rms = M.gated_rms_norm_model(x_shape=None, scale_len=c, dtype=dtype)
    sess = M.session(rms)
    assert sess.get_outputs()[0].type == onnx_type
    feeds = rms_feeds(rng, x_shape, c, dtype)
    got = M.run(sess, feeds, {"Y": x_shape})[0]
    want = M.run(M.session(M.gated_rms_norm_model(x_shape=list(x_shape), scale_len=c, dtype=dtype)), feeds,
                 {"Y": x_shape})[0]
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), f"GatedRMSNorm {dtype} seed={seed}"


# ---------------------------------------------------------------- initializers

def _rms_model_with_scale_initializer(c, scale, overridable):
    """GatedRMSNorm with `scale` a graph initializer; also a graph input when overridable (a feed
    then replaces it, so it is not a constant for the kernel)."""
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 3, 2 * c]
    node = helper.make_node("GatedRMSNorm", ["X", "scale", "gate"], ["Y"], domain="com.microsoft", epsilon=1e-5)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("X", "gate")]
    if overridable:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [c]))
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)],
                              initializer=[numpy_helper.from_array(scale, "scale")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=10)


@pytest.mark.parametrize("overridable", [False, True])
def test_scale_initializer_constant_or_overridden(overridable):
    """The kernel reads a constant initializer once at creation; an initializer that is also a
    graph input is read on every call, so a feed that overrides it is what the node uses."""
    rng, seed = fresh_rng()
    c = 16
    init = rng.standard_normal(c).astype(np.float32)
    sess = M.session(_rms_model_with_scale_initializer(c, init, overridable), plugin=True)
    for _ in range(2):  # the second call runs on what the first left cached, if anything
        x = rng.standard_normal((1, 3, 2 * c)).astype(np.float32)
        gate = rng.standard_normal((1, 3, 2 * c)).astype(np.float32)
        feeds = {"X": x, "gate": gate}
        scale = init
        if overridable:
            scale = rng.standard_normal(c).astype(np.float32)
            feeds["scale"] = scale
        (y,) = M.run(sess, feeds, {"Y": (1, 3, 2 * c)})
        assert_close(y, rms_reference(x, scale, gate, 1e-5, True), "float32",
                     f"Y (overridable={overridable}, seed {seed})")


# ---------------------------------------------------------------- LinearAttentionGate, constant gates

def _gate_model_with_constants(feeds, a_shape, dtype, with_beta):
    """LinearAttentionGate with dt_bias and decay_scale constant initializers (as exported): the
    plugin's lean path when the rest of the call allows it."""
    from onnx import numpy_helper

    model = M.linear_attention_gate_model(a_shape=a_shape, dtype=dtype, with_b="b" in feeds, with_beta=with_beta)
    kept = [i for i in model.graph.input if i.name not in ("dt_bias", "decay_scale")]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(feeds[n], n) for n in ("dt_bias", "decay_scale"))
    return model


@pytest.mark.parametrize("beta", ["beta", "no_beta", "b_without_beta"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("case", list(GATE_SHAPES))
def test_linear_attention_gate_constant_gates_same_bits(case, dtype, beta):
    """dt_bias and decay_scale as constant initializers give the bits of the same node fed them
    at run time (the general path, checked against ORT's kernel above), for static and dynamic
    shapes of a."""
    shape = GATE_SHAPES[case]
    rng, seed = fresh_rng()
    with_beta = beta == "beta"
    feeds = gate_feeds(rng, shape, dtype, beta != "no_beta")
    outs = {"decay": shape, **({"beta": shape} if with_beta else {})}
    fed = M.linear_attention_gate_model(a_shape=list(shape), dtype=dtype, with_b="b" in feeds, with_beta=with_beta)
    want = M.run(M.session(fed, plugin=True), feeds, outs)
    run_feeds = {k: v for k, v in feeds.items() if k not in ("dt_bias", "decay_scale")}
    symbolic = [f"n{i}" for i in range(len(shape) - 1)] + [shape[-1]]
    for a_shape in (list(shape), symbolic):
        sess = M.session(_gate_model_with_constants(feeds, a_shape, dtype, with_beta), plugin=True)
        for _ in range(2):  # the second run on what the first left behind, if anything
            before = kernel_calls("LinearAttentionGate")
            got = M.run(sess, run_feeds, outs)
            assert kernel_calls("LinearAttentionGate") == before + 1, "the node did not run on linattn"
            for name, g, w in zip(["decay", "beta"], got, want):
                assert g.tobytes() == w.tobytes(), f"{name} {case} {dtype} {beta} a_shape={a_shape} seed={seed}"


def test_linear_attention_gate_constant_gates_errors():
    """With constant dt_bias and decay_scale, bad inputs get the messages of the general path."""
    rng, _ = fresh_rng()
    feeds = gate_feeds(rng, (2, 3, 4), "float32", True)
    sess = M.session(_gate_model_with_constants(feeds, None, "float32", True))
    good = {"a": feeds["a"], "b": feeds["b"]}
    M.run(sess, good)
    cases = [({"a": feeds["a"], "b": feeds["b"][:, :2]}, "b must have the same shape as a"),
             ({"a": feeds["a"], "b": feeds["b"][..., None]}, "b must have the same shape as a"),
             ({"a": feeds["a"][..., :3], "b": feeds["b"][..., :3]}, "dt_bias: must have H = 3 elements, got 4")]
    for bad, message in cases:
        with pytest.raises(Exception, match=message):
            M.run(sess, bad)
        M.run(sess, good)  # a good call after a refused one
    no_b = M.session(_gate_model_with_constants({k: v for k, v in feeds.items() if k != "b"}, None, "float32", True))
    with pytest.raises(Exception, match="The b input is required when the beta output is requested"):
        M.run(no_b, {"a": feeds["a"]})
