"""linattn.gated_delta_net against ONNX Runtime 1.32's own CPU GatedDeltaNet (com.microsoft) and
against the float64 sequential oracle (linattn.gdn_oracle), on fresh random inputs: ragged and
uniform batches, rank 3 and 4, packed and separate QKV, every update rule, gate and beta
activation, per-head and per-key decay, capture on and off, f32/f16/bf16, every kernel family.
Bad input: a status, a message naming the argument, outputs untouched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import linattn
from linattn import ort_models as M
from linattn.gdn_oracle import gated_delta_net_ref
from ort_testlib import fresh_rng

RULES = ("linear", "gated", "delta", "gated_delta")


def examples(n):
    return max(3, n * settings.default.max_examples // 100)


def make_case(rng, *, lens, Hq, grp, dk, dv, rule, gate, beta_act, l2, per_key, dt_bias_kind, cap, dtype,
              gate_dtype, rank4=False, packed=False, with_state=True):
    """Inputs (numpy, in the op's dtypes) and attributes of one call."""
    Hv = Hq * grp
    T = int(sum(lens))
    B = len(lens)
    npdt = M.np_dtype(dtype)
    gdt = M.np_dtype(gate_dtype)
    q = rng.standard_normal((T, Hq, dk)).astype(np.float32)
    k = rng.standard_normal((T, Hq, dk)).astype(np.float32)
    if not l2:  # the delta rules need unit keys; keep q moderate too
        k /= np.linalg.norm(k, axis=-1, keepdims=True) + 1e-6
        q /= np.sqrt(dk)
    v = rng.standard_normal((T, Hv, dv)).astype(np.float32)
    feeds = {}
    if packed:
        feeds["query"] = np.concatenate([q.reshape(T, -1), k.reshape(T, -1), v.reshape(T, -1)], axis=1).astype(npdt)
    else:
        feeds["query"], feeds["key"], feeds["value"] = q.astype(npdt), k.astype(npdt), v.astype(npdt)
    if not rank4:
        feeds["cu_seqlens"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    if rule in ("gated", "gated_delta"):
        shape = (T, Hv, dk) if per_key else (T, Hv)
        if gate == "none":
            g = -np.abs(rng.standard_normal(shape)) * 0.3 - 0.01
        else:
            g = rng.standard_normal(shape) * 2.0
            feeds["a_log"] = (rng.standard_normal(Hv) * 0.5).astype(np.float32)
            feeds["dt_bias"] = rng.standard_normal((Hv, dk) if dt_bias_kind == 2 else (Hv,)).astype(np.float32)
        feeds["decay"] = g.astype(gdt)
    if rule in ("delta", "gated_delta"):
        b = rng.standard_normal((T, Hv)) * 2 if beta_act == "sigmoid" else rng.uniform(0.0, 1.0, (T, Hv))
        feeds["beta"] = b.astype(gdt)
    if with_state or packed or rank4:
        feeds["initial_state"] = (rng.standard_normal((B, Hv, dv, dk)) * 0.3).astype(np.float32)
    if cap:
        feeds["capture_count"] = rng.integers(-1, 10, B).astype(np.int32)
    if rank4:
        S = lens[0]
        for n in ("query", "key", "value", "decay", "beta"):
            if n in feeds:
                feeds[n] = feeds[n].reshape((B, S) + feeds[n].shape[1:])
    attrs = dict(update_rule=rule, gate_activation=gate, beta_activation=beta_act, qk_l2_norm=int(l2),
                 state_update_capacity=cap)
    return feeds, attrs


def run_ort(feeds, attrs, dtype):
    outs = ("output", "final_state") + (("state_update",) if attrs["state_update_capacity"] else ())
    model = M.gated_delta_net_model(feeds, dtype=dtype, outputs=outs, **attrs)
    sess = M.session(model, plugin=False)
    shapes = None
    if dtype == "bfloat16":
        q = feeds["query"]
        r = gated_delta_net_ref(**{k: v.astype(np.float64) if v.dtype.kind == "f" or v.dtype == M.np_dtype("bfloat16")
                                   else v for k, v in feeds.items()}, **attrs)
        shapes = {"output": r[0].shape}
    return M.run(sess, feeds, shapes)


def run_linattn(feeds, attrs, context=None):
    return linattn.gated_delta_net(**feeds, **attrs, context=context)


def oracle(feeds, attrs):
    f = {k: (np.asarray(v, np.float64) if v.dtype != np.int32 else v) for k, v in feeds.items()}
    return gated_delta_net_ref(**f, **attrs)


def tolerance(dtype, gate_dtype):
    return {"float32": 2e-4, "float16": 2e-2, "bfloat16": 8e-2}[dtype]


def check(actual, expected, tol, what):
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    if e.size == 0:
        return
    assert np.isfinite(a).all(), f"{what}: non-finite elements"
    scale = max(1.0, float(np.abs(e).max()))
    err = float(np.abs(a - e).max())
    assert err <= tol * scale, f"{what}: max |a-e| = {err:.3e} > {tol * scale:.3e}"
    return err


def check_capture(actual, expected, tol, what):
    m = ~np.isnan(expected)
    check(np.asarray(actual)[m], expected[m], tol, what)


case_strategy = st.fixed_dictionaries(dict(
    lens=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    Hq=st.integers(1, 2), grp=st.sampled_from([1, 2]), dk=st.sampled_from([4, 16, 33, 64]),
    dv=st.sampled_from([3, 16, 40, 128]), rule=st.sampled_from(RULES),
    gate=st.sampled_from(["none", "softplus", "qwen", "sigmoid", "kda"]), beta_act=st.sampled_from(["none", "sigmoid"]),
    l2=st.booleans(), per_key=st.booleans(), dt_bias_kind=st.sampled_from([1, 2]), cap=st.sampled_from([0, 0, 3, 8]),
    dtype=st.sampled_from(["float32", "float32", "float16", "bfloat16"]), gate_f32=st.booleans(),
    packed=st.booleans(), rank4=st.booleans(), with_state=st.booleans()))


def normalise(c):
    c = dict(c)
    if c["rank4"]:
        c["lens"] = [c["lens"][0]] * len(c["lens"])
    if c["gate"] != "none" and not c["per_key"]:
        c["dt_bias_kind"] = 1  # (H_v, d_k) dt_bias needs per-key decay (ORT rejects it otherwise)
    gate_f32 = c.pop("gate_f32")
    c["gate_dtype"] = "float32" if gate_f32 else c["dtype"]
    if c["dtype"] == "bfloat16":
        c["gate_dtype"] = "float32"  # keep ORT's numpy bridge out of bf16 inputs other than q/k/v
    if c["gate"] != "none" and c["rule"] in ("linear", "delta"):
        c["gate"] = "none"  # ORT requires a_log/dt_bias whenever a gate is named, even if unused
    return c


@settings(max_examples=examples(60))
@given(case_strategy)
def test_against_ort_and_oracle(c):
    c = normalise(c)
    rng, seed = fresh_rng()
    feeds, attrs = make_case(rng, **c)
    what = f"seed {seed} case {c}"
    out, fin, su = run_linattn(feeds, attrs)
    ref = oracle(feeds, attrs)
    tol = tolerance(c["dtype"], c["gate_dtype"])
    check(out, ref[0], tol, "output vs float64 oracle, " + what)
    check(fin, ref[1], tol, "final_state vs float64 oracle, " + what)
    if attrs["state_update_capacity"]:
        check_capture(su, ref[2], tol, "state_update vs float64 oracle, " + what)
    if c["dtype"] == "bfloat16" and c["packed"]:
        return  # ORT's numpy bridge: bf16 feeds go through OrtValue; packed bf16 covered by the oracle
    r = run_ort(feeds, attrs, c["dtype"])
    check(out, r[0], tol, "output vs ORT, " + what)
    check(fin, r[1], tol, "final_state vs ORT, " + what)
    if attrs["state_update_capacity"]:
        check_capture(su, np.where(np.isnan(ref[2]), np.nan, r[2]), tol, "state_update vs ORT, " + what)
        assert (su[np.isnan(ref[2])] == 0).all(), "slots past the captured prefix must be 0"


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_every_kernel_family_same_as_reference(rule, dtype, contexts):
    rng, seed = fresh_rng()
    feeds, attrs = make_case(rng, lens=[70, 1, 9], Hq=2, grp=2, dk=32, dv=48, rule=rule, gate="softplus"
                             if rule.startswith("gated") else "none", beta_act="sigmoid", l2=True, per_key=False,
                             dt_bias_kind=1, cap=4, dtype=dtype, gate_dtype="float32")
    ref = oracle(feeds, attrs)
    tol = tolerance(dtype, "float32")
    for label, ctx in contexts.items():
        out, fin, su = run_linattn(feeds, attrs, context=ctx)
        check(out, ref[0], tol, f"{label} output seed {seed}")
        check(fin, ref[1], tol, f"{label} final_state seed {seed}")
        check_capture(su, ref[2], tol, f"{label} state_update seed {seed}")


@pytest.mark.parametrize("eps", [1e-12, 1e-6, 0.0])
def test_qk_l2_norm_eps_against_the_oracle(eps, contexts):
    """q and k rows of |x|^2 ~ 1e-7, where ORT's 1e-12, fla's 1e-6 and 0 give different norms; the
    second call of each eps goes through the cached fast path."""
    rng, seed = fresh_rng()
    feeds, attrs = make_case(rng, lens=[70, 3], Hq=2, grp=2, dk=16, dv=24, rule="gated_delta", gate="softplus",
                             beta_act="sigmoid", l2=True, per_key=False, dt_bias_kind=1, cap=0, dtype="float32",
                             gate_dtype="float32")
    feeds["query"] = (feeds["query"] * 1e-4).astype(np.float32)
    feeds["key"] = (feeds["key"] * 1e-4).astype(np.float32)
    ref = oracle(feeds, dict(attrs, qk_l2_norm_eps=eps))
    other = oracle(feeds, dict(attrs, qk_l2_norm_eps=1e-6 if eps != 1e-6 else 1e-12))
    assert np.abs(ref[0] - other[0]).max() > 0.1 * np.abs(ref[0]).max(), "the case does not tell the epsilons apart"
    for label, ctx in contexts.items():
        for _ in range(2):
            out, fin, _ = run_linattn(feeds, dict(attrs, qk_l2_norm_eps=eps), context=ctx)
            check(out, ref[0], 2e-4, f"{label} output eps {eps} seed {seed}")
            check(fin, ref[1], 2e-4, f"{label} final_state eps {eps} seed {seed}")
    out, _, _ = run_linattn(feeds, attrs)  # the default is ORT's 1e-12
    check(out, oracle(feeds, attrs)[0], 2e-4, f"default eps seed {seed}")


def test_in_place_state_and_threads_bitwise():
    rng, seed = fresh_rng()
    feeds, attrs = make_case(rng, lens=[130, 5, 64, 1], Hq=2, grp=2, dk=64, dv=64, rule="gated_delta", gate="qwen",
                             beta_act="sigmoid", l2=True, per_key=False, dt_bias_kind=1, cap=2, dtype="float32",
                             gate_dtype="float32")
    results = []
    for threads in (1, 2, 3):
        with linattn.Context(threads=threads) as ctx:
            results.append(run_linattn(feeds, attrs, context=ctx))
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert np.array_equal(a, b), f"thread count changed the bits (seed {seed})"
    state = feeds["initial_state"].copy()
    f2 = dict(feeds, initial_state=state)
    out, fin, _ = linattn.gated_delta_net(**f2, **attrs, final_state_out=state)
    assert fin is state
    assert np.array_equal(out, results[0][0]) and np.array_equal(state, results[0][1]), f"in place differs (seed {seed})"


def test_replay_matches_recomputed_states():
    rng, seed = fresh_rng()
    for per_key in (False, True):
        feeds, attrs = make_case(rng, lens=[6, 3], Hq=2, grp=2, dk=8, dv=5, rule="gated_delta", gate="none",
                                 beta_act="none", l2=True, per_key=per_key, dt_bias_kind=1, cap=4, dtype="float32",
                                 gate_dtype="float32")
        feeds["capture_count"] = np.array([4, 3], np.int32)
        _, _, su = run_linattn(feeds, attrs)
        for r, keep in ((0, 1), (0, 4), (1, 3)):
            # the state after `keep` tokens of request r, computed by running those tokens alone
            s0 = int(feeds["cu_seqlens"][r])
            sub = {n: a[s0:s0 + keep] for n, a in feeds.items() if n in ("query", "key", "value", "decay", "beta")}
            sub["initial_state"] = feeds["initial_state"][r:r + 1]
            sub["cu_seqlens"] = np.array([0, keep], np.int32)
            want = linattn.gated_delta_net(**sub, **dict(attrs, state_update_capacity=0))[1][0]
            got = linattn.gated_delta_net_state_replay(feeds["initial_state"][r], su[r], num_heads_k=2, capacity=4,
                                                       kept_count=keep)
            check(got, want, 1e-5, f"replay r={r} keep={keep} per_key={per_key} seed {seed}")


def _bad_call(feeds, attrs, **override):
    """Runs with poisoned outputs through the C API (via the binding's final_state_out) and returns
    the error; checks the outputs were left untouched."""
    f = dict(feeds)
    f.update({k: v for k, v in override.items() if k in M.GDN_INPUTS})
    a = dict(attrs)
    a.update({k: v for k, v in override.items() if k not in M.GDN_INPUTS})
    f = {k: v for k, v in f.items() if v is not None}
    B = len(f["cu_seqlens"]) - 1
    poison = np.full((B,) + feeds["initial_state"].shape[1:], 7.0, np.float32) if B >= 0 else None
    with pytest.raises(linattn.LinattnError) as e:
        linattn.gated_delta_net(**f, **a, final_state_out=poison)
    if poison is not None:
        assert (poison == 7.0).all(), "final_state written on error"
    return str(e.value)


def test_bad_input_names_the_argument():
    rng, _ = fresh_rng()
    feeds, attrs = make_case(rng, lens=[3, 4], Hq=1, grp=2, dk=8, dv=4, rule="gated_delta", gate="none",
                             beta_act="none", l2=True, per_key=False, dt_bias_kind=1, cap=0, dtype="float32",
                             gate_dtype="float32")
    assert "cu_seqlens" in _bad_call(feeds, attrs, cu_seqlens=np.array([1, 3, 7], np.int32))
    assert "cu_seqlens" in _bad_call(feeds, attrs, cu_seqlens=np.array([0, 3, 6], np.int32))
    assert "cu_seqlens" in _bad_call(feeds, attrs, cu_seqlens=np.array([0, 5, 3, 7], np.int32))
    assert "capture_count" in _bad_call(feeds, attrs, capture_count=np.array([1, 1], np.int32))
    assert "capture_count" in _bad_call(feeds, attrs, state_update_capacity=2)
    assert "state_update_capacity" in _bad_call(feeds, attrs, state_update_capacity=9,
                                                capture_count=np.array([1, 1], np.int32))
    # a K-major (B, H_v, d_k, d_v) state instead of V-major (B, H_v, d_v, d_k)
    msg = _bad_call(feeds, attrs, initial_state=np.ascontiguousarray(feeds["initial_state"].transpose(0, 1, 3, 2)))
    assert "initial_state" in msg and "V-major" in msg
    assert "decay" in _bad_call(feeds, attrs, decay=None)
    assert "beta" in _bad_call(feeds, attrs, beta=feeds["beta"][:, :1].copy())
    assert "a_log" in _bad_call(feeds, attrs, gate_activation="softplus")
    assert "key" in _bad_call(feeds, attrs, key=feeds["key"][:, :, :4].copy())
    assert "output" not in _bad_call(feeds, attrs, value=None)
    assert "gate_activation" in _bad_call(feeds, attrs, gate_activation="tanh")
    for eps in (-1e-6, float("nan"), float("inf")):
        assert "qk_l2_norm_eps" in _bad_call(feeds, attrs, qk_l2_norm_eps=eps)


def test_ort_rejects_what_linattn_rejects():
    """The validation rules taken from ORT's CPU kernel: it rejects these too."""
    rng, _ = fresh_rng()
    feeds, attrs = make_case(rng, lens=[3, 4], Hq=1, grp=2, dk=8, dv=4, rule="gated_delta", gate="softplus",
                             beta_act="none", l2=True, per_key=False, dt_bias_kind=1, cap=0, dtype="float32",
                             gate_dtype="float32")
    bad = [dict(feeds, cu_seqlens=np.array([1, 3, 7], np.int32)),
           dict(feeds, cu_seqlens=np.array([0, 3, 6], np.int32)),
           dict(feeds, dt_bias=np.zeros((2, 8), np.float32))]  # per-key dt_bias with scalar decay
    for f in bad:
        with pytest.raises(Exception):
            run_ort(f, attrs, "float32")
        with pytest.raises(linattn.LinattnError):
            run_linattn(f, attrs)


# ---------------------------------------------------------------- repeated calls: the plan fast path


def _general(feeds, attrs, monkeypatch, **kw):
    """The general path's result for these arguments (on copies: it never sees the caller's arrays)."""
    from linattn import gdn

    with monkeypatch.context() as m:
        m.setattr(gdn, "_FAST", False)
        copies = {n: (v.copy() if isinstance(v, np.ndarray) else v) for n, v in feeds.items()}
        return linattn.gated_delta_net(**copies, **attrs, **kw)


class _CountGeneral:
    """Counts the calls that reach gated_delta_net's general path, starting without plans."""

    def __init__(self, monkeypatch):
        from linattn import gdn

        gdn._gdn_fast.reset()
        real = gdn._gated_delta_net
        self.calls = 0

        def counted(*args):
            self.calls += 1
            return real(*args)

        monkeypatch.setattr(gdn, "_gated_delta_net", counted)


def _same_bits(actual, expected, what):
    assert (actual is None) == (expected is None), what
    if actual is not None:
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
        assert np.array_equal(actual.view(np.uint8), expected.view(np.uint8)), what


GDN_CASE = dict(lens=[3, 2], Hq=1, grp=2, dk=8, dv=4, rule="gated_delta", gate="none", beta_act="none", l2=True,
                per_key=False, dt_bias_kind=1, cap=0, dtype="float32", gate_dtype="float32")
GDN_FORMS = {  # name: (make_case options, extra call arguments from (feeds, output shape) -> kwargs)
    "alloc": ({}, None),
    "decode": ({"lens": [1, 1, 1]}, None),
    "out": ({}, "out"),
    "final-state-out": ({}, "final"),
    "in-place": ({}, "in-place"),
    "out-and-in-place": ({}, "out+in-place"),
    "packed": ({"packed": True}, None),
    "rank4": ({"rank4": True, "lens": [2, 2]}, "out"),
    "capture": ({"cap": 3}, None),
    "qwen-gates-per-key": ({"gate": "qwen", "beta_act": "sigmoid", "per_key": True, "dt_bias_kind": 2}, None),
    "f16": ({"dtype": "float16", "gate_dtype": "float16"}, "out"),
    "bf16-f32-gates": ({"dtype": "bfloat16"}, None),
    "no-state": ({"with_state": False}, None),
    "delta-rule": ({"rule": "delta"}, None),
    "context": ({}, "context"),
    "threads": ({}, "threads"),
}


def _form_kwargs(form, feeds, attrs, ctx, monkeypatch):
    kw = {}
    if form in ("out", "out+in-place"):
        shape = _general(feeds, attrs, monkeypatch)[0]
        kw["out"] = np.full(shape.shape, np.nan, shape.dtype)
    if form == "final":
        kw["final_state_out"] = np.full(feeds["initial_state"].shape, np.nan, np.float32)
    if form in ("in-place", "out+in-place"):
        kw["final_state_out"] = feeds["initial_state"]
    if form == "context":
        kw["context"] = ctx
    if form == "threads":
        kw["threads"] = 1
    return kw


@pytest.mark.parametrize("name", list(GDN_FORMS))
def test_repeated_calls_take_the_fast_path_with_the_general_paths_bits(monkeypatch, name):
    """Three calls of one kind on fresh random inputs: the first goes through the general path and
    leaves a plan, the next ones take the fast path; each gives the general path's bits, in the
    arrays given as out= / final_state_out=."""
    options, form = GDN_FORMS[name]
    general = _CountGeneral(monkeypatch)
    rng, seed = fresh_rng()
    with linattn.Context(threads=1) as ctx:
        for i in range(3):
            feeds, attrs = make_case(rng, **{**GDN_CASE, **options})
            kw = _form_kwargs(form, feeds, attrs, ctx, monkeypatch)
            expected = _general(feeds, {**attrs, "context": kw.get("context"), "threads": kw.get("threads")},
                                monkeypatch)
            calls = general.calls
            result = linattn.gated_delta_net(**feeds, **attrs, **kw)
            assert general.calls == calls + (i == 0), f"call {i} took the wrong path (seed {seed})"
            for n, r, e in zip(("output", "final_state", "state_update"), result, expected):
                _same_bits(r, e, f"{name}: {n} of call {i} (seed {seed})")
            if "out" in kw:
                assert result[0] is kw["out"]
            if "final_state_out" in kw:
                assert result[1] is kw["final_state_out"]


def test_fast_path_follows_changing_shapes_attributes_dtypes_and_offsets(monkeypatch):
    """Calls alternating between kinds (shapes, attributes, dtypes), and calls of one kind whose
    cu_seqlens / capture_count values change between calls: each gives the general path's bits,
    so a plan caches no array contents."""
    general = _CountGeneral(monkeypatch)
    rng, seed = fresh_rng()
    kinds = [
        {},
        {"lens": [4, 1]},  # same total, other offsets: the same plan
        {"lens": [2, 3, 1]},
        {"gate": "softplus", "beta_act": "sigmoid"},
        {"dtype": "float16", "gate_dtype": "float16"},
        {"cap": 2, "lens": [1, 4]},
        {"cap": 2, "lens": [3, 2]},
        {"l2": False},
    ]
    seen = set()
    for step in range(3 * len(kinds)):
        options = kinds[(step * 5) % len(kinds)]
        feeds, attrs = make_case(rng, **{**GDN_CASE, **options})
        if "capture_count" in feeds:
            feeds["capture_count"] = rng.integers(-1, 3, len(feeds["cu_seqlens"]) - 1).astype(np.int32)
        plan_key = (tuple(sorted(attrs.items())), tuple((n, v.shape, v.dtype.str) for n, v in sorted(feeds.items())))
        expected = _general(feeds, attrs, monkeypatch)
        calls = general.calls
        result = linattn.gated_delta_net(**feeds, **attrs)
        assert general.calls == calls + (plan_key not in seen), f"step {step} took the wrong path (seed {seed})"
        seen.add(plan_key)
        for n, r, e in zip(("output", "final_state", "state_update"), result, expected):
            _same_bits(r, e, f"step {step} {options}: {n} (seed {seed})")


def test_error_after_a_cached_plan_names_the_argument(monkeypatch):
    """With a plan for the shapes, bad values (cu_seqlens contents, which only the library sees) and
    bad shapes or arrays fail as on the general path, naming the argument, outputs untouched."""
    general = _CountGeneral(monkeypatch)
    rng, _ = fresh_rng()
    feeds, attrs = make_case(rng, **{**GDN_CASE, "lens": [3, 4]})
    for _ in range(2):
        linattn.gated_delta_net(**feeds, **attrs, final_state_out=np.empty_like(feeds["initial_state"]))
    assert general.calls == 1
    for bad in ([1, 3, 7], [0, 5, 3], [0, 3, 8]):
        calls = general.calls
        assert "cu_seqlens" in _bad_call(feeds, attrs, cu_seqlens=np.array(bad, np.int32))
        assert general.calls == calls, "a call with the plan's shapes left the fast path"
    assert "key" in _bad_call(feeds, attrs, key=feeds["key"][:, :, :4].copy())
    with pytest.raises(TypeError, match="initial_state"):
        linattn.gated_delta_net(**dict(feeds, initial_state=feeds["initial_state"].astype(np.float64)), **attrs)
    read_only = np.empty_like(feeds["initial_state"])
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="final_state"):
        linattn.gated_delta_net(**feeds, **attrs, final_state_out=read_only)
    out = linattn.gated_delta_net(**feeds, **attrs)[0]
    with pytest.raises(linattn.LinattnError, match="output"):
        linattn.gated_delta_net(**feeds, **attrs, out=np.empty(out.shape[:-1] + (out.shape[-1] + 1,), np.float32))
