"""Checks of an installed linattn wheel, run by scripts/test-wheel from a folder outside the
checkout: the package and both shared libraries come from site-packages, LinearAttention and
CausalConvWithState agree with float64 oracles written here (default kernels and the reference
ones), the bundled ONNX Runtime plugin runs in a session, and the module entry points (conformance
runner on the official ONNX cases, benchmark) work. Prints `N passed, N failed`; exit 1 on failure.

usage: python -I check_installed.py SOURCE_TREE WORK_DIR WHEEL
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import traceback
import zipfile
from pathlib import Path

import numpy as np

SOURCE, WORK, WHEEL = (Path(a).resolve() for a in sys.argv[1:4])
SITE = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
results = {"passed": 0, "failed": 0}


def check(name):
    def run(fn):
        try:
            fn()
        except Exception:
            results["failed"] += 1
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        else:
            results["passed"] += 1
            print(f"PASS {name}", flush=True)
    return run


def in_site_packages(path) -> bool:
    p = Path(path).resolve()
    return any(p.is_relative_to(s) for s in SITE) and not p.is_relative_to(SOURCE)


def la_oracle(q, k, v, s, g, beta, hq, hkv):
    """float64 gated delta rule, token by token (README 'Semantics in a paragraph')."""
    b, t, _ = q.shape
    dk, dv = s.shape[2], s.shape[3]
    q64 = q.astype(np.float64).reshape(b, t, hq, dk)
    k64 = k.astype(np.float64).reshape(b, t, hkv, dk)
    v64 = v.astype(np.float64).reshape(b, t, hkv, dv)
    s64 = s.astype(np.float64).copy()
    out = np.zeros((b, t, hq, dv))
    group = hq // hkv
    for n in range(b):
        for i in range(t):
            for h in range(hkv):
                st = s64[n, h] * np.exp(float(g[n, i, h]))
                u = float(beta[n, i, h]) * (v64[n, i, h] - st.T @ k64[n, i, h])
                st = st + np.outer(k64[n, i, h], u)
                s64[n, h] = st
                for j in range(h * group, (h + 1) * group):
                    out[n, i, j] = st.T @ q64[n, i, j] / np.sqrt(dk)
    return out.reshape(b, t, hq * dv), s64


def la_inputs(rng, b=2, t=7, hq=4, hkv=2, dk=8, dv=6):
    k = rng.standard_normal((b, t, hkv, dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return dict(
        query=rng.standard_normal((b, t, hq * dk)).astype(np.float32),
        key=k.reshape(b, t, hkv * dk).astype(np.float32),
        value=rng.standard_normal((b, t, hkv * dv)).astype(np.float32),
        past_state=rng.standard_normal((b, hkv, dk, dv)).astype(np.float32),
        decay=(-0.2 * np.abs(rng.standard_normal((b, t, hkv)))).astype(np.float32),
        beta=rng.random((b, t, hkv)).astype(np.float32),
    ), dict(q_num_heads=hq, kv_num_heads=hkv)


def assert_close(actual, expected, what):
    actual = np.asarray(actual, dtype=np.float64)
    assert np.isfinite(actual).all(), f"{what}: not every element written (NaN poison left)"
    err = np.max(np.abs(actual - expected) / (1e-6 + np.abs(expected)))
    assert np.allclose(actual, expected, rtol=1e-4, atol=1e-5), f"{what}: max relative error {err:.3g}"


rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


@check("the wheel holds linattn/liblinattn.so and linattn/liblinattn_ort.so")
def _():
    names = set(zipfile.ZipFile(WHEEL).namelist())
    missing = {"linattn/liblinattn.so", "linattn/liblinattn_ort.so", "linattn/__init__.py"} - names
    assert not missing, f"{WHEEL.name} lacks {sorted(missing)}"


@check("linattn and liblinattn.so come from site-packages, not the source tree")
def _():
    import linattn

    assert in_site_packages(linattn.__file__), linattn.__file__
    lib = Path(linattn.library_path())
    assert lib.parent == Path(linattn.__file__).resolve().parent, lib
    assert linattn.library_version(), "no version"


for isa in ("auto", "reference"):
    @check(f"LinearAttention gated_delta vs float64 oracle (isa {isa})")
    def _():
        import linattn

        inputs, heads = la_inputs(rng)
        ctx = linattn.Context(threads=2, isa=isa)
        b, t = inputs["query"].shape[:2]
        out = np.full((b, t, heads["q_num_heads"] * inputs["past_state"].shape[3]), np.nan, np.float32)
        state = np.full(inputs["past_state"].shape, np.nan, np.float32)
        linattn.linear_attention(**inputs, **heads, context=ctx, out=(out, state))
        want_out, want_state = la_oracle(inputs["query"], inputs["key"], inputs["value"], inputs["past_state"],
                                         inputs["decay"], inputs["beta"], heads["q_num_heads"], heads["kv_num_heads"])
        assert_close(out, want_out, "output")
        assert_close(state, want_state, "present_state")

    @check(f"CausalConvWithState silu vs float64 oracle (isa {isa})")
    def _():
        import linattn

        b, c, t, kw = 2, 24, 9, 4
        x = rng.standard_normal((b, c, t)).astype(np.float32)
        w = rng.standard_normal((c, 1, kw)).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32)
        past = rng.standard_normal((b, c, kw - 1)).astype(np.float32)
        y, present = linattn.causal_conv_with_state(x, w, bias, past, activation="silu",
                                                    context=linattn.Context(threads=1, isa=isa))
        full = np.concatenate([past, x], axis=2).astype(np.float64)
        ref = np.stack([(full[:, :, i:i + kw] * w[:, 0, :].astype(np.float64)).sum(-1) for i in range(t)], axis=2)
        ref += bias.astype(np.float64)[None, :, None]
        ref = ref / (1 + np.exp(-ref))
        assert_close(y, ref, "output")
        assert_close(present, full[:, :, -(kw - 1):], "present_state")


try:
    import onnxruntime  # noqa: F401
except ImportError:
    onnxruntime = None
    print("SKIP onnxruntime is not installed: the plugin session and the benchmark are not checked")

if onnxruntime is not None:
    @check("liblinattn_ort.so is bundled and runs LinearAttention in an onnxruntime session")
    def _():
        import linattn
        import linattn.ort
        from linattn import ort_models

        path = Path(linattn.ort.library_path())
        assert path.parent == Path(linattn.__file__).resolve().parent, path
        assert in_site_packages(path), path
        inputs, heads = la_inputs(rng)
        sess = ort_models.session(ort_models.linear_attention_model(**heads))
        b, t = inputs["query"].shape[:2]
        shapes = {"output": (b, t, heads["q_num_heads"] * inputs["past_state"].shape[3]),
                  "present_state": inputs["past_state"].shape}
        out, state = ort_models.run(sess, inputs, shapes)
        want_out, want_state = la_oracle(inputs["query"], inputs["key"], inputs["value"], inputs["past_state"],
                                         inputs["decay"], inputs["beta"], heads["q_num_heads"], heads["kv_num_heads"])
        assert_close(out, want_out, "output")
        assert_close(state, want_state, "present_state")


def module(*args, timeout=600):
    p = subprocess.run([sys.executable, "-m", *args], cwd=WORK, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"python -m {' '.join(args)}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@check("python -m linattn.official_cases + linattn.conformance (default and reference kernels)")
def _():
    cases = WORK / "onnx-node-cases"
    module("linattn.official_cases", str(cases))
    for extra in ([], ["--isa", "reference"]):
        last = module("linattn.conformance", *extra, str(cases)).strip().splitlines()[-1]
        assert last.endswith(" 0 failed") and not last.startswith("0 passed"), last


if onnxruntime is not None:
    @check("python -m linattn.bench --compare-ort (one tiny case)")
    def _():
        module("linattn.bench", "--compare-ort", "--preset", "tiny", "--mode", "decode", "--B", "1",
               "--dtype", "f32", "--reps", "3")

print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
