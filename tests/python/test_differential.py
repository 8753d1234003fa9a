"""Differential tests: linattn against onnx.reference.ReferenceEvaluator on single-node opset-27
models, over random shapes, rules, decay/beta kinds, optional inputs and dtypes (hypothesis).

Every example runs the library with the default kernel family ("auto": the fast path of this
CPU), with isa="reference" and with every other kernel family this CPU runs, into NaN-poisoned
output buffers (so an unwritten element fails), and also checks that 2 threads give the same
bits as 1. On failure hypothesis prints the shrunk
case (a dataclass with every drawn parameter and the data seed).

Tolerances (the library and onnx.reference both compute in float32; they differ in summation
order and fused multiply-adds, and then possibly by one rounding to a float16/bfloat16 output):
  LinearAttention: |a - e| <= 2e-5 * max|e| (per output tensor) + 1e-4 * |e| + ulp_T(e)
                   (the ulp term only for float16/bfloat16 tensors);
  CausalConvWithState output: 1e-5 * (sum_j |w_j x_j| + |bias|) + 2 ulp_T(max(|e|, |dot|, |pre|))
                   where dot/pre are the exact (float64) conv sum without/with bias: onnx.reference
                   rounds the float16 dot product to T before adding the bias (a second rounding);
  present_state of the conv: exact (it is a copy of inputs).
Both bounds add 1e-36 absolute: float32 subnormals may be flushed to zero by the fast kernels.
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import linattn
from linattn import onnx_models, testing

# Kernels may run with float32 subnormals flushed to zero (FTZ/DAZ, see docs/algorithms.md), which
# changes results only below FLT_MIN ~ 1.2e-38: allowed as an absolute slack far below any real bug.
FTZ_ATOL = 1e-36


def examples(n: int) -> int:
    """Example budget: n under the default profile (100 examples), scaled with the loaded profile."""
    return max(3, n * settings.default.max_examples // 100)


DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}

# Sizes at SIMD-width, block and chunk boundaries are drawn often, any size in range sometimes.
_EDGE_DIMS = [1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 80, 95, 96]
head_dims = st.one_of(st.sampled_from(_EDGE_DIMS), st.integers(1, 96))
token_counts = st.one_of(st.sampled_from([0, 1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 80]), st.integers(0, 80))


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.itemsize == 4 else np.uint16)


def _check_thread_bits(name, one, two):
    assert np.array_equal(_bits(one), _bits(two)), f"{name}: 2 threads differ from 1 thread in bits"


# ---------------------------------------------------------------- LinearAttention


@dataclasses.dataclass(frozen=True)
class LACase:
    update_rule: str
    explicit_rule: bool  # write the update_rule attribute even when it is the default
    batch: int
    tokens: int
    kv_heads: int
    group: int  # q_num_heads / kv_num_heads
    d_k: int
    d_v: int
    decay_kind: str | None  # "head" (B,T,H_kv) | "key" (B,T,H_kv*d_k) | None
    decay_scale: float  # log-decay = -|N(0,1)| * scale (or N(0,1) * scale when decay_signed)
    decay_signed: bool
    beta_kind: str | None  # "head" (B,T,H_kv) | "shared" (B,T,1) | None
    beta_values: str  # "uniform" | "zero" | "one"
    key_norm: float | None  # keys L2-normalised per head to this norm; None = raw N(0,1)
    past: bool
    t_dtype: str
    s_dtype: str
    scale: float
    chunk_size: int | None  # tuning hint: must not change the result (None = attribute absent)
    seed: int

    @property
    def q_heads(self) -> int:
        return self.kv_heads * self.group


@st.composite
def la_cases(draw) -> LACase:
    rule = draw(st.sampled_from(linattn.UPDATE_RULES))
    gated = rule in ("gated", "gated_delta")
    delta = rule in ("delta", "gated_delta")
    past = draw(st.booleans())
    t_dtype = draw(st.sampled_from(list(DTYPES)))
    decay_scale = draw(st.sampled_from([0.0, 0.05, 0.5, 5.0, 20.0])) if gated else 0.0
    return LACase(
        update_rule=rule,
        explicit_rule=draw(st.booleans()) if rule == "gated_delta" else True,
        batch=draw(st.integers(1, 3)),
        tokens=draw(token_counts),
        kv_heads=draw(st.integers(1, 4)),
        group=draw(st.integers(1, 4)),
        d_k=draw(head_dims),
        d_v=draw(head_dims),
        decay_kind=draw(st.sampled_from(["head", "key"])) if gated else None,
        decay_scale=decay_scale,
        # Positive log-decays (growth) only at a small scale: exp(+20 N) overflows float32.
        decay_signed=draw(st.booleans()) if 0.0 < decay_scale <= 0.05 else False,
        beta_kind=draw(st.sampled_from(["head", "shared"])) if delta else None,
        beta_values=draw(st.sampled_from(["uniform", "uniform", "uniform", "zero", "one"])) if delta else "uniform",
        # Delta rules need beta*|k|^2 <= 2 to stay bounded (the spec asks for L2-normalised keys).
        key_norm=draw(st.sampled_from([0.3, 1.0, 1.4])) if delta else draw(st.sampled_from([None, None, 1.0])),
        past=past,
        t_dtype=t_dtype,
        s_dtype=draw(st.sampled_from(list(DTYPES))) if past else t_dtype,
        scale=draw(st.sampled_from([0.0, 0.0, 0.25, 1.0, -0.5])),
        chunk_size=draw(st.sampled_from([None, None, 1, 16, 64, 100])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def la_inputs(case: LACase) -> dict:
    rng = np.random.default_rng(case.seed)
    b, t, hkv, hq, dk, dv = case.batch, case.tokens, case.kv_heads, case.q_heads, case.d_k, case.d_v
    T = DTYPES[case.t_dtype]
    f = {}
    f["query"] = rng.standard_normal((b, t, hq * dk), dtype=np.float32)
    key = rng.standard_normal((b, t, hkv, dk), dtype=np.float32)
    if case.key_norm is not None:
        key *= case.key_norm / np.maximum(np.linalg.norm(key, axis=-1, keepdims=True), 1e-6)
    f["key"] = key.reshape(b, t, hkv * dk)
    f["value"] = rng.standard_normal((b, t, hkv * dv), dtype=np.float32)
    if case.past:
        f["past_state"] = (rng.standard_normal((b, hkv, dk, dv), dtype=np.float32) * 0.5).astype(DTYPES[case.s_dtype])
    if case.decay_kind:
        width = hkv if case.decay_kind == "head" else hkv * dk
        g = rng.standard_normal((b, t, width), dtype=np.float32)
        f["decay"] = (g if case.decay_signed else -np.abs(g)) * np.float32(case.decay_scale)
    if case.beta_kind:
        width = hkv if case.beta_kind == "head" else 1
        if case.beta_values == "uniform":
            f["beta"] = rng.random((b, t, width), dtype=np.float32)
        else:
            f["beta"] = np.full((b, t, width), 0.0 if case.beta_values == "zero" else 1.0, np.float32)
    return {n: (a if n == "past_state" else a.astype(T)) for n, a in f.items()}


def la_tolerance(expected: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """floor: the size of the terms the result is summed from; results that cancel far below
    their terms carry the absolute fp32 error of the terms (the fast kernels reassociate)."""
    e = np.abs(expected.astype(np.float64))
    tol = FTZ_ATOL + 2e-5 * max(e.max() if e.size else 0.0, floor) + 1e-4 * e
    if expected.dtype != np.float32:
        tol = tol + testing.ulp(e, expected.dtype)
    return tol


def run_la(case: LACase, inputs: dict, context, poison=True):
    T = DTYPES[case.t_dtype]
    S = DTYPES[case.s_dtype]
    out_shape = (case.batch, case.tokens, case.q_heads * case.d_v)
    state_shape = (case.batch, case.kv_heads, case.d_k, case.d_v)
    out = np.full(out_shape, np.nan, T) if poison else None
    present = np.full(state_shape, np.nan, S) if poison else None
    result = linattn.linear_attention(
        inputs["query"], inputs["key"], inputs["value"],
        inputs.get("past_state"), inputs.get("decay"), inputs.get("beta"),
        q_num_heads=case.q_heads, kv_num_heads=case.kv_heads, update_rule=case.update_rule,
        scale=case.scale, chunk_size=case.chunk_size or 64, out=(out, present), context=context,
    )
    assert result[0] is out and result[1] is present, "the out= arrays were not returned"
    return result


@pytest.fixture(scope="module")
def two_threads():
    ctx = linattn.Context(threads=2)
    yield ctx
    ctx.close()


@settings(max_examples=examples(2000))
@given(case=la_cases())
def test_linear_attention_matches_onnx_reference(case: LACase, contexts, two_threads):
    inputs = la_inputs(case)
    expected = onnx_models.reference_linear_attention(
        inputs["query"], inputs["key"], inputs["value"],
        inputs.get("past_state"), inputs.get("decay"), inputs.get("beta"),
        q_num_heads=case.q_heads, kv_num_heads=case.kv_heads,
        update_rule=case.update_rule if case.explicit_rule else None,
        scale=case.scale if case.scale != 0.0 else None,
        chunk_size=case.chunk_size,
    )
    assert expected[0].dtype == DTYPES[case.t_dtype] and expected[1].dtype == DTYPES[case.s_dtype]
    results = {label: run_la(case, inputs, ctx) for label, ctx in contexts.items()}
    # term sizes: a state entry is a sum of k_i v_j products; an output a sum of q_i S_ij
    kmax = float(np.abs(inputs["key"].astype(np.float64)).max(initial=0.0))
    vmax = float(np.abs(inputs["value"].astype(np.float64)).max(initial=0.0))
    qmax = float(np.abs(inputs["query"].astype(np.float64)).max(initial=0.0))
    smax = float(np.abs(expected[1].astype(np.float64)).max(initial=0.0))
    d_scale = case.scale if case.scale != 0.0 else 1.0 / np.sqrt(max(case.d_k, 1))
    floors = (1e-2 * abs(d_scale) * qmax * max(smax, kmax * vmax), 1e-2 * kmax * vmax)
    for label, actual in results.items():
        for name, a, e, fl in zip(("output", "present_state"), actual, expected, floors):
            reason = testing.compare(a, e, la_tolerance(e, fl))
            assert reason is None, f"isa {label} ({contexts[label].isa}): {name}: {reason}"
    threaded = run_la(case, inputs, two_threads)
    for name, one, two in zip(("output", "present_state"), results["auto"], threaded):
        _check_thread_bits(name, one, two)


# ---------------------------------------------------------------- CausalConvWithState


@dataclasses.dataclass(frozen=True)
class ConvCase:
    batch: int
    channels: int
    length: int
    kernel: int
    bias: bool
    past: bool
    activation: str | None  # None = attribute not written (default "none")
    dtype: str
    seed: int


@st.composite
def conv_cases(draw) -> ConvCase:
    return ConvCase(
        batch=draw(st.integers(1, 3)),
        channels=draw(st.one_of(st.sampled_from([1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100]), st.integers(1, 130))),
        length=draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33]), st.integers(0, 70))),
        kernel=draw(st.integers(1, 6)),
        bias=draw(st.booleans()),
        past=draw(st.booleans()),
        activation=draw(st.sampled_from([None, "none", "silu", "swish"])),
        dtype=draw(st.sampled_from(list(DTYPES))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def conv_inputs(case: ConvCase) -> dict:
    rng = np.random.default_rng(case.seed)
    T = DTYPES[case.dtype]
    b, c, n, k = case.batch, case.channels, case.length, case.kernel
    f = {
        "input": rng.standard_normal((b, c, n), dtype=np.float32),
        "weight": rng.standard_normal((c, 1, k), dtype=np.float32) * 0.5,
    }
    if case.bias:
        f["bias"] = rng.standard_normal(c, dtype=np.float32)
    if case.past:
        f["past_state"] = rng.standard_normal((b, c, k - 1), dtype=np.float32)
    return {name: a.astype(T) for name, a in f.items()}


def conv_tolerance(case: ConvCase, inputs: dict, expected: np.ndarray) -> np.ndarray:
    """See the module docstring; computed from the (already rounded) inputs in float64."""
    x = inputs["input"].astype(np.float64)
    w = inputs["weight"].astype(np.float64)[:, 0, :]
    b, c, n = x.shape
    k = w.shape[1]
    past = inputs["past_state"].astype(np.float64) if case.past else np.zeros((b, c, k - 1))
    padded = np.concatenate([past, x], axis=2)
    dot = np.zeros((b, c, n))
    sum_abs = np.zeros((b, c, n))
    for j in range(k):
        term = w[None, :, j, None] * padded[:, :, j : j + n]
        dot += term
        sum_abs += np.abs(term)
    bias = inputs["bias"].astype(np.float64)[None, :, None] if case.bias else np.zeros((1, c, 1))
    pre = dot + bias
    magnitude = np.maximum(np.maximum(np.abs(expected.astype(np.float64)), np.abs(dot)), np.abs(pre))
    return FTZ_ATOL + 1e-5 * (sum_abs + np.abs(bias)) + 2 * testing.ulp(magnitude, expected.dtype)


def run_conv(case: ConvCase, inputs: dict, context):
    T = DTYPES[case.dtype]
    out = np.full((case.batch, case.channels, case.length), np.nan, T)
    present = np.full((case.batch, case.channels, case.kernel - 1), np.nan, T)
    result = linattn.causal_conv_with_state(
        inputs["input"], inputs["weight"], inputs.get("bias"), inputs.get("past_state"),
        activation=case.activation or "none", out=(out, present), context=context,
    )
    assert result[0] is out and result[1] is present, "the out= arrays were not returned"
    return result


@settings(max_examples=examples(1500))
@given(case=conv_cases())
def test_causal_conv_matches_onnx_reference(case: ConvCase, contexts, two_threads):
    inputs = conv_inputs(case)
    expected = onnx_models.reference_causal_conv_with_state(
        inputs["input"], inputs["weight"], inputs.get("bias"), inputs.get("past_state"), activation=case.activation
    )
    tol = conv_tolerance(case, inputs, expected[0])
    results = {label: run_conv(case, inputs, ctx) for label, ctx in contexts.items()}
    for label, (output, present) in results.items():
        where = f"isa {label} ({contexts[label].isa})"
        reason = testing.compare(output, expected[0], tol)
        assert reason is None, f"{where}: output: {reason}"
        assert present.dtype == expected[1].dtype and present.shape == expected[1].shape, where
        assert np.array_equal(_bits(present), _bits(expected[1])), f"{where}: present_state is not the exact copy"
    threaded = run_conv(case, inputs, two_threads)
    for name, one, two in zip(("output", "present_state"), results["auto"], threaded):
        _check_thread_bits(name, one, two)


# ---------------------------------------------------------------- invalid calls: both must reject


def _la_base(rng, b=2, t=3, hq=3, hkv=3, dk=4, dv=5):
    f = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    return dict(query=f(b, t, hq * dk), key=f(b, t, hkv * dk), value=f(b, t, hkv * dv),
                past_state=f(b, hkv, dk, dv), decay=-np.abs(f(b, t, hkv)), beta=np.abs(f(b, t, hkv)) / 4), \
        dict(q_num_heads=hq, kv_num_heads=hkv, update_rule="gated_delta")


LA_INVALID = {
    "unknown-rule": lambda d, a: (d, {**a, "update_rule": "fancy"}),
    "q-not-multiple": lambda d, a: (d, {**a, "q_num_heads": 4}),
    "q-zero": lambda d, a: (d, {**a, "q_num_heads": 0}),
    "kv-zero": lambda d, a: (d, {**a, "kv_num_heads": 0}),
    "kv-negative": lambda d, a: (d, {**a, "q_num_heads": -3, "kv_num_heads": -3}),
    "inverse-gqa": lambda d, a: ({**d, "query": d["query"][..., :4]}, {**a, "q_num_heads": 1}),
    "decay-for-linear": lambda d, a: ({**d, "beta": None}, {**a, "update_rule": "linear"}),
    "decay-missing": lambda d, a: ({**d, "decay": None}, a),
    "beta-missing": lambda d, a: ({**d, "beta": None}, a),
    "beta-for-gated": lambda d, a: (d, {**a, "update_rule": "gated"}),
    "decay-width": lambda d, a: ({**d, "decay": np.concatenate([d["decay"], d["decay"][..., :1]], -1)}, a),
    "beta-width": lambda d, a: ({**d, "beta": d["beta"][..., :2]}, a),
    "decay-rank": lambda d, a: ({**d, "decay": d["decay"][0]}, a),
    "past-shape": lambda d, a: ({**d, "past_state": d["past_state"][:, :, :3].copy()}, a),
    "query-width": lambda d, a: ({**d, "query": d["query"][..., :-1]}, a),
    "value-width": lambda d, a: ({**d, "value": d["value"][..., :-1]}, a),
    "key-d_k": lambda d, a: ({**d, "key": np.concatenate([d["key"], d["key"][..., :3]], -1)}, a),
    "query-rank": lambda d, a: ({**d, "query": d["query"][0]}, a),
}


@pytest.mark.parametrize("case", list(LA_INVALID))
def test_invalid_linear_attention_rejected_by_both(case):
    inputs, attrs = LA_INVALID[case](*_la_base(np.random.default_rng()))
    args = [inputs[n] for n in onnx_models.LA_INPUT_NAMES]
    with pytest.raises(Exception):  # noqa: B017 - onnx.reference raises ValueError or numpy errors
        onnx_models.reference_linear_attention(*args, **attrs)
    with pytest.raises(linattn.LinattnError) as info:
        linattn.linear_attention(*args, **attrs)
    assert info.value.status == 1 and info.value.message


CONV_INVALID = {
    "activation": lambda d, a: (d, {"activation": "relu"}),
    "input-rank": lambda d, a: ({**d, "input": d["input"][0]}, a),
    "weight-rank": lambda d, a: ({**d, "weight": d["weight"][:, 0]}, a),
    "weight-middle": lambda d, a: ({**d, "weight": np.concatenate([d["weight"]] * 2, 1)}, a),
    "weight-channels": lambda d, a: ({**d, "weight": d["weight"][:3]}, a),
}


@pytest.mark.parametrize("case", list(CONV_INVALID))
def test_invalid_causal_conv_rejected_by_both(case):
    rng = np.random.default_rng()
    base = dict(input=rng.standard_normal((2, 4, 6), dtype=np.float32),
                weight=rng.standard_normal((4, 1, 3), dtype=np.float32), bias=None, past_state=None)
    inputs, attrs = CONV_INVALID[case](base, {})
    args = [inputs[n] for n in onnx_models.CONV_INPUT_NAMES]
    with pytest.raises(Exception):  # noqa: B017
        onnx_models.reference_causal_conv_with_state(*args, **attrs)
    with pytest.raises(linattn.LinattnError) as info:
        linattn.causal_conv_with_state(*args, activation=attrs.get("activation", "none"))
    assert info.value.status == 1 and info.value.message


# ---------------------------------------------------------------- longer sequences, wider heads


@st.composite
def long_la_cases(draw) -> LACase:
    """Fewer, bigger cases: T up to 400 (several chunks for a chunked prefill path), d up to 160."""
    base = draw(la_cases())
    return dataclasses.replace(
        base,
        batch=draw(st.integers(1, 2)),
        tokens=draw(st.one_of(st.sampled_from([127, 128, 129, 255, 256, 257]), st.integers(81, 400))),
        kv_heads=draw(st.integers(1, 2)),
        group=draw(st.integers(1, 3)),
        d_k=draw(st.one_of(st.sampled_from([64, 100, 128, 160]), st.integers(1, 160))),
        d_v=draw(st.one_of(st.sampled_from([64, 100, 128, 160]), st.integers(1, 160))),
        key_norm=base.key_norm if base.key_norm is not None else 1.0,  # raw keys grow too much over 400 steps
    )


@settings(max_examples=examples(40))
@given(case=long_la_cases())
def test_long_linear_attention_matches_onnx_reference(case: LACase, contexts, two_threads):
    test_linear_attention_matches_onnx_reference.hypothesis.inner_test(case, contexts, two_threads)


# ---------------------------------------------------------------- non-finite inputs


@st.composite
def nonfinite_la_cases(draw):
    """A LinearAttention case plus 1-3 NaN / +-inf values poked into its inputs."""
    case = draw(la_cases())
    names = ["query", "key", "value"] + (["past_state"] if case.past else []) + \
        (["decay"] if case.decay_kind else []) + (["beta"] if case.beta_kind else [])
    pokes = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from([np.nan, np.inf, -np.inf]),
                                    st.integers(0, 2**31 - 1)), min_size=1, max_size=3))
    return case, pokes


@settings(max_examples=examples(300))
@given(drawn=nonfinite_la_cases())
def test_linear_attention_nonfinite_inputs_match_onnx_reference(drawn, contexts):
    """NaN and +-inf in any input: every kernel family gives NaN exactly where onnx.reference
    does and the same infinities (units with non-finite outputs are recomputed by the reference
    kernels; see src/api/linear_attention.c), finite elements within the usual tolerance."""
    case, pokes = drawn
    inputs = la_inputs(case)
    for name, value, where in pokes:
        arr = inputs[name]
        if arr.size:
            arr.reshape(-1)[where % arr.size] = value
    with np.errstate(all="ignore"):
        expected = onnx_models.reference_linear_attention(
            inputs["query"], inputs["key"], inputs["value"],
            inputs.get("past_state"), inputs.get("decay"), inputs.get("beta"),
            q_num_heads=case.q_heads, kv_num_heads=case.kv_heads, update_rule=case.update_rule,
            scale=case.scale if case.scale != 0.0 else None,
        )
    finite = {n: np.where(np.isfinite(a.astype(np.float32)), a.astype(np.float64), 0.0) for n, a in inputs.items()}
    kmax = float(np.abs(finite["key"]).max(initial=0.0))
    vmax = float(np.abs(finite["value"]).max(initial=0.0))
    qmax = float(np.abs(finite["query"]).max(initial=0.0))
    e1 = expected[1].astype(np.float64)
    smax = float(np.abs(np.where(np.isfinite(e1), e1, 0.0)).max(initial=0.0))
    d_scale = case.scale if case.scale != 0.0 else 1.0 / np.sqrt(max(case.d_k, 1))
    floors = (1e-2 * abs(d_scale) * qmax * max(smax, kmax * vmax), 1e-2 * kmax * vmax)
    for label, ctx in contexts.items():
        actual = run_la(case, inputs, ctx)
        for name, a, e, fl in zip(("output", "present_state"), actual, expected, floors):
            ef = np.where(np.isfinite(e.astype(np.float64)), e, 0).astype(e.dtype)
            reason = testing.compare(a, e, la_tolerance(ef, fl))
            assert reason is None, f"isa {label} ({contexts[label].isa}): {name}: {reason}"
