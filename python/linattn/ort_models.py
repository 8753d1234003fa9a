"""ONNX models for running linattn's ONNX Runtime plugin: single LinearAttention /
CausalConvWithState nodes in both domains, and a small Gated DeltaNet block; plus helpers to run
them through ONNX Runtime (bfloat16 included, which ORT's Python numpy bridge cannot convert) and
through onnx's reference evaluator.

Domains: "" = ai.onnx opset 27; "com.microsoft" = ONNX Runtime's contrib ops (version 1, with the
ai.onnx opset 21 for the other nodes).

Used by tests/python/test_ort_*.py and by `python -m linattn.ort_bench`.
"""

from __future__ import annotations

import numpy as np

CONTRIB = "com.microsoft"
ONNX_OPSET = 27
CONTRIB_BASE_OPSET = 21

DTYPES = ("float32", "float16", "bfloat16")


def np_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def elem_type(name: str) -> int:
    from onnx import TensorProto

    return {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}[name]


def opset_imports(domain: str):
    from onnx import helper

    if domain == CONTRIB:
        return [helper.make_opsetid("", CONTRIB_BASE_OPSET), helper.make_opsetid(CONTRIB, 1)]
    return [helper.make_opsetid("", ONNX_OPSET)]


def _make_model(nodes, inputs, outputs, domain, initializers=(), name="linattn_ort"):
    from onnx import helper

    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=opset_imports(domain), producer_name="linattn")
    model.ir_version = 10  # the newest IR that ORT 1.2x accepts
    return model


def _vi(name, dtype, shape=None):
    from onnx import helper

    return helper.make_tensor_value_info(name, elem_type(dtype), shape)


# ---------------------------------------------------------------- single nodes

LA_INPUTS = ("query", "key", "value", "past_state", "decay", "beta")
CONV_INPUTS = ("input", "weight", "bias", "past_state")


def _trim(names):
    names = list(names)
    while names and names[-1] == "":
        names.pop()
    return names


def linear_attention_model(domain="", *, q_num_heads, kv_num_heads, dtype="float32", state_dtype=None,
                           inputs=LA_INPUTS, shapes=None, **attrs):
    """One LinearAttention node. `inputs` names the node inputs in order ("" = omitted).
    `state_dtype` is past_state's dtype (default: dtype); present_state has it when past_state is
    given, else dtype. `shapes` maps input names to shapes (None = unknown rank and dims)."""
    from onnx import helper

    names = _trim(inputs)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    node = helper.make_node("LinearAttention", names, ["output", "present_state"], name="linear_attention",
                            domain=domain, q_num_heads=q_num_heads, kv_num_heads=kv_num_heads, **attrs)
    has_past = len(names) > 3 and names[3] != ""
    sdt = (state_dtype or dtype) if has_past else dtype
    shapes = shapes or {}
    ins = [_vi(n, sdt if i == 3 else dtype, shapes.get(n)) for i, n in enumerate(names) if n]
    outs = [_vi("output", dtype), _vi("present_state", sdt)]
    return _make_model([node], ins, outs, domain)


def causal_conv_model(domain="", *, dtype="float32", inputs=CONV_INPUTS, shapes=None, **attrs):
    """One CausalConvWithState node (attributes as keyword arguments, None = not written)."""
    from onnx import helper

    names = _trim(inputs)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    node = helper.make_node("CausalConvWithState", names, ["output", "present_state"],
                            name="causal_conv_with_state", domain=domain, **attrs)
    shapes = shapes or {}
    ins = [_vi(n, dtype, shapes.get(n)) for n in names if n]
    return _make_model([node], ins, [_vi("output", dtype), _vi("present_state", dtype)], domain)


# ---------------------------------------------------------------- Gated DeltaNet block


class GatedDeltaNetConfig:
    """Sizes of one Gated DeltaNet (Qwen3-Next / Qwen3.5) linear-attention layer.

    n_k query/key heads of size d_k, n_v value heads of size d_v (n_v a multiple of n_k);
    the causal conv runs over the fused q|k|v projection (C = 2 n_k d_k + n_v d_v channels)."""

    def __init__(self, hidden=64, n_k=2, n_v=4, d_k=16, d_v=16, conv_k=4):
        assert n_v % n_k == 0
        self.hidden, self.n_k, self.n_v, self.d_k, self.d_v, self.conv_k = hidden, n_k, n_v, d_k, d_v, conv_k

    @property
    def channels(self):
        return 2 * self.n_k * self.d_k + self.n_v * self.d_v

    @classmethod
    def qwen35_2b(cls):
        """Qwen3.5-2B's layer: hidden 2048, 16/16 heads of 128, conv 6144 x 4."""
        return cls(hidden=2048, n_k=16, n_v=16, d_k=128, d_v=128, conv_k=4)

    @classmethod
    def qwen35_9b(cls):
        """Qwen3.5-9B's layer: hidden 4096, 16 q/k heads, 32 value heads of 128, conv 8192 x 4."""
        return cls(hidden=4096, n_k=16, n_v=32, d_k=128, d_v=128, conv_k=4)

    def __repr__(self):
        return (f"GatedDeltaNetConfig(hidden={self.hidden}, n_k={self.n_k}, n_v={self.n_v}, d_k={self.d_k}, "
                f"d_v={self.d_v}, conv_k={self.conv_k})")


def block_weights(cfg: GatedDeltaNetConfig, seed=0):
    """Random float32 weights of one block (scaled like a trained layer's activations)."""
    rng = np.random.default_rng(seed)
    h, c = cfg.hidden, cfg.channels

    def dense(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)

    return {
        "w_qkv": dense(h, c),
        "w_z": dense(h, cfg.n_v * cfg.d_v),
        "w_a": dense(h, cfg.n_v),
        "w_b": dense(h, cfg.n_v),
        "w_o": dense(cfg.n_v * cfg.d_v, h),
        "conv_w": (rng.standard_normal((c, 1, cfg.conv_k)) / np.sqrt(cfg.conv_k)).astype(np.float32),
        "dt_bias": rng.uniform(-1.0, 1.0, cfg.n_v).astype(np.float32),
        # decay g = -exp(A_log) * softplus(a + dt_bias); Qwen initialises exp(A_log) ~ U[1, 16],
        # scaled by 0.1 here so that short test sequences keep a long memory
        "neg_exp_a": (-0.1 * rng.uniform(1.0, 16.0, cfg.n_v)).astype(np.float32),
        "norm_w": (1.0 + 0.1 * rng.standard_normal(cfg.d_v)).astype(np.float32),
    }


def gated_deltanet_block(domain="", cfg: GatedDeltaNetConfig | None = None, *, dtype="float32",
                         state_dtype="float32", seed=0, weights=None):
    """One Gated DeltaNet layer as an ONNX graph (inputs x, conv_state, recurrent_state; outputs y,
    conv_state_out, recurrent_state_out).

    x (B, T, hidden) float32 -> MatMul to q|k|v -> CausalConvWithState (SiLU) -> Split ->
    per-head L2 normalisation of q, k -> gates (decay = -exp(A_log) softplus(a + dt_bias),
    beta = sigmoid(b)) -> LinearAttention (gated_delta) -> per-head RMSNorm * SiLU(z) -> MatMul.

    `dtype` is the type of the two recurrent ops' activations: the dense math stays float32
    (ORT's CPU provider has no bfloat16 MatMul or element-wise kernels), with Cast nodes written
    into the model around the conv and LinearAttention when dtype is not float32. The conv state
    has `dtype`, the recurrent state `state_dtype`.

    ai.onnx: the conv runs channels-first between two Transposes (conv_state (B, C, k-1)) and q, k
    are repeat-interleaved from n_k to n_v heads (what HF does for Qwen3.5). com.microsoft: the
    conv runs channels_last (conv_state (B, k-1, C)) and LinearAttention takes n_k query/key heads
    and n_v value heads directly (inverse GQA with separate key heads)."""
    from onnx import helper, numpy_helper

    cfg = cfg or GatedDeltaNetConfig()
    w = weights or block_weights(cfg, seed)
    contrib = domain == CONTRIB
    low = dtype != "float32"
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, ins, outs, dom="", **attrs):
        nodes.append(helper.make_node(op, ins, outs, name=f"{op}_{len(nodes)}", domain=dom, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def cast(x, to):
        if not low:
            return x
        return node("Cast", [x], [f"{x}_{to}"], to=elem_type(to))

    def l2norm(x, heads, dim, tag):
        x4 = node("Reshape", [x, const(f"shape_{tag}4", np.array([0, 0, heads, dim], np.int64))], [f"{tag}4"])
        ss = node("ReduceSumSquare", [x4, const(f"axes_{tag}", np.array([-1], np.int64))], [f"{tag}_ss"], keepdims=1)
        inv = node("Reciprocal", [node("Sqrt", [node("Add", [ss, const(f"eps_{tag}", np.float32(1e-6))],
                                                      [f"{tag}_sse"])], [f"{tag}_rms"])], [f"{tag}_inv"])
        xn = node("Mul", [x4, inv], [f"{tag}_n4"])
        return xn

    def flat(x4, tag):
        return node("Reshape", [x4, const(f"shape_{tag}3", np.array([0, 0, -1], np.int64))], [f"{tag}_flat"])

    for name in ("w_qkv", "w_z", "w_a", "w_b", "w_o", "dt_bias", "neg_exp_a", "norm_w"):
        const(name, w[name])
    conv_w = w["conv_w"].astype(np_dtype(dtype))
    const("conv_w", conv_w)

    qkv = cast(node("MatMul", ["x", "w_qkv"], ["qkv"]), dtype)
    if contrib:
        conv = node("CausalConvWithState", [qkv, "conv_w", "", "conv_state"], ["conv_out", "conv_state_out"],
                    dom=CONTRIB, activation="silu", channels_last=1)[0]
    else:
        qkv_t = node("Transpose", [qkv], ["qkv_t"], perm=[0, 2, 1])
        conv_t = node("CausalConvWithState", [qkv_t, "conv_w", "", "conv_state"], ["conv_out_t", "conv_state_out"],
                      activation="silu")[0]
        conv = node("Transpose", [conv_t], ["conv_out"], perm=[0, 2, 1])
    conv = cast(conv, "float32") if low else conv
    qk = cfg.n_k * cfg.d_k
    q, k, v = node("Split", [conv, const("split", np.array([qk, qk, cfg.n_v * cfg.d_v], np.int64))],
                   ["q_raw", "k_raw", "v"], axis=2)
    q4 = l2norm(q, cfg.n_k, cfg.d_k, "q")
    k4 = l2norm(k, cfg.n_k, cfg.d_k, "k")
    heads_q = cfg.n_k
    if not contrib and cfg.n_v != cfg.n_k:
        # repeat-interleave q, k heads: (B, T, n_k, 1, d_k) -> (B, T, n_k, r, d_k) -> n_v heads
        r = cfg.n_v // cfg.n_k
        shape5 = const("shape_qk5", np.array([0, 0, cfg.n_k, 1, cfg.d_k], np.int64))
        rep = const("rep_qk", np.array([1, 1, 1, r, 1], np.int64))
        q4 = node("Expand", [node("Reshape", [q4, shape5], ["q5"]), rep], ["q_rep"])
        k4 = node("Expand", [node("Reshape", [k4, shape5], ["k5"]), rep], ["k_rep"])
        heads_q = cfg.n_v
    q = flat(q4, "q")
    k = flat(k4, "k")
    a = node("MatMul", ["x", "w_a"], ["a"])
    decay = node("Mul", [node("Softplus", [node("Add", [a, "dt_bias"], ["a_dt"])], ["a_sp"]), "neg_exp_a"], ["decay"])
    beta = node("Sigmoid", [node("MatMul", ["x", "w_b"], ["b"])], ["beta"])
    la_in = [cast(t, dtype) for t in (q, k, v)] + ["recurrent_state"] + [cast(t, dtype) for t in (decay, beta)]
    o = node("LinearAttention", la_in, ["attn", "recurrent_state_out"], dom=domain, q_num_heads=heads_q,
             kv_num_heads=cfg.n_v, update_rule="gated_delta")[0]
    o = cast(o, "float32") if low else o
    o4 = node("Reshape", [o, const("shape_o4", np.array([0, 0, cfg.n_v, cfg.d_v], np.int64))], ["o4"])
    ms = node("ReduceMean", [node("Mul", [o4, o4], ["o_sq"]), const("axes_o", np.array([-1], np.int64))], ["o_ms"],
              keepdims=1)
    inv = node("Reciprocal", [node("Sqrt", [node("Add", [ms, const("eps_o", np.float32(1e-6))], ["o_mse"])],
                                  ["o_rms"])], ["o_inv"])
    on = node("Mul", [node("Mul", [o4, inv], ["o_n"]), "norm_w"], ["o_nw"])
    z4 = node("Reshape", [node("MatMul", ["x", "w_z"], ["z"]), "shape_o4"], ["z4"])
    gate = node("Mul", [z4, node("Sigmoid", [z4], ["z_sig"])], ["z_silu"])
    og = flat(node("Mul", [on, gate], ["o_gated"]), "o")
    node("MatMul", [og, "w_o"], ["y"])

    c, km1 = cfg.channels, cfg.conv_k - 1
    conv_shape = ["B", km1, c] if contrib else ["B", c, km1]
    inputs = [_vi("x", "float32", ["B", "T", cfg.hidden]), _vi("conv_state", dtype, conv_shape),
              _vi("recurrent_state", state_dtype, ["B", cfg.n_v, cfg.d_k, cfg.d_v])]
    outputs = [_vi("y", "float32", ["B", "T", cfg.hidden]), _vi("conv_state_out", dtype, conv_shape),
               _vi("recurrent_state_out", state_dtype, ["B", cfg.n_v, cfg.d_k, cfg.d_v])]
    return _make_model(nodes, inputs, outputs, domain, inits, name="gated_deltanet_block")


def block_state_shapes(domain, cfg: GatedDeltaNetConfig, batch):
    km1 = cfg.conv_k - 1
    conv = (batch, km1, cfg.channels) if domain == CONTRIB else (batch, cfg.channels, km1)
    return conv, (batch, cfg.n_v, cfg.d_k, cfg.d_v)


def block_feeds(domain, cfg: GatedDeltaNetConfig, batch, tokens, *, dtype="float32", state_dtype="float32",
                rng=None, zero_state=False):
    rng = rng if rng is not None else np.random.default_rng(0)
    conv_shape, rec_shape = block_state_shapes(domain, cfg, batch)
    x = rng.standard_normal((batch, tokens, cfg.hidden)).astype(np.float32)
    if zero_state:
        conv = np.zeros(conv_shape, np.float32)
        rec = np.zeros(rec_shape, np.float32)
    else:
        conv = rng.standard_normal(conv_shape).astype(np.float32)
        rec = (0.1 * rng.standard_normal(rec_shape)).astype(np.float32)
    return {"x": x, "conv_state": conv.astype(np_dtype(dtype)), "recurrent_state": rec.astype(np_dtype(state_dtype))}


# ---------------------------------------------------------------- gates (com.microsoft only)


def gated_rms_norm_model(*, x_shape, scale_len, dtype="float32", **attrs):
    """One com.microsoft GatedRMSNorm node: inputs X, scale, gate; output Y."""
    from onnx import helper

    node = helper.make_node("GatedRMSNorm", ["X", "scale", "gate"], ["Y"], domain=CONTRIB, **attrs)
    inputs = [_vi("X", dtype, x_shape), _vi("scale", dtype, [scale_len]), _vi("gate", dtype, x_shape)]
    return _make_model([node], inputs, [_vi("Y", dtype, None)], CONTRIB)


def linear_attention_gate_model(*, a_shape, dtype="float32", with_b=True, with_beta=True):
    """One com.microsoft LinearAttentionGate node: a, dt_bias, decay_scale (float32), b -> decay, beta."""
    from onnx import helper

    heads = a_shape[-1] if a_shape else None
    ins = ["a", "dt_bias", "decay_scale"] + (["b"] if with_b else [])
    outs = ["decay"] + (["beta"] if with_beta else [])
    node = helper.make_node("LinearAttentionGate", ins, outs, domain=CONTRIB)
    inputs = [_vi("a", dtype, a_shape), _vi("dt_bias", "float32", [heads]), _vi("decay_scale", "float32", [heads])]
    if with_b:
        inputs.append(_vi("b", dtype, a_shape))
    return _make_model([node], inputs, [_vi(o, dtype, None) for o in outs], CONTRIB)

GDN_INPUTS = ("query", "key", "value", "cu_seqlens", "decay", "beta", "initial_state", "a_log", "dt_bias",
              "capture_count", "state_update_active")


def gated_delta_net_model(feeds, *, dtype="float32", outputs=("output", "final_state", "state_update"), **attrs):
    """One com.microsoft GatedDeltaNet node over the inputs present in `feeds` (numpy arrays keyed by
    GDN_INPUTS names; absent ones become empty input names)."""
    from onnx import TensorProto, helper

    names = _trim([n if n in feeds and feeds[n] is not None else "" for n in GDN_INPUTS])

    def etype(a):
        if a.dtype == np.int32:
            return TensorProto.INT32
        return elem_type({np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}.get(a.dtype, "bfloat16"))

    inputs = [helper.make_tensor_value_info(n, etype(feeds[n]), None) for n in names if n]
    outs = [helper.make_tensor_value_info(o, elem_type(dtype) if o == "output" else TensorProto.FLOAT, None)
            for o in outputs]
    node = helper.make_node("GatedDeltaNet", names, list(outputs), domain=CONTRIB, **attrs)
    return _make_model([node], inputs, outs, CONTRIB, name="gdn")


# ---------------------------------------------------------------- running


def session(model, *, plugin=True, threads=1, optimized_model_path=None, profile_prefix=None, domains="auto"):
    """An ORT CPU session for `model` (a ModelProto or bytes), with or without the plugin.
    domains: passed to linattn.ort.register ("auto" = chosen from the model's opset imports)."""
    import onnxruntime as ort

    from . import ort as linattn_ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # failures come back as exceptions; keep ORT's log quiet
    if optimized_model_path:
        so.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    if plugin:
        if domains == "auto":
            linattn_ort.register(so, model=model)
        else:
            linattn_ort.register(so, domains=domains)
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _to_ortvalue(array):
    import onnxruntime as ort
    from onnx import TensorProto

    array = np.ascontiguousarray(array)
    if array.dtype == np_dtype("bfloat16"):
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array.view(np.uint16), TensorProto.BFLOAT16)
    return ort.OrtValue.ortvalue_from_numpy(array)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16"}


def run(sess, feeds, output_shapes=None):
    """Runs a session on numpy feeds (bfloat16 as ml_dtypes arrays); returns the outputs as numpy
    arrays in session output order.

    Outputs named in output_shapes are preallocated and filled with NaN first, so an element the
    kernel does not write shows up. bfloat16 outputs must be named there: ORT's numpy bridge
    cannot hand them back."""
    io = sess.io_binding()
    for name, value in feeds.items():
        io.bind_ortvalue_input(name, _to_ortvalue(value))
    output_shapes = output_shapes or {}
    buffers = {}
    for out in sess.get_outputs():
        shape = output_shapes.get(out.name)
        if shape is None:
            if out.type == "tensor(bfloat16)":
                raise ValueError(f"output {out.name} is bfloat16: pass its shape in output_shapes")
            io.bind_output(out.name)
            continue
        buf = np.full(tuple(shape), np.nan, np.float32).astype(np_dtype(_ORT_TYPES[out.type]))
        io.bind_ortvalue_output(out.name, _to_ortvalue(buf))
        buffers[out.name] = buf
    sess.run_with_iobinding(io)
    ort_outs = io.get_outputs()
    return [buffers[out.name] if out.name in buffers else ort_outs[i].numpy()
            for i, out in enumerate(sess.get_outputs())]


def reference(model, feeds):
    """Outputs of onnx's ReferenceEvaluator (ai.onnx models only)."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)
