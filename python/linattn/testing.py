"""Comparison helpers shared by the conformance runner and the tests.

Tolerance (used by `python -m linattn.conformance`):
  float32 outputs:          |actual - expected| <= atol + rtol * |expected|
                            with the ONNX backend runner's rtol = 1e-3, atol = 1e-7;
  float16/bfloat16 outputs: the same bound plus ulp_T(expected), one unit in the last place of
                            the output type at the expected value: two correct fp32 computations
                            that differ in their last fp32 bits may round to adjacent T values,
                            so "about one output rounding" is allowed on top of the fp32 bound.
NaN must meet NaN, and infinities must match exactly; dtype and shape must match.
"""

from __future__ import annotations

import numpy as np

from ._tensor import BFLOAT16, FLOAT16, FLOAT32

ONNX_RTOL = 1e-3
ONNX_ATOL = 1e-7

# (mantissa bits, minimum normal exponent) of each type
_FORMAT = {FLOAT32: (23, -126), FLOAT16: (10, -14), BFLOAT16: (7, -126)}


def ulp(values, dtype) -> np.ndarray:
    """Spacing of `dtype` (float32, float16 or bfloat16) at |values|, as float64.
    For 0 and subnormals: the smallest subnormal of the type."""
    mant, emin = _FORMAT[np.dtype(dtype)]
    x = np.abs(np.asarray(values, dtype=np.float64))
    x = np.where(np.isfinite(x), x, 0.0)
    _, e = np.frexp(x)  # x = m * 2**e, m in [0.5, 1): floor(log2 x) = e - 1
    e = np.where(x > 0, np.maximum(e - 1, emin), emin)
    return np.ldexp(1.0, e - mant)


def tolerance(expected: np.ndarray, dtype, rtol: float = ONNX_RTOL, atol: float = ONNX_ATOL) -> np.ndarray:
    """Allowed |actual - expected| per element (see the module docstring)."""
    e = np.abs(np.asarray(expected, dtype=np.float64))
    tol = atol + rtol * e
    if np.dtype(dtype) != FLOAT32:
        tol = tol + ulp(e, dtype)
    return tol


def compare(actual, expected, tol=None, *, rtol: float = ONNX_RTOL, atol: float = ONNX_ATOL) -> str | None:
    """None if `actual` matches `expected` within `tol` (default: tolerance(expected)), else a
    one-line reason naming the worst element."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if actual.shape != expected.shape:
        return f"shape {actual.shape}, expected {expected.shape}"
    if actual.size == 0:
        return None
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if tol is None:
        tol = tolerance(expected, expected.dtype, rtol, atol)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), e.shape)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if (nan_a != nan_e).any():
        idx = np.unravel_index(np.argmax(nan_a != nan_e), e.shape)
        return f"{int((nan_a != nan_e).sum())} NaN mismatches, first at {idx}: got {a[idx]!r}, expected {e[idx]!r}"
    inf = np.isinf(a) | np.isinf(e)
    bad_inf = inf & (a != e)
    if bad_inf.any():
        idx = np.unravel_index(np.argmax(bad_inf), e.shape)
        return f"{int(bad_inf.sum())} infinity mismatches, first at {idx}: got {a[idx]!r}, expected {e[idx]!r}"
    finite = ~(nan_e | inf)
    with np.errstate(invalid="ignore"):  # inf - inf at non-finite positions, masked out
        err = np.where(finite, np.abs(a - e), 0.0)
    excess = np.where(finite, err - tol, -np.inf)
    if (excess > 0).any():
        idx = np.unravel_index(np.argmax(err / np.maximum(tol, 1e-300) * (excess > 0)), e.shape)
        return (
            f"{int((excess > 0).sum())} of {e.size} elements out of tolerance; worst at {idx}: "
            f"got {a[idx]!r}, expected {e[idx]!r}, |diff| {err[idx]:.3g} > tol {tol[idx]:.3g} "
            f"(max |diff| {err.max():.3g}, max |expected| {np.abs(np.where(finite, e, 0)).max():.3g})"
        )
    return None
