"""transformers' Qwen3.5 linear attention with and without linattn.torch.patch_transformers().

    python -m linattn.bench --torch [--threads 1] [--dtype f32,bf16] [--reps 5]

Needs torch and transformers (scripts/test-torch's venv has them). Three measurements, each run
unpatched and patched alternately in the same process (medians of --reps):
  rule    transformers' torch_chunk_gated_delta_rule (T tokens) then torch_recurrent_gated_delta_rule
          (one token per call), as the patch leaves them or replaces them, on the layer's shapes
  layer   one Qwen3.5-0.8B-shaped Qwen3_5GatedDeltaNet layer (hidden 1024, 16 key and 16 value
          heads of 128, conv kernel 4, random weights): prefill of T tokens into a DynamicCache,
          then decode steps of one token; tokens/s of each
  model   a tiny random Qwen3.5 (4 layers, 3 of them linear attention, hidden 256) `generate`:
          prefill tokens/s (a 1-token generate of the prompt) and decode tokens/s (the extra
          time of generating N more tokens)
torch and linattn both run torch.get_num_threads() = --threads threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def _layer(dtype):
    import torch
    from transformers import Qwen3_5TextConfig
    from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5GatedDeltaNet

    config = Qwen3_5TextConfig(hidden_size=1024, linear_num_key_heads=16, linear_num_value_heads=16,
                               linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4,
                               num_hidden_layers=1, layer_types=["linear_attention"], vocab_size=256)
    torch.manual_seed(0)
    layer = Qwen3_5GatedDeltaNet(config, 0)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.empty_like(p).uniform_(1.0, 16.0)))
            elif name.endswith("dt_bias"):
                p.uniform_(-1.0, 1.0)
            elif p.dim() >= 2:
                p.normal_(0.0, 0.03)
    return config, layer.to(dtype).eval()


def _time_layer(config, layer, x, steps):
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    t0 = time.perf_counter()
    layer(x[:, :-steps], cache=cache)
    t1 = time.perf_counter()
    for i in range(x.shape[1] - steps, x.shape[1]):
        layer(x[:, i:i + 1], cache=cache)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _time_rule(config, T, steps, dtype):
    """The gated delta rule alone on the layer's shapes (what the patch replaces): the chunked
    rule over T tokens, then `steps` calls of the recurrent rule on one token, state carried."""
    import torch
    import transformers.models.qwen3_5.modeling_qwen3_5 as m

    H, d = config.linear_num_value_heads, config.linear_key_head_dim
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, T + steps, H, d, generator=g).to(dtype) for _ in range(3))
    decay = -torch.rand(1, T + steps, H, generator=g)
    beta = torch.rand(1, T + steps, H, generator=g).to(dtype)

    def run(patched):
        t0 = time.perf_counter()
        _, s = m.torch_chunk_gated_delta_rule(q[:, :T], k[:, :T], v[:, :T], g=decay[:, :T], beta=beta[:, :T],
                                              output_final_state=True, use_qk_l2norm_in_kernel=True)
        t1 = time.perf_counter()
        for i in range(T, T + steps):
            sl = slice(i, i + 1)
            _, s = m.torch_recurrent_gated_delta_rule(q[:, sl], k[:, sl], v[:, sl], g=decay[:, sl], beta=beta[:, sl],
                                                      initial_state=s, output_final_state=True,
                                                      use_qk_l2norm_in_kernel=True)
        return t1 - t0, time.perf_counter() - t1, None

    return run


def _tiny_model(dtype):
    import torch
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    config = Qwen3_5TextConfig(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=64, linear_conv_kernel_dim=4,
                               linear_key_head_dim=64, linear_value_head_dim=64, linear_num_key_heads=4,
                               linear_num_value_heads=4, full_attention_interval=4, max_position_embeddings=4096)
    torch.manual_seed(0)
    return Qwen3_5ForCausalLM(config).to(dtype).eval()


def _time_generate(model, ids, new_tokens):
    kw = dict(do_sample=False, pad_token_id=0)
    t0 = time.perf_counter()
    model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
    t1 = time.perf_counter()
    out = model.generate(ids, max_new_tokens=new_tokens + 1, min_new_tokens=new_tokens + 1, **kw)
    t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) - (t1 - t0), out


def _alternate(fn, reps):
    """fn(patched) -> (prefill_s, decode_s, result); unpatched and patched alternately."""
    import linattn.torch as lt

    times = {False: ([], []), True: ([], [])}
    results = {}
    for patched in (False, True):  # warm-up: first-call costs (allocations, lazy imports) untimed
        (lt.patch_transformers if patched else lt.unpatch)()
        fn(patched)
    for _ in range(reps):
        for patched in (False, True):
            (lt.patch_transformers if patched else lt.unpatch)()
            pre, dec, res = fn(patched)
            times[patched][0].append(pre)
            times[patched][1].append(dec)
            results[patched] = res
    lt.unpatch()
    return {k: (statistics.median(v[0]), statistics.median(v[1])) for k, v in times.items()}, results


def _row(what, dtype, n_pre, n_dec, t):
    (p0, d0), (p1, d1) = t[False], t[True]
    return (f"| {what} | {dtype} | {n_pre / p0:9.0f} | {n_pre / p1:9.0f} | {p0 / p1:5.2f}x | "
            f"{n_dec / d0:8.1f} | {n_dec / d1:8.1f} | {d0 / d1:5.2f}x |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m linattn.bench --torch", description=__doc__.split("\n\n")[0])
    p.add_argument("--torch", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="f32,bf16")
    p.add_argument("--T", type=int, default=1024, help="layer prefill tokens")
    p.add_argument("--steps", type=int, default=32, help="layer decode steps")
    p.add_argument("--prompt", type=int, default=512, help="tiny model prompt tokens")
    p.add_argument("--new", type=int, default=32, help="tiny model generated tokens")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)

    import warnings

    import torch
    import transformers

    import linattn
    from linattn.bench import _cpu_name

    warnings.filterwarnings("ignore", message=".*falling back to its reference PyTorch implementation.*")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    dtypes = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    print(f"# linattn {linattn.library_version()} | torch {torch.__version__} | transformers "
          f"{transformers.__version__} | {_cpu_name()} | threads {args.threads} | medians of {args.reps}, "
          f"unpatched and patched alternately")
    print("| what | dtype | prefill tok/s torch | prefill tok/s linattn | speed-up | decode tok/s torch | "
          "decode tok/s linattn | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with torch.no_grad():
        for name in args.dtype.split(","):
            dtype = dtypes[name]
            config, layer = _layer(dtype)
            t, _ = _alternate(_time_rule(config, args.T, args.steps, dtype), args.reps)
            print(_row(f"gated delta rule alone (16 heads of 128), T={args.T} + {args.steps} steps", name, args.T,
                       args.steps, t), flush=True)
            x = torch.randn(1, args.T + args.steps, config.hidden_size).to(dtype)
            t, _ = _alternate(lambda patched: (*_time_layer(config, layer, x, args.steps), None), args.reps)
            print(_row(f"Qwen3.5-0.8B GDN layer, T={args.T} + {args.steps} steps", name, args.T, args.steps, t),
                  flush=True)
            model = _tiny_model(dtype)
            seed = torch.Generator().manual_seed(1)
            ids = torch.randint(0, model.config.vocab_size, (1, args.prompt), generator=seed)
            t, res = _alternate(lambda patched: _time_generate(model, ids, args.new), args.reps)
            same = torch.equal(res[False], res[True])
            print(_row(f"tiny Qwen3.5 generate, {args.prompt} + {args.new} tokens"
                       + ("" if same else " (TOKENS DIFFER)"), name, args.prompt, args.new, t), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
