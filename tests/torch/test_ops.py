"""linattn.torch's ops and drop-in entry points against transformers' own PyTorch fallbacks
(torch_chunk_gated_delta_rule, torch_recurrent_gated_delta_rule, causal_conv1d_fn,
causal_conv1d_update of modeling_qwen3_5) and F.conv1d, on fresh random inputs."""

import os

import pytest
import torch
import torch.nn.functional as F

import linattn
import linattn.torch as lt
import transformers.models.qwen3_5.modeling_qwen3_5 as tf

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
# output tolerance relative to the largest reference value: fp32 arithmetic in both, the output
# rounded once to the tensor type (a few ulps when the inputs are rounded too)
TOL = {torch.float32: 2e-5, torch.float16: 4 * 2.0**-11, torch.bfloat16: 4 * 2.0**-8}


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


def _gdn_inputs(gen, B, T, H, Hv, dk, dv, dtype):
    r = lambda *s: torch.randn(*s, generator=gen)
    q, k, v = r(B, T, H, dk).to(dtype), r(B, T, H, dk).to(dtype), r(B, T, Hv, dv).to(dtype)
    g = -F.softplus(r(B, T, Hv))  # fp32 log decay, as the layers compute it
    beta = torch.sigmoid(r(B, T, Hv)).to(dtype)
    return q, k, v, g, beta


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("T", [1, 5, 70])
@pytest.mark.parametrize("heads", [(2, 2), (2, 4)], ids=["mha", "gva"])
@pytest.mark.parametrize("norm", [True, False], ids=["l2", "nol2"])
def test_gated_delta_rule_matches_transformers(gen, dtype, T, heads, norm):
    H, Hv = heads
    q, k, v, g, beta = _gdn_inputs(gen, 2, T, H, Hv, 32, 16, dtype)
    if not norm:  # keep the recurrence bounded without the norm
        q, k = (x / x.float().norm(dim=-1, keepdim=True).to(dtype) for x in (q, k))
    s0 = torch.randn(2, Hv, 32, 16, generator=gen)
    ref_fn = tf.torch_recurrent_gated_delta_rule if T == 1 else tf.torch_chunk_gated_delta_rule
    ref_o, ref_s = ref_fn(q, k, v, g=g, beta=beta, initial_state=s0, output_final_state=True,
                          use_qk_l2norm_in_kernel=norm)
    for fn in (lt.chunk_gated_delta_rule, lt.fused_recurrent_gated_delta_rule):
        o, s = fn(q, k, v, g, beta, initial_state=s0, output_final_state=True, use_qk_l2norm_in_kernel=norm)
        assert o.dtype == dtype and o.shape == ref_o.shape
        assert s.dtype == torch.float32 and s.shape == ref_s.shape
        assert _rel(o, ref_o) <= TOL[dtype]
        assert _rel(s, ref_s) <= 2e-5


def test_gated_delta_rule_state_round_trip_without_copy(gen):
    """The returned state is a view of a V-major buffer; passed back it is read in place, and a
    chain of calls equals one call over the whole sequence."""
    q, k, v, g, beta = _gdn_inputs(gen, 1, 48, 2, 4, 32, 16, torch.float32)
    whole, s_whole = lt.chunk_gated_delta_rule(q, k, v, g, beta, output_final_state=True,
                                               use_qk_l2norm_in_kernel=True)
    o1, s1 = lt.chunk_gated_delta_rule(q[:, :30], k[:, :30], v[:, :30], g[:, :30], beta[:, :30],
                                       output_final_state=True, use_qk_l2norm_in_kernel=True)
    assert s1.shape == (1, 4, 32, 16) and not s1.is_contiguous()
    assert lt._v_major_state(s1).data_ptr() == s1.data_ptr()  # no copy
    outs = [o1]
    s = s1
    for t in range(30, 48):  # decode steps through the recurrent entry point
        o, s = lt.fused_recurrent_gated_delta_rule(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], g[:, t:t + 1],
                                                   beta[:, t:t + 1], initial_state=s, output_final_state=True,
                                                   use_qk_l2norm_in_kernel=True)
        outs.append(o)
    assert _rel(torch.cat(outs, 1), whole) <= 2e-6
    assert _rel(s, s_whole) <= 2e-6
    # a contiguous (fla-layout) state is copied once into V-major and gives the same result
    o2, _ = lt.chunk_gated_delta_rule(q[:, 30:], k[:, 30:], v[:, 30:], g[:, 30:], beta[:, 30:],
                                      initial_state=s1.contiguous(), use_qk_l2norm_in_kernel=True)
    assert _rel(o2, whole[:, 30:]) <= 2e-6


def test_gated_delta_rule_cu_seqlens(gen):
    lens = [7, 0, 65, 1]
    N, T = len(lens), sum(lens)
    q, k, v, g, beta = _gdn_inputs(gen, 1, T, 2, 4, 32, 16, torch.float32)
    s0 = torch.randn(N, 4, 32, 16, generator=gen)
    cu = torch.tensor([0] + lens).cumsum(0)
    o, s = lt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True, cu_seqlens=cu,
                                     use_qk_l2norm_in_kernel=True)
    assert o.shape == (1, T, 4, 16) and s.shape == (N, 4, 32, 16)
    for i in range(N):
        a, b = int(cu[i]), int(cu[i + 1])
        if a == b:
            assert torch.equal(s[i], s0[i])
            continue
        part = [x[:, a:b] for x in (q, k, v, g, beta)]
        ref_o, ref_s = tf.torch_recurrent_gated_delta_rule(*part[:3], g=part[3], beta=part[4],
                                                           initial_state=s0[i:i + 1], output_final_state=True,
                                                           use_qk_l2norm_in_kernel=True)
        assert _rel(o[:, a:b], ref_o) <= 2e-5
        assert _rel(s[i:i + 1], ref_s) <= 2e-5


def test_gated_delta_rule_scale(gen):
    q, k, v, g, beta = _gdn_inputs(gen, 1, 9, 2, 2, 16, 16, torch.float32)
    q, k = (x / x.norm(dim=-1, keepdim=True) for x in (q, k))
    scale = 0.37
    o, _ = lt.chunk_gated_delta_rule(q, k, v, g, beta, scale=scale)
    # transformers' fallback always scales by 1/sqrt(d_k): hand it q pre-scaled
    ref, _ = tf.torch_recurrent_gated_delta_rule(q * scale * 16**0.5, k, v, g=g, beta=beta)
    assert _rel(o, ref) <= 2e-5


def test_gated_delta_net_fused_gates_and_in_kernel_norm(gen):
    """The op with the fused gates (g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b)) and
    the in-kernel norm (epsilon 1e-12) against transformers' fallback fed the same gates."""
    B, T, H, Hv, dk, dv = 2, 20, 2, 4, 32, 16
    q, k, v, _, _ = _gdn_inputs(gen, B, T, H, Hv, dk, dv, torch.float32)
    a, b = torch.randn(B, T, Hv, generator=gen), torch.randn(B, T, Hv, generator=gen)
    a_log, dt_bias = torch.rand(Hv, generator=gen) * 2, torch.randn(Hv, generator=gen)
    s0 = torch.randn(B, Hv, dv, dk, generator=gen)  # V-major
    o, s = lt.gated_delta_net(q, k, v, a, b, s0, None, a_log, dt_bias, gate_activation="softplus",
                              beta_activation="sigmoid", qk_l2_norm=True)
    g = -a_log.exp() * F.softplus(a + dt_bias)
    n = lambda x: x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-12)
    ref_o, ref_s = tf.torch_chunk_gated_delta_rule(n(q), n(k), v, g=g, beta=b.sigmoid(),
                                                   initial_state=s0.transpose(-1, -2), output_final_state=True)
    assert _rel(o, ref_o) <= 2e-5
    assert _rel(s.transpose(-1, -2), ref_s) <= 2e-5


def test_linear_attention_op(gen):
    """ONNX LinearAttention (gated_delta, K-major state) against the recurrent fallback."""
    B, T, H, dk, dv = 2, 11, 3, 16, 8
    q, k, v, g, beta = _gdn_inputs(gen, B, T, H, H, dk, dv, torch.float32)
    q, k = (x / x.norm(dim=-1, keepdim=True) for x in (q, k))
    s0 = torch.randn(B, H, dk, dv, generator=gen)
    o, s = lt.linear_attention(q.reshape(B, T, -1), k.reshape(B, T, -1), v.reshape(B, T, -1), s0, g, beta, H, H)
    ref_o, ref_s = tf.torch_recurrent_gated_delta_rule(q, k, v, g=g, beta=beta, initial_state=s0,
                                                       output_final_state=True)
    assert _rel(o, ref_o.reshape(B, T, -1)) <= 2e-5 and _rel(s, ref_s) <= 2e-5


def _conv_ref(x, w, b, act, init=None):
    """Depthwise causal conv in float64: x (B, C, L), w (C, k), init (B, C, k-1)."""
    k = w.shape[-1]
    pad = init.double() if init is not None else x.new_zeros(x.shape[0], x.shape[1], k - 1).double()
    full = torch.cat([pad, x.double()], -1)
    out = F.conv1d(full, w.double().unsqueeze(1), None if b is None else b.double(), groups=x.shape[1])
    return (F.silu(out) if act == "silu" else out), full[..., full.shape[-1] - (k - 1):]


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("layout", ["transposed", "contiguous"])
@pytest.mark.parametrize("act", ["silu", None])
def test_causal_conv1d_fn(gen, dtype, layout, act):
    B, C, L, k = 2, 24, 13, 4
    x = torch.randn(B, L, C, generator=gen).to(dtype).transpose(1, 2)  # transformers' layout
    if layout == "contiguous":
        x = x.contiguous()
    w, b = torch.randn(C, k, generator=gen).to(dtype), torch.randn(C, generator=gen).to(dtype)
    out = lt.causal_conv1d_fn(x, w, b, activation=act)
    ref = tf.causal_conv1d_fn(x, w, b, activation=act)
    assert out.shape == ref.shape and out.dtype == dtype
    assert _rel(out, ref) <= TOL[dtype]


def test_conv_input_of_another_dtype(gen):
    """As transformers: computed in the weight's dtype, returned in the input's."""
    x = torch.randn(1, 4, 8, generator=gen).to(torch.bfloat16)
    w = torch.randn(8, 4, generator=gen)
    state, ref_state = torch.randn(1, 8, 4, generator=gen), None
    ref_state = state.clone()
    x = x.transpose(1, 2)
    out, ref = lt.causal_conv1d_fn(x, w, activation="silu"), tf.causal_conv1d_fn(x, w, activation="silu")
    assert out.dtype == ref.dtype == torch.bfloat16 and _rel(out, ref) <= TOL[torch.bfloat16]
    out = lt.causal_conv1d_update(x[..., -1:], state, w, None, "silu")
    ref = tf.causal_conv1d_update(x[..., -1:], ref_state, w, None, "silu")
    assert out.dtype == ref.dtype == torch.bfloat16 and _rel(out, ref) <= TOL[torch.bfloat16]
    assert torch.equal(state, ref_state)


def test_causal_conv1d_fn_states_and_seq_idx(gen):
    B, C, L, k = 2, 8, 10, 4
    x, w, b = torch.randn(B, C, L, generator=gen), torch.randn(C, k, generator=gen), torch.randn(C, generator=gen)
    init = torch.randn(B, C, k - 1, generator=gen)
    out, final = lt.causal_conv1d_fn(x, w, b, initial_states=init, return_final_states=True, activation="silu")
    ref, ref_final = _conv_ref(x, w, b, "silu", init)
    assert _rel(out, ref) <= 2e-6 and torch.equal(final, ref_final.float())
    # seq_idx: three packed sequences, each from a zero state
    ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2, 2]])
    out = lt.causal_conv1d_fn(x[:1], w, b, seq_idx=ids, activation="silu")
    for a, e in ((0, 3), (3, 5), (5, 10)):
        assert _rel(out[..., a:e], _conv_ref(x[:1, :, a:e], w, b, "silu")[0]) <= 2e-6


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("width", [4, 3], ids=["k", "k-1"])
@pytest.mark.parametrize("L", [1, 2])
def test_causal_conv1d_update(gen, dtype, width, L):
    B, C, k = 3, 16, 4
    x = torch.randn(B, L, C, generator=gen).to(dtype).transpose(1, 2)
    w, b = torch.randn(C, k, generator=gen).to(dtype), torch.randn(C, generator=gen).to(dtype)
    state = torch.randn(B, C, width, generator=gen).to(dtype)
    ref_state = state.clone()
    out = lt.causal_conv1d_update(x, state, w, b, "silu")
    ref = tf.causal_conv1d_update(x, ref_state, w, b, "silu")
    assert _rel(out, ref) <= TOL[dtype]
    assert torch.equal(state, ref_state)


def test_varlen_conv_op(gen):
    lens = [5, 0, 9]
    C, k = 12, 4
    x = torch.randn(sum(lens), C, generator=gen)
    w, b = torch.randn(C, 1, k, generator=gen), torch.randn(C, generator=gen)
    init = torch.randn(len(lens), C, k - 1, generator=gen)
    cu = torch.tensor([0] + lens, dtype=torch.int32).cumsum(0).to(torch.int32)
    out, final = lt.varlen_causal_conv(x, w, b, init, cu, "silu")
    for i in range(len(lens)):
        a, e = int(cu[i]), int(cu[i + 1])
        if e == a:  # an empty sequence passes its state through
            assert torch.equal(final[i], init[i])
            continue
        ref, ref_final = _conv_ref(x[a:e].T.unsqueeze(0), w[:, 0], b, "silu", init[i:i + 1])
        assert _rel(out[a:e], ref[0].T) <= 2e-6
        assert torch.equal(final[i], ref_final[0].float())


def test_causal_conv_with_state_op(gen):
    B, C, L, k = 2, 8, 6, 3
    x, w = torch.randn(B, C, L, generator=gen), torch.randn(C, 1, k, generator=gen)
    past = torch.randn(B, C, k - 1, generator=gen)
    out, present = lt.causal_conv_with_state(x, w, None, past, "none", False)
    ref, ref_present = _conv_ref(x, w[:, 0], None, None, past)
    assert _rel(out, ref) <= 2e-6 and torch.equal(present, ref_present.float())


def test_bad_input_names_the_argument(gen):
    q, k, v, g, beta = _gdn_inputs(gen, 1, 4, 2, 3, 16, 16, torch.float32)  # 3 value heads, 2 key heads
    with pytest.raises(linattn.LinattnError, match="value|heads"):
        lt.chunk_gated_delta_rule(q, k, v, g, beta)
    with pytest.raises(TypeError, match="query"):
        lt.gated_delta_net(q.double(), k, v, g, beta, None, None)
    with pytest.raises(linattn.LinattnError, match="batch must be 1"):
        lt.chunk_gated_delta_rule(*_gdn_inputs(gen, 2, 4, 2, 2, 16, 16, torch.float32), cu_seqlens=torch.tensor([0, 4]))


def test_backward_raises(gen):
    q, k, v, g, beta = _gdn_inputs(gen, 1, 4, 2, 2, 16, 16, torch.float32)
    q.requires_grad_()
    o, _ = lt.chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)
    with pytest.raises(RuntimeError, match="no backward"):
        o.sum().backward()
    x, w = torch.randn(1, 8, 5, generator=gen), torch.randn(8, 4, generator=gen, requires_grad=True)
    with pytest.raises(RuntimeError, match="no backward"):
        lt.causal_conv1d_fn(x, w, activation="silu").sum().backward()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(gen, backend):
    """A function calling the drop-ins compiles without graph breaks (fullgraph=True) and gives
    the eager result. aot_eager traces the ops' fake implementations as inductor does; inductor
    itself (C++ code generation, over a minute on a small machine) runs with
    LINATTN_TORCH_INDUCTOR=1."""
    if backend == "inductor" and os.environ.get("LINATTN_TORCH_INDUCTOR") != "1":
        pytest.skip("set LINATTN_TORCH_INDUCTOR=1 to compile with inductor")

    def block(x, w, state, q, k, v, g, beta, s0):
        y = lt.causal_conv1d_fn(x, w, None, activation="silu")
        y2 = lt.causal_conv1d_update(x[..., -1:], state, w, None, "silu")
        o, s = lt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                         use_qk_l2norm_in_kernel=True)
        return y * 2, y2, o + 1, s * 1

    x = torch.randn(1, 8, 6, generator=gen)
    w = torch.randn(8, 4, generator=gen)
    q, k, v, g, beta = _gdn_inputs(gen, 1, 6, 2, 2, 16, 16, torch.float32)
    s0 = torch.randn(1, 2, 16, 16, generator=gen)
    state_a, state_b = torch.randn(1, 8, 4, generator=gen), None
    state_b = state_a.clone()
    eager = block(x, w, state_a, q, k, v, g, beta, s0)
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend=backend)(x, w, state_b, q, k, v, g, beta, s0)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    assert torch.equal(state_a, state_b)
