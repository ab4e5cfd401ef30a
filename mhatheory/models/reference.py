"""Plain NumPy reference implementations (loops, no einsum), for tests and ``verify``.

Deliberately written differently from the JAX code so agreement means something.
"""

from __future__ import annotations

import numpy as np


def deora_phi_numpy(W, U, X) -> np.ndarray:
    """Φ(X) for ``W [H, d, d]``, ``U [H, d]``, ``X [n, T, d]`` by explicit loops, float64."""
    W, U, X = (np.asarray(a, dtype=np.float64) for a in (W, U, X))
    H = W.shape[0]
    out = np.zeros(X.shape[0])
    for i in range(X.shape[0]):
        Xi = X[i]
        total = 0.0
        for h in range(H):
            s = np.array([Xi[t] @ W[h] @ Xi[0] for t in range(Xi.shape[0])])
            a = np.exp(s - s.max())
            a /= a.sum()
            total += U[h] @ (Xi.T @ a)
        out[i] = total / np.sqrt(H)
    return out
