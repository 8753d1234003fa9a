"""Times linattn.gated_delta_net against ONNX Runtime's own CPU GatedDeltaNet (com.microsoft) and
against linattn's plain gated_delta LinearAttention on pre-normalised inputs (the same recurrence
with the gates, the beta sigmoid and the q/k norms done beforehand, K-major state), Qwen3.5's
gated configuration (softplus gate, beta sigmoid, qk_l2_norm), one request of T tokens.

    python -m linattn.gdn_bench                     # Qwen3.5-0.8B shape (16 heads of 128), 1 thread
    python -m linattn.gdn_bench --T 1,64 --dtype f32 --json out.json

Every figure is the minimum over repetitions in one process (the three calls interleaved): on a
shared machine a call about as long as a scheduler time slice is preempted in a good part of the
repetitions, which moves the median by several times; the minimum is the uncontended time. All
three are called through Python, every output preallocated."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import numpy as np

from . import ort_models as M
from .bench import _cpu_name

DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def feeds_for(T, H, d, dtype, rng):
    npdt = M.np_dtype(dtype)
    return {
        "query": rng.standard_normal((T, H, d)).astype(npdt),
        "key": rng.standard_normal((T, H, d)).astype(npdt),
        "value": rng.standard_normal((T, H, d)).astype(npdt),
        "cu_seqlens": np.array([0, T], np.int32),
        "decay": rng.standard_normal((T, H)).astype(np.float32),
        "beta": rng.standard_normal((T, H)).astype(np.float32),
        "initial_state": (rng.standard_normal((1, H, d, d)) * 0.1).astype(np.float32),
        "a_log": (rng.standard_normal(H) * 0.5).astype(np.float32),
        "dt_bias": rng.standard_normal(H).astype(np.float32),
    }


ATTRS = dict(update_rule="gated_delta", gate_activation="softplus", beta_activation="sigmoid", qk_l2_norm=1)


def prenormalised(feeds, dtype):
    """LinearAttention inputs equal to the fused op's: (1, T, H*d) rows, K-major state."""
    npdt = M.np_dtype(dtype)
    T, H, d = feeds["query"].shape
    f = lambda a: a.astype(np.float64)
    q, k = f(feeds["query"]), f(feeds["key"])
    q /= np.sqrt((q * q).sum(-1, keepdims=True) + 1e-12)
    k /= np.sqrt((k * k).sum(-1, keepdims=True) + 1e-12)
    x = f(feeds["decay"]) + feeds["dt_bias"][None]
    g = -np.exp(feeds["a_log"])[None] * np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))
    b = 1 / (1 + np.exp(-f(feeds["beta"])))
    return dict(query=q.reshape(1, T, H * d).astype(npdt), key=k.reshape(1, T, H * d).astype(npdt),
                value=feeds["value"].reshape(1, T, H * d), decay=g.reshape(1, T, H).astype(npdt),
                beta=b.reshape(1, T, H).astype(npdt),
                past_state=np.ascontiguousarray(feeds["initial_state"].transpose(0, 1, 3, 2)))


def measure(T, H, d, dtype, threads, budget, with_ort=True):
    import linattn

    rng = np.random.default_rng(T)
    feeds = feeds_for(T, H, d, dtype, rng)
    la = prenormalised(feeds, dtype)
    ctx = linattn.Context(threads=threads)
    out_la = np.empty((1, T, H * d), la["query"].dtype)
    st_la = np.empty_like(la["past_state"])
    out_gdn = np.empty((T, H, d), la["query"].dtype)
    st_gdn = np.empty_like(feeds["initial_state"])
    calls = {  # every output preallocated: page faults of fresh arrays are not the kernels' time
        "gdn": lambda: linattn.gated_delta_net(**feeds, **ATTRS, out=out_gdn, final_state_out=st_gdn, context=ctx),
        "la": lambda: linattn.linear_attention(**la, q_num_heads=H, kv_num_heads=H, ort_contrib=True,
                                               out=(out_la, st_la), context=ctx),
    }
    err = None
    if with_ort:
        try:
            sess = M.session(M.gated_delta_net_model(feeds, dtype=dtype, outputs=("output", "final_state"), **ATTRS),
                             plugin=False, threads=threads)
            shapes = {"output": (T, H, d)} if dtype == "bfloat16" else None
            calls["ort"] = lambda: M.run(sess, feeds, shapes)
            ours = calls["gdn"]()[0].astype(np.float64)
            theirs = calls["ort"]()[0].astype(np.float64)
            err = float(np.abs(ours - theirs).max() / max(1e-30, np.abs(theirs).max()))
        except Exception as e:  # noqa: BLE001 - an ORT without this dtype: report, time the rest
            err = f"ORT: {str(e).splitlines()[0][:100]}"
    for fn in calls.values():
        fn()
    times = {k: [] for k in calls}
    t_end = time.perf_counter() + budget
    reps = 0
    while reps < 3 or (time.perf_counter() < t_end and reps < 2000):
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        reps += 1
    ctx.close()
    med = {k: min(v) for k, v in times.items()}
    return {"T": T, "H": H, "d": d, "dtype": dtype, "threads": threads, "reps": reps,
            "gdn_s": med["gdn"], "la_s": med["la"], "ort_s": med.get("ort"), "rel_err_vs_ort": err}


def _ort_version():
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return None


def _us(x):
    return "-" if x is None else f"{x * 1e6:10.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m linattn.gdn_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--T", default="1,64,512,4096")
    p.add_argument("--dtype", default="f32,f16,bf16")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget", type=float, default=2.0, help="seconds per row")
    p.add_argument("--no-ort", action="store_true")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    rows = []
    print(f"GatedDeltaNet, {a.heads} heads of {a.d}, {a.threads} thread(s); times in us (minimum)")
    print(f"{'dtype':6} {'T':>5} {'linattn GDN':>11} {'linattn LA':>11} {'ORT GDN':>11} {'GDN/LA':>7} {'ORT/GDN':>8}  err vs ORT")
    for dt in a.dtype.split(","):
        for T in (int(x) for x in a.T.split(",")):
            r = measure(T, a.heads, a.d, DTYPES[dt], a.threads, a.budget, not a.no_ort)
            rows.append(r)
            ratio_ort = f"{r['ort_s'] / r['gdn_s']:8.1f}" if r["ort_s"] else f"{'-':>8}"
            err = r["rel_err_vs_ort"]
            print(f"{dt:6} {T:5d} {_us(r['gdn_s']):>11} {_us(r['la_s']):>11} {_us(r['ort_s']):>11} "
                  f"{r['gdn_s'] / r['la_s']:7.3f} {ratio_ort}  {err if isinstance(err, str) or err is None else f'{err:.1e}'}",
                  flush=True)
    if a.json:
        meta = {"tool": "python -m linattn.gdn_bench",
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "cpu": _cpu_name(), "threads": a.threads, "onnxruntime_version": _ort_version(),
                "shape": f"{a.heads} heads of {a.d}, softplus gate, beta sigmoid, qk_l2_norm"}
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
