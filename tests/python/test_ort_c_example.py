"""The plugin's C example in README.md, compiled and run as written: against the ONNX
Runtime C API header the build fetched and the onnxruntime wheel's shared library, on the model
the doc's Python snippet makes. Its printed output is compared with onnx's ReferenceEvaluator on
the same inputs (recomputed here from the formulas in the C code)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
from linattn import ort as lort  # noqa: E402
from ort_testlib import ort_header_dir, ort_link_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "README.md"

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)


def code_blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_c_example_runs_and_matches_reference(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    hdr = ort_header_dir()
    if not cc or hdr is None:
        pytest.skip("no C compiler or no fetched ONNX Runtime header")
    ortlib = ort_link_dir(tmp_path)
    c_src = next(b for b in code_blocks("c") if "OrtGetApiBase" in b)
    (tmp_path / "la_example.c").write_text(c_src)
    build = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "la_example.c", f"-I{hdr}", f"-L{ortlib}",
                            "-lonnxruntime", f"-Wl,-rpath,{ortlib}", "-lm", "-o", "la_example"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr

    model_src = next(b for b in code_blocks("python") if "onnx.save(model" in b)
    subprocess.run([str(REPO / ".venv/bin/python"), "-c", model_src], cwd=tmp_path, check=True)

    run = subprocess.run(["./la_example", "model.onnx", lort.library_path()], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = np.array([float(v) for v in re.findall(r"output\[\d+\] = (\S+)", run.stdout)])

    # the C program's inputs
    n, g = 1 * 3 * 8, 1 * 3 * 2
    i, j = np.arange(n, dtype=np.float32), np.arange(g)
    feeds = {
        "query": np.sin(np.float32(0.3) * i).reshape(1, 3, 8),
        "key": (np.cos(np.float32(0.7) * i) * np.float32(0.5)).reshape(1, 3, 8),
        "value": ((i % 5) - 2).astype(np.float32).reshape(1, 3, 8),
        "decay": (np.float32(-0.1) * (1 + j % 3)).astype(np.float32).reshape(1, 3, 2),
        "beta": (np.float32(0.25) + np.float32(0.1) * (j % 4)).astype(np.float32).reshape(1, 3, 2),
    }
    import onnx
    from onnx.reference import ReferenceEvaluator

    expected = ReferenceEvaluator(onnx.load(str(tmp_path / "model.onnx"))).run(["output"], feeds)[0].ravel()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
