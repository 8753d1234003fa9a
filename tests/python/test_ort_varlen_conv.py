"""com.microsoft VarlenCausalConvWithState through liblinattn_ort.so against ONNX Runtime's own CPU
kernel (a session with the plugin vs a plain session, same model, fresh random inputs) across
dtypes, ragged batches, kernel sizes, dilation, activation, bias and capture. The plugin's outputs
are NaN-poisoned before the run; its call counter proves the node ran on linattn. Also: the
dynamic grouped mode refused in ORT's CPU wording, attribute types at session creation, malformed
cumulative_sequence_length and capture_count at run time with linattn's message."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ort = pytest.importorskip("onnxruntime")
# every test once per shape-reading path of the plugin (conftest.py, ort_api_path)
pytestmark = pytest.mark.usefixtures("ort_api_path")
from linattn import ort as lort  # noqa: E402
from linattn import ort_models as M  # noqa: E402

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)

from test_varlen_conv import DTYPES, assert_rounding_close, examples, random_case, tap_magnitude  # noqa: E402
from test_varlen_conv import varlen_model  # noqa: E402


def kernel_calls():
    lib = ctypes.CDLL(lort.library_path())
    lib.linattn_ort_kernel_calls.restype = ctypes.c_uint64
    lib.linattn_ort_kernel_calls.argtypes = [ctypes.c_char_p]
    return lib.linattn_ort_kernel_calls(b"VarlenCausalConvWithState")


def shapes_of(case, capacity):
    batch, channels = len(case["cu"]) - 1, case["input"].shape[1]
    shapes = {"output": case["input"].shape, "final_state": case["initial_state"].shape}
    if capacity:
        shapes["state_update"] = (batch, capacity, channels)
    return shapes


@settings(max_examples=examples(40))
@given(data=st.data())
def test_plugin_matches_onnxruntime_cpu(data):
    dtype = data.draw(st.sampled_from(DTYPES), "dtype")
    batch = data.draw(st.integers(1, 5), "batch")
    lengths = data.draw(st.lists(st.one_of(st.integers(1, 9), st.integers(1, 200)), min_size=batch,
                                 max_size=batch), "lengths")
    channels = data.draw(st.integers(1, 80), "channels")
    kernel = data.draw(st.integers(1, 5), "kernel")
    dilation = data.draw(st.integers(1, 3), "dilation")
    activation = data.draw(st.sampled_from(("none", "silu", "swish")), "activation")
    has_bias = data.draw(st.booleans(), "bias")
    capacity = data.draw(st.sampled_from((0, 0, 1, 3, 8)), "capacity")
    threads = data.draw(st.sampled_from((1, 2)), "threads")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    case = random_case(np.random.default_rng(seed), dtype, lengths, channels, kernel, dilation, has_bias, capacity)
    model = varlen_model(dtype, has_bias=has_bias, capacity=capacity, activation=activation, dilation=dilation)
    shapes = shapes_of(case, capacity)
    expected = M.run(M.session(model, plugin=False), case, shapes)
    before = kernel_calls()
    got = M.run(M.session(model, plugin=True, threads=threads), case, shapes)
    assert kernel_calls() - before == 1, "the node did not run on linattn"
    assert_rounding_close(got[0], expected[0], tap_magnitude(case, dilation), dtype, f"output seed {seed}")
    np.testing.assert_array_equal(got[1].view(np.uint8), expected[1].view(np.uint8), f"final_state seed {seed}")
    if capacity:
        np.testing.assert_array_equal(got[2].view(np.uint8), expected[2].view(np.uint8), f"state_update seed {seed}")


def _case(capacity=0, **kw):
    rng = np.random.default_rng(7)
    return random_case(rng, "float32", [3, 5], 6, 4, 1, False, capacity, **kw)


def test_dynamic_mode_refused_in_ort_cpu_wording():
    from onnx import TensorProto, helper

    case = _case()
    case["kernel_delta"] = np.ones((8, 2, 6), np.float32)
    case["previous_mask"] = np.ones((8, 1), np.float32)
    ins = ["input", "weight", "cu", "", "initial_state", "", "kernel_delta", "previous_mask"]
    node = helper.make_node("VarlenCausalConvWithState", ins, ["output", "final_state"], domain=M.CONTRIB)
    vis = [M._vi(n, "float32") if n != "cu" else helper.make_tensor_value_info("cu", TensorProto.INT32, None)
           for n in ins if n]
    model = M._make_model([node], vis, [M._vi(o, "float32") for o in ("output", "final_state")], M.CONTRIB)
    for plugin in (False, True):
        with pytest.raises(Exception) as e:
            M.run(M.session(model, plugin=plugin), case)
        assert "CPU VarlenCausalConvWithState does not support dynamic grouped convolution (CUDA only)" in str(e.value)


@pytest.mark.parametrize("name,value,expected,actual", [
    ("dilation", 1.0, "INT", "FLOAT"),
    ("state_update_capacity", "2", "INT", "STRING"),
    ("activation", 1, "STRING", "INT"),
    ("group_size", [1], "INT", "INTS"),
])
def test_attribute_type_rejected_at_session_creation(name, value, expected, actual):
    model = varlen_model("float32", has_bias=False, capacity=0, activation="none", dilation=1)
    node = model.graph.node[0]
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    from onnx import helper
    node.attribute.append(helper.make_attribute(name, value))
    with pytest.raises(Exception) as e:
        M.session(model, plugin=True)
    msg = str(e.value)
    assert "Mismatched attribute type" in msg and f"Expected: '{expected}', actual: '{actual}'" in msg, msg


@pytest.mark.parametrize("cu,needle", [
    ([1, 3, 8], "cu_seqlens"),
    ([0, 3, 7], "cu_seqlens"),
    ([0, 5, 3, 8], "cu_seqlens"),
])
def test_bad_cu_seqlens_at_run_time(cu, needle):
    case = _case()
    case["cu"] = np.array(cu, np.int32)
    case["initial_state"] = np.zeros((len(cu) - 1, 6, 3), np.float32)
    model = varlen_model("float32", has_bias=False, capacity=0, activation="none", dilation=1)
    with pytest.raises(Exception) as e:
        M.run(M.session(model, plugin=True), case)
    msg = str(e.value)
    assert "VarlenCausalConvWithState (linattn)" in msg and needle in msg, msg


def test_bad_capture_count_at_run_time():
    case = _case(capacity=2)
    case["capture_count"] = np.array([1], np.int32)
    model = varlen_model("float32", has_bias=False, capacity=2, activation="none", dilation=1)
    with pytest.raises(Exception) as e:
        M.run(M.session(model, plugin=True), case)
    assert "capture_count" in str(e.value) and "(linattn)" in str(e.value), str(e.value)
