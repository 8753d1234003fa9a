"""ONNX Runtime plugin helpers: run LinearAttention / CausalConvWithState nodes on linattn.

    import onnxruntime as ort
    import linattn.ort

    so = ort.SessionOptions()
    linattn.ort.register(so)            # loads liblinattn_ort.so into these options
    sess = ort.InferenceSession("model.onnx", so)

The plugin takes over `com.microsoft` LinearAttention / CausalConvWithState (version 1) and the
standard opset-27 ops, in float32, float16 and bfloat16 (also fp16/bf16 activations with an
fp32 recurrent state), running linattn's kernels on ORT's intra-op thread pool.

This module only finds the library; it does not load linattn's Python binding.
Where the library comes from, first match wins:
  1. the environment variable LINATTN_ORT_LIBRARY (a path to the .so);
  2. <repo>/build/liblinattn_ort.so (this file lives in <repo>/python/linattn/);
  3. liblinattn_ort.so next to this package (an installed copy).
"""

from __future__ import annotations

import os
from pathlib import Path

LIBRARY_NAME = "liblinattn_ort.so"
ENV_VAR = "LINATTN_ORT_LIBRARY"


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    found = []
    env = os.environ.get(ENV_VAR)
    if env:
        found.append(Path(env))
    found.append(here.parent.parent / "build" / LIBRARY_NAME)
    found.append(here / LIBRARY_NAME)
    return found


def library_path() -> str:
    """Absolute path of liblinattn_ort.so; FileNotFoundError naming the places looked at."""
    candidates = _candidates()
    env = os.environ.get(ENV_VAR)
    if env and not Path(env).is_file():
        raise FileNotFoundError(f"{ENV_VAR}={env}: no such file")
    for path in candidates:
        if path.is_file():
            return str(path.resolve())
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"{LIBRARY_NAME} not found (looked at {tried}); build it with `make` or install the package "
        f"with `pip install .` from the repository top (both need the ONNX Runtime C API header, see the README "
        f"section 'ONNX Runtime plugin') or set {ENV_VAR}"
    )


DOMAINS_CONFIG_KEY = "linattn.domains"


def domains_for_model(model) -> str:
    """The plugin domains to register for a model (a path, bytes or onnx.ModelProto): "ai.onnx",
    plus "com.microsoft" only when the model imports that domain.

    Why: with a custom com.microsoft domain registered, ORT gives a model that does not import
    com.microsoft that domain's version 1000, and the com.microsoft nodes its own graph fusions
    insert (QuickGelu for x*sigmoid(x), ...) then have no schema: the session fails to load."""
    import onnx

    if isinstance(model, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(model))
    elif isinstance(model, onnx.ModelProto):
        proto = model
    else:
        proto = onnx.load(str(model), load_external_data=False)
    imported = {op.domain for op in proto.opset_import}
    return "ai.onnx,com.microsoft" if "com.microsoft" in imported else "ai.onnx"


def register(session_options, path: str | None = None, *, domains=None, model=None):
    """Registers the plugin's custom ops with an onnxruntime.SessionOptions and returns it.

    domains: "all" (the library's default), "ai.onnx", "com.microsoft", or a list of them;
    model: when given (path, bytes or ModelProto) and domains is None, the domains are chosen
    for that model by domains_for_model(). Call once per SessionOptions, before creating the
    InferenceSession."""
    if domains is None and model is not None:
        domains = domains_for_model(model)
    if domains is not None:
        value = domains if isinstance(domains, str) else ",".join(domains)
        session_options.add_session_config_entry(DOMAINS_CONFIG_KEY, value)
    session_options.register_custom_ops_library(path or library_path())
    return session_options


def is_available() -> bool:
    """True if the plugin library can be found (it is not loaded)."""
    try:
        library_path()
    except FileNotFoundError:
        return False
    return True


__all__ = ["DOMAINS_CONFIG_KEY", "ENV_VAR", "LIBRARY_NAME", "domains_for_model", "is_available", "library_path", "register"]
