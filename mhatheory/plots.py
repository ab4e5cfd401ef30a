"""Figures. Every axis is labelled with its quantity and unit ("step" for GD iterations);
log axes where the quantity spans decades."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def loss_curve(traj, title: str = "Gradient descent"):
    """Training loss (and train/test error when recorded) against GD step, log-log."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(len(traj.loss))
    ax[0].loglog(steps[1:], traj.loss[1:], label="training loss L̂(θ_k)")
    ax[0].loglog(steps[1:], traj.grad_norm[1:], "--", label="‖∇L̂(θ_k)‖₂")
    ax[0].set_xlabel("GD step k")
    ax[0].set_ylabel("loss (nats) / gradient norm")
    ax[0].legend()
    ax[0].grid(True, which="both", alpha=0.3)
    for name, values in traj.metrics.items():
        ax[1].semilogx(steps[1:], 100 * np.asarray(values)[1:], label=name.replace("_", " "))
    ax[1].set_xlabel("GD step k")
    ax[1].set_ylabel("error (%)")
    if traj.metrics:
        ax[1].legend()
    ax[1].grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{title} (η = {traj.lr:g})")
    fig.tight_layout()
    return fig
