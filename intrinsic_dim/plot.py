"""The d90 plot: score against d (log axis), the mean and min-max over seeds, the baseline, the 90%
line, the chance line (dev majority-class rate) and the theta_0 (manual template) line; and
`plot_curves`, several sweeps (say, one per space) on one axis; `plot_d90_by_size`, d90 of several
models against their parameter counts. matplotlib is optional (Agg backend, no display)."""

from __future__ import annotations

import logging
from pathlib import Path

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("the d90 plot needs matplotlib: pip install matplotlib (or turn off IntrinsicDimConfig.plot)") from None
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
    ax.axhline(report["baseline"], color="k", ls="--", lw=1, label=f"full training {report['baseline']:.3f}")
    ax.axhline(report["target"], color="C3", ls=":", lw=1.5, label=f"{report['threshold']:.0%} of baseline")
    _references(ax, report)
    if report.get("d90") is not None:
        ax.axvline(report["d90"], color="C2", lw=1, label=f"d90 = {report['d90']:,}")
    elif report.get("refused"):
        ax.text(0.02, 0.04, "no d90: full training does not beat chance / theta_0", transform=ax.transAxes,
                fontsize=8, va="bottom", color="C3")
    return _finish(plt, fig, ax, path, title or "intrinsic dimension", metric, "lower right")


def _references(ax, report: dict) -> None:
    """The chance line (majority-class rate) and the theta_0 (manual template) line, when known."""
    if report.get("majority") is not None:
        ax.axhline(report["majority"], color="0.5", ls="-.", lw=1, label=f"chance (majority) {report['majority']:.3f}")
    if report.get("manual") is not None:
        ax.axhline(report["manual"], color="C4", ls=(0, (1, 1)), lw=1, label=f"theta_0 / manual {report['manual']:.3f}")


def _finish(plt, fig, ax, path, title: str, metric: str, legend: str) -> Path:
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc=legend)
    return _save(plt, fig, ax, path)


def _save(plt, fig, ax, path) -> Path:
    """Grid lines, tight layout, the file written and the figure closed."""
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path


def plot_curves(curves: list[dict], path, title: str = "", metric: str = "accuracy", majority: float | None = None) -> Path:
    """Several sweeps on one axis: each curve {'label', 'per_dim' (rows with d, mean, min, max), 'baseline',
    'd90' (or None)} gets its mean line, min-max band, its baseline (dashed) and its d90 (a marker); one
    chance line at `majority`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, c in enumerate(curves):
        color, rows = f"C{i}", c["per_dim"]
        dims = [r["d"] for r in rows]
        ax.plot(dims, [r["mean"] for r in rows], "o-", color=color, label=c["label"])
        ax.fill_between(dims, [r["min"] for r in rows], [r["max"] for r in rows], color=color, alpha=0.15)
        if c.get("baseline") is not None:
            ax.axhline(c["baseline"], color=color, ls="--", lw=1, label=f"{c['label']}: full training {c['baseline']:.3f}")
        if c.get("d90") is not None:
            y = next((r["mean"] for r in rows if r["d"] == c["d90"]), None)
            if y is not None:
                ax.plot([c["d90"]], [y], "*", ms=12, color=color, label=f"{c['label']}: d90 = {c['d90']:,}")
    if majority is not None:
        ax.axhline(majority, color="0.5", ls="-.", lw=1, label=f"chance (majority) {majority:.3f}")
    return _finish(plt, fig, ax, path, title or "intrinsic dimension by space", metric, "best")


def plot_d90_by_size(rows: list[dict], path, title: str = "") -> Path:
    """d90 against the number of model parameters (both log axes), one point per model labelled with
    its name, the min-max of d90 over seeds as an error bar; models without a d90 are listed below
    the axis. rows: {'model', 'parameters', 'd90', 'd90_min', 'd90_max'} (intrinsic_dim.sizes)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    found = sorted((r for r in rows if r.get("d90") is not None), key=lambda r: r["parameters"])
    if found:
        xs, ys = [r["parameters"] for r in found], [r["d90"] for r in found]
        low = [r["d90"] - (r.get("d90_min") or r["d90"]) for r in found]
        high = [(r.get("d90_max") or r["d90"]) - r["d90"] for r in found]
        ax.errorbar(xs, ys, yerr=[low, high], fmt="o-", color="C0", capsize=3, label="d90 (min-max over seeds)")
        for r in found:
            ax.annotate(r["model"], (r["parameters"], r["d90"]), textcoords="offset points", xytext=(5, 5), fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # a narrow range gets crowded minor labels
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1e6:g}M"))
        ax.set_xticks(xs)
        ax.legend(fontsize=7, loc="best")
    missing = [r["model"] for r in rows if r.get("d90") is None]
    if missing:
        ax.text(0.02, 0.02, "no d90: " + ", ".join(missing), transform=ax.transAxes, fontsize=7, color="C3")
    ax.set_xlabel("model parameters")
    ax.set_ylabel("d90 (subspace dimension)")
    ax.set_title(title or "intrinsic dimension against model size", fontsize=9)
    return _save(plt, fig, ax, path)
