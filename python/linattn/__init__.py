"""linattn: Python binding of the linattn C library (ONNX opset-27 LinearAttention and
CausalConvWithState on the CPU).

    import numpy as np, linattn
    out, state = linattn.linear_attention(q, k, v, decay=g, beta=b, q_num_heads=16, kv_num_heads=16)

The shared library is loaded on first use (see linattn._lib for where it is looked for).
Submodules: conformance (ONNX node-test runner), official_cases (writes the official ONNX cases),
testing (tolerances shared by the runner and the tests).
"""

from ._lib import LinattnError, library_path
from ._tensor import BFLOAT16, FLOAT16, FLOAT32
from .context import Context, available_isas, isa_available, shared_context
from .gates import GATE_ACTIVATIONS, gated_rms_norm, linear_attention_gate
from .gdn import GDN_BETA_ACTIVATIONS, GDN_GATE_ACTIVATIONS, gated_delta_net, gated_delta_net_state_replay
from .ops import (ACTIVATIONS, UPDATE_RULES, causal_conv_with_state, linear_attention, linear_attention_shapes,
                  varlen_causal_conv_with_state, varlen_linear_attention)

__version__ = "0.1.0"


def library_version() -> str:
    """Version string of the loaded C library."""
    from . import _lib

    return _lib.lib().linattn_version_string().decode()


__all__ = [
    "ACTIVATIONS",
    "BFLOAT16",
    "GATE_ACTIVATIONS",
    "FLOAT16",
    "FLOAT32",
    "GDN_BETA_ACTIVATIONS",
    "GDN_GATE_ACTIVATIONS",
    "UPDATE_RULES",
    "Context",
    "LinattnError",
    "available_isas",
    "causal_conv_with_state",
    "gated_rms_norm",
    "gated_delta_net",
    "gated_delta_net_state_replay",
    "isa_available",
    "library_path",
    "library_version",
    "linear_attention",
    "linear_attention_gate",
    "linear_attention_shapes",
    "shared_context",
    "varlen_causal_conv_with_state",
    "varlen_linear_attention",
]
