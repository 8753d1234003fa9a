"""Side-by-side benchmark of linattn and ONNX Runtime's CPU kernels.

    python -m linattn.bench --compare-ort [--threads N] [--quick] [--json FILE]
    python -m linattn.bench --compare-vllm --vllm-lib PATH   (linattn.vllm_bench; `make bench-peers`)
    python -m linattn.bench --torch   transformers' Qwen3.5 layers with and without
                                      linattn.torch (linattn/torch_bench.py)

For every case (real-model presets, the same as linattn-bench's) it builds a single-node model
with ONNX Runtime's com.microsoft LinearAttention or CausalConvWithState, feeds the same numpy
inputs to ORT and to linattn (same thread count, preallocated linattn outputs), and alternates
the two call by call. Reported times are medians:

  linattn_us          one ctypes call of the C function with its descriptors built once, through
                      the binding's unchecked entry point (_lib.unchecked, as its own calls): the
                      library's time plus ~0.5 us of ctypes (the counterpart of ORT's kernel time)
  linattn_binding_us  one call of linattn.linear_attention / causal_conv_with_state (adds the
                      binding's argument checks; its fixed cost is linattn_floor_us); timed only
                      for calls under 50 ms, where it is not noise
  ort_us              ORT's kernel time from ORT's own profiler: the op node's time, plus the Cast
                      nodes ORT inserts around it for float16 (ORT has float32 CPU kernels only)
  ratio               linattn_us / ort_us  (< 1: linattn is faster); ratio_binding likewise
  call_floor_us       one ctypes call of the same C function with the same arguments but a NULL
                      descriptor, rejected at once: the cost of crossing from Python into C,
                      which ORT's kernel time does not contain
  net_ratio           (linattn_us - call_floor_us) / ort_us: library time against kernel time
                      (it matters only for calls of a few microseconds: decode)

Cross-checks kept in the JSON: ort_session_us (wall time of session.run) and ort_session_us minus
the wall time of an empty model (ort_minus_floor_us); the largest output difference between the
two (rel_diff, relative to max |output|). bfloat16 rows time linattn only: ORT has no bf16 CPU
kernel for these ops ("ORT: no CPU kernel").
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass

import ml_dtypes
import numpy as np

# Presets: mirror of bench/bench_presets.c (tests/python/test_bench_smoke.py checks they agree).
# name: (q_heads, kv_heads, key_heads, d_k, d_v, rule, decay_per_key, scale, ort_contrib)
LA_PRESETS = {
    "qwen3.5-0.8b": (16, 16, 16, 128, 128, "gated_delta", False, 0.0, False),
    "qwen3.5-9b-ort": (16, 32, 16, 128, 128, "gated_delta", False, 0.0, True),
    "qwen3.5-9b-std": (32, 32, 32, 128, 128, "gated_delta", False, 0.0, False),
    "qwen3.5-27b-ort": (16, 48, 16, 128, 128, "gated_delta", False, 0.0, True),
    "qwen3.5-27b-std": (48, 48, 48, 128, 128, "gated_delta", False, 0.0, False),
    "kimi-kda": (32, 32, 32, 128, 128, "gated_delta", True, 0.0, False),
    "rwkv6-7b": (64, 64, 64, 64, 64, "gated", True, 1.0, False),
    "mamba2-2.7b": (80, 80, 80, 128, 64, "gated", False, 1.0, False),
    "tiny": (2, 2, 2, 16, 16, "gated_delta", False, 0.0, False),
}
# name: (channels, kernel, activation)
CONV_PRESETS = {
    "qwen3.5-0.8b-conv": (6144, 4, "silu"),
    "qwen3.5-9b-conv": (8192, 4, "silu"),
    "tiny-conv": (64, 4, "silu"),
}
TEST_ONLY = {"tiny", "tiny-conv"}

DTYPES = {"f32": np.dtype(np.float32), "f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16)}


def la_flops_per_token(name: str) -> float:
    """Same model as bench/bench_presets.c (docs/benchmarks.md)."""
    hq, hkv, _, dk, dv, rule, _, _, _ = LA_PRESETS[name]
    gated = rule in ("gated", "gated_delta")
    delta = rule in ("delta", "gated_delta")
    group = hq // hkv if hq > hkv else 1
    return hkv * dk * dv * ((1 if gated else 0) + (2 if delta else 0) + 2 + 2 * group)


@dataclass
class Case:
    op: str  # "LinearAttention" | "CausalConvWithState"
    preset: str
    mode: str  # "decode" | "prefill"
    B: int
    T: int
    dtype: str
    layout: str | None = None  # conv: "channels_first" | "channels_last"


# ---------------------------------------------------------------- inputs and models


def _unit_rows(rng, B, T, heads, d):
    x = rng.standard_normal((B, T, heads, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x.reshape(B, T, heads * d)


def la_inputs(case: Case, rng) -> dict:
    """ONNX input name -> array (activations in the case dtype, state float32)."""
    hq, hkv, hk, dk, dv, rule, per_key, _, _ = LA_PRESETS[case.preset]
    B, T, dt = case.B, case.T, DTYPES[case.dtype]
    feeds = {
        "query": _unit_rows(rng, B, T, hq, dk),
        "key": _unit_rows(rng, B, T, hk, dk),
        "value": rng.standard_normal((B, T, hkv * dv)).astype(np.float32),
        "past_state": (0.05 * rng.standard_normal((B, hkv, dk, dv))).astype(np.float32),
    }
    if rule in ("gated", "gated_delta"):
        width = hkv * dk if per_key else hkv
        feeds["decay"] = -(0.02 + 0.3 * rng.random((B, T, width))).astype(np.float32)
    if rule in ("delta", "gated_delta"):
        feeds["beta"] = (0.1 + 0.8 * rng.random((B, T, hkv))).astype(np.float32)
    return {k: (v if k == "past_state" else v.astype(dt)) for k, v in feeds.items()}


def conv_inputs(case: Case, rng) -> dict:
    C, k, _ = CONV_PRESETS[case.preset]
    B, L, dt = case.B, case.T, DTYPES[case.dtype]
    last = case.layout == "channels_last"
    x = rng.standard_normal((B, L, C) if last else (B, C, L)).astype(np.float32)
    s = rng.standard_normal((B, k - 1, C) if last else (B, C, k - 1)).astype(np.float32)
    w = (0.5 * rng.standard_normal((C, 1, k))).astype(np.float32)
    return {"input": x.astype(dt), "weight": w.astype(dt), "past_state": s.astype(dt)}


def _onnx_type(dt: np.dtype) -> int:
    from onnx import TensorProto

    return {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
            DTYPES["bf16"]: TensorProto.BFLOAT16}[np.dtype(dt)]


def ort_model(case: Case, feeds: dict) -> bytes:
    """A single com.microsoft node taking `feeds` (in order) with symbolic B/T dims."""
    from onnx import helper

    if case.op == "LinearAttention":
        hq, hkv, _, _, _, rule, _, scale, _ = LA_PRESETS[case.preset]
        names = [n for n in ("query", "key", "value", "past_state", "decay", "beta") if n in feeds]
        attrs = dict(q_num_heads=hq, kv_num_heads=hkv, update_rule=rule, scale=float(scale))
    else:
        _, _, act = CONV_PRESETS[case.preset]
        names = ["input", "weight", "", "past_state"]  # no bias (Qwen3.5's conv has none)
        attrs = dict(activation=act, channels_last=1 if case.layout == "channels_last" else 0)

    def sym_shape(name, a):
        if name in ("weight",):
            return list(a.shape)
        return ["B"] + list(a.shape[1:])

    inputs = [helper.make_tensor_value_info(n, _onnx_type(feeds[n].dtype), sym_shape(n, feeds[n]))
              for n in names if n]
    state_t = _onnx_type(feeds["past_state"].dtype)
    out_t = _onnx_type(feeds["query" if case.op == "LinearAttention" else "input"].dtype)
    outputs = [helper.make_tensor_value_info("output", out_t, None),
               helper.make_tensor_value_info("present_state", state_t, None)]
    node = helper.make_node(case.op, names, ["output", "present_state"], domain="com.microsoft", **attrs)
    graph = helper.make_graph([node], "bench", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                     helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString()


def empty_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "empty", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


# ---------------------------------------------------------------- ORT sessions


def session_options(threads: int, profile_prefix: str | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ORT's workers spin after a run by default and would steal the CPU from the linattn call
    # that follows (the two alternate); without spinning both sides start from sleeping threads.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def profiled_kernel_times(profile_path: str, node_op: str, skip_runs: int):
    """Per run (after `skip_runs`): (op node us, inserted Cast nodes us) from an ORT profile."""
    with open(profile_path) as f:
        events = json.load(f)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    nodes = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    per_run = [[0.0, 0.0] for _ in runs]
    for e in nodes:
        ts = e["ts"]
        for i, (a, b) in enumerate(runs):  # few runs per case: a linear scan is fine
            if a <= ts <= b:
                op = e.get("args", {}).get("op_name", "")
                per_run[i][0 if op == node_op else 1] += float(e["dur"])
                break
    return per_run[skip_runs:]


def ort_floor_us(threads: int, reps: int = 300) -> float:
    """Median wall time of session.run on an Identity of one float: ORT's fixed per-run cost."""
    import onnxruntime as ort

    sess = ort.InferenceSession(empty_model(), session_options(threads, None), providers=["CPUExecutionProvider"])
    feeds = {"x": np.zeros(1, np.float32)}
    for _ in range(20):
        sess.run(None, feeds)
    t = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        t.append(time.perf_counter_ns() - t0)
    return statistics.median(t) / 1e3


# ---------------------------------------------------------------- linattn calls


def linattn_call(case: Case, feeds: dict, ctx):
    """(public, direct, output): zero-argument functions making one linattn call on preallocated
    outputs. `public` goes through linattn.linear_attention / causal_conv_with_state (argument
    checks and descriptors, reused from the previous call with the same shapes: a few
    microseconds of Python); `direct` calls the C function
    with descriptors built once, so only the ctypes call itself is added to the library's time
    (the counterpart of ORT's per-node kernel time). direct is None if the binding's internals
    it relies on are not there."""
    import linattn

    if case.op == "LinearAttention":
        hq, hkv, _, dk, dv, rule, _, scale, contrib = LA_PRESETS[case.preset]
        B, T = case.B, case.T
        out = np.empty((B, T, max(hq, hkv) * dv), feeds["query"].dtype)
        state = np.empty(feeds["past_state"].shape, np.float32)
        args = (feeds["query"], feeds["key"], feeds["value"], feeds["past_state"], feeds.get("decay"),
                feeds.get("beta"))
        kw = dict(q_num_heads=hq, kv_num_heads=hkv, update_rule=rule, scale=scale, ort_contrib=contrib,
                  out=(out, state), context=ctx)

        def public():
            linattn.linear_attention(*args, **kw)

        def build_direct():
            from . import _lib, _tensor, ops

            desc = ops.linear_attention_desc(hq, hkv, rule, scale, 64, contrib)
            tensors = [_tensor.describe(a, strided=False) if a is not None else None for a in args]
            tensors += [_tensor.describe(out, strided=False), _tensor.describe(state, strided=False)]
            fn = _lib.unchecked("linattn_linear_attention")
            cargs = (ctx.handle, ctypes.byref(desc), *[ctypes.byref(t) if t is not None else None for t in tensors],
                     None, ctypes.c_size_t(0))
            return fn, cargs, (desc, tensors)
    else:
        _, _, act = CONV_PRESETS[case.preset]
        last = case.layout == "channels_last"
        out = np.empty(feeds["input"].shape, feeds["input"].dtype)
        state = np.empty(feeds["past_state"].shape, feeds["past_state"].dtype)
        kw = dict(activation=act, channels_last=last, out=(out, state), context=ctx)

        def public():
            linattn.causal_conv_with_state(feeds["input"], feeds["weight"], None, feeds["past_state"], **kw)

        def build_direct():
            from . import _lib, _tensor, ops

            desc = ops.causal_conv_desc(act, 1, last)
            arrays = (feeds["input"], feeds["weight"], None, feeds["past_state"], out, state)
            tensors = [_tensor.describe(a, strided=False) if a is not None else None for a in arrays]
            fn = _lib.unchecked("linattn_causal_conv_with_state")
            cargs = (ctx.handle, ctypes.byref(desc), *[ctypes.byref(t) if t is not None else None for t in tensors],
                     None, ctypes.c_size_t(0))
            return fn, cargs, (desc, tensors)

    try:
        fn, cargs, keep = build_direct()
        from ._lib import check

        def direct(_keep=keep):  # _keep holds the descriptors the pointers refer to
            check(fn(*cargs))

        rejected_args = (cargs[0], None) + cargs[2:]

        def rejected(_keep=keep):  # the same crossing into C, refused at the NULL descriptor
            fn(*rejected_args)

        direct.rejected = rejected
    except (ImportError, AttributeError, TypeError):
        direct = None
    return public, direct, out


def linattn_floor_us(ctx, reps: int = 300) -> float:
    """Median wall time of the smallest LinearAttention call through the binding (its overhead)."""
    case = Case("LinearAttention", "tiny", "decode", 1, 1, "f32")
    feeds = la_inputs(case, np.random.default_rng(0))
    call, _, _ = linattn_call(case, feeds, ctx)
    for _ in range(20):
        call()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        call()
        t.append(time.perf_counter_ns() - t0)
    return statistics.median(t) / 1e3


# ---------------------------------------------------------------- one case


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-30)
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0


def measure_case(case: Case, args, ctx, floors: dict, tmpdir: str) -> dict:
    import onnxruntime as ort

    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    feeds = la_inputs(case, rng) if case.op == "LinearAttention" else conv_inputs(case, rng)
    row = dict(op=case.op, preset=case.preset, mode=case.mode, T=case.T, B=case.B, dtype=case.dtype,
               state_dtype="f32" if case.op == "LinearAttention" else case.dtype, layout=case.layout,
               threads=args.threads, isa=ctx.isa, linattn_us=None, ort_us=None, ratio=None, ort_note=None)
    public, direct, out = linattn_call(case, feeds, ctx)
    main_call = direct or public

    sess = None
    prefix = os.path.join(tmpdir, "ort_profile")
    try:
        sess = ort.InferenceSession(ort_model(case, feeds), session_options(args.threads, prefix),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # bf16: "Could not find an implementation for LinearAttention(1)"
        msg = str(e)
        row["ort_note"] = "ORT: no CPU kernel" if "NOT_IMPLEMENTED" in msg or "implementation" in msg else \
            "ORT: " + msg.splitlines()[0][:120]

    # warm-up (and first estimates)
    t0 = time.perf_counter()
    main_call()
    t_lin = time.perf_counter() - t0
    # the public call adds a fixed ~floor of Python; time it too unless that is noise anyway
    time_public = direct is not None and t_lin < 0.05
    t_ort = 0.0
    warm_runs = 0
    if sess is not None:
        t0 = time.perf_counter()
        ort_out = sess.run(None, feeds)
        t_ort = time.perf_counter() - t0
        warm_runs = 1
        if max(t_lin, t_ort) < 0.01:
            for _ in range(3):
                main_call()
                if time_public:
                    public()
                sess.run(None, feeds)
                warm_runs += 1
    per_round = t_lin * (2 if time_public else 1) + t_ort
    if args.reps:
        reps = args.reps
    else:
        reps = int(args.budget / max(per_round, 1e-6))
        reps = max(3 if per_round > 0.05 else 7, min(reps, 300))

    lin_t, pub_t, ort_t, floor_t = [], [], [], []
    rejected = getattr(direct, "rejected", None)
    for _ in range(reps):  # alternate: linattn (direct, public), then one ORT run
        a = time.perf_counter_ns()
        main_call()
        b = time.perf_counter_ns()
        lin_t.append((b - a) / 1e3)
        if rejected is not None:
            for _ in range(3):
                a = time.perf_counter_ns()
                rejected()
                b = time.perf_counter_ns()
                floor_t.append((b - a) / 1e3)
        if time_public:
            a = time.perf_counter_ns()
            public()
            b = time.perf_counter_ns()
            pub_t.append((b - a) / 1e3)
        if sess is not None:
            a = time.perf_counter_ns()
            sess.run(None, feeds)
            b = time.perf_counter_ns()
            ort_t.append((b - a) / 1e3)

    row["reps"] = reps
    row["linattn_call"] = "direct" if direct is not None else "public"
    row["linattn_us"] = statistics.median(lin_t)
    row["linattn_min_us"] = min(lin_t)
    row["linattn_max_us"] = max(lin_t)
    row["linattn_binding_us"] = statistics.median(pub_t) if pub_t else None
    row["linattn_floor_us"] = floors["linattn"]
    row["call_floor_us"] = statistics.median(floor_t) if floor_t else None
    tokens = case.B * case.T
    row["linattn_tokens_per_s"] = tokens / (row["linattn_us"] * 1e-6)
    if case.op == "LinearAttention":
        row["flops"] = la_flops_per_token(case.preset) * tokens
        row["linattn_gflops"] = row["flops"] / (row["linattn_us"] * 1e3)

    if sess is not None:
        profile = sess.end_profiling()
        try:
            per_run = profiled_kernel_times(profile, case.op, warm_runs)
        finally:
            os.remove(profile)
        if len(per_run) == reps:
            node = [r[0] for r in per_run]
            cast = [r[1] for r in per_run]
            total = [r[0] + r[1] for r in per_run]
            row["ort_us"] = statistics.median(total)
            row["ort_node_us"] = statistics.median(node)
            row["ort_cast_us"] = statistics.median(cast)
            if row["ort_cast_us"] > 0:
                row["ort_note"] = "ORT float32 kernel + inserted Casts (cast time included)"
        else:
            row["ort_note"] = f"ORT profile had {len(per_run)} runs, expected {reps}"
        row["ort_session_us"] = statistics.median(ort_t)
        row["ort_floor_us"] = floors["ort"]
        row["ort_minus_floor_us"] = row["ort_session_us"] - floors["ort"]
        if row["ort_us"]:
            row["ratio"] = row["linattn_us"] / row["ort_us"]
            if row["call_floor_us"] is not None:
                row["net_ratio"] = max(row["linattn_us"] - row["call_floor_us"], 0.0) / row["ort_us"]
            if row["linattn_binding_us"]:
                row["ratio_binding"] = row["linattn_binding_us"] / row["ort_us"]
            row["ort_tokens_per_s"] = tokens / (row["ort_us"] * 1e-6)
        row["rel_diff"] = _rel_diff(out, ort_out[0])
    return row


# ---------------------------------------------------------------- case lists


def enumerate_cases(args) -> list[Case]:
    presets = args.preset.split(",") if args.preset else None
    dtypes = args.dtype.split(",")
    ops = {"la": ["LinearAttention"], "conv": ["CausalConvWithState"]}.get(args.op,
                                                                            ["LinearAttention", "CausalConvWithState"])
    T_list = [int(x) for x in args.T.split(",")]
    B_list = [int(x) for x in args.B.split(",")]
    cases = []

    def chosen(name):
        return name in presets if presets else name not in TEST_ONLY

    if "LinearAttention" in ops:
        for name in LA_PRESETS:
            if not chosen(name):
                continue
            if args.quick and not presets and name == "qwen3.5-27b-std":
                continue
            for dt in dtypes:
                if args.mode in ("decode", "all"):
                    cases += [Case("LinearAttention", name, "decode", B, 1, dt) for B in B_list]
                if args.mode in ("prefill", "all"):
                    for T in T_list:
                        # --quick: T >= 4096 only for the smallest model, float32/float16
                        if args.quick and T >= 4096 and (name != "qwen3.5-0.8b" or dt == "bf16"):
                            continue
                        cases.append(Case("LinearAttention", name, "prefill", 1, T, dt))
    if "CausalConvWithState" in ops:
        for name in CONV_PRESETS:
            if not chosen(name):
                continue
            for dt in dtypes:
                for layout in ("channels_first", "channels_last"):
                    if args.mode in ("decode", "all"):
                        cases.append(Case("CausalConvWithState", name, "decode", 1, 1, dt, layout))
                    if args.mode in ("prefill", "all"):
                        for T in T_list:
                            if args.quick and T >= 4096 and dt != "f32":  # ORT's conv is slow at L = 4096
                                continue
                            cases.append(Case("CausalConvWithState", name, "prefill", 1, T, dt, layout))
    return cases


# ---------------------------------------------------------------- output


def _fmt(x, spec):
    width = int(spec.split(".")[0]) if spec[0].isdigit() else 0
    return format(x, spec) if isinstance(x, (int, float)) else "-".rjust(width)


HEADER = (f"{'op':<19} {'preset':<17} {'mode':<7} {'lay':<3} {'B':>2} {'T':>5} {'dt':<4} "
          f"{'linattn_us':>11} {'binding_us':>11} {'ort_us':>11} {'ratio':>7} {'floor_us':>8} {'net_ratio':>9} "
          f"{'ort_sess_us':>11} {'rel_diff':>8}  note")


def format_row(r: dict) -> str:
    lay = {"channels_first": "CF", "channels_last": "CL"}.get(r.get("layout"), "")
    return (f"{r['op']:<19} {r['preset']:<17} {r['mode']:<7} {lay:<3} {r['B']:>2} {r['T']:>5} {r['dtype']:<4} "
            f"{_fmt(r.get('linattn_us'), '11.1f')} {_fmt(r.get('linattn_binding_us'), '11.1f')} "
            f"{_fmt(r.get('ort_us'), '11.1f')} {_fmt(r.get('ratio'), '7.3f')} "
            f"{_fmt(r.get('call_floor_us'), '8.2f')} {_fmt(r.get('net_ratio'), '9.3f')} "
            f"{_fmt(r.get('ort_session_us'), '11.1f')} {_fmt(r.get('rel_diff'), '8.1e')}  "
            f"{r.get('ort_note') or r.get('error') or ''}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--compare-vllm" in argv:  # the vLLM comparison needs torch: its own module and venv
        from . import vllm_bench

        return vllm_bench.main([x for x in argv if x != "--compare-vllm"])
    if "--torch" in argv:  # transformers with and without linattn.torch: needs torch and transformers
        from . import torch_bench

        return torch_bench.main(argv)
    p = argparse.ArgumentParser(prog="python -m linattn.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--compare-ort", action="store_true", help="time linattn next to ONNX Runtime (required)")
    p.add_argument("--threads", type=int, default=1, help="linattn context threads = ORT intra_op_num_threads")
    p.add_argument("--quick", action="store_true", help="the reduced set used by `make bench`")
    p.add_argument("--op", default="all", choices=["la", "conv", "all"])
    p.add_argument("--mode", default="all", choices=["decode", "prefill", "all"])
    p.add_argument("--preset", default=None, help="comma list (default: every model preset)")
    p.add_argument("--dtype", default="f32,f16,bf16")
    p.add_argument("--T", default="64,512,4096", help="prefill lengths")
    p.add_argument("--B", default="1,8", help="decode batch sizes")
    p.add_argument("--isa", default="auto", help="linattn kernel family: auto or one of linattn.available_isas()")
    p.add_argument("--state-stores", default="auto", choices=["auto", "cached", "streaming"],
                   help="linattn decode stores into the separate present_state (include/linattn.h)")
    p.add_argument("--reps", type=int, default=0, help="fixed repetitions (default: adaptive)")
    p.add_argument("--budget", type=float, default=None, help="seconds per case (default 0.3, quick 0.15)")
    p.add_argument("--json", default=None, help="write the rows and metadata as JSON")
    args = p.parse_args(argv)
    if not args.compare_ort:
        p.error("nothing to do: pass --compare-ort (the C benchmark is build/linattn-bench)")
    if args.budget is None:
        args.budget = 0.15 if args.quick else 0.3
    for name in (args.preset.split(",") if args.preset else []):
        if name not in LA_PRESETS and name not in CONV_PRESETS:
            p.error(f"unknown preset {name}")
    for dt in args.dtype.split(","):
        if dt not in DTYPES:
            p.error(f"unknown dtype {dt}")

    import onnxruntime as ort

    import linattn

    started = time.time()
    ctx = linattn.Context(threads=args.threads, isa=args.isa, state_stores=args.state_stores)
    floors = {"linattn": linattn_floor_us(ctx), "ort": ort_floor_us(args.threads)}
    meta = {
        "tool": "python -m linattn.bench --compare-ort",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["python -m linattn.bench"] + (argv if argv is not None else sys.argv[1:])),
        "cpu": _cpu_name(),
        "threads": args.threads,
        "state_stores": args.state_stores,
        "linattn_version": linattn.library_version(),
        "linattn_isa": ctx.isa,
        "onnxruntime_version": ort.__version__,
        "ort_time": "ORT profiler per-node kernel time (op node + inserted Cast nodes)",
        "linattn_time": "wall time of one ctypes call of the C function with descriptors built once "
                        "(linattn_us); through linattn.linear_attention / causal_conv_with_state: linattn_binding_us",
        "linattn_floor_us": floors["linattn"],
        "ort_floor_us": floors["ort"],
        "python": platform.python_version(),
        "loadavg_start": _loadavg(),
    }
    print(f"# linattn {meta['linattn_version']} ({ctx.isa}) vs onnxruntime {ort.__version__} | {meta['cpu']} | "
          f"threads {args.threads}")
    print(f"# linattn_us: one ctypes call, descriptors prebuilt; binding_us: through linattn.linear_attention etc. "
          f"(floor {floors['linattn']:.1f} us)\n# ort_us: ORT profiler kernel time (+ inserted Casts); ort_sess_us: "
          f"session.run wall (floor {floors['ort']:.1f} us); ratio = linattn_us / ort_us (< 1: linattn faster); "
          f"net_ratio = (linattn_us - floor_us) / ort_us, floor_us = the same ctypes call rejected at once")
    print(HEADER, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="linattn-bench-") as tmpdir:
        for case in enumerate_cases(args):
            try:
                row = measure_case(case, args, ctx, floors, tmpdir)
            except Exception as e:  # keep going; the row says what failed
                row = dict(op=case.op, preset=case.preset, mode=case.mode, T=case.T, B=case.B, dtype=case.dtype,
                           layout=case.layout, threads=args.threads, linattn_us=None, ort_us=None, ratio=None,
                           error=f"{type(e).__name__}: {e}")
                print(f"# {case}: {row['error']}", file=sys.stderr)
            rows.append(row)
            print(format_row(row), flush=True)
    meta["seconds"] = round(time.time() - started, 1)
    meta["loadavg_end"] = _loadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"# {len(rows)} cases in {meta['seconds']} s", file=sys.stderr)
    return 1 if any(r.get("error") for r in rows) else 0


def _loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
