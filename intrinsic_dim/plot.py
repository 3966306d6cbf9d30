"""The d90 plot: score against d (log axis), one point per seed, the mean, the baseline and the
90% line. matplotlib is optional (Agg backend, no display)."""

from __future__ import annotations

import logging
from pathlib import Path

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("the d90 plot needs matplotlib: pip install matplotlib (or pass --no-plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_d90(report: dict, path, title: str = "", metric: str = "accuracy") -> Path:
    """Write the plot of a `Sweep.report()` to `path` (PNG) and return the path."""
    plt = pyplot()
    rows = report["per_dim"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    dims = [r["d"] for r in rows]
    ax.plot(dims, [r["mean"] for r in rows], "o-", color="C0", label="mean over seeds")
    ax.fill_between(dims, [r["min"] for r in rows], [r["max"] for r in rows], color="C0", alpha=0.2,
                    label="min-max over seeds")
    ax.axhline(report["baseline"], color="k", ls="--", lw=1, label=f"full fine-tuning {report['baseline']:.3f}")
    ax.axhline(report["target"], color="C3", ls=":", lw=1.5, label=f"{report['threshold']:.0%} of baseline")
    if report.get("d90") is not None:
        ax.axvline(report["d90"], color="C2", lw=1, label=f"d90 = {report['d90']:,}")
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d")
    ax.set_ylabel(metric)
    ax.set_title(title or "intrinsic dimension")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
