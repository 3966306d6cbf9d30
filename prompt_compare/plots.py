"""The grid's plots (matplotlib, the `plot` extra), one panel per task, error bars = sd over seeds:
test score vs trainable values (log x), test score vs compute (forward + backward tokens, log x),
and peak memory per method. The manual template (nothing trains) is a dashed line. With several
models, points are named 'method @ model', and transfer.png is a heatmap per task of each result
(rows: method @ the model it was made on) scored on each model (columns)."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)
MARKERS = {"tokens": "s", "vectors": "o", "weights": "^", "nothing": "x"}


def write_plots(rows: list[dict], folder) -> list[Path]:
    """plots/accuracy_vs_params.png, accuracy_vs_compute.png, peak_memory.png (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("plots skipped: pip install matplotlib (the 'plot' extra)")
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    several = len({r.get("model") for r in rows}) > 1
    rows = [{**r, "several_models": several} for r in rows if r["test_mean"] is not None]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if not tasks:
        return []
    paths = []
    for name, x_of, label in (("accuracy_vs_params", lambda r: r["trainable_params"], "trainable values (log)"),
                              ("accuracy_vs_compute", _compute, "forward + backward tokens (log)")):
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            _scatter(ax, [r for r in rows if r["task"] == task], x_of, label, task)
        paths.append(_save(fig, folder / f"{name}.png", plt))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task and r["peak_mb"] is not None]
        ax.bar(range(len(mine)), [r["peak_mb"] for r in mine], color="tab:gray")
        ax.set_xticks(range(len(mine)), [_name(r) for r in mine], rotation=45, ha="right")
        ax.set_ylabel("peak memory above start (MB)")
        ax.set_title(task)
    paths.append(_save(fig, folder / "peak_memory.png", plt))
    return paths


def write_transfer_plot(rows: list[dict], models: list[str], folder) -> list[Path]:
    """plots/transfer.png from prompt_compare.transfer.transfer_rows (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        logger.warning("transfer plot skipped: pip install matplotlib (the 'plot' extra)")
        return []
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if not tasks:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height = max(len([r for r in rows if r["task"] == t]) for t in tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.5 + 1.6 * len(models) * len(tasks), 1.2 + 0.4 * height),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        grid = np.array([[np.nan if r["scores"][m]["mean"] is None else 100 * r["scores"][m]["mean"] for m in models]
                         for r in mine])
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(len(models)), [f"on {m}" for m in models], rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(mine)), [f"{r['method']} @ {r['source']}" for r in mine], fontsize=8)
        ax.set_title(f"{task}: test {mine[0].get('metric', 'score')} (%)" if mine else task)
        fig.colorbar(image, ax=ax, fraction=0.04)
    return [_save(fig, folder / "transfer.png", plt)]


def _compute(r: dict):
    fwd, bwd = r["forward_tokens"] or 0, r["backward_tokens"] or 0
    return fwd + bwd


def _scatter(ax, rows: list[dict], x_of, xlabel: str, title: str) -> None:
    metric = rows[0]["metric"] if rows else "score"
    for r in rows:
        y, sd = 100 * r["test_mean"], 100 * (r["test_sd"] or 0.0)
        x = x_of(r)
        if not x:  # nothing trained or ran: a reference line
            ax.axhline(y, linestyle="--", color="gray", linewidth=1)
            ax.annotate(_name(r), (0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="gray")
            continue
        ax.errorbar([x], [y], yerr=[sd], fmt=MARKERS.get(r.get("trains"), "o"), capsize=3)
        ax.annotate(_name(r), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"test {metric} (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)


def _name(r: dict) -> str:
    """The method, with its model when the rows have several ('method @ model')."""
    return f"{r['method']} @ {r['model']}" if r.get("several_models") else r["method"]


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
