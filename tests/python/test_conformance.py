"""Tests of the conformance runner (python -m linattn.conformance), the official-case generator
and the comparison helpers. The full official run is scripts/test-python's job; here the runner
must also be able to fail, skip and save."""

from __future__ import annotations

import shutil
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from linattn import conformance, official_cases, onnx_models, testing

OFFICIAL_LA = [
    "linear", "gated", "gated_per_head_decay", "delta", "gated_delta", "gated_delta_beta_scalar",
    "gated_delta_gqa", "gated_delta_mqa", "decode_step", "prefill_with_past", "no_past_explicit_zeros",
    "explicit_scale", "fp16", "linear_t1_no_past",
]
OFFICIAL_CONV = [
    "basic", "with_bias", "with_past_state", "silu", "swish_alias", "decode_step", "kernel_size_one",
    "with_bias_and_past_state", "silu_with_past_state", "b1_c1_degenerate", "short_input_no_past_state",
    "fp16", "silu_fp16",
]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    out = tmp_path_factory.mktemp("official")
    assert official_cases.main([str(out)]) == 0
    return out


def run_runner(capsys, *args):
    code = conformance.main([str(a) for a in args])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, lines


def write_case(folder, model, inputs, outputs):
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    ds = folder / "test_data_set_0"
    ds.mkdir()
    for kind, values, infos in (("input", inputs, model.graph.input), ("output", outputs, model.graph.output)):
        for j, (value, info) in enumerate(zip(values, infos)):
            (ds / f"{kind}_{j}.pb").write_bytes(numpy_helper.from_array(value, info.name).SerializeToString())


def test_generator_writes_exactly_the_official_cases(official):
    names = sorted(p.name for p in official.iterdir())
    expected = sorted([f"test_linear_attention_{n}" for n in OFFICIAL_LA] +
                      [f"test_causal_conv_with_state_{n}" for n in OFFICIAL_CONV])
    assert names == expected
    for name in names:
        assert (official / name / "model.onnx").is_file()
        assert (official / name / "test_data_set_0" / "output_0.pb").is_file()


def test_runner_passes_official_cases_and_saves_outputs(official, tmp_path, capsys):
    cases = ["test_linear_attention_fp16", "test_linear_attention_gated_delta_mqa",
             "test_causal_conv_with_state_kernel_size_one", "test_causal_conv_with_state_silu_fp16"]
    save = tmp_path / "saved"
    code, lines = run_runner(capsys, "--save", save, *(official / c for c in cases))
    assert code == 0, lines
    assert lines[-1] == f"{len(cases)} passed, 0 failed"
    assert sorted(line for line in lines if line.startswith("PASS")) == sorted(f"PASS {c}" for c in cases)
    for case in cases:
        for j in (0, 1):
            saved = TensorProto()
            saved.ParseFromString((save / case / f"output_{j}.pb").read_bytes())
            expected = TensorProto()
            expected.ParseFromString((official / case / "test_data_set_0" / f"output_{j}.pb").read_bytes())
            assert saved.name == expected.name and saved.data_type == expected.data_type
            assert testing.compare(numpy_helper.to_array(saved), numpy_helper.to_array(expected)) is None


def test_runner_fails_a_wrong_expected_output(official, tmp_path, capsys):
    case = tmp_path / "test_linear_attention_gated_delta"
    shutil.copytree(official / case.name, case)
    path = case / "test_data_set_0" / "output_0.pb"
    proto = TensorProto()
    proto.ParseFromString(path.read_bytes())
    values = numpy_helper.to_array(proto).copy()
    values.reshape(-1)[5] *= 1.002  # 2e-3 relative: beyond rtol 1e-3
    path.write_bytes(numpy_helper.from_array(values, proto.name).SerializeToString())
    code, lines = run_runner(capsys, tmp_path)
    assert code == 1
    assert lines[-2].startswith(f"FAIL {case.name}: test_data_set_0: output_0 (output): 1 of ")
    assert lines[-1] == "0 passed, 1 failed"


def test_runner_skips_other_ops_and_fails_missing_dirs(official, tmp_path, capsys):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 27)])
    x = np.array([-1.0, 2.0], np.float32)
    write_case(tmp_path / "cases" / "test_relu", model, [x], [np.maximum(x, 0)])
    shutil.copytree(official / "test_causal_conv_with_state_basic", tmp_path / "cases" / "test_causal_conv_with_state_basic")
    code, lines = run_runner(capsys, tmp_path / "cases")
    assert code == 0, lines
    assert "PASS test_causal_conv_with_state_basic" in lines
    assert any(line.startswith("SKIP test_relu: op Relu") for line in lines)
    assert lines[-1] == "1 passed, 0 failed"
    code, lines = run_runner(capsys, tmp_path / "nowhere")
    assert code == 1 and lines[-1] == "0 passed, 1 failed"


def test_runner_bfloat16_case_with_an_omitted_middle_input(tmp_path, capsys):
    """A case the official set lacks: bfloat16 everything, past_state omitted but decay given."""
    bf16 = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng()
    b, t, hq, hkv, dk, dv = 2, 6, 4, 2, 8, 8
    q = rng.standard_normal((b, t, hq * dk)).astype(bf16)
    k = (rng.standard_normal((b, t, hkv * dk)) * 0.3).astype(bf16)
    v = rng.standard_normal((b, t, hkv * dv)).astype(bf16)
    g = (-np.abs(rng.standard_normal((b, t, hkv * dk))) * 0.1).astype(bf16)
    beta = rng.random((b, t, 1)).astype(bf16)
    inputs = ("query", "key", "value", "", "decay", "beta")
    model = onnx_models.linear_attention_model(q_num_heads=hq, kv_num_heads=hkv, dtype="bfloat16", inputs=inputs)
    expected = onnx_models.reference_linear_attention(q, k, v, None, g, beta, q_num_heads=hq, kv_num_heads=hkv)
    write_case(tmp_path / "test_bf16_gated_delta", model, [q, k, v, g, beta], list(expected))
    code, lines = run_runner(capsys, "--isa", "reference", tmp_path)
    assert code == 0, lines
    assert lines[-2:] == ["PASS test_bf16_gated_delta", "1 passed, 0 failed"]


def test_runner_command_line(official):
    proc = subprocess.run(
        [sys.executable, "-m", "linattn.conformance", str(official / "test_linear_attention_linear")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"


def test_ulp_and_tolerance():
    assert testing.ulp(1.0, np.float16) == 2.0**-10
    assert testing.ulp(0.0, np.float16) == 2.0**-24
    assert testing.ulp(65504.0, np.float16) == 32.0
    assert testing.ulp(1.0, ml_dtypes.bfloat16) == 2.0**-7
    assert testing.ulp(1.5, np.float32) == 2.0**-23
    assert testing.ulp(0.0, np.float32) == 2.0**-149
    one = np.array([1.0], np.float16)
    assert testing.compare(np.nextafter(one, np.float16(2)), one) is None  # one float16 step: allowed
    assert testing.compare(one + np.float16(2 * 2.0**-10 + 2.0**-10), one) is not None  # three: not
    assert testing.compare(np.array([np.nan], np.float32), np.array([1.0], np.float32)) is not None
    assert testing.compare(np.array([np.inf], np.float32), np.array([np.inf], np.float32)) is None
    assert testing.compare(np.array([1.0], np.float32), np.array([1.0], np.float16)).startswith("dtype")
