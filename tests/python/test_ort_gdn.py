"""com.microsoft GatedDeltaNet through liblinattn_ort.so against ONNX Runtime's own CPU kernel
(a session with the plugin vs a plain session, same model, fresh random inputs) across dtypes,
layouts (separate, packed QKV, rank 4, ragged cu_seqlens), rules, fused gates, qk_l2_norm and
capture. The plugin's outputs are NaN-poisoned before the run, so an unwritten element fails; its
call counter proves the node ran on linattn. Also: attribute types rejected at session creation in
ORT's wording, malformed cu_seqlens / capture_count at run time with linattn's message."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings

ort = pytest.importorskip("onnxruntime")
# every test once per shape-reading path of the plugin (conftest.py, ort_api_path)
pytestmark = pytest.mark.usefixtures("ort_api_path")
from linattn import ort as lort  # noqa: E402
from linattn import ort_models as M  # noqa: E402

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)

from ort_testlib import fresh_rng  # noqa: E402
from test_gated_delta_net import (RULES, case_strategy, check, check_capture, examples, make_case,  # noqa: E402
                                  normalise, oracle, tolerance)


def kernel_calls(op):
    lib = ctypes.CDLL(lort.library_path())
    lib.linattn_ort_kernel_calls.restype = ctypes.c_uint64
    lib.linattn_ort_kernel_calls.argtypes = [ctypes.c_char_p]
    return lib.linattn_ort_kernel_calls(op.encode())


def outputs_of(attrs):
    return ("output", "final_state") + (("state_update",) if attrs["state_update_capacity"] else ())


def run_session(feeds, attrs, dtype, *, plugin, shapes, threads=1):
    model = M.gated_delta_net_model(feeds, dtype=dtype, outputs=outputs_of(attrs), **attrs)
    sess = M.session(model, plugin=plugin, threads=threads)
    before = kernel_calls("GatedDeltaNet")
    r = M.run(sess, feeds, shapes)
    ran = kernel_calls("GatedDeltaNet") - before
    assert ran == (1 if plugin else 0), f"GatedDeltaNet ran {ran} times on linattn (plugin={plugin})"
    return r


def compare_with_ort(feeds, attrs, dtype, gate_dtype, what, threads=1):
    ref = oracle(feeds, attrs)  # float64: shapes for the poisoned outputs, and the masks of unspecified slots
    shapes = dict(zip(outputs_of(attrs), (r.shape for r in ref)))
    mine = run_session(feeds, attrs, dtype, plugin=True, shapes=shapes, threads=threads)
    theirs = run_session(feeds, attrs, dtype, plugin=False, shapes=shapes if dtype == "bfloat16" else None)
    tol = tolerance(dtype, gate_dtype)
    check(mine[0], theirs[0], tol, "output vs ORT, " + what)
    check(mine[1], theirs[1], tol, "final_state vs ORT, " + what)
    check(mine[0], ref[0], tol, "output vs float64 oracle, " + what)
    if attrs["state_update_capacity"]:
        check_capture(mine[2], np.where(np.isnan(ref[2]), np.nan, theirs[2]), tol, "state_update vs ORT, " + what)
        assert (mine[2][np.isnan(ref[2])] == 0).all(), "slots past the captured prefix must be 0"
    return mine


@settings(max_examples=examples(30))
@given(case_strategy)
def test_against_ort_cpu_kernel(c):
    c = normalise(c)
    if c["dtype"] == "bfloat16" and c["packed"]:
        c["packed"] = False  # ORT's numpy bridge: packed bf16 is covered by the binding's oracle test
    rng, seed = fresh_rng()
    feeds, attrs = make_case(rng, **c)
    compare_with_ort(feeds, attrs, c["dtype"], c["gate_dtype"], f"seed {seed} case {c}")


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["separate", "packed", "rank4"])
def test_every_rule_dtype_layout(rule, dtype, layout):
    if dtype == "bfloat16" and layout == "packed":
        pytest.skip("ORT's numpy bridge cannot feed a packed bf16 query (covered by the binding's oracle test)")
    rng, seed = fresh_rng()
    gated = rule.startswith("gated")
    lens = [5, 5] if layout == "rank4" else [37, 1, 12]
    feeds, attrs = make_case(rng, lens=lens, Hq=2, grp=2, dk=32, dv=24, rule=rule,
                             gate="softplus" if gated else "none", beta_act="sigmoid", l2=True, per_key=False,
                             dt_bias_kind=1, cap=3, dtype=dtype, gate_dtype="float32",
                             packed=layout == "packed", rank4=layout == "rank4")
    compare_with_ort(feeds, attrs, dtype, "float32", f"seed {seed} {rule} {dtype} {layout}")


def test_kda_gate_per_key_decay_and_threads_bitwise():
    rng, seed = fresh_rng()
    feeds, attrs = make_case(rng, lens=[70, 3, 20], Hq=2, grp=1, dk=16, dv=16, rule="gated_delta", gate="kda",
                             beta_act="sigmoid", l2=False, per_key=True, dt_bias_kind=2, cap=0, dtype="float32",
                             gate_dtype="float32")
    attrs["gate_lower_bound"] = -3.0
    attrs["scale"] = 0.2
    one = compare_with_ort(feeds, attrs, "float32", "float32", f"seed {seed}")
    two = compare_with_ort(feeds, attrs, "float32", "float32", f"seed {seed} 2 threads", threads=2)
    for a, b in zip(one, two):
        assert np.array_equal(a, b), f"intra-op threads changed the bits (seed {seed})"


def test_state_update_active_zero_disables_capture():
    rng, seed = fresh_rng()
    feeds, attrs = make_case(rng, lens=[6, 9], Hq=1, grp=2, dk=16, dv=8, rule="gated_delta", gate="none",
                             beta_act="none", l2=True, per_key=False, dt_bias_kind=1, cap=4, dtype="float32",
                             gate_dtype="float32")
    ref = oracle(feeds, attrs)
    shapes = dict(zip(outputs_of(attrs), (r.shape for r in ref)))
    for active in (0, 1):
        f = dict(feeds, state_update_active=np.array([active], np.int32))
        model = M.gated_delta_net_model(f, dtype="float32", outputs=outputs_of(attrs), **attrs)
        mine = M.run(M.session(model, plugin=True), f, shapes)
        theirs = M.run(M.session(model, plugin=False), f)
        tol = tolerance("float32", "float32")
        check(mine[0], theirs[0], tol, f"output, active={active} seed {seed}")
        check(mine[1], theirs[1], tol, f"final_state, active={active} seed {seed}")
        if active:
            check_capture(mine[2], np.where(np.isnan(ref[2]), np.nan, theirs[2]), tol, f"state_update seed {seed}")
        else:
            assert (mine[2] == 0).all() and (theirs[2] == 0).all(), "state_update_active=0: zero state_update"


# ---------------------------------------------------------------- bad models and inputs


def _small_case(**over):
    rng, _ = fresh_rng()
    kw = dict(lens=[3, 4], Hq=1, grp=2, dk=8, dv=4, rule="gated_delta", gate="none", beta_act="none", l2=True,
              per_key=False, dt_bias_kind=1, cap=0, dtype="float32", gate_dtype="float32")
    kw.update(over)
    return make_case(rng, **kw)


@pytest.mark.parametrize("name,value,expected,actual", [
    ("qk_l2_norm", 1.0, "INT", "FLOAT"),
    ("state_update_capacity", "2", "INT", "STRING"),
    ("chunk_size", 64.0, "INT", "FLOAT"),
    ("scale", 1, "FLOAT", "INT"),
    ("gate_lower_bound", "x", "FLOAT", "STRING"),
    ("update_rule", 3, "STRING", "INT"),
    ("gate_activation", 1.5, "STRING", "FLOAT"),
    ("beta_activation", [1, 2], "STRING", "INTS"),
])
def test_attribute_type_rejected_at_session_creation(name, value, expected, actual):
    feeds, attrs = _small_case()
    attrs[name] = value
    model = M.gated_delta_net_model(feeds, dtype="float32", outputs=("output", "final_state"), **attrs)
    with pytest.raises(Exception) as e:
        M.session(model, plugin=True)
    msg = str(e.value)
    assert "Mismatched attribute type" in msg and name in msg, msg
    assert f"Expected: '{expected}', actual: '{actual}'" in msg, msg


@pytest.mark.parametrize("name,value,words", [
    ("update_rule", "fast", "update_rule"),
    ("gate_activation", "tanh", "gate_activation"),
    ("beta_activation", "relu", "beta_activation"),
    ("qk_l2_norm", 2, "qk_l2_norm"),
    ("state_update_capacity", 9, "state_update_capacity"),
])
def test_attribute_value_rejected_at_session_creation(name, value, words):
    feeds, attrs = _small_case()
    attrs[name] = value
    model = M.gated_delta_net_model(feeds, dtype="float32", outputs=("output", "final_state"), **attrs)
    with pytest.raises(Exception) as e:
        M.session(model, plugin=True)
    assert words in str(e.value), str(e.value)


@pytest.mark.parametrize("override,words", [
    (dict(cu_seqlens=np.array([1, 3, 7], np.int32)), "cu_seqlens"),
    (dict(cu_seqlens=np.array([0, 3, 6], np.int32)), "cu_seqlens"),
    (dict(cu_seqlens=np.array([0, 5, 3, 7], np.int32)), "cu_seqlens"),
    (dict(cu_seqlens=np.array([[0, 3, 7]], np.int32)), "cu_seqlens"),
    (dict(beta=None), "beta"),
    (dict(initial_state=np.zeros((2, 2, 8, 4), np.float32)), "initial_state"),
])
def test_bad_inputs_at_run_time_name_the_argument(override, words):
    feeds, attrs = _small_case()
    f = {k: v for k, v in dict(feeds, **override).items() if v is not None}
    model = M.gated_delta_net_model(f, dtype="float32", outputs=("output", "final_state"), **attrs)
    sess = M.session(model, plugin=True)
    with pytest.raises(Exception) as e:
        M.run(sess, f)
    msg = str(e.value)
    assert "GatedDeltaNet (linattn)" in msg and words in msg, msg


def test_capture_count_rules_at_run_time():
    feeds, attrs = _small_case(cap=2)
    short = dict(feeds, capture_count=np.array([1], np.int32))  # (B) = (2) expected
    model = M.gated_delta_net_model(short, dtype="float32", outputs=outputs_of(attrs), **attrs)
    with pytest.raises(Exception) as e:
        M.run(M.session(model, plugin=True), short)
    assert "capture_count" in str(e.value) and "(linattn)" in str(e.value), str(e.value)
    missing = {k: v for k, v in feeds.items() if k != "capture_count"}
    model = M.gated_delta_net_model(missing, dtype="float32", outputs=outputs_of(attrs), **attrs)
    with pytest.raises(Exception) as e:
        M.run(M.session(model, plugin=True), missing)
    assert "capture_count" in str(e.value), str(e.value)


def test_output_types_and_shapes_inferred_at_load():
    """The plugin's inference gives ORT the output types and shapes (float state whatever T is)."""
    feeds, attrs = _small_case(dtype="float16", cap=3)
    from onnx import helper
    f = dict(feeds)
    model = M.gated_delta_net_model(f, dtype="float16", outputs=outputs_of(attrs), **attrs)
    for vi in model.graph.input:
        dims = f[vi.name].shape
        vi.CopyFrom(helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, list(dims)))
    sess = M.session(model, plugin=True)
    got = {o.name: (o.type, o.shape) for o in sess.get_outputs()}
    T, Hv, dv, dk, B = 7, 2, 4, 8, 2
    assert got["output"] == ("tensor(float16)", [T, Hv, dv]), got
    assert got["final_state"] == ("tensor(float)", [B, Hv, dv, dk]), got
    assert got["state_update"] == ("tensor(float)", [B, 3 * (Hv + 1 * dk + Hv * dv)]), got


def test_capture_count_forbidden_without_capacity():
    feeds, attrs = _small_case(cap=0)
    f = dict(feeds, capture_count=np.array([1, 1], np.int32))
    model = M.gated_delta_net_model(f, dtype="float32", outputs=("output", "final_state"), **attrs)
    with pytest.raises(Exception) as e:
        M.run(M.session(model, plugin=True), f)
    assert "capture_count" in str(e.value) and "(linattn)" in str(e.value), str(e.value)
