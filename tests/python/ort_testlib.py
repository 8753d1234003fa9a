"""Helpers shared by tests/python/test_ort_*.py: random inputs, the independent references for
com.microsoft nodes (rewritten as ai.onnx nodes for onnx's ReferenceEvaluator) and tolerances.

References:
  - ai.onnx nodes run as they are through onnx.reference.ReferenceEvaluator;
  - com.microsoft LinearAttention with inverse GQA (H_q < H_kv) or separate key heads (n_k < H_kv)
    becomes the ai.onnx op after repeat-interleaving query / key heads up to H_kv (kv head h reads
    query head h // (H_kv / H_q) and key head h // (H_kv / n_k));
  - com.microsoft CausalConvWithState with channels_last is transposed to channels-first, and
    dilation d becomes an undilated kernel of (k - 1) d + 1 taps with zeros between the real ones.
"""

from __future__ import annotations

import os

import numpy as np

from linattn import ort_models as M


def fresh_rng():
    """A generator on fresh random data; the seed goes into assertion messages."""
    seed = int.from_bytes(os.urandom(4), "little")
    return np.random.default_rng(seed), seed


def ulp_bound(expected, dtype: str):
    e = np.abs(np.asarray(expected, np.float64))
    if dtype == "float16":
        return e * 2.0**-10 + 2.0**-24
    if dtype == "bfloat16":
        return e * 2.0**-7 + 2.0**-133
    return np.zeros_like(e)


def assert_close(actual, expected, dtype: str, what: str, rel_max=2e-5, rel=1e-4):
    """|a - e| <= rel_max * max|e| + rel * |e| + one ulp of the output type (float16/bfloat16);
    every element finite where the expected one is (outputs are NaN-poisoned before the run)."""
    a = np.asarray(actual).astype(np.float64)
    e = np.asarray(expected).astype(np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    if e.size == 0:
        return
    assert np.all(np.isfinite(a) == np.isfinite(e)), f"{what}: non-finite elements (unwritten output?)"
    scale = np.max(np.abs(e))
    bound = rel_max * scale + rel * np.abs(e) + ulp_bound(e, dtype) + 1e-30
    err = np.abs(a - e)
    bad = err > bound
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {e.size} elements off; worst |a-e|={err.max():.3e} "
        f"(bound there {bound.flat[int(np.argmax(err - bound))]:.3e}, max|e|={scale:.3e})"
    )


# ---------------------------------------------------------------- LinearAttention


def la_inputs(rng, *, batch, tokens, q_heads, kv_heads, d_k, d_v, rule, decay_kind, beta_kind, past,
              dtype, state_dtype, key_heads=None):
    """Random LinearAttention inputs (dict keyed by input name, absent inputs left out)."""
    key_heads = key_heads or kv_heads
    td, sd = M.np_dtype(dtype), M.np_dtype(state_dtype)
    q = rng.standard_normal((batch, tokens, q_heads * d_k))
    k = rng.standard_normal((batch, tokens, key_heads, d_k))
    if rule in ("delta", "gated_delta"):  # delta rules want unit keys (as the ONNX tests do)
        k /= np.linalg.norm(k, axis=-1, keepdims=True) + 1e-6
    feeds = {"query": q.astype(td), "key": k.reshape(batch, tokens, key_heads * d_k).astype(td),
             "value": rng.standard_normal((batch, tokens, kv_heads * d_v)).astype(td)}
    if past:
        feeds["past_state"] = (0.1 * rng.standard_normal((batch, kv_heads, d_k, d_v))).astype(sd)
    if rule in ("gated", "gated_delta"):
        width = kv_heads if decay_kind == "head" else kv_heads * d_k
        feeds["decay"] = (-0.1 * np.abs(rng.standard_normal((batch, tokens, width)))).astype(td)
    if rule in ("delta", "gated_delta"):
        width = kv_heads if beta_kind == "head" else 1
        feeds["beta"] = rng.uniform(0.0, 1.0, (batch, tokens, width)).astype(td)
    return feeds


def la_node_inputs(feeds):
    return [n if n in feeds else "" for n in M.LA_INPUTS]


def reference_linear_attention(feeds, *, q_heads, kv_heads, dtype, state_dtype, contrib, **attrs):
    """(output, present_state) of the ONNX reference, with the com.microsoft extensions rewritten."""
    feeds = dict(feeds)
    b, t, qw = feeds["query"].shape
    d_k = qw // q_heads
    if contrib:
        key_heads = feeds["key"].shape[-1] // d_k
        if q_heads < kv_heads:
            q4 = feeds["query"].reshape(b, t, q_heads, d_k)
            feeds["query"] = np.repeat(q4, kv_heads // q_heads, axis=2).reshape(b, t, kv_heads * d_k)
            q_heads = kv_heads
        if key_heads < kv_heads:
            k4 = feeds["key"].reshape(b, t, key_heads, d_k)
            feeds["key"] = np.repeat(k4, kv_heads // key_heads, axis=2).reshape(b, t, kv_heads * d_k)
    model = M.linear_attention_model("", q_num_heads=q_heads, kv_num_heads=kv_heads, dtype=dtype,
                                     state_dtype=state_dtype, inputs=la_node_inputs(feeds), **attrs)
    return M.reference(model, feeds)


# ---------------------------------------------------------------- CausalConvWithState


def conv_inputs(rng, *, batch, channels, length, taps, bias, past, dtype, dilation=1, channels_last=False,
                channel_dims=None):
    """Random conv inputs; channel_dims splits the channel axis (channels_last only)."""
    td = M.np_dtype(dtype)
    span = (taps - 1) * dilation
    feeds = {}
    if channels_last:
        cdims = tuple(channel_dims or (channels,))
        feeds["input"] = rng.standard_normal((batch, length) + cdims).astype(td)
    else:
        feeds["input"] = rng.standard_normal((batch, channels, length)).astype(td)
    feeds["weight"] = (rng.standard_normal((channels, 1, taps)) / np.sqrt(taps)).astype(td)
    if bias:
        feeds["bias"] = rng.standard_normal(channels).astype(td)
    if past:
        if channels_last:
            feeds["past_state"] = rng.standard_normal((batch, span) + tuple(channel_dims or (channels,))).astype(td)
        else:
            feeds["past_state"] = rng.standard_normal((batch, channels, span)).astype(td)
    return feeds


def conv_node_inputs(feeds):
    return [n if n in feeds else "" for n in M.CONV_INPUTS]


def reference_causal_conv(feeds, *, dtype, dilation=1, channels_last=False, activation=None):
    """(output, present_state) of the ONNX reference, with dilation / channels_last rewritten."""
    feeds = dict(feeds)
    x = feeds["input"]
    b = x.shape[0]
    out_shape = x.shape
    if channels_last:
        length = x.shape[1]
        channels = int(np.prod(x.shape[2:]))
        feeds["input"] = np.ascontiguousarray(x.reshape(b, length, channels).transpose(0, 2, 1))
        if "past_state" in feeds:
            p = feeds["past_state"]
            feeds["past_state"] = np.ascontiguousarray(p.reshape(b, p.shape[1], channels).transpose(0, 2, 1))
    w = feeds["weight"]
    taps = w.shape[2]
    if dilation > 1:
        wide = np.zeros((w.shape[0], 1, (taps - 1) * dilation + 1), w.dtype)
        wide[:, :, ::dilation] = w
        feeds["weight"] = wide
    model = M.causal_conv_model("", dtype=dtype, inputs=conv_node_inputs(feeds), activation=activation)
    out, state = M.reference(model, feeds)
    if channels_last:
        out = out.transpose(0, 2, 1).reshape(out_shape)
        state = state.transpose(0, 2, 1).reshape((b, state.shape[2]) + tuple(out_shape[2:]))
    return out, state


# ---------------------------------------------------------------- C programs against ONNX Runtime


def ort_header_dir():
    """The folder holding the onnxruntime_c_api.h the plugin was built against (fetched into
    <build>/ort-hdr/<suite>/..., newest suite first), or None."""
    from pathlib import Path

    from linattn import ort as lort

    repo = Path(__file__).resolve().parents[2]
    builds = [Path(lort.library_path()).parent, repo / "build"]
    for build in builds:
        for suite in ("experimental", "sid", "trixie"):
            candidate = build / "ort-hdr" / suite / "root/usr/include/onnxruntime"
            if (candidate / "onnxruntime_c_api.h").is_file():
                return candidate
    return None


def ort_link_dir(tmp_path):
    """A folder with libonnxruntime.so and .so.1 pointing at the wheel's library (it ships
    libonnxruntime.so.<version> only; its SONAME is libonnxruntime.so.1)."""
    from pathlib import Path

    import onnxruntime as ort

    libs = sorted((Path(ort.__file__).parent / "capi").glob("libonnxruntime.so*"))
    assert libs, "no libonnxruntime.so in the onnxruntime wheel"
    ortlib = Path(tmp_path) / "ortlib"
    ortlib.mkdir(exist_ok=True)
    for name in ("libonnxruntime.so", "libonnxruntime.so.1"):
        if not (ortlib / name).exists():
            (ortlib / name).symlink_to(libs[0])
    return ortlib
