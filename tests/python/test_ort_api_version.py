"""The plugin on an ONNX Runtime older than the header it was built against.

ort_older_runtime.c hands RegisterCustomOps an OrtApiBase that says it is ONNX Runtime 1.N and has
no table above version N, whose tables have every entry of version 24 and later cleared (a call
through one crashes the program), and records the version of each custom op registered (ORT before
1.27 refuses a kernel for an op whose version is above its own). Then the model runs on the real
runtime. Its outputs must be the bits of the plugin's newest path (a session registered as usual),
and the ops' version must be N when the header is newer.

The node tests run both paths in-process through LINATTN_ORT_API_VERSION (conftest.py,
ort_api_path); the last test checks that the variable reaches the registration."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
from linattn import ort as lort  # noqa: E402
from linattn import ort_models as M  # noqa: E402
from linattn import ort_overhead as nodes  # noqa: E402
from ort_testlib import ort_header_dir, ort_link_dir  # noqa: E402

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)

HERE = Path(__file__).resolve().parent


def header_api_version(hdr):
    m = re.search(r"^#define ORT_API_VERSION (\d+)", (hdr / "onnxruntime_c_api.h").read_text(), flags=re.M)
    return int(m.group(1))


@pytest.fixture(scope="module")
def older_runtime(tmp_path_factory):
    """(path of the compiled ort_older_runtime, the header's ORT_API_VERSION)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    hdr = ort_header_dir()
    if not cc or hdr is None:
        pytest.skip("no C compiler or no fetched ONNX Runtime header")
    tmp = tmp_path_factory.mktemp("older")
    ortlib = ort_link_dir(tmp)
    exe = tmp / "ort_older_runtime"
    build = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", str(HERE / "ort_older_runtime.c"),
                            f"-I{hdr}", f"-L{ortlib}", "-lonnxruntime", f"-Wl,-rpath,{ortlib}", "-ldl",
                            "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return exe, header_api_version(hdr)


def run_older(exe, model, tmp_path, version):
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    run = subprocess.run([str(exe), lort.library_path(), str(path), str(version)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr}"
    return run.stdout


def parse_outputs(text):
    outs = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            outs.setdefault(parts[0], []).append(float.fromhex(parts[2]))
    return {k: np.array(v, np.float32) for k, v in outs.items()}


def newest_path_outputs(model):
    """The same run through a session registered as usual (the header's path), inputs as the C
    program makes them: element k of input i is ((7 k + 3 i) mod 11 - 5) / 8."""
    sess = M.session(model)
    feeds = {}
    for i, inp in enumerate(sess.get_inputs()):
        n = int(np.prod(inp.shape))
        k = np.arange(n)
        feeds[inp.name] = (((7 * k + 3 * i) % 11 - 5) / 8).astype(np.float32).reshape(inp.shape)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, (np.asarray(v, np.float32).ravel() for v in sess.run(names, feeds))))


CASES = {"LinearAttention": nodes.la_node, "LinearAttentionGate": nodes.gate_node}


@pytest.mark.parametrize("op", list(CASES))
@pytest.mark.parametrize("runtime_api", [21, 23, 24, None])
def test_older_runtime_runs_the_same_bits(older_runtime, tmp_path, monkeypatch, op, runtime_api):
    exe, header_api = older_runtime
    monkeypatch.delenv("LINATTN_ORT_API_VERSION", raising=False)
    runtime_api = runtime_api or header_api
    model, _ = CASES[op](2, 4, 64, np.random.default_rng(11))
    out = run_older(exe, model, tmp_path, runtime_api)
    m = re.search(r"op versions: (\d+)", out)
    assert m, out
    assert int(m.group(1)) == min(runtime_api, header_api), "custom ops must carry the runtime's C API version"
    got = parse_outputs(out)
    want = newest_path_outputs(model)
    assert set(got) == set(want)
    for name in want:
        assert got[name].shape == want[name].shape, name
        assert np.array_equal(got[name].view(np.uint32), want[name].view(np.uint32)), \
            f"{op} {name}: runtime API {runtime_api} differs from the newest path"


def test_runtime_older_than_21_is_refused(older_runtime, tmp_path, monkeypatch):
    exe, _ = older_runtime
    monkeypatch.delenv("LINATTN_ORT_API_VERSION", raising=False)
    model, _ = nodes.gate_node(2, 4, 64, np.random.default_rng(1))
    out = run_older(exe, model, tmp_path, 20)
    assert "register failed: liblinattn_ort needs ONNX Runtime with C API version >= 21" in out, out


def test_api_version_variable_reaches_registration(monkeypatch):
    """LINATTN_ORT_API_VERSION below the plugin's minimum leaves no table to use: registration
    fails, which shows the variable is read when the session registers the plugin."""
    model, _ = nodes.gate_node(2, 4, 64, np.random.default_rng(1))
    monkeypatch.setenv("LINATTN_ORT_API_VERSION", "20")
    with pytest.raises(Exception, match="C API version >= 21"):
        M.session(model)
    monkeypatch.setenv("LINATTN_ORT_API_VERSION", "23")
    M.session(model)
