"""Edge cases of both operators, on every kernel family this CPU runs (the `contexts` fixture:
auto, reference, scalar, avx2, avx512, ... single-threaded) and, where a case splits work, on
two threads too.

Oracles: onnx.reference.ReferenceEvaluator on single-node opset-27 models (linattn.onnx_models)
wherever the ONNX op defines the case; float64 numpy models written here for what it does not
(ORT com.microsoft extensions: inverse GQA, separate key heads, conv dilation / channels_last;
ONNX spec.md 4.1/4.2), and for the conv's fp16 bias (see test_conv_low_precision_bias).
Outputs are NaN-poisoned before each call, so an element left unwritten fails.

Infinities in the inputs or overflow of the fp32 state: the fast kernels read the output from
the old state plus a rank-1 correction (algorithms.md 4.1) and, left alone, may give NaN where
the reference gives +-inf or the reverse; the library recomputes any unit whose outputs are not
all finite with the reference kernel, so every ISA matches onnx exactly (NaN vs inf included).
Documented divergences (tested in their weaker form, see the test docstrings):
  * the one case the recomputation cannot serve: an fp32 state updated in place
    (present_state is past_state), where the entering state is gone once the kernel ran;
    non-finite *positions* still agree (test_la_inf_in_place_fp32_state);
  * conv fp16 with bias: onnx.reference rounds the dot product to float16 before adding the
    bias (numpy float16 matmul, then `+=` in float16); linattn rounds the same way, but its fp32
    sum order differs, so the two may differ by ~2 float16 ulps.
"""

from __future__ import annotations

import platform
import warnings

import ml_dtypes
import numpy as np
import pytest

import linattn
from linattn import onnx_models, testing

F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = (F32, F16, BF16)
RULES = ("linear", "gated", "delta", "gated_delta")


@pytest.fixture(autouse=True)
def _quiet_numpy():
    # The reference divides by sqrt(0) for d_k = 0, multiplies inf by 0, ... on purpose here.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.fixture(scope="module")
def two_threads():
    ctxs = {isa: linattn.Context(threads=2, isa=isa) for isa in linattn.available_isas()}
    yield ctxs
    for c in ctxs.values():
        c.close()


# ---------------------------------------------------------------- helpers


def _tol(expected: np.ndarray, rel_max=2e-5, rel=1e-4, ulps=1.0) -> np.ndarray:
    e = np.abs(expected.astype(np.float64))
    finite = np.where(np.isfinite(e), e, 0.0)
    tol = 1e-36 + rel_max * (finite.max() if e.size else 0.0) + rel * finite
    if expected.dtype != F32:
        tol = tol + ulps * testing.ulp(finite, expected.dtype)
    return tol


def strict(actual, expected, **kw):
    """None if actual matches expected: same dtype/shape, NaN where NaN, the same infinities,
    finite values within the differential tests' LinearAttention tolerance."""
    return testing.compare(actual, expected, _tol(np.asarray(expected), **kw))


def ref_la(q, k, v, past=None, decay=None, beta=None, *, hq, hkv, rule="gated_delta", scale=0.0):
    return onnx_models.reference_linear_attention(
        q, k, v, past, decay, beta, q_num_heads=hq, kv_num_heads=hkv, update_rule=rule,
        scale=None if scale == 0.0 else scale,
    )


def run_la(ctx, q, k, v, past=None, decay=None, beta=None, *, hq, hkv, rule="gated_delta", scale=0.0,
           out_dtype=None, state_dtype=None, **kw):
    """linattn into NaN-poisoned outputs (output dtype of q, state dtype of past or state_dtype or q)."""
    b, t = q.shape[:2]
    dk = q.shape[2] // hq
    dv = v.shape[2] // hkv
    s_dt = past.dtype if past is not None else (state_dtype or q.dtype)
    out = np.full((b, t, max(hq, hkv) * dv), np.nan, q.dtype)
    present = np.full((b, hkv, dk, dv), np.nan, s_dt)
    res = linattn.linear_attention(
        q, k, v, past, decay, beta, q_num_heads=hq, kv_num_heads=hkv, update_rule=rule, scale=scale,
        out=(out, present), context=ctx, **kw,
    )
    assert res[0] is out and res[1] is present
    return res


def la_case(rng, b, t, hq, hkv, dk, dv, rule, *, dtype=F32, decay_kind="head", beta_kind="head",
            past_dtype=None, decay_scale=0.3, key_heads=None):
    """Random inputs; keys L2-normalised per head (delta rules stay bounded)."""
    nk = hkv if key_heads is None else key_heads
    q = rng.standard_normal((b, t, hq * dk), dtype=np.float32)
    k = rng.standard_normal((b, t, nk, dk), dtype=np.float32)
    k = (k / np.maximum(np.linalg.norm(k, axis=-1, keepdims=True), 1e-6)).reshape(b, t, nk * dk)
    v = rng.standard_normal((b, t, hkv * dv), dtype=np.float32)
    decay = beta = past = None
    if rule in ("gated", "gated_delta"):
        width = hkv if decay_kind == "head" else hkv * dk
        decay = -np.abs(rng.standard_normal((b, t, width), dtype=np.float32)) * np.float32(decay_scale)
    if rule in ("delta", "gated_delta"):
        beta = rng.random((b, t, hkv if beta_kind == "head" else 1), dtype=np.float32)
    if past_dtype is not None:
        past = (rng.standard_normal((b, hkv, dk, dv), dtype=np.float32) * 0.5).astype(past_dtype)
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    return dict(q=cast(q), k=cast(k), v=cast(v), past=past, decay=cast(decay), beta=cast(beta))


def check_all(contexts, case, *, hq, hkv, rule, scale=0.0, compare=strict, isas=None):
    expected = ref_la(case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"],
                      hq=hq, hkv=hkv, rule=rule, scale=scale)
    for label, ctx in contexts.items():
        if isas is not None and ctx.isa not in isas:
            continue
        actual = run_la(ctx, case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"],
                        hq=hq, hkv=hkv, rule=rule, scale=scale)
        for name, a, e in zip(("output", "present_state"), actual, expected):
            reason = compare(a, e)
            assert reason is None, f"isa {label} ({ctx.isa}): {name}: {reason}"
    return expected


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.itemsize == 4 else np.uint16)


# ---------------------------------------------------------------- LinearAttention: empty shapes


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bt", [(0, 3), (2, 0), (0, 0)])
@pytest.mark.parametrize("past_dtype", [None, F32, F16, BF16])
def test_la_empty_batch_or_time(contexts, rule, bt, past_dtype):
    """B = 0 / T = 0: empty output; with T = 0 present_state is past_state bit for bit
    (any S dtype, in place or not), or zeros without past."""
    rng = np.random.default_rng(RULES.index(rule) * 100 + bt[0] * 10 + bt[1])
    b, t = bt
    case = la_case(rng, b, t, 4, 2, 3, 5, rule, past_dtype=past_dtype)
    check_all(contexts, case, hq=4, hkv=2, rule=rule)
    if t == 0 and b > 0:
        for label, ctx in contexts.items():
            _, present = run_la(ctx, case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"],
                                hq=4, hkv=2, rule=rule)
            want = case["past"] if case["past"] is not None else np.zeros_like(present)
            assert np.array_equal(_bits(present), _bits(want)), f"isa {label}: T=0 state not passed through"
            if case["past"] is not None:
                state = case["past"].copy()
                linattn.linear_attention(case["q"], case["k"], case["v"], state, case["decay"], case["beta"],
                                         q_num_heads=4, kv_num_heads=2, update_rule=rule, out=(None, state),
                                         context=ctx)
                assert np.array_equal(_bits(state), _bits(case["past"])), f"isa {label}: T=0 in place changed state"


# ---------------------------------------------------------------- LinearAttention: head widths


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dk,dv", [(0, 4), (4, 0), (0, 0), (1, 4), (1, 1)])
@pytest.mark.parametrize("scale", [0.0, -0.5])
def test_la_degenerate_head_widths(contexts, rule, dk, dv, scale):
    """d_k = 0: the default scale is 1/sqrt(0) = inf and the readout inf * (empty sum) = NaN in
    the ONNX reference (the fast kernels used to return 0); an explicit scale gives zeros.
    d_v = 0: empty output and state. d_k = 1: decay of width H_kv == H_kv*d_k, per-head reading."""
    rng = np.random.default_rng(dk * 10 + dv)
    for decay_kind in ("head", "key") if rule in ("gated", "gated_delta") else ("head",):
        for past in (None, F32):
            case = la_case(rng, 2, 5, 6, 3, dk, dv, rule, decay_kind=decay_kind, past_dtype=past)
            expected = check_all(contexts, case, hq=6, hkv=3, rule=rule, scale=scale)
            if dk == 0 and dv > 0:
                assert np.isnan(expected[0]).all() == (scale == 0.0)


# ---------------------------------------------------------------- LinearAttention: decay


@pytest.mark.parametrize("rule", ["gated", "gated_delta"])
@pytest.mark.parametrize("decay_kind", ["head", "key"])
@pytest.mark.parametrize("gval", [0.0, -1e4, -np.inf, -88.0, -104.0, np.nan])
def test_la_extreme_decay(contexts, rule, decay_kind, gval):
    """log-decay 0 (no decay), very negative / -inf (state reset: exp -> 0, never NaN from a finite
    state), the float32 subnormal range of exp, and NaN (poisons that head from then on)."""
    rng = np.random.default_rng(7)
    for past in (None, F32):
        case = la_case(rng, 2, 9, 4, 2, 8, 24, rule, decay_kind=decay_kind, past_dtype=past)
        g = case["decay"]
        g[:, 3, 0] = gval
        g[1, 5:, :] = gval
        check_all(contexts, case, hq=4, hkv=2, rule=rule)


@pytest.mark.parametrize("rule", ["gated", "gated_delta"])
@pytest.mark.parametrize("decay_kind", ["head", "key"])
@pytest.mark.parametrize("gval", [80.0, 100.0, np.inf])
def test_la_growing_decay_overflow(contexts, rule, decay_kind, gval):
    """Positive log-decay overflows the fp32 state to inf: every ISA matches onnx exactly,
    NaN vs inf included (a unit with non-finite outputs is recomputed by the reference kernel)."""
    rng = np.random.default_rng(8)
    for past in (F32, F16, None):
        case = la_case(rng, 2, 9, 4, 2, 8, 24, rule, decay_kind=decay_kind, past_dtype=past)
        case["decay"][:, 3, 0] = gval
        case["decay"][1, 5:, :] = gval
        check_all(contexts, case, hq=4, hkv=2, rule=rule)


# ---------------------------------------------------------------- LinearAttention: NaN / inf inputs


def _poke(case, where, value):
    arr = case[where]
    idx = tuple(min(2, s - 1) for s in arr.shape[:-1]) + ((3 if arr.shape[-1] > 3 else 0),)
    arr[idx] = value


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("where", ["q", "k", "v", "past", "decay", "beta"])
def test_la_nan_propagates_like_reference(contexts, rule, where):
    """A NaN in any input must poison exactly the elements it poisons in the reference."""
    if (where == "decay" and rule not in ("gated", "gated_delta")) or (where == "beta" and rule not in ("delta", "gated_delta")):
        pytest.skip("input not used by this rule")
    rng = np.random.default_rng(9)
    for dtype in (F32, BF16):
        case = la_case(rng, 2, 7, 4, 2, 8, 20, rule, dtype=dtype, decay_kind="key", past_dtype=F32)
        _poke(case, where, np.nan)
        check_all(contexts, case, hq=4, hkv=2, rule=rule)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("where", ["q", "k", "v", "past", "decay", "beta"])
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_la_inf_inputs(contexts, rule, where, value):
    """An infinity in any input: every ISA matches onnx exactly, NaN vs inf included (e.g. an
    inf value entry makes a state column +-inf, and onnx's readout q.S of it is NaN, where the
    fused old-state-plus-rank-1 readout alone would give +-inf). T = 1 (decode) and T = 40
    (several token tiles), fp32 and fp16 activations, fp32 / fp16 / no past state."""
    if (where == "decay" and rule not in ("gated", "gated_delta")) or (where == "beta" and rule not in ("delta", "gated_delta")):
        pytest.skip("input not used by this rule")
    rng = np.random.default_rng(10)
    for t, dtype, past in ((7, F32, F32), (1, F32, F32), (40, F16, F32), (5, BF16, F16), (6, F32, None)):
        if where == "past" and past is None:
            continue
        case = la_case(rng, 2, t, 4, 2, 8, 20, rule, dtype=dtype, decay_kind="key", past_dtype=past)
        _poke(case, where, value)
        check_all(contexts, case, hq=4, hkv=2, rule=rule)


def _refine_limit(scale, dk):
    """|output| from which a fast kernel's unit is recomputed (src/api/linear_attention.c)."""
    s = abs(scale) if scale != 0.0 else 1.0 / np.sqrt(dk)
    fmax = float(np.finfo(np.float32).max)
    return np.float32(s * fmax * (1 - 2.0**-10)) if s < 1.0 else np.float32(fmax)


def check_in_place_short(out, state, expected, *, hq, hkv, dk, dv, scale=0.0, label=""):
    """What holds for an fp32 state updated in place by a call of fewer than 256 tokens (the
    entering state is not kept, docs/reliability.md): every (batch, kv head) whose outputs are all
    finite and below the recompute limit agrees with onnx exactly, output and state; the others
    keep the fast kernel's result. Returns the number of such flagged heads."""
    b, t = out.shape[:2]
    g = max(hq, hkv) // hkv  # output heads per kv head
    o = out.reshape(b, t, hkv, g * dv)
    eo = expected[0].reshape(b, t, hkv, g * dv)
    limit = _refine_limit(scale, dk)
    flagged = 0
    for bi in range(b):
        for h in range(hkv):
            mine = o[bi, :, h]
            if not (np.isfinite(mine).all() and (np.abs(mine) < limit).all()):
                flagged += 1
                continue
            for name, a, e in (("output", mine, eo[bi, :, h]), ("present_state", state[bi, h], expected[1][bi, h])):
                assert strict(a, e) is None, f"{label}: batch {bi} kv head {h}: {name}: {strict(a, e)}"
    return flagged


@pytest.mark.parametrize("where", ["q", "v"])
def test_la_inf_in_place_fp32_state(contexts, where):
    """inf inputs with an fp32 state updated in place by a short call: heads that the recompute
    check passes agree with onnx exactly (the reference kernels: every head)."""
    rng = np.random.default_rng(21)
    case = la_case(rng, 2, 5, 4, 2, 8, 20, "gated_delta", decay_kind="key", past_dtype=F32)
    _poke(case, where, np.inf)
    expected = ref_la(case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"], hq=4, hkv=2)
    for label, ctx in contexts.items():
        state = case["past"].copy()
        out, _ = linattn.linear_attention(case["q"], case["k"], case["v"], state, case["decay"], case["beta"],
                                          q_num_heads=4, kv_num_heads=2, out=(None, state), context=ctx)
        if ctx.isa == "reference":
            for name, a, e in zip(("output", "present_state"), (out, state), expected):
                assert strict(a, e) is None, f"isa {label}: {name}: {strict(a, e)}"
        else:
            check_in_place_short(out, state, expected, hq=4, hkv=2, dk=8, dv=20, label=f"isa {label}")


# ---------------------------------------------------------------- LinearAttention: beta, heads, scale


@pytest.mark.parametrize("rule", ["delta", "gated_delta"])
@pytest.mark.parametrize("beta_value", [0.0, 1.0, -0.5, 1.7])
@pytest.mark.parametrize("beta_kind", ["head", "shared"])
def test_la_beta_values_and_shapes(contexts, rule, beta_value, beta_kind):
    """beta 0 (no write), 1, negative, > 1; shape (B, T, 1) shared by H_kv = 3 heads."""
    rng = np.random.default_rng(11)
    case = la_case(rng, 2, 13, 6, 3, 16, 16, rule, beta_kind=beta_kind)
    case["beta"][...] = np.float32(beta_value)
    if beta_kind == "shared" and beta_value not in (0.0, 1.0):
        case["beta"] *= (rng.random(case["beta"].shape) + 0.5).astype(np.float32)
    check_all(contexts, case, hq=6, hkv=3, rule=rule)


@pytest.mark.parametrize("hq,hkv", [(1, 1), (12, 1), (16, 1), (32, 1), (32, 2), (10, 1), (9, 3), (24, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_la_large_query_groups(contexts, two_threads, hq, hkv, dtype):
    """MQA / GQA with group sizes beyond the kernels' register blocking (8) and odd groups; query
    head h reads kv head h // (H_q/H_kv) (repeat-interleave). Two threads give the same bits."""
    rng = np.random.default_rng(hq * 100 + hkv)
    case = la_case(rng, 2, 11, hq, hkv, 8, 40, "gated_delta", dtype=dtype, decay_kind="key")
    check_all(contexts, case, hq=hq, hkv=hkv, rule="gated_delta")
    for isa, ctx2 in two_threads.items():
        one = run_la(contexts[isa], case["q"], case["k"], case["v"], None, case["decay"], case["beta"], hq=hq, hkv=hkv)
        two = run_la(ctx2, case["q"], case["k"], case["v"], None, case["decay"], case["beta"], hq=hq, hkv=hkv)
        for a, b in zip(one, two):
            assert np.array_equal(_bits(a), _bits(b)), f"isa {isa}: 2 threads differ from 1"


@pytest.mark.parametrize("scale", [-1.0, -0.125, 1e-3, 3.0, -7.5, -0.0, float("nan"), float("inf"), -float("inf")])
def test_la_explicit_scale(contexts, scale):
    """Any non-zero scale is used verbatim (negative too); -0.0 == 0 means the default; NaN
    makes every output NaN; an infinite scale gives +-inf (NaN only where q.S is 0), as onnx
    multiplies the finite readout by it (folding it into q first would give inf - inf = NaN)."""
    rng = np.random.default_rng(12)
    case = la_case(rng, 2, 6, 4, 2, 16, 8, "gated_delta", beta_kind="shared")
    expected = check_all(contexts, case, hq=4, hkv=2, rule="gated_delta", scale=scale)
    if np.isnan(scale):
        assert np.isnan(expected[0]).all()


@pytest.mark.parametrize("chunk_size", [0, -1, 1, 3, 2**40])
def test_la_chunk_size_is_only_a_hint(contexts, chunk_size):
    rng = np.random.default_rng(13)
    case = la_case(rng, 1, 40, 2, 2, 8, 8, "gated_delta")
    expected = ref_la(case["q"], case["k"], case["v"], None, case["decay"], case["beta"], hq=2, hkv=2)
    for label, ctx in contexts.items():
        out, state = run_la(ctx, case["q"], case["k"], case["v"], None, case["decay"], case["beta"], hq=2, hkv=2,
                            chunk_size=chunk_size)
        assert strict(out, expected[0]) is None and strict(state, expected[1]) is None, f"isa {label}"


# ---------------------------------------------------------------- LinearAttention: rounding


def _linear_1x1(contexts, v_values, dtype):
    """linear rule, d_k = d_v = 1, q = k = 1, scale 1 (default for d_k = 1): output t is the
    running fp32 sum of v, rounded once to T."""
    t = len(v_values)
    q = np.ones((1, t, 1), dtype)
    k = np.ones((1, t, 1), dtype)
    v = np.asarray(v_values, np.float32).reshape(1, t, 1).astype(dtype)
    expected = ref_la(q, k, v, hq=1, hkv=1, rule="linear")
    for label, ctx in contexts.items():
        out, state = run_la(ctx, q, k, v, hq=1, hkv=1, rule="linear")
        assert np.array_equal(_bits(out), _bits(expected[0])), f"isa {label}: output {out.ravel()} vs {expected[0].ravel()}"
        assert np.array_equal(_bits(state), _bits(expected[1])), f"isa {label}: state {state.ravel()} vs {expected[1].ravel()}"
    return expected


def test_la_round_to_nearest_even_ties(contexts):
    """Exact fp32 sums that sit halfway between two bf16 / fp16 values round to even."""
    e = _linear_1x1(contexts, [1.0, 2**-8, 2**-7, 2**-9, -3 * 2**-9], BF16)
    assert e[0].astype(np.float32).ravel()[:3].tolist() == [1.0, 1.0, 1.015625]
    e = _linear_1x1(contexts, [1.0, 2**-11, 2**-10, 2**-12, -3 * 2**-12], F16)
    assert e[0].astype(np.float32).ravel()[:3].tolist() == [1.0, 1.0, 1 + 2**-9]


def test_la_low_precision_overflow_to_inf(contexts):
    """fp32 results beyond the T range become +-inf (numpy astype semantics), for output and
    state: f16(5503) = 5504, so the sums are 60000, 65504 (the f16 maximum), 65504, then 65520
    (halfway to 65536: rounds to even, i.e. overflows to inf); bf16 3e38 + 3e38 overflows fp32."""
    e = _linear_1x1(contexts, [60000.0, 5503.0, 0.0, 16.0, 1.0], F16)
    assert np.isinf(e[0].astype(np.float32)).any()
    e = _linear_1x1(contexts, [-60000.0, -8000.0, 4000.0], F16)
    assert e[0].astype(np.float32).ravel()[1] == -np.inf
    _linear_1x1(contexts, [3e38, 3e38, -3e38, -3e38, 0.0], BF16)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [F16, BF16])
def test_la_low_precision_overflow_realistic_heads(contexts, rule, dtype):
    """fp16 / bf16 outputs and state overflowing to +-inf with GQA heads and d = 64: values that
    round past the T range become inf exactly where onnx's fp32 result does (bf16: the fp32
    state itself overflows), NaN and inf never swapped."""
    rng = np.random.default_rng(22)
    big = 2.0e4 if dtype == F16 else 1.0e19
    case = la_case(rng, 2, 6, 4, 2, 64, 48, rule, dtype=F32, decay_kind="key", past_dtype=F32)
    case["v"] = np.clip(case["v"] * np.float32(big), -6e4 if dtype == F16 else -3e38, 6e4 if dtype == F16 else 3e38)
    case["q"] = case["q"] * np.float32(32.0)
    if dtype == BF16:
        case["k"] = case["k"] * np.float32(1e19)
        case["past"] = case["past"] * np.float32(1e38)
    case = {n: (None if a is None else a if n == "past" else a.astype(dtype)) for n, a in case.items()}
    case["past"] = case["past"].astype(dtype)
    expected = check_all(contexts, case, hq=4, hkv=2, rule=rule)
    assert not np.isfinite(expected[0].astype(np.float32)).all(), "the case should overflow"


@pytest.mark.parametrize("rule", ["linear", "delta"])
def test_la_fp16_output_at_the_overflow_boundary(contexts, rule):
    """fp16 outputs whose fp32 value sits within a few fp32 ulps of 65520 (where rounding to
    fp16 switches from 65504 to inf): inf exactly where onnx.reference has it. The scale
    attribute is chosen per trial to land the largest output there. The fused kernels' fp32
    result differs from onnx's by an ulp or so, so they alone picked the other side in ~8% of
    such trials; outputs at the largest finite value are recomputed by the reference kernels,
    which follow onnx's operation order (not for gated rules: numpy's float32 exp is not
    glibc's, so exp(decay) may differ by an ulp there)."""
    rng = np.random.default_rng(23)
    for trial in range(60):
        case = la_case(rng, 1, 3, 2, 1, 16, 8, rule, past_dtype=F32)
        case = {n: (None if a is None else a if n == "past" else a.astype(F16)) for n, a in case.items()}
        f32 = {n: (None if a is None else a.astype(np.float32)) for n, a in case.items()}
        o32, _ = ref_la(f32["q"], f32["k"], f32["v"], f32["past"], f32["decay"], f32["beta"], hq=2, hkv=1, rule=rule,
                        scale=1.0)
        big = float(np.abs(o32).max())
        scale = float(np.float32(65520.0 / big) * np.float32(1 + int(rng.integers(-3, 4)) * 2.0**-24))
        expected = ref_la(case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"], hq=2, hkv=1,
                          rule=rule, scale=scale)
        for label, ctx in contexts.items():
            out, state = run_la(ctx, case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"], hq=2,
                                hkv=1, rule=rule, scale=scale)
            assert strict(out, expected[0]) is None, f"trial {trial} isa {label}: {strict(out, expected[0])}"
            assert strict(state, expected[1]) is None, f"trial {trial} isa {label}: state"


# ---------------------------------------------------------------- LinearAttention: state dtypes


@pytest.mark.parametrize("t_dtype", DTYPES)
@pytest.mark.parametrize("s_dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 5, 40])
def test_la_mixed_state_dtype_and_in_place(contexts, t_dtype, s_dtype, tokens):
    """past_state of any S with any T: present_state has S; updated in place (present is past)
    gives the same values; without past, state_dtype=S equals an explicit zero past of S."""
    rng = np.random.default_rng(14)
    case = la_case(rng, 2, tokens, 4, 2, 16, 24, "gated_delta", dtype=t_dtype, past_dtype=s_dtype)
    expected = check_all(contexts, case, hq=4, hkv=2, rule="gated_delta")
    zeros = np.zeros_like(case["past"])
    expected0 = ref_la(case["q"], case["k"], case["v"], zeros, case["decay"], case["beta"], hq=4, hkv=2)
    for label, ctx in contexts.items():
        state = case["past"].copy()
        out, present = linattn.linear_attention(case["q"], case["k"], case["v"], state, case["decay"], case["beta"],
                                                q_num_heads=4, kv_num_heads=2, out=(None, state), context=ctx)
        assert present is state
        assert strict(state, expected[1]) is None and strict(out, expected[0]) is None, f"isa {label}: in place"
        out0, st0 = run_la(ctx, case["q"], case["k"], case["v"], None, case["decay"], case["beta"], hq=4, hkv=2,
                           state_dtype=s_dtype)
        assert st0.dtype == s_dtype
        assert strict(out0, expected0[0]) is None and strict(st0, expected0[1]) is None, f"isa {label}: state_dtype"
        out_ns, none = linattn.linear_attention(case["q"], case["k"], case["v"], case["past"], case["decay"],
                                                case["beta"], q_num_heads=4, kv_num_heads=2, return_state=False,
                                                context=ctx)
        assert none is None and strict(out_ns, expected[0]) is None, f"isa {label}: present_state NULL"


# ---------------------------------------------------------------- LinearAttention: strided views


@pytest.mark.parametrize("dtype", DTYPES)
def test_la_strided_views(contexts, dtype):
    """q, k, v, decay, beta as slices of one fused projection (B, T, W); time-major arrays
    transposed to (B, T, ...) views; output written into a strided slice of a larger buffer
    without touching the gaps."""
    rng = np.random.default_rng(15)
    b, t, hq, hkv, dk, dv = 3, 10, 4, 2, 8, 12
    o1, o2, o3 = hq * dk, hq * dk + hkv * dk, hq * dk + hkv * dk + hkv * dv
    fused = (rng.standard_normal((b, t, o3 + 2 * hkv)) * 0.3).astype(dtype)
    case = dict(q=fused[:, :, :o1], k=fused[:, :, o1:o2], v=fused[:, :, o2:o3], past=None,
                decay=fused[:, :, o3:o3 + hkv], beta=fused[:, :, o3 + hkv:])
    assert not case["q"].flags.c_contiguous
    check_all(contexts, case, hq=hq, hkv=hkv, rule="gated_delta")

    tm = lambda *shape: rng.standard_normal((t, b) + shape).astype(dtype).transpose(1, 0, 2)  # noqa: E731
    case = dict(q=tm(hq * dk), k=(tm(hkv * dk) * np.asarray(0.3, dtype)).astype(dtype), v=tm(hkv * dv), past=None,
                decay=(-np.abs(tm(hkv * dk)) * np.asarray(0.1, dtype)).astype(dtype),
                beta=rng.random((t, b, 1)).astype(dtype).transpose(1, 0, 2))
    expected = check_all(contexts, case, hq=hq, hkv=hkv, rule="gated_delta")
    for label, ctx in contexts.items():
        big = np.full((b, t, hq * dv + 5), np.nan, dtype)
        view = big[:, :, 2:2 + hq * dv]
        res, _ = linattn.linear_attention(case["q"], case["k"], case["v"], None, case["decay"], case["beta"],
                                          q_num_heads=hq, kv_num_heads=hkv, out=(view, None), context=ctx)
        assert res is view and strict(view, expected[0]) is None, f"isa {label}"
        gaps = np.concatenate([big[:, :, :2], big[:, :, 2 + hq * dv:]], axis=2).astype(np.float32)
        assert np.isnan(gaps).all(), f"isa {label}: wrote outside the output view"


# ---------------------------------------------------------------- ORT com.microsoft LinearAttention


def ort_linear_attention(q, k, v, past, decay, beta, hq, hkv, rule, scale=0.0):
    """float64 model of com.microsoft.LinearAttention with state_window 0 (spec.md 4.1): d_k from
    the query; n_k = key width / d_k key heads, kv head h uses key head h // (H_kv/n_k); output
    heads max(H_q, H_kv); inverse GQA: output head h = kv head h reads query head h // (H_kv/H_q)."""
    b, t, _ = q.shape
    dk = q.shape[2] // hq
    dv = v.shape[2] // hkv
    nk = k.shape[2] // dk
    q4 = q.astype(np.float64).reshape(b, t, hq, dk)
    k4 = k.astype(np.float64).reshape(b, t, nk, dk)
    v4 = v.astype(np.float64).reshape(b, t, hkv, dv)
    state = np.zeros((b, hkv, dk, dv)) if past is None else past.astype(np.float64).copy()
    ho = max(hq, hkv)
    out = np.zeros((b, t, ho, dv))
    sc = 1.0 / np.sqrt(dk) if scale == 0.0 else scale
    for bi in range(b):
        for h in range(hkv):
            s = state[bi, h]
            for ti in range(t):
                if decay is not None:
                    g = decay[bi, ti].astype(np.float64)
                    s = s * (np.exp(g[h]) if g.shape[0] == hkv else np.exp(g[h * dk:(h + 1) * dk])[:, None])
                kt, vt = k4[bi, ti, h // (hkv // nk)], v4[bi, ti, h]
                if beta is not None:
                    bt = beta[bi, ti].astype(np.float64)
                    vt = (bt[h] if bt.shape[0] == hkv else bt[0]) * (vt - s.T @ kt)
                s = s + np.outer(kt, vt)
                if hq >= hkv:
                    r = hq // hkv
                    for j in range(r):
                        out[bi, ti, h * r + j] = sc * (q4[bi, ti, h * r + j] @ s)
                else:
                    out[bi, ti, h] = sc * (q4[bi, ti, h // (hkv // hq)] @ s)
            state[bi, h] = s
    return out.reshape(b, t, ho * dv), state


def _close64(actual, expected64):
    e = expected64.astype(actual.dtype)
    tol = _tol(e, rel_max=3e-5, rel=2e-4, ulps=2.0) + (
        0 if actual.dtype == F32 else 2 * testing.ulp(np.abs(expected64), actual.dtype))
    return testing.compare(actual.astype(np.float64), expected64, tol)


@pytest.mark.parametrize("hq,hkv,nk", [(1, 2, 2), (4, 8, 8), (16, 32, 16), (2, 6, 3), (2, 6, 1), (4, 4, 2),
                                       (4, 4, 1), (8, 4, 2), (12, 4, 1), (1, 4, 1)])
@pytest.mark.parametrize("rule", RULES)
def test_ort_contrib_inverse_gqa_and_key_heads(contexts, hq, hkv, nk, rule):
    """LINATTN_LA_ORT_CONTRIB: inverse GQA, separate key heads, both at once; and the standard op
    rejects what only the contrib op allows."""
    rng = np.random.default_rng(hq * 1000 + hkv * 10 + nk)
    for dtype in (F32, BF16):
        for decay_kind in ("head", "key"):
            case = la_case(rng, 2, 5, hq, hkv, 8, 12, rule, dtype=dtype, decay_kind=decay_kind,
                           beta_kind="head" if decay_kind == "key" else "shared", past_dtype=F32, key_heads=nk)
            eo, es = ort_linear_attention(case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"],
                                          hq, hkv, rule)
            for label, ctx in contexts.items():
                out, state = run_la(ctx, case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"],
                                    hq=hq, hkv=hkv, rule=rule, ort_contrib=True)
                assert _close64(out, eo) is None, f"isa {label}: output: {_close64(out, eo)}"
                assert _close64(state, es) is None, f"isa {label}: state: {_close64(state, es)}"
    standard = hq % hkv == 0 and nk == hkv
    if not standard:
        with pytest.raises(linattn.LinattnError):
            linattn.linear_attention(case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"],
                                     q_num_heads=hq, kv_num_heads=hkv, update_rule=rule)


# ---------------------------------------------------------------- CausalConvWithState


def conv_model(x, w, bias=None, past=None, dilation=1, channels_last=False):
    """float64 conv of ORT semantics (spec.md 4.2): (exact pre-activation value, present_state)."""
    if channels_last:
        x = x.transpose(0, 2, 1)
        past = None if past is None else past.transpose(0, 2, 1)
    b, c, length = x.shape
    k = w.shape[2]
    s = (k - 1) * dilation
    if past is None:
        past = np.zeros((b, c, s), x.dtype)
    padded = np.concatenate([past, x], axis=2)
    pf = padded.astype(np.float64)
    y = np.zeros((b, c, length))
    for j in range(k):
        y += w.astype(np.float64)[None, :, 0, j, None] * pf[:, :, j * dilation:j * dilation + length]
    if bias is not None:
        if x.dtype == F16:  # as onnx.reference: the fp16 conv sum is rounded to fp16, then the bias added
            y = y.astype(np.float32).astype(F16).astype(np.float64)
        y += bias.astype(np.float64)[None, :, None]
    present = padded[:, :, padded.shape[2] - s:]
    if channels_last:
        y, present = y.transpose(0, 2, 1), present.transpose(0, 2, 1)
    return y, np.ascontiguousarray(present)


def conv_finish(y, dtype, activation):
    """round to T, then SiLU in fp32 on the rounded value, rounded to T (the ONNX order)."""
    yt = y.astype(np.float32).astype(dtype)
    if activation in ("silu", "swish"):
        f = yt.astype(np.float32)
        yt = (f * (np.float32(1) / (np.float32(1) + np.exp(-f)))).astype(dtype)
    return yt


def run_conv(ctx, x, w, bias=None, past=None, **kw):
    return linattn.causal_conv_with_state(x, w, bias, past, context=ctx, **kw)


def check_conv(contexts, x, w, bias=None, past=None, activation="none", dilation=1, channels_last=False,
               use_onnx=True):
    y, present = conv_model(x, w, bias, past, dilation, channels_last)
    expected = conv_finish(y, x.dtype, activation)
    if use_onnx:
        ref_out, ref_present = onnx_models.reference_causal_conv_with_state(x, w, bias, past, activation=activation)
        assert np.array_equal(_bits(ref_present), _bits(present)), "conv model disagrees with onnx.reference"
        expected = ref_out
    for label, ctx in contexts.items():
        out = np.full(x.shape, np.nan, x.dtype)
        res, pres = run_conv(ctx, x, w, bias, past, activation=activation, dilation=dilation,
                             channels_last=channels_last, out=(out, None))
        assert res is out
        assert pres.shape == present.shape and np.array_equal(_bits(pres), _bits(present)), f"isa {label}: present_state"
        reason = strict(out, expected, rel_max=1e-6, rel=1e-5)
        assert reason is None, f"isa {label}: output: {reason}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bclk", [(2, 3, 0, 4), (0, 3, 5, 4), (2, 3, 5, 1), (2, 3, 1, 8), (2, 5, 3, 33),
                                  (1, 7, 2, 64), (2, 3, 0, 1)])
def test_conv_shapes(contexts, dtype, bclk):
    """L = 0 (present = last k-1 of past, or zeros), B = 0, k = 1 (empty state), k = 8 with
    L = 1, k far longer than L with and without past; bias only where onnx rounds it like us
    (not fp16, see test_conv_low_precision_bias)."""
    b, c, length, k = bclk
    rng = np.random.default_rng(b * 1000 + length * 100 + k)
    for past in (False, True):
        for act in ("none", "silu"):
            x = rng.standard_normal((b, c, length)).astype(dtype)
            w = rng.standard_normal((c, 1, k)).astype(dtype)
            bias = rng.standard_normal(c).astype(dtype) if dtype != F16 else None
            p = rng.standard_normal((b, c, k - 1)).astype(dtype) if past else None
            check_conv(contexts, x, w, bias, p, act)


def test_conv_zero_channels(contexts):
    """C = 0: onnx.reference itself fails (Conv with group = 0: modulo by zero); linattn returns
    empty tensors."""
    for label, ctx in contexts.items():
        out, present = run_conv(ctx, np.zeros((2, 0, 5), np.float32), np.zeros((0, 1, 4), np.float32),
                                np.zeros(0, np.float32), np.zeros((2, 0, 3), np.float32))
        assert out.shape == (2, 0, 5) and present.shape == (2, 0, 3), label


@pytest.mark.parametrize("dtype", [F16, BF16])
def test_conv_low_precision_bias(contexts, dtype):
    """Bias with fp16/bf16, as onnx.reference: bf16 rounds bias + dot (fp32) once to T (ml_dtypes
    matmul returns float32); fp16 rounds the dot product to fp16 and adds the bias in fp16 (numpy's
    float16 matmul returns float16), and linattn does the same. Within ~2 fp16 ulps of onnx, whose
    float32 sum order differs."""
    rng = np.random.default_rng(16)
    for k, length, act in ((1, 5, "none"), (4, 8, "silu"), (33, 3, "silu"), (8, 1, "none")):
        x = rng.standard_normal((2, 5, length)).astype(dtype)
        w = rng.standard_normal((5, 1, k)).astype(dtype)
        bias = rng.standard_normal(5).astype(dtype)
        past = rng.standard_normal((2, 5, k - 1)).astype(dtype)
        check_conv(contexts, x, w, bias, past, act, use_onnx=False)
        ref_out, _ = onnx_models.reference_causal_conv_with_state(x, w, bias, past, activation=act)
        y, _ = conv_model(x, w, bias, past)
        dot, _ = conv_model(x, w, None, past)  # fp16: onnx rounds this to T before adding the bias
        mag = np.maximum(np.maximum(np.abs(ref_out.astype(np.float64)), np.abs(y)), np.abs(dot))
        ulp = testing.ulp(mag, dtype)
        for label, ctx in contexts.items():
            out, _ = run_conv(ctx, x, w, bias, past, activation=act)
            reason = testing.compare(out, ref_out, 1e-5 * mag + (2 if dtype == F16 else 1) * ulp)
            assert reason is None, f"isa {label}: vs onnx.reference: {reason}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dilation", [1, 2, 5])
def test_conv_ort_dilation_channels_last(contexts, dtype, channels_last, dilation):
    """ORT extensions: dilation with L shorter than the state (k-1)*dilation, channels_last,
    with and without past (float64 model of spec.md 4.2)."""
    rng = np.random.default_rng(17 + dilation)
    for b, c, length, k in ((2, 3, 1, 4), (2, 17, 2, 4), (1, 33, 7, 3), (2, 5, 0, 3), (1, 3, 4, 9)):
        for with_past in (False, True):
            x = rng.standard_normal((b, c, length)).astype(dtype)
            w = rng.standard_normal((c, 1, k)).astype(dtype)
            bias = rng.standard_normal(c).astype(dtype)
            s = (k - 1) * dilation
            past = rng.standard_normal((b, c, s)).astype(dtype) if with_past else None
            if channels_last:
                x = np.ascontiguousarray(x.transpose(0, 2, 1))
                past = None if past is None else np.ascontiguousarray(past.transpose(0, 2, 1))
            check_conv(contexts, x, w, bias, past, "silu", dilation, channels_last, use_onnx=False)


def test_conv_channels_last_matches_onnx_transposed(contexts):
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((5, 1, 4)).astype(np.float32)
    past = rng.standard_normal((2, 3, 5)).astype(np.float32)
    e_out, e_present = onnx_models.reference_causal_conv_with_state(
        np.ascontiguousarray(x.transpose(0, 2, 1)), w, None, np.ascontiguousarray(past.transpose(0, 2, 1)),
        activation="silu")
    for label, ctx in contexts.items():
        out, present = run_conv(ctx, x, w, None, past, activation="silu", channels_last=True)
        assert strict(np.ascontiguousarray(out.transpose(0, 2, 1)), e_out, rel_max=1e-6, rel=1e-5) is None, label
        assert np.array_equal(present.transpose(0, 2, 1), e_present), label


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_silu_special_values(contexts, dtype):
    """SiLU of +inf is inf, of -inf is NaN (-inf * 0, as in the reference), NaN stays NaN; large
    |x| saturate without NaN; conv sums that overflow T."""
    vals = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 88, 89, -88, -89, -100, -1e4, 1e4, 65504, -65504,
                     1e-40, -1e-40, 3e38, -3e38, 20, -20], np.float32)
    c = len(vals)
    x = np.zeros((1, c, 3), dtype)
    x[0, :, 1] = vals.astype(dtype)
    w = np.ones((c, 1, 1), dtype)
    check_conv(contexts, x, w, None, None, "silu")
    check_conv(contexts, x, w, None, None, "none")
    big = np.asarray(60000.0 if dtype == F16 else 3e38, np.float32).astype(dtype)
    x2 = np.full((1, 2, 4), big, dtype)
    check_conv(contexts, x2, np.ones((2, 1, 3), dtype), None, None, "silu")
    check_conv(contexts, (-x2.astype(np.float32)).astype(dtype), np.ones((2, 1, 3), dtype), None, None, "silu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_in_place_null_state_and_strided(contexts, dtype, channels_last):
    """present_state is past_state (in place), present_state not wanted (NULL), and input/output
    as strided views into larger buffers whose gaps stay untouched."""
    rng = np.random.default_rng(19)
    for b, c, length, k, dil in ((2, 37, 1, 4, 1), (2, 37, 2, 4, 3), (1, 70, 9, 4, 1), (2, 5, 0, 4, 2), (1, 300, 3, 5, 1)):
        x = rng.standard_normal((b, c, length)).astype(dtype)
        w = rng.standard_normal((c, 1, k)).astype(dtype)
        bias = rng.standard_normal(c).astype(dtype)
        past = rng.standard_normal((b, c, (k - 1) * dil)).astype(dtype)
        if channels_last:
            x, past = (np.ascontiguousarray(a.transpose(0, 2, 1)) for a in (x, past))
        y, present = conv_model(x, w, bias, past, dil, channels_last)
        expected = conv_finish(y, dtype, "silu")
        kw = dict(activation="silu", dilation=dil, channels_last=channels_last)
        for label, ctx in contexts.items():
            state = past.copy()
            out, res = run_conv(ctx, x, w, bias, state, out=(None, state), **kw)
            assert res is state and np.array_equal(_bits(state), _bits(present)), f"isa {label}: in place"
            assert strict(out, expected, rel_max=1e-6, rel=1e-5) is None, f"isa {label}: in place output"
            out, none = run_conv(ctx, x, w, bias, past, return_state=False, **kw)
            assert none is None and strict(out, expected, rel_max=1e-6, rel=1e-5) is None, f"isa {label}: NULL state"
            inner = (slice(None), slice(1, x.shape[1] + 1), slice(2, x.shape[2] + 2))
            big = np.full((x.shape[0], x.shape[1] + 3, x.shape[2] + 5), np.nan, dtype)
            big[inner] = x
            obig = np.full(big.shape, np.nan, dtype)
            out, pres = run_conv(ctx, big[inner], w, bias, past, out=(obig[inner], None), **kw)
            assert strict(obig[inner], expected, rel_max=1e-6, rel=1e-5) is None, f"isa {label}: strided"
            assert np.array_equal(_bits(pres), _bits(present)), f"isa {label}: strided present"
            mask = np.ones(big.shape, bool)
            mask[inner] = False
            assert np.isnan(obig[mask].astype(np.float32)).all(), f"isa {label}: wrote outside the output view"


# ---------------------------------------------------------------- LinearAttention: overflow, in place, subnormals


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("mode", ["separate", "in_place", "in_place_short"])
@pytest.mark.parametrize("scale", [0.0, 1e-3])
def test_la_overflow_hidden_by_scale(contexts, rule, mode, scale):
    """q^T S overflows fp32 but scale * q^T S would not: onnx.reference computes the product first
    (+inf); the fast kernels fold the scale into q, so they must notice and agree (d = 16, state
    4.25e37, q = 1, k = v = 0, log-decay 0, beta 0.5). In place: T = 256 agrees exactly; a short
    call (T = 3) keeps the weaker documented promise."""
    in_place = mode != "separate"
    b, t, h, d = 1, 256 if mode == "in_place" else 3, 2, 16
    q = np.ones((b, t, h * d), F32)
    q[:, 1, :d] = -1.0  # -inf for head 0 at token 1
    k = np.zeros((b, t, h * d), F32)
    v = np.zeros((b, t, h * d), F32)
    past = np.full((b, h, d, d), 4.25e37, F32)
    past[:, 1] = 1.0  # head 1 stays finite
    decay = np.zeros((b, t, h), F32) if rule in ("gated", "gated_delta") else None
    beta = np.full((b, t, h), 0.5, F32) if rule in ("delta", "gated_delta") else None
    expected = ref_la(q, k, v, past, decay, beta, hq=h, hkv=h, rule=rule, scale=scale)
    assert np.isinf(expected[0][:, :, :d]).all() and np.isfinite(expected[0][:, :, d:]).all()
    for label, ctx in contexts.items():
        state = past.copy()
        out, present = linattn.linear_attention(
            q, k, v, state, decay, beta, q_num_heads=h, kv_num_heads=h, update_rule=rule, scale=scale,
            out=(None, state) if in_place else None, context=ctx)
        if mode == "in_place_short" and ctx.isa != "reference":
            flagged = check_in_place_short(out, state, expected, hq=h, hkv=h, dk=d, dv=d, scale=scale,
                                           label=f"isa {label}")
            assert flagged == 1, f"isa {label}: {flagged} heads flagged, expected head 0 only"
            continue
        for name, a, e in zip(("output", "present_state"), (out, present), expected):
            assert strict(a, e) is None, f"isa {label}: {name}: {strict(a, e)}"


def _overflowing_keys_case(rule, t, seed=15):
    rng = np.random.default_rng(seed)
    case = la_case(rng, 1, t, 2, 2, 16, 16, rule, past_dtype=F32)
    case["k"] *= np.float32(100.0)
    case["beta"][:] = 0.5
    if rule == "gated_delta":
        case["decay"][:] = np.float32(-0.01)
    return case


@pytest.mark.parametrize("rule", ["delta", "gated_delta"])
@pytest.mark.parametrize("t", [1, 64])
def test_la_overflowing_keys_in_place_short_calls(contexts, rule, t):
    """Keys of norm 100 overflow a delta-rule state (2 heads of 16, beta 0.5) updated in place by a
    call shorter than 256 tokens (decode, T = 64): the documented weaker promise holds, and the
    case does reach it (a head is flagged)."""
    case = _overflowing_keys_case(rule, t)
    if t == 1:
        case["past"] = (case["past"] * np.float32(1e36)).astype(F32)  # overflows at the first token
    args = (case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"])
    expected = ref_la(*args, hq=2, hkv=2, rule=rule)
    assert not np.isfinite(expected[0]).all()
    for label, ctx in contexts.items():
        state = case["past"].copy()
        out, _ = linattn.linear_attention(*args[:3], state, *args[4:], q_num_heads=2, kv_num_heads=2,
                                          update_rule=rule, out=(None, state), context=ctx)
        if ctx.isa == "reference":
            assert strict(out, expected[0]) is None and strict(state, expected[1]) is None
        else:
            flagged = check_in_place_short(out, state, expected, hq=2, hkv=2, dk=16, dv=16, label=f"isa {label}")
            assert flagged > 0, f"isa {label}: the case no longer overflows"


@pytest.mark.parametrize("rule", ["delta", "gated_delta"])
@pytest.mark.parametrize("in_place", [False, True])
def test_la_overflowing_keys_in_place_agree(contexts, two_threads, rule, in_place):
    """Keys of norm 100 overflow a delta-rule state (T = 64 separate / 256 in place, 2 heads of 16,
    beta 0.5): NaN and inf land exactly where onnx.reference puts them, also with the fp32 state
    updated in place by a call of at least 256 tokens (its entering state is kept for the
    recompute)."""
    h = 2
    case = _overflowing_keys_case(rule, 256 if in_place else 64)
    expected = ref_la(case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"], hq=h, hkv=h,
                      rule=rule)
    assert not np.isfinite(expected[0]).all() and np.isfinite(expected[0]).any()
    for label, ctx in [*contexts.items(), *((f"{i} x2", c) for i, c in two_threads.items())]:
        state = case["past"].copy()
        out, present = linattn.linear_attention(
            case["q"], case["k"], case["v"], state, case["decay"], case["beta"], q_num_heads=h, kv_num_heads=h,
            update_rule=rule, out=(None, state) if in_place else None, context=ctx)
        for name, a, e in zip(("output", "present_state"), (out, present), expected):
            assert strict(a, e) is None, f"isa {label}: {name}: {strict(a, e)}"


_TINY = float(np.finfo(np.float32).tiny)  # 2^-126, the smallest normal fp32


def _ftz_bound(case, expected, t, dk):
    """docs/reliability.md: flushing values below 2^-126 changes a result by at most
    2^-126 * T * d_k * (1 + Q) * (1 + K) * (1 + M); Q, K the largest |q|, |k|, M the largest |v| or
    state element of the call (entering, or the reference's final state)."""
    mag = lambda a: 0.0 if a is None else float(np.abs(a.astype(np.float64)).max())  # noqa: E731
    q, k = mag(case["q"]), mag(case["k"])
    m = max(mag(case["v"]), mag(case["past"]), mag(expected[1]))
    return _TINY * t * dk * (1 + q) * (1 + k) * (1 + m)


@pytest.mark.parametrize("where", ["q", "k", "v", "past", "decay_head", "decay_key"])
def test_la_flush_to_zero_bound(contexts, where):
    """Inside a fast-kernel call every fp32 value below 2^-126 counts as 0 (FTZ/DAZ): subnormal
    inputs, and log-decays below -87.34 (exp(g) subnormal). Results stay within the documented
    bound of onnx.reference (which keeps subnormals), and the cases show that the bound is not an
    absolute ~1e-35: subnormal q times a state of 1e30 is about 1e-9, a log-decay of -95 on a state of
    1e30 leaves 5.5e-12."""
    rng = np.random.default_rng(31)
    rule = "linear" if where in ("k", "v") else "gated_delta"
    b, t, h, d = 1, 1 if where == "v" else 3, 2, 16
    case = la_case(rng, b, t, h, h, d, d, rule, decay_kind="key" if where == "decay_key" else "head",
                   past_dtype=F32)
    big = np.float32(1e30)

    def subnormal(shape):
        x = (rng.uniform(0.1, 1.0, shape) * 2.0**-130).astype(F32)
        assert (np.abs(x) < _TINY).all() and (x != 0).all()
        return x

    if where == "q":
        case["q"], case["past"] = subnormal(case["q"].shape), case["past"] * big
    elif where == "k":
        case["k"], case["v"] = subnormal(case["k"].shape), case["v"] * big
    elif where == "v":
        case["v"], case["k"], case["past"] = subnormal(case["v"].shape), case["k"] * np.float32(1e15), None
    elif where == "past":
        case["past"], case["q"] = subnormal(case["past"].shape), case["q"] * big
    else:
        case["past"] = case["past"] * big
        case["decay"][:, 0] = -95.0  # the entering state decays by exp(-95) = 5.5e-42 first
    args = (case["q"], case["k"], case["v"], case["past"], case["decay"], case["beta"])
    expected = ref_la(*args, hq=h, hkv=h, rule=rule)
    bound = _ftz_bound(case, expected, t, d)
    for label, ctx in contexts.items():
        actual = run_la(ctx, *args, hq=h, hkv=h, rule=rule)
        for name, a, e in zip(("output", "present_state"), actual, expected):
            err = np.abs(a.astype(np.float64) - e.astype(np.float64))
            assert np.isfinite(err).all() and (err <= _tol(e) + bound).all(), (
                f"isa {label}: {name}: error {err.max():.3g} above the bound {bound:.3g}")
    if where in ("q", "past"):
        assert np.abs(expected[0]).max() > 1e-12, "the reference's outputs are far above the subnormal range"
    if where.startswith("decay"):
        assert np.abs(expected[1]).max() > 1e-14, "the reference keeps the decayed state (exp(-95) * 1e30)"
