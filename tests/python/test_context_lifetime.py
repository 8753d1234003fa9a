"""Context.close() while other threads are inside calls on that context.

The scenario that used to hang (one thread loops linear_attention on T=2048, 4 heads of 64 with an
explicit two-thread context; the main thread closes the context after 50 ms): close() must wait for
the call in flight, later calls must raise, nothing may hang or crash. It runs in a subprocess with
a timeout, so a hang fails the test instead of stalling the suite. Calls that succeed must match
onnx.reference.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import linattn
from linattn import onnx_models

_SCENARIO = textwrap.dedent(
    """
    import sys, threading, time
    import numpy as np
    import linattn

    rng = np.random.default_rng(int(sys.argv[1]))
    T, H, d, n_workers = 2048, 4, 64, int(sys.argv[2])
    q = rng.uniform(-1, 1, (1, T, H * d)).astype(np.float32)
    k = rng.standard_normal((1, T, H * d)).astype(np.float32)
    k /= np.linalg.norm(k.reshape(1, T, H, d), axis=-1).repeat(d, axis=-1)
    v = rng.uniform(-1, 1, (1, T, H * d)).astype(np.float32)
    g = rng.uniform(-0.1, 0, (1, T, H)).astype(np.float32)
    b = rng.uniform(0, 1, (1, T, H)).astype(np.float32)
    ctx = linattn.Context(threads=2)
    expected = linattn.linear_attention(q, k, v, None, g, b, q_num_heads=H, kv_num_heads=H, threads=1)
    results = [[] for _ in range(n_workers)]

    def worker(i):
        while True:
            try:
                out = linattn.linear_attention(q, k, v, None, g, b, q_num_heads=H, kv_num_heads=H, context=ctx)
            except (ValueError, linattn.LinattnError) as e:
                results[i].append(("refused", str(e)))
                return
            results[i].append(("ok", all(np.array_equal(a, e) for a, e in zip(out, expected))))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_workers)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    ctx.close()
    for t in threads:
        t.join(60)
        if t.is_alive():
            print("HANG: a worker is still inside a call 60 s after close()", flush=True)
            sys.exit(3)
    for r in results:
        *done, last = r
        assert last[0] == "refused" and "closed" in last[1], last
        assert all(kind == "ok" and same for kind, same in done), done
    ctx.close()  # idempotent
    assert repr(ctx) == "Context(closed)"
    np.save(sys.argv[3], expected[0])
    print("calls per worker:", [len(r) - 1 for r in results], flush=True)
    """
)


@pytest.mark.parametrize("n_workers", [1, 3])
def test_close_while_another_thread_calls(tmp_path, n_workers):
    seed = 2026 + n_workers
    saved = tmp_path / "expected.npy"
    try:
        proc = subprocess.run([sys.executable, "-c", _SCENARIO, str(seed), str(n_workers), str(saved)],
                              capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("close() or a call on the closed context hung (no exit within 180 s)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The one-thread result the workers were compared with, against onnx.reference (independent).
    rng = np.random.default_rng(seed)
    T, H, d = 2048, 4, 64
    q = rng.uniform(-1, 1, (1, T, H * d)).astype(np.float32)
    k = rng.standard_normal((1, T, H * d)).astype(np.float32)
    k /= np.linalg.norm(k.reshape(1, T, H, d), axis=-1).repeat(d, axis=-1)
    v = rng.uniform(-1, 1, (1, T, H * d)).astype(np.float32)
    g = rng.uniform(-0.1, 0, (1, T, H)).astype(np.float32)
    b = rng.uniform(0, 1, (1, T, H)).astype(np.float32)
    ref_out, _ = onnx_models.reference_linear_attention(q, k, v, None, g, b, q_num_heads=H, kv_num_heads=H)
    got = np.load(saved)
    np.testing.assert_allclose(got, ref_out, rtol=0, atol=1e-5 * float(np.abs(ref_out).max()))


def test_closed_context_refuses_and_keeps_outputs():
    ctx = linattn.Context(threads=2)
    q = np.ones((1, 4, 8), np.float32)
    out = np.full((1, 4, 8), 7.0, np.float32)
    ctx.close()
    with pytest.raises(ValueError, match="closed"):
        linattn.linear_attention(q, q, q, q_num_heads=1, kv_num_heads=1, update_rule="linear", out=(out, None),
                                 return_state=False, context=ctx)
    assert (out == 7.0).all()
    with pytest.raises(ValueError, match="closed"):
        ctx.num_threads
    ctx.close()
    # A call that got the handle before close() (a race) is refused by the library itself.
    lib = linattn._lib.lib()
    ctx2 = linattn.Context(threads=1)
    handle = ctx2.handle
    ctx2.close()
    assert lib.linattn_context_num_threads(handle) == 1  # the record lives until the Context is collected
    del ctx2
