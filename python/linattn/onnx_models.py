"""Single-node ONNX models of the two ops, and running them with onnx.reference.ReferenceEvaluator.

Used by the differential tests (and usable by any comparison against another runtime):

    model = linear_attention_model(q_num_heads=4, kv_num_heads=2, dtype="float16",
                                   inputs=("query", "key", "value", "", "decay", "beta"))
    output, present_state = reference_linear_attention(q, k, v, None, g, b, q_num_heads=4, kv_num_heads=2)

Shapes in the models are left symbolic (unknown dims), so one model serves every shape of a
given attribute/dtype combination; the evaluators are cached on that combination.
"""

from __future__ import annotations

import functools

import numpy as np

from ._tensor import resolve_dtype

OPSET = 27

LA_INPUT_NAMES = ("query", "key", "value", "past_state", "decay", "beta")
CONV_INPUT_NAMES = ("input", "weight", "bias", "past_state")


def _elem_type(dtype) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(resolve_dtype(dtype))


def _strip_trailing(names):
    names = list(names)
    while names and names[-1] == "":
        names.pop()
    return names


def _model(node, input_types: dict, output_types: dict):
    from onnx import helper

    inputs = [helper.make_tensor_value_info(n, _elem_type(t), None) for n, t in input_types.items()]
    outputs = [helper.make_tensor_value_info(n, _elem_type(t), None) for n, t in output_types.items()]
    graph = helper.make_graph([node], f"{node.op_type}_test", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="linattn-tests")


def linear_attention_model(
    *,
    q_num_heads: int,
    kv_num_heads: int,
    dtype="float32",
    state_dtype=None,
    inputs=("query", "key", "value"),
    update_rule: str | None = None,
    scale: float | None = None,
    chunk_size: int | None = None,
):
    """A model with one LinearAttention node. `inputs` lists the node's input names in ONNX order
    ("" for an omitted optional input). Attributes left None are not written (schema default).
    state_dtype is past_state's dtype; present_state gets it, or `dtype` when past_state is absent."""
    from onnx import helper

    names = _strip_trailing(inputs)
    attrs = {"q_num_heads": q_num_heads, "kv_num_heads": kv_num_heads}
    if update_rule is not None:
        attrs["update_rule"] = update_rule
    if scale is not None:
        attrs["scale"] = float(scale)
    if chunk_size is not None:
        attrs["chunk_size"] = chunk_size
    node = helper.make_node("LinearAttention", names, ["output", "present_state"], **attrs)
    has_past = len(names) > 3 and names[3] != ""
    s = state_dtype if (has_past and state_dtype is not None) else dtype
    input_types = {n: (s if i == 3 else dtype) for i, n in enumerate(names) if n}
    return _model(node, input_types, {"output": dtype, "present_state": s})


def causal_conv_model(*, dtype="float32", inputs=("input", "weight"), activation: str | None = None):
    """A model with one CausalConvWithState node (see linear_attention_model for `inputs`)."""
    from onnx import helper

    names = _strip_trailing(inputs)
    attrs = {} if activation is None else {"activation": activation}
    node = helper.make_node("CausalConvWithState", names, ["output", "present_state"], **attrs)
    return _model(node, {n: dtype for n in names if n}, {"output": dtype, "present_state": dtype})


@functools.lru_cache(maxsize=256)
def _evaluator(kind: str, key: tuple):
    from onnx.reference import ReferenceEvaluator

    kwargs = dict(key)
    model = linear_attention_model(**kwargs) if kind == "la" else causal_conv_model(**kwargs)
    return ReferenceEvaluator(model)


def _names_and_feeds(values, names):
    feeds, node_inputs = {}, []
    for name, value in zip(names, values):
        if value is None:
            node_inputs.append("")
        else:
            node_inputs.append(name)
            feeds[name] = value
    return tuple(node_inputs), feeds


def reference_linear_attention(
    query, key, value, past_state=None, decay=None, beta=None, *,
    q_num_heads, kv_num_heads, update_rule=None, scale=None, chunk_size=None,
):
    """(output, present_state) from onnx.reference on a single-node opset-27 model."""
    node_inputs, feeds = _names_and_feeds((query, key, value, past_state, decay, beta), LA_INPUT_NAMES)
    key_ = (
        ("q_num_heads", int(q_num_heads)),
        ("kv_num_heads", int(kv_num_heads)),
        ("dtype", np.dtype(query.dtype).name),
        ("state_dtype", None if past_state is None else np.dtype(past_state.dtype).name),
        ("inputs", node_inputs),
        ("update_rule", update_rule),
        ("scale", None if scale is None else float(scale)),
        ("chunk_size", chunk_size),
    )
    output, present = _evaluator("la", key_).run(None, feeds)
    return output, present


def reference_causal_conv_with_state(input, weight, bias=None, past_state=None, *, activation=None):
    """(output, present_state) from onnx.reference on a single-node opset-27 model."""
    node_inputs, feeds = _names_and_feeds((input, weight, bias, past_state), CONV_INPUT_NAMES)
    key_ = (("dtype", np.dtype(input.dtype).name), ("inputs", node_inputs), ("activation", activation))
    output, present = _evaluator("conv", key_).run(None, feeds)
    return output, present
