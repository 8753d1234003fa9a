"""linattn.varlen_linear_attention: LinearAttention on packed ragged batches with state pools.

Oracles:
  - the sequential decomposition: each sequence alone through linattn.linear_attention (B = 1,
    past_state = its pool slot, or None without an initial state) on the same kernel family:
    identical bits, for ragged lengths with 0 and 1 among them, pools with permuted
    state_indices, has_initial_state, in place, every update rule and decay kind, f32/f16/bf16;
  - a float64 numpy recurrence (the ONNX LinearAttention definition) for a gated_delta pool case,
    to fp32/16-bit rounding.
Outputs are NaN-poisoned before every call so an element the kernels skip shows up.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import linattn
from linattn import LinattnError
from linattn import ort_models as M

DTYPES = ("float32", "float16", "bfloat16")
RULES = ("linear", "gated", "delta", "gated_delta")


def examples(n):
    return max(3, n * settings.default.max_examples // 100)


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def random_case(rng, dtype, lengths, *, hq=2, hkv=2, dk=8, dv=16, rule="gated_delta", per_key=False, pool=0,
                state_dtype=None):
    dt = M.np_dtype(dtype)
    sdt = M.np_dtype(state_dtype) if state_dtype else dt
    total, batch = int(sum(lengths)), len(lengths)
    k = rng.standard_normal((total, hkv, dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True) + 1e-6
    case = {
        "query": rng.standard_normal((total, hq * dk)).astype(dt),
        "key": k.reshape(total, hkv * dk).astype(dt),
        "value": rng.standard_normal((total, hkv * dv)).astype(dt),
        "cu": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
        "past_state": (0.5 * rng.standard_normal((batch + pool, hkv, dk, dv))).astype(sdt),
        "decay": None,
        "beta": None,
        "attrs": {"q_num_heads": hq, "kv_num_heads": hkv, "update_rule": rule},
    }
    if rule in ("gated", "gated_delta"):
        case["decay"] = rng.uniform(-0.6, 0.0, (total, hkv * dk if per_key else hkv)).astype(dt)
    if rule in ("delta", "gated_delta"):
        case["beta"] = rng.uniform(0.05, 1.0, (total, hkv)).astype(dt)
    return case


def sequential(case, ctx, state_indices=None, has_initial=None):
    """Each sequence alone through the dense operator: (output, pool with the named slots updated)."""
    cu, pool = case["cu"], case["past_state"].copy()
    outs = []
    for i in range(len(cu) - 1):
        a, b = int(cu[i]), int(cu[i + 1])
        slot = int(state_indices[i]) if state_indices is not None else i
        past = pool[slot:slot + 1] if has_initial is None or has_initial[i] else None
        g = None if case["decay"] is None else case["decay"][None, a:b]
        be = None if case["beta"] is None else case["beta"][None, a:b]
        o, s = linattn.linear_attention(case["query"][None, a:b], case["key"][None, a:b], case["value"][None, a:b],
                                        past, g, be, state_dtype=pool.dtype, context=ctx, **case["attrs"])
        outs.append(o[0])
        pool[slot] = s[0]
    a = case["attrs"]
    width = case["value"].shape[1] // a["kv_num_heads"] * max(a["q_num_heads"], a["kv_num_heads"])
    return (np.concatenate(outs) if outs else np.zeros((0, width), case["query"].dtype)), pool


def run_packed(case, ctx, *, state_indices=None, has_initial_state=None, in_place=False, poison=True):
    past = case["past_state"].copy()
    out = np.full((case["query"].shape[0], case["value"].shape[1] // case["attrs"]["kv_num_heads"]
                   * max(case["attrs"]["q_num_heads"], case["attrs"]["kv_num_heads"])), np.nan,
                  case["query"].dtype)
    present = past if in_place else np.full(past.shape, np.nan, past.dtype)
    o, s = linattn.varlen_linear_attention(case["query"], case["key"], case["value"], case["cu"], past,
                                           case["decay"], case["beta"], state_indices=state_indices,
                                           has_initial_state=has_initial_state, out=(out, present), context=ctx,
                                           **case["attrs"])
    assert o is out and s is present
    return o, s


@settings(max_examples=examples(60), deadline=None)
@given(data=st.data())
def test_matches_sequential_decomposition(contexts, data):
    dtype = data.draw(st.sampled_from(DTYPES), "dtype")
    state_f32 = data.draw(st.booleans(), "fp32 state")
    batch = data.draw(st.integers(0, 6), "batch")
    lengths = data.draw(st.lists(st.sampled_from((0, 1, 1, 2, 5, 17, 70)), min_size=batch, max_size=batch), "lengths")
    rule = data.draw(st.sampled_from(RULES), "rule")
    per_key = data.draw(st.booleans(), "per-key decay")
    hq, hkv = data.draw(st.sampled_from(((2, 2), (4, 2), (1, 1))), "heads")
    dk = data.draw(st.sampled_from((4, 16, 64)), "d_k")
    dv = data.draw(st.sampled_from((8, 64, 160)), "d_v")
    pool = data.draw(st.integers(0, 3), "extra pool slots")
    use_idx = data.draw(st.booleans(), "state_indices")
    use_has = data.draw(st.booleans(), "has_initial_state")
    in_place = data.draw(st.booleans(), "in place")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    rng = np.random.default_rng(seed)
    case = random_case(rng, dtype, lengths, hq=hq, hkv=hkv, dk=dk, dv=dv, rule=rule, per_key=per_key,
                       pool=pool if use_idx else 0, state_dtype="float32" if state_f32 else None)
    n_states = case["past_state"].shape[0]
    idx = rng.permutation(n_states)[:batch].astype(np.int32) if use_idx else None
    has = rng.integers(0, 2, batch).astype(bool) if use_has else None
    for label in ("auto", "reference"):
        ctx = contexts[label]
        exp_out, exp_pool = sequential(case, ctx, idx, has)
        out, fin = run_packed(case, ctx, state_indices=idx, has_initial_state=has, in_place=in_place)
        assert np.array_equal(bits(out), bits(exp_out)), f"{label}: output differs from the sequential decomposition"
        if not in_place and idx is not None:
            untouched = np.setdiff1d(np.arange(n_states), idx)
            assert np.isnan(fin[untouched].astype(np.float32)).all(), f"{label}: unnamed pool slots written"
            fin = fin.copy()
            fin[untouched] = case["past_state"][untouched]
        assert np.array_equal(bits(fin), bits(exp_pool)), f"{label}: present_state differs"


def float64_pool_oracle(case, idx, has, scale):
    """ONNX LinearAttention's gated_delta recurrence in float64, per sequence and kv head."""
    hq, hkv = case["attrs"]["q_num_heads"], case["attrs"]["kv_num_heads"]
    q, k, v = (case[n].astype(np.float64) for n in ("query", "key", "value"))
    total, dk, dv = q.shape[0], q.shape[1] // hq, v.shape[1] // hkv
    g, beta = case["decay"].astype(np.float64), case["beta"].astype(np.float64)
    pool = case["past_state"].astype(np.float64)
    out = np.zeros((total, hq * dv))
    cu = case["cu"]
    for i in range(len(cu) - 1):
        slot = idx[i]
        for h in range(hkv):
            S = pool[slot, h].copy() if has[i] else np.zeros((dk, dv))
            for t in range(cu[i], cu[i + 1]):
                kt, vt = k[t, h * dk:(h + 1) * dk], v[t, h * dv:(h + 1) * dv]
                S *= np.exp(g[t, h])
                S += np.outer(kt, beta[t, h] * (vt - S.T @ kt))
                for qh in range(h * (hq // hkv), (h + 1) * (hq // hkv)):
                    out[t, qh * dv:(qh + 1) * dv] = scale * (S.T @ q[t, qh * dk:(qh + 1) * dk])
            pool[slot, h] = S
    return out, pool


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_float64_recurrence(contexts, dtype):
    rng = np.random.default_rng(11)
    case = random_case(rng, dtype, [3, 0, 1, 40, 9], hq=4, hkv=2, dk=16, dv=32, pool=3, state_dtype="float32")
    idx = np.array([6, 2, 0, 5, 3], np.int32)
    has = np.array([1, 1, 0, 1, 0], bool)
    exp_out, exp_pool = float64_pool_oracle(case, idx, has, 1 / np.sqrt(16))
    tol = {"float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}[dtype]
    for label, ctx in contexts.items():
        out, fin = run_packed(case, ctx, state_indices=idx, has_initial_state=has, in_place=True)
        o = out.astype(np.float64)
        assert np.all(np.abs(o - exp_out) <= tol * (1 + np.abs(exp_out))), f"{label}: output"
        named = np.isin(np.arange(fin.shape[0]), idx)
        f = fin.astype(np.float64)
        assert np.all(np.abs(f[named] - exp_pool[named]) <= tol * (1 + np.abs(exp_pool[named]))), f"{label}: state"
        assert np.array_equal(bits(fin[~named]), bits(case["past_state"][~named])), f"{label}: unnamed slots"


def test_threads_give_identical_bits():
    rng = np.random.default_rng(7)
    lengths = [1, 1, 300, 0, 57, 1, 129, 2, 1]
    for dtype in DTYPES:
        case = random_case(rng, dtype, lengths, hq=4, hkv=4, dk=64, dv=128, pool=2)
        idx = rng.permutation(len(lengths) + 2)[:len(lengths)].astype(np.int32)
        results = []
        for threads in (1, 2):
            with linattn.Context(threads=threads) as ctx:
                results.append(run_packed(case, ctx, state_indices=idx))
        for a, b in zip(results[0], results[1]):
            assert np.array_equal(bits(a), bits(b)), f"{dtype}: threads change the bits"


def test_fresh_pool_keeps_unnamed_slots():
    rng = np.random.default_rng(8)
    case = random_case(rng, "float32", [2, 3], pool=2)
    out, pool = linattn.varlen_linear_attention(case["query"], case["key"], case["value"], case["cu"],
                                                case["past_state"], case["decay"], case["beta"],
                                                state_indices=[3, 0], **case["attrs"])
    assert np.array_equal(pool[[1, 2]], case["past_state"][[1, 2]])
    _, exp_pool = sequential(case, None, np.array([3, 0]))
    assert np.array_equal(bits(pool), bits(exp_pool))


# ---------------------------------------------------------------- bad input


def _expect_error(case, needle, present_shape=None, **kw):
    past = case["past_state"]
    before = past.copy()
    out = np.full((case["query"].shape[0], case["value"].shape[1]), 7.0, np.float32)
    present = np.full(present_shape or past.shape, 7.0, np.float32)
    with pytest.raises(LinattnError) as e:
        linattn.varlen_linear_attention(case["query"], case["key"], case["value"], case["cu"], past, case["decay"],
                                        case["beta"], out=(out, present), **case["attrs"], **kw)
    assert needle in e.value.message, e.value.message
    assert e.value.message.split(":")[0] in ("batch.cu_seqlens", "batch.state_indices", "past_state"), e.value.message
    assert (out == 7.0).all() and (present == 7.0).all() and np.array_equal(past, before), "outputs written on error"


@pytest.mark.parametrize(
    "cu, needle",
    [
        ([1, 3, 5], "cu_seqlens[0] must be 0"),
        ([0, 3, 4], "must equal total_tokens"),
        ([0, 4, 3, 5], "non-decreasing"),
        ([0, 3, 9], "must equal total_tokens"),
    ],
)
def test_bad_cu_seqlens(cu, needle):
    case = random_case(np.random.default_rng(1), "float32", [3, 2])
    case["cu"] = np.array(cu, np.int32)
    case["past_state"] = np.zeros((len(cu) - 1,) + case["past_state"].shape[1:], np.float32)
    _expect_error(case, needle)


@pytest.mark.parametrize(
    "idx, needle",
    [([0, 4], "outside the pool [0, 4)"), ([-1, 0], "outside the pool"), ([2, 2], "appears twice")],
)
def test_bad_pool_indices(idx, needle):
    case = random_case(np.random.default_rng(3), "float32", [3, 2], pool=2)
    _expect_error(case, needle, state_indices=np.array(idx))


def test_bad_pool_shape():
    case = random_case(np.random.default_rng(4), "float32", [3, 2], pool=1)
    _expect_error(case, "past_state: expected shape")  # 3 states for 2 sequences without state_indices
    case = random_case(np.random.default_rng(4), "float32", [3, 2])
    good_shape = case["past_state"].shape
    case["past_state"] = case["past_state"][:, :, :, :8].copy()
    _expect_error(case, "past_state: expected shape", present_shape=good_shape)
