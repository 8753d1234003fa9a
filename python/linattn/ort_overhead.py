"""What the ONNX Runtime plugin adds to a decode-sized node: the node's time inside ONNX Runtime
(its profiler's kernel time for the node) with the plugin and with ORT alone, next to the bare
library call on the same shape (build/linattn-node-call, C, no ONNX Runtime). One intra-op
thread, float32, batch 1, one token.

    python -m linattn.ort_overhead                  # tiny genai shapes and Qwen3.5-0.8B's 16x128
    python -m linattn.ort_overhead --runs 4000 --json out.json
    python -m linattn.ort_overhead --gdn-T 1,64,512,4096   # GatedDeltaNet node time against T
    python -m linattn.ort_overhead --loop gate --runs 1000  # one case's node run back to back

--loop KIND (la, gate, gdn, rms, conv; the tiny 2/4 x 64 shape unless --loop-shape says otherwise)
runs only the plugin's session (--plugin PATH: another build; --ort-alone: without the plugin), no
profiler, for counting instructions per node under callgrind, e.g.
    LINATTN_ISA=avx2 valgrind --tool=callgrind --toggle-collect=linattn_ort_compute \
        .venv/bin/python -m linattn.ort_overhead --loop gate --runs 1000
(the collected Ir divided by the runs + 1 warm-up is the whole Compute per node). Whole session
runs, as ORT alone or with the plugin: build bench/node/cg_loop.c and add --cg-loop LIB, with
    valgrind --tool=callgrind --toggle-collect=ffi_call ... --loop gate --runs 1000 --cg-loop LIB
(the collected Ir divided by --runs; the Python side of each run is the same either way).

Cases: com.microsoft LinearAttention (q_num_heads, kv_num_heads, d: the inverse-GQA tiny
fixture's 2/4 x 64 and 16/16 x 128), LinearAttentionGate over the same kv heads (dt_bias and
decay_scale constant initializers, as exported), GatedDeltaNet (qwen gate, beta sigmoid,
qk_l2_norm), GatedRMSNorm over the kv heads' output (scale an initializer) and
CausalConvWithState over the fused q|k|v channels (kernel 4, silu; weight and bias initializers);
the last three without a bare call. --baseline-plugin PATH adds a third session with another build of the
plugin, alternating with the others (A/B in one process).
Sessions alternate run by run; figures are medians (the profiler's resolution is 1 us, so the
mean of the runs below the 90th percentile is printed beside it). The node time includes what
ORT's profiler itself costs per node and the cache misses of a fresh run (the state was evicted
since the last one), for ORT alone as for the plugin; the bare call runs back to back, caches warm.
"node - bare" is therefore an upper bound of what the plugin adds, not the plugin's own code."""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from . import ort_models as M

CASES = [("LinearAttention", "la", 2, 4, 64), ("LinearAttention", "la", 16, 16, 128),
         ("LinearAttentionGate", "gate", 2, 4, 64), ("LinearAttentionGate", "gate", 16, 16, 128),
         ("GatedDeltaNet", "gdn", 2, 4, 64), ("GatedDeltaNet", "gdn", 16, 16, 128),
         ("GatedRMSNorm", "rms", 2, 4, 64), ("GatedRMSNorm", "rms", 16, 16, 128),
         ("CausalConvWithState", "conv", 2, 4, 64), ("CausalConvWithState", "conv", 16, 16, 128)]


def la_node(hq, hkv, d, rng, T=1):
    feeds = {"query": rng.standard_normal((1, T, hq * d)).astype(np.float32),
             "key": (rng.standard_normal((1, T, hq * d)) / 8).astype(np.float32),
             "value": rng.standard_normal((1, T, hkv * d)).astype(np.float32),
             "past_state": (0.1 * rng.standard_normal((1, hkv, d, d))).astype(np.float32),
             "decay": (-0.1 * np.abs(rng.standard_normal((1, T, hkv)))).astype(np.float32),
             "beta": rng.uniform(0, 1, (1, T, hkv)).astype(np.float32)}
    model = M.linear_attention_model(M.CONTRIB, q_num_heads=hq, kv_num_heads=hkv, dtype="float32",
                                     state_dtype="float32", scale=1.0,
                                     shapes={k: list(v.shape) for k, v in feeds.items()})
    return model, feeds


def gdn_node(hq, hkv, d, rng, T=1):
    feeds = {"query": rng.standard_normal((1, T, hq, d)).astype(np.float32),
             "key": rng.standard_normal((1, T, hq, d)).astype(np.float32),
             "value": rng.standard_normal((1, T, hkv, d)).astype(np.float32),
             "decay": rng.standard_normal((1, T, hkv)).astype(np.float32),
             "beta": rng.standard_normal((1, T, hkv)).astype(np.float32),
             "initial_state": (0.1 * rng.standard_normal((1, hkv, d, d))).astype(np.float32),
             "a_log": (0.5 * rng.standard_normal(hkv)).astype(np.float32),
             "dt_bias": rng.standard_normal(hkv).astype(np.float32)}
    model = M.gated_delta_net_model(feeds, dtype="float32", outputs=("output", "final_state"),
                                    update_rule="gated_delta", gate_activation="qwen", beta_activation="sigmoid",
                                    qk_l2_norm=1)
    return model, feeds


def _constants(model, consts):
    """Turns the graph inputs named in consts into initializers (weights, as exported)."""
    from onnx import numpy_helper

    kept = [i for i in model.graph.input if i.name not in consts]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    return model


def gate_node(hq, hkv, d, rng, T=1):
    """LinearAttentionGate of T tokens over the kv heads, dt_bias and decay_scale constant
    initializers as the genai export has them (hq and d only name the case)."""
    feeds = {"a": rng.standard_normal((1, T, hkv)).astype(np.float32),
             "b": rng.standard_normal((1, T, hkv)).astype(np.float32)}
    model = M.linear_attention_gate_model(a_shape=[1, T, hkv])
    consts = {"dt_bias": rng.standard_normal(hkv).astype(np.float32),
              "decay_scale": (-np.exp(0.5 * rng.standard_normal(hkv))).astype(np.float32)}
    return _constants(model, consts), feeds


def rms_node(hq, hkv, d, rng, T=1):
    """GatedRMSNorm of T tokens: the attention output's hkv heads of d, scale (d) a constant
    initializer, silu gate (hq only names the case)."""
    x_shape = [1, T, hkv * d]
    feeds = {"X": rng.standard_normal(x_shape).astype(np.float32),
             "gate": rng.standard_normal(x_shape).astype(np.float32)}
    model = M.gated_rms_norm_model(x_shape=x_shape, scale_len=d, epsilon=1e-6)
    return _constants(model, {"scale": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)}), feeds


def conv_node(hq, hkv, d, rng, T=1):
    """com.microsoft CausalConvWithState of T tokens over the fused q|k|v channels
    (2 hq d + hkv d), kernel 4, silu, channels first, weight and bias constant initializers."""
    C, k = 2 * hq * d + hkv * d, 4
    feeds = {"input": rng.standard_normal((1, C, T)).astype(np.float32),
             "past_state": rng.standard_normal((1, C, k - 1)).astype(np.float32)}
    model = M.causal_conv_model(M.CONTRIB, activation="silu", shapes={
        "input": [1, C, T], "weight": [C, 1, k], "bias": [C], "past_state": [1, C, k - 1]})
    return _constants(model, {"weight": (0.3 * rng.standard_normal((C, 1, k))).astype(np.float32),
                              "bias": (0.1 * rng.standard_normal(C)).astype(np.float32)}), feeds


def node_times(profile_path, op_type):
    """Kernel times (us) of the op_type nodes in an ORT profile, in run order."""
    with open(profile_path) as f:
        events = json.load(f)
    return [e["dur"] for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            and e.get("args", {}).get("op_name") == op_type]


def summary(times_us):
    t = sorted(times_us)
    low = t[: max(1, int(len(t) * 0.9))]
    return {"median_us": statistics.median(t), "mean_p90_us": sum(low) / len(low)}


def bare_call(binary, kind, hq, hkv, d, reps):
    out = subprocess.run([binary, kind, str(hq), str(hkv), str(d), str(reps)], check=True, capture_output=True,
                         text=True).stdout
    r = json.loads(out)
    return {"median_us": r["median_ns"] / 1e3, "min_us": r["min_ns"] / 1e3}


def plugin_session(model, path, profile_prefix):
    """A one-thread session of model with the plugin at `path` (another build of it, for A/B)."""
    import onnxruntime as ort

    from . import ort as linattn_ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    linattn_ort.register(so, path, model=model)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def profiled(op, model, feeds, runs, baseline=None):
    """Node kernel times (us) of op in sessions with and without the plugin (and with the plugin
    build at `baseline`, when given), alternating runs; the outputs are checked against each other
    first."""
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {label: M.session(model, plugin=plugin, threads=1, profile_prefix=os.path.join(tmp, label))
                    for label, plugin in (("plugin", True), ("ort", False))}
        if baseline:
            sessions["baseline"] = plugin_session(model, baseline, os.path.join(tmp, "baseline"))
        outs = {label: M.run(s, feeds) for label, s in sessions.items()}
        for label in outs:
            for a, b in zip(outs[label], outs["ort"]):  # the same node every way
                err = float(np.abs(a.astype(np.float64) - b).max() / max(1e-30, float(np.abs(b).max())))
                if not err < 1e-3:
                    raise AssertionError(f"{op}: {label} and ORT alone differ (max error {err:.1e} of max |ORT|)")
        for _ in range(runs):
            for s in sessions.values():
                M.run(s, feeds)
        res = {}
        for label, s in sessions.items():
            s.end_profiling()
            path = glob.glob(os.path.join(tmp, label + "*.json"))[0]
            res[label] = node_times(path, op)[1:]
    return res


NODES = {"la": la_node, "gdn": gdn_node, "gate": gate_node, "rms": rms_node, "conv": conv_node}


def measure(op, kind, hq, hkv, d, runs, binary, baseline=None, T=1):
    rng = np.random.default_rng(7)
    model, feeds = NODES[kind](hq, hkv, d, rng, T)
    res = {label: summary(t) for label, t in profiled(op, model, feeds, runs, baseline).items()}
    if kind in ("la", "gdn") and T == 1:
        res["bare"] = bare_call(binary, kind, hq, hkv, d, max(2000, runs))
    return res


def gdn_scaling(lengths, heads, d, budget):
    """GatedDeltaNet node time (minimum and median, us) at each T, with the plugin and ORT alone.
    The minimum is the uncontended time: on a shared machine a call longer than a scheduler time
    slice is preempted in most runs, which moves its median far more than a short call's."""
    print(f"GatedDeltaNet node, {heads} heads of {d}, float32, 1 thread; us (profiler's node time, min / median)")
    print(f"{'T':>5} | {'plugin':>17} {'ORT alone':>19} {'ORT/plugin (min)':>16} | runs")
    rows = []
    for T in lengths:
        model, feeds = gdn_node(heads, heads, d, np.random.default_rng(T), T)
        runs = max(5, min(300, int(budget / (2e-3 * T + 1e-3))))
        t = profiled("GatedDeltaNet", model, feeds, runs)
        lo = {k: min(v) for k, v in t.items()}
        med = {k: statistics.median(v) for k, v in t.items()}
        print(f"{T:5d} | {lo['plugin']:8.0f} /{med['plugin']:8.0f} {lo['ort']:9.0f} /{med['ort']:9.0f} "
              f"{lo['ort'] / lo['plugin']:15.1f}x | {runs}", flush=True)
        rows.append({"T": T, "heads": heads, "d": d, "runs": runs, "plugin_min_us": lo["plugin"],
                     "ort_min_us": lo["ort"], "plugin_median_us": med["plugin"], "ort_median_us": med["ort"]})
    return rows


def loop(kind, hq, hkv, d, runs, plugin_path=None, ort_alone=False, T=1, cg_loop=None):
    """Runs one node `runs` times (after one warm-up run) in a one-thread session: the inputs bound
    once, the outputs allocated by ORT on every run (as a model's intermediate tensors are), so
    that little besides InferenceSession::Run runs per iteration."""
    model, feeds = NODES[kind](hq, hkv, d, np.random.default_rng(7), T)
    if plugin_path and not ort_alone:
        sess = plugin_session(model, plugin_path, None)
    else:
        sess = M.session(model, plugin=not ort_alone, threads=1)
    io = sess.io_binding()
    values = {name: M._to_ortvalue(value) for name, value in feeds.items()}  # kept alive while bound
    for name, value in values.items():
        io.bind_ortvalue_input(name, value)
    for out in sess.get_outputs():
        io.bind_output(out.name)
    sess.run_with_iobinding(io)  # warm-up
    if cg_loop:  # the runs inside a C function that callgrind can toggle on (bench/node/cg_loop.c)
        import ctypes

        fn = ctypes.CFUNCTYPE(None)(lambda: sess.run_with_iobinding(io))
        ctypes.CDLL(cg_loop).linattn_cg_loop(fn, ctypes.c_long(runs))
        return
    for _ in range(runs):
        sess.run_with_iobinding(io)


def main(argv=None) -> int:
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    p = argparse.ArgumentParser(prog="python -m linattn.ort_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3000)
    p.add_argument("--node-call", default=os.path.join(root, "build", "linattn-node-call"))
    p.add_argument("--gdn-T", default=None, help="instead: GatedDeltaNet node time at these T (comma-separated)")
    p.add_argument("--heads", type=int, default=16, help="--gdn-T: heads (query, key and value)")
    p.add_argument("--d", type=int, default=128, help="--gdn-T: head size")
    p.add_argument("--budget", type=float, default=3.0, help="--gdn-T: rough seconds per T")
    p.add_argument("--json", default=None)
    p.add_argument("--baseline-plugin", default=None,
                   help="another build of liblinattn_ort.so, run as a third session (A/B in one process)")
    p.add_argument("--ops", default=None, help="only these node types (comma-separated)")
    p.add_argument("--loop", default=None, choices=["la", "gate", "gdn", "rms", "conv"],
                   help="instead: run this node --runs times without profiling (for callgrind)")
    p.add_argument("--loop-shape", default="2,4,64", help="--loop: q heads, kv heads, d")
    p.add_argument("--plugin", default=None, help="--loop: this build of liblinattn_ort.so")
    p.add_argument("--ort-alone", action="store_true", help="--loop: without the plugin")
    p.add_argument("--cg-loop", default=None, help="--loop: run inside this build of bench/node/cg_loop.c")
    p.add_argument("--tokens", type=int, default=1, help="tokens per node (1: decode; e.g. 512: prefill)")
    p.add_argument("--shapes", default=None, help="only these q/kv heads (e.g. 2/4; comma-separated)")
    a = p.parse_args(argv)
    if a.loop:
        hq, hkv, d = (int(x) for x in a.loop_shape.split(","))
        loop(a.loop, hq, hkv, d, a.runs, a.plugin, a.ort_alone, a.tokens, a.cg_loop)
        return 0
    if a.gdn_T:
        rows = gdn_scaling([int(t) for t in a.gdn_T.split(",")], a.heads, a.d, a.budget)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"gdn_scaling": rows}, f, indent=1)
        return 0
    print(f"{'decode' if a.tokens == 1 else f'{a.tokens}-token'} node, float32, 1 thread; us "
          "(median / mean of the fastest 90%)")
    base_col = f" | {'baseline plugin':>15}" if a.baseline_plugin else ""
    print(f"{'node':19} {'heads':>7} {'d':>4} | {'bare call':>9} | {'plugin':>15} {'node - bare':>11} | "
          f"{'ORT alone':>15}{base_col}")
    rows = []
    ops = set(a.ops.split(",")) if a.ops else None
    shapes = set(a.shapes.split(",")) if a.shapes else None
    for op, kind, hq, hkv, d in CASES:
        if (ops and op not in ops) or (shapes and f"{hq}/{hkv}" not in shapes):
            continue
        r = measure(op, kind, hq, hkv, d, a.runs, a.node_call, a.baseline_plugin, a.tokens)
        pl, o = r["plugin"], r["ort"]
        b = r.get("bare", {"median_us": float("nan")})
        base = r.get("baseline")
        base_txt = f" | {base['median_us']:6.1f} / {base['mean_p90_us']:6.2f}" if base else ""
        print(f"{op:19} {f'{hq}/{hkv}':>7} {d:4d} | {b['median_us']:9.2f} | {pl['median_us']:6.1f} / "
              f"{pl['mean_p90_us']:6.2f} {pl['mean_p90_us'] - b['median_us']:11.2f} | {o['median_us']:6.1f} / "
              f"{o['mean_p90_us']:6.2f}{base_txt}", flush=True)
        rows.append({"op": op, "H_q": hq, "H_kv": hkv, "d": d, **r})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
