"""`make demo-genai`: the tiny random Qwen3.5 fixtures in onnxruntime-genai, a 512-token prompt
then 64 greedy tokens, prefill and decode tokens/s without and with liblinattn_ort.so, one
intra-op thread. Runs alternate (ORT, plugin, ORT, ...) and the best of each is shown, so a
shared or noisy machine penalises both sides alike."""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import genai_run as G

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plugin", default=os.environ.get("LINATTN_ORT_LIBRARY",
                                                       os.path.join(ROOT, "build", "liblinattn_ort.so")))
    args = ap.parse_args()
    prompt = np.random.default_rng(0).integers(3, 384, (1, args.prompt)).astype(np.int32)
    print(f"prompt {args.prompt} tokens, {args.new} generated, {args.threads} intra-op thread(s), "
          f"best of {args.rounds} alternating rounds")
    print(f"{'export':8} {'run':8} {'prefill tok/s':>14} {'decode tok/s':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("default", "gdn"):
            fixture = os.path.join(ROOT, "tests", "fixtures", "genai", variant)
            dirs = {"ORT": G.prepare(fixture, os.path.join(tmp, variant + "-ort"), None, args.threads),
                    "linattn": G.prepare(fixture, os.path.join(tmp, variant + "-la"), args.plugin, args.threads)}
            best = {k: [0.0, 0.0] for k in dirs}
            tokens = {}
            for _ in range(args.rounds):
                for name, d in dirs.items():
                    toks, _, prefill_s, decode_s, steps = G.generate(d, prompt, args.new)
                    tokens[name] = toks
                    best[name][0] = max(best[name][0], args.prompt / prefill_s)
                    best[name][1] = max(best[name][1], steps / decode_s)
            for name in dirs:
                print(f"{variant:8} {name:8} {best[name][0]:14.0f} {best[name][1]:13.0f}")
            speed = [best["linattn"][i] / best["ORT"][i] for i in range(2)]
            same = "identical tokens" if tokens["ORT"] == tokens["linattn"] else "TOKENS DIFFER"
            print(f"{variant:8} {'ratio':8} {speed[0]:13.2f}x {speed[1]:12.2f}x  ({same})")


if __name__ == "__main__":
    main()
