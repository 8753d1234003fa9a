"""linattn.gated_rms_norm / linattn.linear_attention_gate (the Python binding of the gate ops)
against a float64 numpy oracle on fresh random data, every dtype, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

import linattn
from linattn import ort_models as M

from ort_testlib import assert_close, fresh_rng


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("activation", ["silu", "swish", "sigmoid"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shape,c", [((2, 9, 256), 64), ((5, 21), 7), ((2, 1, 3, 2, 32), 16)])
def test_gated_rms_norm(shape, c, dtype, activation):
    rng, seed = fresh_rng()
    td = M.np_dtype(dtype)
    x = rng.standard_normal(shape).astype(td)
    g = (3 * rng.standard_normal(shape)).astype(td)
    s = rng.standard_normal(c).astype(td)
    y = linattn.gated_rms_norm(x, s, g, activation=activation, epsilon=1e-6)
    assert y.dtype == td and y.shape == x.shape
    rows = np.asarray(x, np.float64).reshape(-1, c)
    z = np.asarray(g, np.float64).reshape(-1, c)
    act = z * sigmoid(z) if activation != "sigmoid" else sigmoid(z)
    ref = rows / np.sqrt(np.mean(rows * rows, axis=1, keepdims=True) + 1e-6) * np.asarray(s, np.float64) * act
    assert_close(y, ref.reshape(shape), dtype, f"seed={seed}", rel_max=1e-6, rel=2e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_linear_attention_gate(dtype):
    rng, seed = fresh_rng()
    td = M.np_dtype(dtype)
    a = (4 * rng.standard_normal((3, 17, 8))).astype(td)
    b = (4 * rng.standard_normal((3, 17, 8))).astype(td)
    bias = rng.standard_normal(8).astype(np.float32)
    scale = -np.exp(rng.uniform(-2, 2, 8)).astype(np.float32)
    decay, beta = linattn.linear_attention_gate(a, bias, scale, b)
    ref = scale * np.logaddexp(0.0, np.asarray(a, np.float64) + bias)
    assert_close(decay, ref, dtype, f"decay seed={seed}", rel_max=1e-6, rel=2e-6)
    assert_close(beta, sigmoid(np.asarray(b, np.float64)), dtype, f"beta seed={seed}", rel_max=1e-6, rel=2e-6)
    d2, none = linattn.linear_attention_gate(a, bias, scale)
    assert none is None and np.array_equal(np.asarray(d2, np.float32), np.asarray(decay, np.float32))


def test_errors_name_the_argument():
    x = np.ones((2, 8), np.float32)
    with pytest.raises(linattn.LinattnError, match="multiple of the scale length"):
        linattn.gated_rms_norm(x, np.ones(3, np.float32), x)
    with pytest.raises(linattn.LinattnError, match="activation"):
        linattn.gated_rms_norm(x, np.ones(8, np.float32), x, activation="relu")
    with pytest.raises(linattn.LinattnError, match="dt_bias"):
        linattn.linear_attention_gate(x, np.ones(3, np.float32), np.ones(8, np.float32))
    with pytest.raises(linattn.LinattnError, match="decay_scale"):
        linattn.linear_attention_gate(x, np.ones(8, np.float32), np.ones(8, np.float16))
