"""Float64 sequential oracle of ONNX Runtime's com.microsoft GatedDeltaNet (version 1), one token
at a time, written from the operator's specification (and the behaviour of ORT 1.32's CPU kernel
where the specification is silent: the L2-norm epsilon is 1e-12 under the square root).

Used by the tests (tests/python/test_gated_delta_net.py) as the independent oracle."""

from __future__ import annotations

import numpy as np

L2_NORM_EPS = 1e-12


def _softplus(x):
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gated_delta_net_ref(query, key=None, value=None, cu_seqlens=None, decay=None, beta=None,
                        initial_state=None, a_log=None, dt_bias=None, capture_count=None, *,
                        update_rule="gated_delta", gate_activation="none", beta_activation="none",
                        qk_l2_norm=0, scale=0.0, gate_lower_bound=-5.0, state_update_capacity=0,
                        qk_l2_norm_eps=L2_NORM_EPS):
    """Returns (output, final_state, state_update) in float64 (state_update None when the capacity
    is 0; entries past each request's captured prefix are NaN: unspecified)."""
    f = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
    q = f(query)
    st0 = f(initial_state)
    packed = key is None
    rank4 = q.ndim == (3 if packed else 4)
    if rank4:
        B0, S0 = q.shape[:2]
        q = q.reshape((B0 * S0,) + q.shape[2:])
    if packed:  # q | k | v per token; head counts from the state
        Hv, dv, dk = st0.shape[1:]
        T = q.shape[0]
        Hq = (q.shape[-1] - Hv * dv) // (2 * dk)
        k = q[:, Hq * dk:2 * Hq * dk].reshape(T, Hq, dk)
        v = q[:, 2 * Hq * dk:].reshape(T, Hv, dv)
        q = q[:, :Hq * dk].reshape(T, Hq, dk)
    else:
        k, v = f(key), f(value)
        if rank4:
            k = k.reshape((-1,) + k.shape[2:])
            v = v.reshape((-1,) + v.shape[2:])
    T, Hq, dk = q.shape
    Hv, dv = v.shape[1], v.shape[2]
    g = f(decay)
    b = f(beta)
    if g is not None and rank4:
        g = g.reshape((T,) + g.shape[2:])
    if b is not None and rank4:
        b = b.reshape((T,) + b.shape[2:])
    if cu_seqlens is None:
        B = B0 if rank4 else st0.shape[0]
        L = T // B
        cu = np.arange(B + 1) * L
    else:
        cu = np.asarray(cu_seqlens, dtype=np.int64)
        B = len(cu) - 1
    gated = update_rule in ("gated", "gated_delta")
    delta = update_rule in ("delta", "gated_delta")
    sc = 1.0 / np.sqrt(dk) if scale == 0.0 else float(np.float32(scale))
    per_key = gated and g.ndim == 3
    if qk_l2_norm:
        q = q / np.sqrt((q * q).sum(-1, keepdims=True) + qk_l2_norm_eps)
        k = k / np.sqrt((k * k).sum(-1, keepdims=True) + qk_l2_norm_eps)
    if gated and gate_activation != "none":
        al = f(a_log).reshape(Hv)
        db = f(dt_bias)
        db = np.zeros((Hv, 1)) if db is None else db.reshape(Hv, -1)
        x = (g if per_key else g[:, :, None]) + db[None]
        if gate_activation in ("softplus", "qwen"):
            gg = -np.exp(al)[None, :, None] * _softplus(x)
        else:
            gg = float(np.float32(gate_lower_bound)) * _sigmoid(np.exp(al)[None, :, None] * x)
        g = gg if (per_key or db.shape[1] > 1) else gg[:, :, 0]
        per_key = g.ndim == 3
    if delta and beta_activation == "sigmoid":
        b = _sigmoid(b)
    grp = Hv // Hq
    out = np.zeros((T, max(Hq, Hv), dv))
    S = np.zeros((B, Hv, dk, dv)) if st0 is None else st0.transpose(0, 1, 3, 2).copy()
    C = state_update_capacity
    dw = Hv * dk if per_key else Hv
    su = None
    if C > 0:
        # per request: decay [C, dw], then key [C, Hq*dk], then delta [C, Hv*dv] (struct of arrays)
        su_dec = np.full((B, C, dw), np.nan)
        su_key = np.full((B, C, Hq * dk), np.nan)
        su_del = np.full((B, C, Hv * dv), np.nan)
    for r in range(B):
        ncap = 0
        if C > 0:
            ncap = int(np.clip(int(capture_count[r]), 0, min(C, cu[r + 1] - cu[r])))
        for t in range(cu[r], cu[r + 1]):
            lt = t - cu[r]
            for h in range(Hv):
                hq = h // grp
                a = np.ones(dk)
                if gated:
                    a = np.exp(g[t, h]) * np.ones(dk)
                Sd = S[r, h] * a[:, None]
                if delta:
                    u = b[t, h] * (v[t, h] - Sd.T @ k[t, hq])
                else:
                    u = v[t, h]
                S[r, h] = Sd + np.outer(k[t, hq], u)
                out[t, h] = sc * (S[r, h].T @ q[t, hq])
                if lt < ncap:
                    if per_key:
                        su_dec[r, lt, h * dk:(h + 1) * dk] = a
                    else:
                        su_dec[r, lt, h] = a[0]
                    su_key[r, lt, hq * dk:(hq + 1) * dk] = k[t, hq]
                    su_del[r, lt, h * dv:(h + 1) * dv] = u
    if C > 0:
        su = np.concatenate([su_dec.reshape(B, -1), su_key.reshape(B, -1), su_del.reshape(B, -1)], axis=1)
    out = out if not rank4 else out.reshape(B0, S0, max(Hq, Hv), dv)
    return out, S.transpose(0, 1, 3, 2), su
