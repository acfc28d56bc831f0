"""Adaptive Caching Scheduler (exact DP), Bubbling Union, and the baseline schedules."""
from __future__ import annotations

import re

import numpy as np

_BLOCK = re.compile(r"^L(\d+)\.(sa|ca|ffn)$")
DEFAULT_TOP_N = 3  # Bubbling Union's n unless asked otherwise


def _segment_gains(similarity: np.ndarray) -> np.ndarray:
    """gain[i, j] = sum_{t=i}^{j-1} sim[i, t] for 0 <= i < j <= K: the score of updating at i and reusing
    that feature through step j-1. -inf where j <= i."""
    k = similarity.shape[0]
    prefix = np.zeros((k, k + 1))
    np.cumsum(similarity, axis=1, out=prefix[:, 1:])
    gain = prefix - prefix[np.arange(k), np.arange(k)][:, None]
    gain[np.tril_indices(k, 0, k + 1)] = -np.inf
    return gain


def optimal_update_steps(similarity: np.ndarray, num_updates: int, force_last: bool = False) -> list[int]:
    """Update steps 0 = c_0 < ... < c_{M-1} <= K-1 maximising sum_m sum_{t=c_m}^{c_{m+1}-1} sim[c_m, t].

    Exact dynamic program in O(M K^2). With `force_last`, K-1 must be one of the steps (needs M >= 2
    unless K == 1)."""
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square matrix, got shape {sim.shape}")
    if not np.all(np.isfinite(sim)):
        raise ValueError("similarity contains NaN or inf")
    k = sim.shape[0]
    if isinstance(num_updates, bool) or not isinstance(num_updates, (int, np.integer)) or not 1 <= num_updates <= k:
        raise ValueError(f"num_updates must be an integer in 1..{k}, got {num_updates!r}")
    m_total = int(num_updates)
    if force_last and k > 1 and m_total < 2:
        raise ValueError("force_last needs num_updates >= 2")
    gain = _segment_gains(sim)  # (K, K+1)
    # best[m, j]: best score of segments before j, with the m-th update (0-based) at step j.
    best = np.full((m_total, k), -np.inf)
    arg = np.zeros((m_total, k), dtype=np.int64)
    best[0, 0] = 0.0
    for m in range(1, m_total):
        cand = best[m - 1][:, None] + gain[:, :k]  # (i, j)
        arg[m] = np.argmax(cand, axis=0)
        best[m] = cand[arg[m], np.arange(k)]
    final = best[m_total - 1] + gain[:, k]
    last = k - 1 if force_last else int(np.argmax(final))
    if not np.isfinite(final[last]):
        raise ValueError("no feasible schedule")  # unreachable for 1 <= M <= K
    steps = [last]
    for m in range(m_total - 1, 0, -1):
        steps.append(int(arg[m, steps[-1]]))
    return steps[::-1]


def forecast_similarity(gram: np.ndarray) -> np.ndarray:
    """sim[p, c, t]: mean over observations of cos(F, X_t), F = X_c + (X_c - X_p)(t - c)/(c - p) the linear
    forecast from updates p < c to a reused step t >= c (what `reuse: forecast` adds); -inf elsewhere.
    `gram` (N, K, K): each observation's inner products <X_i, X_j> of one block's outputs."""
    g = np.asarray(gram, dtype=np.float64)
    if g.ndim != 3 or g.shape[1] != g.shape[2]:
        raise ValueError(f"gram must be (N, K, K), got shape {g.shape}")
    k = g.shape[1]
    p, c, t = np.meshgrid(np.arange(k), np.arange(k), np.arange(k), indexing="ij")
    valid = (p < c) & (c <= t)
    r = np.where(valid, (t - c) / np.maximum(c - p, 1), 0.0)  # F = (1 + r) X_c - r X_p
    total = np.zeros((k, k, k))
    for gi in g:
        diag = np.diagonal(gi)
        dot = (1 + r) * gi[None, :, :] - r * gi[:, None, :]
        norm2 = (1 + r) ** 2 * diag[None, :, None] - 2 * r * (1 + r) * gi[:, :, None] + r ** 2 * diag[:, None, None]
        total += dot / np.sqrt(np.clip(norm2, 1e-24, None) * np.clip(diag, 1e-24, None)[None, None, :])
    return np.where(valid, total / len(g), -np.inf)


def optimal_forecast_steps(similarity: np.ndarray, forecast: np.ndarray, num_updates: int,
                           force_last: bool = False) -> list[int]:
    """ACS with the forecast scored: the update steps maximising the summed similarity of what each step
    uses — the copy of the first update until the second (a forecast needs two outputs), then the forecast
    from the last two updates. Exact DP over (previous update, update) pairs, O(M K^3)."""
    sim = np.asarray(similarity, dtype=np.float64)
    k = sim.shape[0]
    if forecast.shape != (k, k, k):
        raise ValueError(f"forecast similarity must be ({k}, {k}, {k}), got {forecast.shape}")
    if isinstance(num_updates, bool) or not isinstance(num_updates, (int, np.integer)) or not 1 <= num_updates <= k:
        raise ValueError(f"num_updates must be an integer in 1..{k}, got {num_updates!r}")
    if force_last and k > 1 and num_updates < 2:
        raise ValueError("force_last needs num_updates >= 2")
    copy_gain = _segment_gains(sim)  # (K, K+1): update at i, copied through j-1
    if num_updates == 1:
        return [0]
    prefix = np.zeros((k, k, k + 1))
    np.cumsum(np.where(np.isfinite(forecast), forecast, 0.0), axis=2, out=prefix[:, :, 1:])
    cc = np.arange(k)
    gain = prefix - prefix[:, cc, cc][:, :, None]  # gain[p, c, j]: forecast from (p, c) used on steps c..j-1
    ok = (cc[:, None, None] < cc[None, :, None]) & (cc[None, :, None] < np.arange(k + 1)[None, None, :])
    gain = np.where(ok, gain, -np.inf)
    # best[p, c]: best score of the steps before c, with updates ... p, c (c the newest)
    best = np.full((k, k), -np.inf)
    best[0, 1:] = copy_gain[0, 1:k]
    args = []
    for _ in range(num_updates - 2):
        cand = best[:, :, None] + gain[:, :, :k]  # (p, c, j)
        arg = np.argmax(cand, axis=0)  # best p for each (c, j)
        best = np.take_along_axis(cand, arg[None], axis=0)[0]
        args.append(arg)
    final = best + gain[:, :, k]  # (p, c): the last update c forecast through the end
    if force_last:
        final[:, :k - 1] = -np.inf
    p, c = np.unravel_index(int(np.argmax(final)), final.shape)
    if not np.isfinite(final[p, c]):
        raise ValueError("no feasible schedule")
    steps = [int(c), int(p)]
    for arg in reversed(args):
        steps.append(int(arg[steps[-1], steps[-2]]))
    return steps[::-1]


def uniform_steps(num_steps: int, num_updates: int) -> list[int]:
    """`num_updates` evenly spaced steps starting at 0 (every k-th step when S divides K)."""
    if not 1 <= num_updates <= num_steps:
        raise ValueError(f"num_updates must be in 1..{num_steps}, got {num_updates}")
    return sorted({int(x) for x in np.floor(np.arange(num_updates) * num_steps / num_updates)})


def layer_of(block: str) -> int:
    m = _BLOCK.match(block)
    if not m:
        raise ValueError(f"not a block id: {block!r} (expected L<layer>.sa|ca|ffn)")
    return int(m.group(1))


def bubbling_union(steps: dict[str, list[int]], errors: dict[str, float], top_n: int) -> dict[str, list[int]]:
    """The top-n blocks by reuse error also update at every step where an FFN block in their own layer or
    a later one updates. Returns a new dict; the input is not changed."""
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    missing = set(steps) - set(errors)
    if missing:
        raise ValueError(f"no error given for block(s) {sorted(missing)}")
    out = {b: sorted(set(s)) for b, s in steps.items()}
    ranked = top_error_blocks({b: errors[b] for b in steps}, top_n)
    ffns = [(layer_of(b), b) for b in steps if b.endswith(".ffn")]
    for b in ranked:
        layer = layer_of(b)
        union = set(steps[b])
        for lf, f in ffns:
            if lf >= layer:
                union.update(steps[f])
        out[b] = sorted(union)
    return out


def top_error_blocks(errors: dict[str, float], top_n: int) -> list[str]:
    """The `top_n` blocks with the largest error; ties keep the given (forward) order."""
    return sorted(errors, key=lambda b: -errors[b])[:top_n]
