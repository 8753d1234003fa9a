"""ONNX node-test conformance runner for linattn.

    python -m linattn.conformance [--save OUT_DIR] [--isa ISA] [--threads N] DIR [DIR ...]

Each DIR is a case folder in the ONNX backend node-test layout (model.onnx holding one
LinearAttention or CausalConvWithState node, domain "" / ai.onnx, opset >= 27, plus
test_data_set_*/input_N.pb and output_N.pb), or a folder whose sub-folders (at any depth) are
such case folders. For every data set the node's attributes and inputs are read (an empty input
name is an omitted optional input), linattn computes the outputs, and each graph output is
compared with output_N.pb:
  float32:           |actual - expected| <= 1e-7 + 1e-3 * |expected|  (the ONNX backend runner's
                     atol/rtol);
  float16/bfloat16:  the same bound plus one unit in the last place of the output type at the
                     expected value (about one output rounding), see linattn.testing.
It prints `PASS name`, `FAIL name: reason` or `SKIP name: reason` (a model whose graph is not a
single node of these two ops, e.g. an `_expanded` function-body case) per case, then the closing
line `N passed, N failed`, and exits 1 if any case failed (a DIR holding no case counts as a
failure). --save OUT_DIR writes the computed outputs as TensorProto files
OUT_DIR/<case>/output_N.pb (data set 0; further data sets under OUT_DIR/<case>/test_data_set_K/).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

OPS = ("LinearAttention", "CausalConvWithState")
MIN_OPSET = 27

LA_INPUTS = ("query", "key", "value", "past_state", "decay", "beta")
LA_ATTRIBUTES = ("update_rule", "scale", "q_num_heads", "kv_num_heads", "chunk_size")
CONV_INPUTS = ("input", "weight", "bias", "past_state")
CONV_ATTRIBUTES = ("activation",)


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def find_cases(root: Path) -> list[Path]:
    """Case folders (holding model.onnx) at or below root, sorted by path."""
    if (root / "model.onnx").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("model.onnx"))


def _numbered(folder: Path, prefix: str) -> list[Path]:
    pattern = re.compile(rf"^{prefix}_(\d+)\.pb$")
    found = []
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _load_tensor(path: Path) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    proto = TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)


def _single_node(model):
    graph = model.graph
    if len(graph.node) != 1:
        raise Skip(f"graph has {len(graph.node)} nodes, not one {' or '.join(OPS)} node")
    node = graph.node[0]
    if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
        domain = f"{node.domain}." if node.domain else ""
        raise Skip(f"op {domain}{node.op_type} is not {' or '.join(OPS)}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise Skip(f"opset {opset} < {MIN_OPSET} has no {node.op_type}")
    return node


def _attributes(node, known) -> dict:
    from onnx import helper

    attrs = {}
    for a in node.attribute:
        if a.name not in known:
            raise Fail(f"unsupported attribute {a.name!r}")
        value = helper.get_attribute_value(a)
        attrs[a.name] = value.decode() if isinstance(value, bytes) else value
    return attrs


def _node_inputs(node, names, feeds) -> list:
    if len(node.input) > len(names):
        raise Fail(f"node has {len(node.input)} inputs, {node.op_type} takes at most {len(names)}")
    values = []
    for i, name in enumerate(names):
        edge = node.input[i] if i < len(node.input) else ""
        if edge == "":
            values.append(None)
        elif edge in feeds:
            values.append(feeds[edge])
        else:
            raise Fail(f"input {name} ({edge!r}) has no value in the data set")
    return values


def run_node(node, feeds: dict, context) -> dict:
    """Runs the node with linattn; returns {output edge name: array}."""
    from . import ops

    if node.op_type == "LinearAttention":
        attrs = _attributes(node, LA_ATTRIBUTES)
        query, key, value, past, decay, beta = _node_inputs(node, LA_INPUTS, feeds)
        if query is None or key is None or value is None:
            raise Fail("query, key and value are required")
        output, present = ops.linear_attention(
            query, key, value, past, decay, beta,
            q_num_heads=attrs.get("q_num_heads", 0),
            kv_num_heads=attrs.get("kv_num_heads", 0),
            update_rule=attrs.get("update_rule", "gated_delta"),
            scale=attrs.get("scale", 0.0),
            chunk_size=attrs.get("chunk_size", 64),
            context=context,
        )
    else:
        attrs = _attributes(node, CONV_ATTRIBUTES)
        x, weight, bias, past = _node_inputs(node, CONV_INPUTS, feeds)
        if x is None or weight is None:
            raise Fail("input and weight are required")
        output, present = ops.causal_conv_with_state(
            x, weight, bias, past, activation=attrs.get("activation", "none"), context=context
        )
    results = {}
    for edge, value in zip(node.output, (output, present)):
        if edge:
            results[edge] = value
    return results


def run_case(case_dir: Path, context, save_dir: Path | None) -> None:
    """Raises Skip or Fail; returns normally when every data set matches."""
    import onnx
    from onnx import helper, numpy_helper

    from . import testing
    from ._lib import LinattnError

    try:
        model = onnx.load(str(case_dir / "model.onnx"))
    except Exception as e:  # noqa: BLE001 - any parse error is this case's failure
        raise Fail(f"cannot load model.onnx: {e}") from None
    node = _single_node(model)
    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    graph_inputs = [vi for vi in graph.input if vi.name not in initializers]
    data_sets = sorted(
        (p for p in case_dir.iterdir() if p.is_dir() and re.match(r"^test_data_set_\d+$", p.name)),
        key=lambda p: int(p.name.rsplit("_", 1)[1]),
    )
    if not data_sets:
        raise Fail("no test_data_set_* folder")
    for ds in data_sets:
        input_files = _numbered(ds, "input")
        output_files = _numbered(ds, "output")
        if len(input_files) != len(graph_inputs):
            raise Fail(f"{ds.name}: {len(input_files)} input files for {len(graph_inputs)} graph inputs")
        if len(output_files) != len(graph.output):
            raise Fail(f"{ds.name}: {len(output_files)} output files for {len(graph.output)} graph outputs")
        feeds = dict(initializers)
        for vi, path in zip(graph_inputs, input_files):
            feeds[vi.name] = _load_tensor(path)
        try:
            results = run_node(node, feeds, context)
        except LinattnError as e:
            raise Fail(f"{ds.name}: linattn raised {e}") from None
        except TypeError as e:
            raise Fail(f"{ds.name}: {e}") from None
        if save_dir is not None:
            target = save_dir / case_dir.name
            if ds is not data_sets[0]:
                target = target / ds.name
            target.mkdir(parents=True, exist_ok=True)
            for j, vi in enumerate(graph.output):
                if vi.name in results:
                    proto = numpy_helper.from_array(results[vi.name], vi.name)
                    (target / f"output_{j}.pb").write_bytes(proto.SerializeToString())
        for j, (vi, path) in enumerate(zip(graph.output, output_files)):
            if vi.name not in results:
                raise Fail(f"{ds.name}: graph output {vi.name!r} is not an output of the node")
            actual = results[vi.name]
            elem_type = vi.type.tensor_type.elem_type
            if elem_type and helper.tensor_dtype_to_np_dtype(elem_type) != actual.dtype:
                raise Fail(
                    f"{ds.name}: output_{j} ({vi.name}) has dtype {actual.dtype}, the graph declares "
                    f"{helper.tensor_dtype_to_np_dtype(elem_type)}"
                )
            reason = testing.compare(actual, _load_tensor(path))
            if reason:
                raise Fail(f"{ds.name}: output_{j} ({vi.name}): {reason}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m linattn.conformance",
        description="Run ONNX node-test folders of LinearAttention / CausalConvWithState through linattn.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="case folder or folder of case folders")
    parser.add_argument("--save", type=Path, metavar="OUT_DIR", help="write computed outputs as OUT_DIR/<case>/output_N.pb")
    parser.add_argument("--isa", default="auto", help="kernel family: auto (default) or one of linattn.available_isas()")
    parser.add_argument("--threads", type=int, default=0, help="threads (0 = all CPUs, the default)")
    args = parser.parse_args(argv)

    from .context import Context

    from . import library_path, library_version

    context = Context(threads=args.threads, isa=args.isa)
    print(f"linattn {library_version()} ({library_path()}), isa {context.isa}, {context.num_threads} threads")
    passed = failed = skipped = 0
    for root in args.dirs:
        cases = find_cases(root) if root.is_dir() else []
        if not cases:
            print(f"FAIL {root}: {'no model.onnx found' if root.is_dir() else 'no such directory'}")
            failed += 1
            continue
        for case_dir in cases:
            name = case_dir.name
            try:
                run_case(case_dir, context, args.save)
            except Skip as e:
                print(f"SKIP {name}: {e}")
                skipped += 1
            except Fail as e:
                print(f"FAIL {name}: {e}")
                failed += 1
            except Exception as e:  # noqa: BLE001 - a crash in one case must not hide the others
                print(f"FAIL {name}: {type(e).__name__}: {e}")
                failed += 1
            else:
                print(f"PASS {name}")
                passed += 1
            sys.stdout.flush()
    if skipped:
        print(f"{skipped} skipped (not a single {' or '.join(OPS)} node)")
    print(f"{passed} passed, {failed} failed")
    context.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
