"""Writes the official ONNX node-test cases of LinearAttention and CausalConvWithState.

    python -m linattn.official_cases OUT_DIR

The onnx wheel does not ship the .pb data of these cases, so they are regenerated with the onnx
package's own generator: importing onnx.backend.test.case.node.linear_attention (and
.causal_conv_with_state) runs every `export_*` function with np.random.seed(0), each calling
`expect(...)`, which records a TestCase (model + inputs + reference outputs). Only those two
modules are imported, so only these cases are built. The cases are written in the backend
node-test layout (OUT_DIR/<name>/model.onnx, test_data_set_0/input_N.pb, output_N.pb), as
onnx.backend.test.cmd_tools does; the `*_expanded` function-body variants are left out.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from pathlib import Path

OPS = {
    "LinearAttention": "onnx.backend.test.case.node.linear_attention",
    "CausalConvWithState": "onnx.backend.test.case.node.causal_conv_with_state",
}


def collect_cases(op_types=tuple(OPS)) -> list:
    """The onnx TestCase objects of the given op types (single-node cases only)."""
    node_cases = importlib.import_module("onnx.backend.test.case.node")
    for op in op_types:
        importlib.import_module(OPS[op])
    cases = []
    for case in node_cases._NodeTestCases:
        graph = case.model.graph
        if len(graph.node) == 1 and graph.node[0].op_type in op_types:
            cases.append(case)
    return cases


def write_case(case, out_dir: Path) -> Path:
    from onnx import TensorProto, numpy_helper

    case_dir = out_dir / case.name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    (case_dir / "model.onnx").write_bytes(case.model.SerializeToString())
    graph = case.model.graph
    for i, (inputs, outputs) in enumerate(case.data_sets):
        ds = case_dir / f"test_data_set_{i}"
        ds.mkdir()
        for kind, values, infos in (("input", inputs, graph.input), ("output", outputs, graph.output)):
            for j, value in enumerate(values):
                if isinstance(value, TensorProto):
                    proto = value
                else:
                    proto = numpy_helper.from_array(value, infos[j].name)
                (ds / f"{kind}_{j}.pb").write_bytes(proto.SerializeToString())
    return case_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linattn.official_cases", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the case folders into")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    cases = collect_cases()
    counts = dict.fromkeys(OPS, 0)
    for case in cases:
        write_case(case, args.out_dir)
        counts[case.model.graph.node[0].op_type] += 1
    summary = ", ".join(f"{n} {op}" for op, n in counts.items())
    print(f"wrote {summary} cases to {args.out_dir}")
    if any(n == 0 for n in counts.values()):
        print("error: the onnx generator produced no cases for an operator", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
