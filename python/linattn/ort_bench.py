"""Times one Gated DeltaNet layer (linattn.ort_models.gated_deltanet_block) through ONNX Runtime
with and without linattn's plugin: prefill of a prompt and single-token decode steps, in both
domains (ai.onnx opset 27, com.microsoft) and every dtype of the recurrent ops.

    python -m linattn.ort_bench                      # Qwen3.5-2B layer, 1 thread
    python -m linattn.ort_bench --layer qwen35-9b --threads 2 --json results.json

Each figure is the median of repeated runs in one process, plugin and ORT-alone sessions
interleaved so that machine noise hits both alike. "ORT alone" is what ONNX Runtime does with the
model by itself: its float32 contrib kernels (fp16 through inserted casts), the ONNX function
body (a Scan loop) for opset-27 nodes; bfloat16 does not run at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from . import ort_models as M

LAYERS = {
    "small": lambda: M.GatedDeltaNetConfig(hidden=256, n_k=4, n_v=8, d_k=64, d_v=64, conv_k=4),
    "qwen35-2b": M.GatedDeltaNetConfig.qwen35_2b,
    "qwen35-9b": M.GatedDeltaNetConfig.qwen35_9b,
}


def _shapes(domain, cfg, batch, tokens):
    conv, rec = M.block_state_shapes(domain, cfg, batch)
    return {"y": (batch, tokens, cfg.hidden), "conv_state_out": conv, "recurrent_state_out": rec}


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_case(cfg, domain, dtype, *, prompt, steps, repeats, threads, weights):
    """{'plugin': {...}, 'ort': {...}} with prefill seconds and decode seconds per token."""
    model = M.gated_deltanet_block(domain, cfg, dtype=dtype, weights=weights).SerializeToString()
    rng = np.random.default_rng(1)
    feeds = M.block_feeds(domain, cfg, 1, prompt, dtype=dtype, rng=rng, zero_state=True)
    result = {}
    sessions = {}
    for label, plugin in (("plugin", True), ("ort", False)):
        try:
            sessions[label] = M.session(model, plugin=plugin, threads=threads,
                                        domains="auto" if plugin else None)
        except Exception as e:  # ORT alone cannot run bfloat16
            result[label] = {"error": str(e).split("\n")[0][:160]}
    # interleave the sessions repeat by repeat
    prefill = {k: [] for k in sessions}
    decode = {k: [] for k in sessions}
    states = {}
    for label, sess in sessions.items():  # warm-up, and the states after the prompt
        try:
            _, conv, rec = M.run(sess, feeds, _shapes(domain, cfg, 1, prompt))
            states[label] = (conv, rec)
        except Exception as e:
            result[label] = {"error": str(e).split("\n")[0][:160]}
    sessions = {k: v for k, v in sessions.items() if k in states}
    x1 = rng.standard_normal((1, 1, cfg.hidden)).astype(np.float32)
    for _ in range(repeats):
        for label, sess in sessions.items():
            prefill[label].append(_time(lambda: M.run(sess, feeds, _shapes(domain, cfg, 1, prompt)), 1))
            conv, rec = states[label]

            def decode_steps(sess=sess, conv=conv, rec=rec):
                for _ in range(steps):
                    _, conv, rec = M.run(sess, {"x": x1, "conv_state": conv, "recurrent_state": rec},
                                         _shapes(domain, cfg, 1, 1))

            decode[label].append(_time(decode_steps, 1) / steps)
    for label in sessions:
        result[label] = {"prefill_s": statistics.median(prefill[label]),
                         "decode_s_per_token": statistics.median(decode[label])}
    return result


def node_feeds(kind, domain, cfg, tokens, dtype, rng):
    """Inputs of the layer's LinearAttention or CausalConvWithState node alone."""
    td = M.np_dtype(dtype)
    if kind == "conv":
        c, km1 = cfg.channels, cfg.conv_k - 1
        x = rng.standard_normal((1, tokens, c) if domain == M.CONTRIB else (1, c, tokens))
        past = np.zeros((1, km1, c) if domain == M.CONTRIB else (1, c, km1))
        return {"input": x.astype(td), "weight": (0.5 * rng.standard_normal((c, 1, cfg.conv_k))).astype(td),
                "past_state": past.astype(td)}
    hq = cfg.n_k if domain == M.CONTRIB else cfg.n_v
    k = rng.standard_normal((1, tokens, hq, cfg.d_k))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return {"query": rng.standard_normal((1, tokens, hq * cfg.d_k)).astype(td),
            "key": k.reshape(1, tokens, hq * cfg.d_k).astype(td),
            "value": rng.standard_normal((1, tokens, cfg.n_v * cfg.d_v)).astype(td),
            "past_state": np.zeros((1, cfg.n_v, cfg.d_k, cfg.d_v), np.float32),
            "decay": (-0.1 * np.abs(rng.standard_normal((1, tokens, cfg.n_v)))).astype(td),
            "beta": rng.uniform(0, 1, (1, tokens, cfg.n_v)).astype(td)}


def gate_node(kind, cfg, tokens, dtype, rng):
    """com.microsoft GatedRMSNorm (on the attention output, per value head) or LinearAttentionGate
    (per value head) of the layer: (model, feeds, output shapes)."""
    td = M.np_dtype(dtype)
    if kind == "norm":
        shape = (1, tokens, cfg.n_v * cfg.d_v)
        feeds = {"X": rng.standard_normal(shape).astype(td), "scale": rng.standard_normal(cfg.d_v).astype(td),
                 "gate": rng.standard_normal(shape).astype(td)}
        return M.gated_rms_norm_model(x_shape=list(shape), scale_len=cfg.d_v, dtype=dtype), feeds, {"Y": shape}
    shape = (1, tokens, cfg.n_v)
    feeds = {"a": rng.standard_normal(shape).astype(td), "dt_bias": rng.standard_normal(cfg.n_v).astype(np.float32),
             "decay_scale": -np.exp(rng.standard_normal(cfg.n_v)).astype(np.float32),
             "b": rng.standard_normal(shape).astype(td)}
    return M.linear_attention_gate_model(a_shape=list(shape), dtype=dtype), feeds, {"decay": shape, "beta": shape}


def bench_node(kind, cfg, domain, dtype, *, tokens, repeats, threads):
    """Median seconds of one node run (the recurrent op alone), plugin and ORT alone."""
    rng = np.random.default_rng(2)
    if kind in ("norm", "gate"):
        model, feeds, shapes = gate_node(kind, cfg, tokens, dtype, rng)
    elif kind == "conv":
        feeds = node_feeds(kind, domain, cfg, tokens, dtype, rng)
        model = M.causal_conv_model(domain, dtype=dtype, inputs=("input", "weight", "", "past_state"),
                                    activation="silu", channels_last=1 if domain == M.CONTRIB else None,
                                    shapes={k: list(v.shape) for k, v in feeds.items()})
        c, km1 = cfg.channels, cfg.conv_k - 1
        shapes = {"output": feeds["input"].shape,
                  "present_state": (1, km1, c) if domain == M.CONTRIB else (1, c, km1)}
    else:
        feeds = node_feeds(kind, domain, cfg, tokens, dtype, rng)
        hq = cfg.n_k if domain == M.CONTRIB else cfg.n_v
        # concrete shapes: ORT's own opset-27 function body fails on unknown ones ("Subgraph must
        # have the shape set for all outputs")
        model = M.linear_attention_model(domain, q_num_heads=hq, kv_num_heads=cfg.n_v, dtype=dtype,
                                         state_dtype="float32", shapes={k: list(v.shape) for k, v in feeds.items()})
        shapes = {"output": (1, tokens, cfg.n_v * cfg.d_v), "present_state": (1, cfg.n_v, cfg.d_k, cfg.d_v)}
    model = model.SerializeToString()
    sessions, result = {}, {}
    for label, plugin in (("plugin", True), ("ort", False)):
        try:
            sess = M.session(model, plugin=plugin, threads=threads)
            M.run(sess, feeds, shapes)  # warm-up
            sessions[label] = sess
        except Exception as e:
            result[label] = {"error": str(e).split("\n")[0][:160]}
    times = {k: [] for k in sessions}
    for _ in range(repeats):
        for label, sess in sessions.items():
            times[label].append(_time(lambda: M.run(sess, feeds, shapes), 1))
    for label in sessions:
        result[label] = {"seconds": statistics.median(times[label])}
    return result


def print_nodes(args, cfg):
    print(f"\nThe layer's nodes alone (same shapes; LinearAttention with a float32 state), medians of {args.repeats}")
    header = f"{'node':26} {'domain':14} {'dtype':9} | {'plugin':>10} {'ORT alone':>10} {'speedup':>7}"
    print(header)
    print("-" * len(header))
    rows = []
    kinds = {"LinearAttention": "la", "CausalConvWithState": "conv", "GatedRMSNorm": "norm",
             "LinearAttentionGate": "gate"}
    for op in kinds:
        for tokens in (args.prompt, 1):
            for dom_name in args.domains.split(","):
                if kinds[op] in ("norm", "gate") and dom_name != "com.microsoft":
                    continue  # contrib-only ops
                domain = M.CONTRIB if dom_name == "com.microsoft" else ""
                for dtype in args.dtypes.split(","):
                    rows.append(node_row(args, cfg, op, kinds[op], tokens, dom_name, domain, dtype))
    return rows


def node_row(args, cfg, op, kind, tokens, dom_name, domain, dtype):
    """Times one node both ways, prints its line, returns its row."""
    r = bench_node(kind, cfg, domain, dtype, tokens=tokens, repeats=args.repeats, threads=args.threads)
    name = f"{op} T={tokens}"
    p, o = r.get("plugin", {}), r.get("ort", {})
    pm = f"{p['seconds'] * 1e3:.3f} ms" if "seconds" in p else "n/a"
    om = f"{o['seconds'] * 1e3:.3f} ms" if "seconds" in o else "n/a"
    sp = f"{o['seconds'] / p['seconds']:.2f}x" if "seconds" in p and "seconds" in o else "-"
    print(f"{name:26} {dom_name:14} {dtype:9} | {pm:>10} {om:>10} {sp:>7}")
    for label in ("plugin", "ort"):
        if "error" in r.get(label, {}):
            print(f"{'':28}{label}: {r[label]['error']}")
    sys.stdout.flush()
    return {"node": name, "domain": dom_name, "dtype": dtype, **r}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", choices=sorted(LAYERS), default="qwen35-2b")
    parser.add_argument("--prompt", type=int, default=512, help="prefill tokens (batch 1)")
    parser.add_argument("--steps", type=int, default=16, help="decode steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra_op_num_threads")
    parser.add_argument("--dtypes", default=",".join(M.DTYPES))
    parser.add_argument("--domains", default="ai.onnx,com.microsoft")
    parser.add_argument("--part", choices=("layer", "nodes", "both"), default="both",
                        help="time the whole layer, the recurrent nodes alone, or both")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    cfg = LAYERS[args.layer]()
    weights = M.block_weights(cfg, 0)
    print(f"Gated DeltaNet layer {args.layer}: {cfg}; prompt {args.prompt} tokens, decode batch 1, "
          f"{args.threads} intra-op thread(s), medians of {args.repeats}")
    header = f"{'domain':14} {'dtype':9} | {'prefill plugin':>14} {'ORT alone':>10} {'speedup':>7} | " \
             f"{'decode/token plugin':>19} {'ORT alone':>10} {'speedup':>7}"
    rows = []
    if args.part != "nodes":
        print(header)
        print("-" * len(header))
    for dom_name in args.domains.split(",") if args.part != "nodes" else []:
        domain = M.CONTRIB if dom_name == "com.microsoft" else ""
        for dtype in args.dtypes.split(","):
            r = bench_case(cfg, domain, dtype, prompt=args.prompt, steps=args.steps, repeats=args.repeats,
                           threads=args.threads, weights=weights)
            rows.append({"domain": dom_name, "dtype": dtype, **r})
            p, o = r.get("plugin", {}), r.get("ort", {})

            def ms(d, key):
                return f"{d[key] * 1e3:.2f} ms" if key in d else "n/a"

            def ratio(key):
                return f"{o[key] / p[key]:.2f}x" if key in p and key in o else "-"

            print(f"{dom_name:14} {dtype:9} | {ms(p, 'prefill_s'):>14} {ms(o, 'prefill_s'):>10} "
                  f"{ratio('prefill_s'):>7} | {ms(p, 'decode_s_per_token'):>19} "
                  f"{ms(o, 'decode_s_per_token'):>10} {ratio('decode_s_per_token'):>7}")
            for label in ("plugin", "ort"):
                if "error" in r.get(label, {}):
                    print(f"{'':26}  {label}: {r[label]['error']}")
            sys.stdout.flush()
    node_rows = print_nodes(args, cfg) if args.part != "layer" else []
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"layer": args.layer, "config": repr(cfg), "prompt": args.prompt, "threads": args.threads,
                       "rows": rows, "nodes": node_rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
