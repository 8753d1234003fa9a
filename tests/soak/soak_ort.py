"""Soak test of the ONNX Runtime plugin (scripts/test-soak, run by .ci/run): decode steps (T = 1)
of one Qwen3.5-0.8B-shaped Gated DeltaNet layer in one ORT session with liblinattn_ort.so, both
states carried in place (each state output is bound to the same OrtValue as its input).

Graph (com.microsoft domain): x (1, 1, 6144) -> CausalConvWithState (k 4, SiLU, channels_last,
conv state (1, 3, 6144)) -> Split q | k | v -> per-head L2 normalisation of q, k (ORT's own float32
kernels, with Casts around them for bfloat16) -> LinearAttention gated_delta, 16 heads of 128,
per-head decay and beta (graph inputs), recurrent state (1, 16, 128, 128). q, k, v as LinearAttention
reads them are extra graph outputs, so that the float64 oracle sees the kernel's exact inputs.

Every CHECK_EVERY steps: the conv output against float64 from the last 4 inputs and the conv state
(exactly the last 3 inputs); the recurrent state and output of ORACLE_HEADS heads (a subsample) against
a float64 recurrence carried from step 0. Resident memory is read at the first check past half the
run (and past the second check) and at the end; growth beyond RSS_GROWTH_LIMIT in that second half fails (a leak grows with the
steps; the Python process itself settles during the first few thousand steps: glibc's mmap
threshold, numpy and ORT caches grow by 1-2 MiB once).

Usage: python tests/soak/soak_ort.py [steps] (default 10000); prints "soak-ort: N passed, N failed".
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from linattn import ort_models as M

HEADS, DK, DV, TAPS = 16, 128, 128, 4
CHANNELS = 2 * HEADS * DK + HEADS * DV
CHECK_EVERY = 1000
ORACLE_HEADS = [0, 5, 10, 15]  # head 15 has the slowest decay (longest memory)
RSS_GROWTH_LIMIT = 2 * 1024 * 1024
# max|diff| / max|ref| bounds; see tests/soak/soak_decode.c for the reasoning
LA_BOUND = {"float32": 1e-4, "bfloat16": 5e-2}
CONV_BOUND = {"float32": 1e-5, "bfloat16": 8e-3}


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def layer_model(dtype: str, conv_w: np.ndarray):
    """The layer as an ONNX model (com.microsoft domain)."""
    from onnx import helper, numpy_helper

    nodes, inits = [], []
    low = dtype != "float32"

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, ins, outs, dom="", **attrs):
        nodes.append(helper.make_node(op, ins, outs, name=f"{op}_{len(nodes)}", domain=dom, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def cast(x, to, name):
        return node("Cast", [x], [name], to=M.elem_type(to)) if low else x

    def l2norm(x, tag):
        x4 = node("Reshape", [x, const(f"shape_{tag}4", np.array([0, 0, HEADS, DK], np.int64))], [f"{tag}4"])
        ss = node("ReduceSumSquare", [x4, const(f"axes_{tag}", np.array([-1], np.int64))], [f"{tag}_ss"], keepdims=1)
        rms = node("Sqrt", [node("Add", [ss, const(f"eps_{tag}", np.float32(1e-6))], [f"{tag}_sse"])], [f"{tag}_rms"])
        xn = node("Div", [x4, rms], [f"{tag}_n4"])
        return node("Reshape", [xn, const(f"shape_{tag}3", np.array([0, 0, -1], np.int64))], [f"{tag}_n"])

    const("conv_w", conv_w)
    node("CausalConvWithState", ["x", "conv_w", "", "conv_state"], ["conv_out", "conv_state_out"], dom=M.CONTRIB,
         activation="silu", channels_last=1)
    conv_f = cast("conv_out", "float32", "conv_f")
    q, k, v = node("Split", [conv_f, const("split", np.array([HEADS * DK, HEADS * DK, HEADS * DV], np.int64))],
                   ["q_raw", "k_raw", "v_f"], axis=2)
    q_in = cast(l2norm(q, "q"), dtype, "q_in")
    k_in = cast(l2norm(k, "k"), dtype, "k_in")
    v_in = cast(v, dtype, "v_in")
    node("LinearAttention", [q_in, k_in, v_in, "recurrent_state", "decay", "beta"], ["o", "recurrent_state_out"],
         dom=M.CONTRIB, q_num_heads=HEADS, kv_num_heads=HEADS, update_rule="gated_delta")
    # graph outputs must be distinct from graph inputs: Identity copies of the LinearAttention inputs
    for src, dst in ((q_in, "q_out"), (k_in, "k_out"), (v_in, "v_out")):
        node("Identity", [src], [dst])
    inputs = [M._vi("x", dtype, [1, 1, CHANNELS]), M._vi("conv_state", dtype, [1, TAPS - 1, CHANNELS]),
              M._vi("recurrent_state", dtype, [1, HEADS, DK, DV]), M._vi("decay", dtype, [1, 1, HEADS]),
              M._vi("beta", dtype, [1, 1, HEADS])]
    outputs = [M._vi("o", dtype, [1, 1, HEADS * DV]), M._vi("conv_out", dtype, [1, 1, CHANNELS]),
               M._vi("conv_state_out", dtype, [1, TAPS - 1, CHANNELS]),
               M._vi("recurrent_state_out", dtype, [1, HEADS, DK, DV]),
               M._vi("q_out", dtype, [1, 1, HEADS * DK]), M._vi("k_out", dtype, [1, 1, HEADS * DK]),
               M._vi("v_out", dtype, [1, 1, HEADS * DV])]
    return M._make_model(nodes, inputs, outputs, M.CONTRIB, inits, name="soak_layer")


class Soak:
    def __init__(self, dtype: str, seed: int):
        self.dtype, self.np_dt = dtype, M.np_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.conv_w = (self.rng.standard_normal((CHANNELS, 1, TAPS)) / np.sqrt(TAPS)).astype(self.np_dt)
        self.sess = M.session(layer_model(dtype, self.conv_w), plugin=True, threads=2)
        z = np.zeros
        self.bufs = {"x": z((1, 1, CHANNELS), self.np_dt), "conv_state": z((1, TAPS - 1, CHANNELS), self.np_dt),
                     "recurrent_state": z((1, HEADS, DK, DV), self.np_dt), "decay": z((1, 1, HEADS), self.np_dt),
                     "beta": z((1, 1, HEADS), self.np_dt), "o": z((1, 1, HEADS * DV), self.np_dt),
                     "conv_out": z((1, 1, CHANNELS), self.np_dt), "q_out": z((1, 1, HEADS * DK), self.np_dt),
                     "k_out": z((1, 1, HEADS * DK), self.np_dt), "v_out": z((1, 1, HEADS * DV), self.np_dt)}
        # OrtValues wrap the numpy buffers (no copies): inputs are refreshed by writing the arrays
        self.vals = {name: M._to_ortvalue(buf) for name, buf in self.bufs.items()}
        self.io = self.sess.io_binding()
        for name in ("x", "conv_state", "recurrent_state", "decay", "beta"):
            self.io.bind_ortvalue_input(name, self.vals[name])
        for name in ("o", "conv_out", "q_out", "k_out", "v_out"):
            self.io.bind_ortvalue_output(name, self.vals[name])
        self.io.bind_ortvalue_output("conv_state_out", self.vals["conv_state"])  # in place
        self.io.bind_ortvalue_output("recurrent_state_out", self.vals["recurrent_state"])  # in place
        self.decay_scale = 0.1 * np.exp(np.log(16.0) * np.arange(HEADS) / (HEADS - 1.0))
        self.decay_scale[HEADS - 1] = 0.01
        self.history = np.zeros((TAPS, CHANNELS))  # last TAPS inputs as stored, newest last
        self.oracle = np.zeros((len(ORACLE_HEADS), DK, DV))
        self.max_err = {"conv": 0.0, "state": 0.0, "output": 0.0}

    def f64(self, name):
        return self.bufs[name].astype(np.float64).reshape(-1)

    def step(self):
        x = self.rng.uniform(-2.0, 2.0, CHANNELS).astype(self.np_dt)
        self.bufs["x"][...] = x.reshape(1, 1, CHANNELS)
        self.history = np.roll(self.history, -1, axis=0)
        self.history[-1] = x.astype(np.float64)
        a = self.rng.standard_normal(HEADS) + 0.5
        self.bufs["decay"][...] = (-self.decay_scale * np.logaddexp(0.0, a)).astype(self.np_dt).reshape(1, 1, HEADS)
        self.bufs["beta"][...] = (1.0 / (1.0 + np.exp(-self.rng.standard_normal(HEADS)))).astype(self.np_dt).reshape(1, 1, HEADS)
        self.sess.run_with_iobinding(self.io)
        # float64 recurrence of the oracle heads: S = a S + k u^T, u = beta (v - a S^T k)
        h = ORACLE_HEADS
        k = self.f64("k_out").reshape(HEADS, DK)[h]
        v = self.f64("v_out").reshape(HEADS, DV)[h]
        g = np.exp(self.f64("decay")[h])
        b = self.f64("beta")[h]
        p = np.einsum("hij,hi->hj", self.oracle, k)
        u = b[:, None] * (v - g[:, None] * p)
        self.oracle = g[:, None, None] * self.oracle + k[:, :, None] * u[:, None, :]

    @staticmethod
    def rel(got, ref):
        scale = np.max(np.abs(ref))
        diff = np.abs(got - ref)
        return float(np.inf if np.isnan(diff).any() else np.max(diff) / (scale if scale > 0 else 1.0))

    def check(self, step, report):
        w = self.conv_w.astype(np.float64).reshape(CHANNELS, TAPS)
        pre = np.sum(w * self.history.T, axis=1).astype(np.float32)
        if self.dtype != "float32":
            pre = pre.astype(self.np_dt)
        pre = pre.astype(np.float64)
        ref = pre / (1.0 + np.exp(-pre))
        errs = {"conv": self.rel(self.f64("conv_out"), ref)}
        state_ok = np.array_equal(self.f64("conv_state").reshape(TAPS - 1, CHANNELS), self.history[1:])
        s = self.f64("recurrent_state").reshape(HEADS, DK, DV)[ORACLE_HEADS]
        q = self.f64("q_out").reshape(HEADS, DK)[ORACLE_HEADS]
        o_ref = np.einsum("hij,hi->hj", self.oracle, q) / np.sqrt(DK)
        errs["state"] = self.rel(s, self.oracle)
        errs["output"] = self.rel(self.f64("o").reshape(HEADS, DV)[ORACLE_HEADS], o_ref)
        for key, e in errs.items():
            self.max_err[key] = max(self.max_err[key], e)
        report(errs["conv"] <= CONV_BOUND[self.dtype], f"step {step}: conv output error {errs['conv']:.3g}")
        report(state_ok, f"step {step}: conv state does not hold the last {TAPS - 1} inputs")
        for key in ("state", "output"):
            report(errs[key] <= LA_BOUND[self.dtype], f"step {step}: recurrent {key} error {errs[key]:.3g}")


def main() -> int:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    seed = int.from_bytes(os.urandom(4), "little")
    counts = {"passed": 0, "failed": 0}

    def report(ok, message):
        counts["passed" if ok else "failed"] += 1
        if not ok and counts["failed"] <= 20:
            print(f"FAIL: {message} (seed {seed})")

    print(f"soak-ort: seed {seed}")
    for i, dtype in enumerate(("float32", "bfloat16")):
        soak = Soak(dtype, seed + i)
        rss_start = resident_bytes()
        rss_warm, warm_step = None, 0
        t0 = time.perf_counter()
        done = 0
        for step in range(1, steps + 1):
            soak.step()
            done = step
            if step % CHECK_EVERY == 0 or step == steps:
                soak.check(step, report)
                if rss_warm is None and (step >= max(2 * CHECK_EVERY, steps // 2) or step == steps):
                    rss_warm = resident_bytes()
                    warm_step = step
                if counts["failed"]:
                    break
        secs = time.perf_counter() - t0
        rss_end = resident_bytes()
        growth = rss_end - (rss_warm or rss_end)
        print(f"{dtype}: {done} decode steps through the ORT plugin session in {secs:.1f} s "
              f"({1e6 * secs / max(done, 1):.0f} us/step incl. oracle; float64 oracle on heads {ORACLE_HEADS} of {HEADS})")
        e = soak.max_err
        print(f"{dtype}: max relative error: conv output {e['conv']:.3g} (bound {CONV_BOUND[dtype]:.3g}), "
              f"recurrent state {e['state']:.3g}, output {e['output']:.3g} (bound {LA_BOUND[dtype]:.3g})")
        print(f"{dtype}: resident memory {rss_start / 2**20:.1f} MiB at start, {(rss_warm or 0) / 2**20:.1f} MiB after "
              f"step {warm_step}, {rss_end / 2**20:.1f} MiB at the end (growth {growth / 1024:+.0f} KiB)")
        report(rss_warm is not None and growth <= RSS_GROWTH_LIMIT,
               f"{dtype}: resident memory grew by {growth / 1024:.0f} KiB (limit {RSS_GROWTH_LIMIT / 1024:.0f} KiB)")
    print(f"soak-ort: {counts['passed']} passed, {counts['failed']} failed")
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
