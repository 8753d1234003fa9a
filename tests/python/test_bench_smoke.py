"""Smoke tests of the benchmark suite (benchmarks are not tests: nothing here checks speed).

linattn-bench runs one tiny case and emits valid JSON whose model numbers (flops, bytes) match an
independent count; the Python ORT comparison runs one tiny case; the C and Python preset tables
agree; the report script turns the JSON into tables and a plot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BUILD", "build"))
BUILD = BUILD if BUILD.is_absolute() else ROOT / BUILD
BENCH = BUILD / "linattn-bench"

ROW_KEYS = {"op", "preset", "mode", "T", "B", "dtype", "threads", "isa", "linattn_us", "min_us", "max_us", "reps",
            "tokens_per_s", "gflops", "gbs", "roof_pct", "ref_us", "ratio_vs_ref", "flops", "bytes"}
QUICK = ["--reps", "3", "--roof-time", "0.02"]


def run_bench(*args: str) -> subprocess.CompletedProcess:
    if not BENCH.exists():
        pytest.fail(f"{BENCH} missing: run make first")
    return subprocess.run([str(BENCH), *args], capture_output=True, text=True, timeout=120)


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "python") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("LINATTN_LIBRARY", str(BUILD / "liblinattn.so"))
    return env


@pytest.fixture(scope="module")
def c_json(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "c.json"
    p = run_bench("--preset", "tiny,tiny-conv", "--mode", "decode", "--B", "1", "--state", "warm", "--dtype", "f32",
                  "--json", str(out), *QUICK)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    doc["_path"] = str(out)
    return doc


def test_c_bench_json_is_valid_and_complete(c_json):
    assert c_json["tool"] == "linattn-bench"
    assert c_json["roofs"]["fma_gflops"] > 0 and c_json["roofs"]["bw_dram_gbs"] > 0
    rows = c_json["rows"]
    # one LA case and two conv cases (channels first and last), each with the reference alongside
    assert [(r["op"], r.get("layout")) for r in rows] == [
        ("LinearAttention", None), ("CausalConvWithState", "channels_first"),
        ("CausalConvWithState", "channels_last")]
    for r in rows:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r.get("error") is None
        assert r["reps"] == 3 and r["threads"] == 1 and r["T"] == 1 and r["B"] == 1 and r["dtype"] == "f32"
        assert 0 < r["min_us"] <= r["linattn_us"] <= r["max_us"]
        assert r["ref_us"] > 0
        assert r["ratio_vs_ref"] == pytest.approx(r["linattn_us"] / r["ref_us"], rel=1e-3)
        assert r["tokens_per_s"] == pytest.approx(r["B"] * r["T"] / (r["linattn_us"] * 1e-6), rel=1e-3)
        assert r["gflops"] == pytest.approx(r["flops"] / (r["linattn_us"] * 1e3), rel=1e-3)


def test_c_bench_models_match_independent_counts(c_json):
    la, conv_cf, _ = c_json["rows"]
    # tiny: H 2, d_k = d_v 16, gated_delta, one query head per state: 7 * d_k * d_v per head and token
    assert la["flops"] == 2 * 7 * 16 * 16
    # bytes: q, k, v (2*16 each), decay and beta (2 each), output (2*16) in f32, plus the f32 state
    # (2 x 16 x 16) read once and written once
    assert la["bytes"] == (3 * 32 + 2 + 2 + 32) * 4 + 2 * (2 * 16 * 16 * 4)
    # tiny-conv decode: C 64, k 4, L 1: input + output, weights, state read + written
    assert conv_cf["flops"] == 2 * 4 * 64
    assert conv_cf["bytes"] == (2 * 64 + 64 * 4 + 2 * 64 * 3) * 4


def test_c_bench_prefill_and_dtypes():
    p = run_bench("--preset", "tiny", "--mode", "prefill", "--T", "17", "--dtype", "f16,bf16", "--isa", "reference",
                  *QUICK)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith("LinearAttention")]
    assert len(lines) == 2 and all(" 17 " in line for line in lines)


def test_c_bench_rejects_bad_options():
    assert run_bench("--preset", "no-such-model").returncode == 2
    assert run_bench("--dtype", "f64").returncode == 2
    assert run_bench("--threads", "0").returncode == 2


def test_c_and_python_presets_agree():
    sys.path.insert(0, str(ROOT / "python"))
    from linattn import bench

    p = run_bench("--list-json")
    assert p.returncode == 0
    c = json.loads(p.stdout)
    assert set(c["la"]) == set(bench.LA_PRESETS)
    for name, (hq, hkv, hk, dk, dv, rule, per_key, scale, contrib) in bench.LA_PRESETS.items():
        e = c["la"][name]
        assert (e["q_heads"], e["kv_heads"], e["key_heads"], e["d_k"], e["d_v"], e["rule"], e["decay_per_key"],
                e["scale"], e["ort_contrib"]) == (hq, hkv, hk, dk, dv, rule, per_key, scale, contrib), name
        assert e["flops_per_token"] == bench.la_flops_per_token(name)
        assert e["default"] == (name not in bench.TEST_ONLY)
    assert set(c["conv"]) == set(bench.CONV_PRESETS)
    for name, (ch, k, act) in bench.CONV_PRESETS.items():
        assert (c["conv"][name]["channels"], c["conv"][name]["kernel"], c["conv"][name]["activation"]) == (ch, k, act)


def test_python_bench_direct_and_floor_calls():
    """The side-by-side benchmark's `direct` call (descriptors built once) writes what the public
    call writes, and its floor call is rejected at the C entry (NULL descriptor), so call_floor_us
    times the crossing into C and nothing else."""
    sys.path.insert(0, str(ROOT / "python"))
    import numpy as np

    import linattn
    from linattn import _lib, bench

    cases = [bench.Case("LinearAttention", "tiny", "decode", 1, 1, "f32")]
    cases += [bench.Case("CausalConvWithState", "tiny-conv", "decode", 1, 1, "f32", layout)
              for layout in ("channels_first", "channels_last")]
    with linattn.Context(threads=1) as ctx:
        for case in cases:
            inputs = bench.la_inputs if case.op == "LinearAttention" else bench.conv_inputs
            feeds = inputs(case, np.random.default_rng(0))
            public, direct, out = bench.linattn_call(case, feeds, ctx)
            assert direct is not None, case
            public()
            expected = out.copy()
            out.fill(np.nan)
            direct()
            assert np.array_equal(out, expected), case
            direct.rejected()
            assert _lib.last_error() == "desc: NULL", case


@pytest.fixture(scope="module")
def ort_json(tmp_path_factory) -> dict:
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("ort") / "ort.json"
    p = subprocess.run([sys.executable, "-m", "linattn.bench", "--compare-ort", "--preset", "tiny,tiny-conv",
                        "--mode", "decode", "--B", "1", "--dtype", "f32,bf16", "--reps", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env=python_env(), cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    doc["_path"] = str(out)
    return doc


def test_ort_compare_rows(ort_json):
    rows = ort_json["rows"]
    keys = {"op", "preset", "mode", "T", "B", "dtype", "threads", "linattn_us", "ort_us", "ratio"}
    assert len(rows) == 2 + 4  # LA f32/bf16, conv f32/bf16 x channels first/last
    for r in rows:
        assert keys <= set(r) and r.get("error") is None
        assert r["linattn_us"] > 0 and r["linattn_call"] == "direct" and r["call_floor_us"] > 0
        if r["dtype"] == "bf16":
            assert r["ort_us"] is None and r["ratio"] is None and r["ort_note"] == "ORT: no CPU kernel"
        else:
            assert r["ort_us"] > 0 and r["ratio"] == pytest.approx(r["linattn_us"] / r["ort_us"])
            # same inputs on both sides: the outputs must agree (fp32)
            assert r["rel_diff"] < 1e-4


@pytest.fixture(scope="module")
def gdn_json(tmp_path_factory) -> dict:
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("gdn") / "gdn.json"
    p = subprocess.run([sys.executable, "-m", "linattn.gdn_bench", "--T", "1,5", "--dtype", "f32", "--heads", "2",
                        "--d", "16", "--budget", "0.01", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, env=python_env(), cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    doc["_path"] = str(out)
    return doc


def test_gdn_compare_rows(gdn_json):
    assert gdn_json["meta"]["threads"] == 1 and gdn_json["meta"]["onnxruntime_version"]
    rows = gdn_json["rows"]
    assert [(r["T"], r["dtype"]) for r in rows] == [(1, "float32"), (5, "float32")]
    for r in rows:
        assert r["gdn_s"] > 0 and r["la_s"] > 0 and r["ort_s"] > 0
        assert r["rel_err_vs_ort"] < 1e-4  # same inputs on both sides, fp32


def test_report_tables_plot_and_doc(c_json, ort_json, gdn_json, tmp_path):
    script = ROOT / "scripts" / "bench_report.py"
    results, md, png = tmp_path / "results.json", tmp_path / "results.md", tmp_path / "summary.png"
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- bench-results:begin (generated by scripts/bench_report.py; do not edit) -->\nstale-results-placeholder\n"
                   "<!-- bench-results:end -->\noutro\n")
    p = subprocess.run([sys.executable, str(script), "--c", c_json["_path"], "--ort", ort_json["_path"],
                        "--gdn", gdn_json["_path"], "--results", str(results), "--markdown", str(md),
                        "--plot", str(png), "--doc", str(doc)],
                       capture_output=True, text=True, timeout=300, env=python_env())
    assert p.returncode == 0, p.stdout + p.stderr
    merged = json.loads(results.read_text())
    assert [len(merged[k]) for k in ("linattn_bench", "ort_compare", "gdn_compare")] == [1, 1, 1]
    text = md.read_text()
    assert text.count("| LA | tiny |") == 1 + 2  # C table + ORT table (f32, bf16)
    assert "ORT: no CPU kernel" in text
    assert text.count("| float32 | 1 |") == 1 and text.count("| float32 | 5 |") == 1  # the GatedDeltaNet table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    updated = doc.read_text()
    assert updated.startswith("intro\n") and updated.endswith("outro\n") and "stale-results-placeholder" not in updated
    assert text in updated
