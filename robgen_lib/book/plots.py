"""Figure helpers the chapters share (matplotlib; each returns the Figure)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def energy_histograms(panels: Mapping[str, Mapping[str, object]], *, bins: int = 40, xlabel: str = "E(x)"):
    """One panel per model: overlaid histograms of energies, e.g. clean vs attacked."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels.items()):
        arrays = {k: _np(v).ravel() for k, v in series.items()}
        lo = min(a.min() for a in arrays.values())
        hi = max(a.max() for a in arrays.values())
        edges = np.linspace(lo, hi, bins + 1)
        for i, (label, a) in enumerate(arrays.items()):
            style = dict(alpha=0.45) if i == 0 else dict(histtype="step", lw=2)
            ax.hist(a, edges, color=PALETTE[i % len(PALETTE)], label=f"{label} (mean {a.mean():.1f})",
                    density=True, **style)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves_with_accuracy(x: Sequence[float], panels: Mapping[str, Mapping[str, Sequence[float]]], *, xlabel: str,
                         clean_energy: Mapping[str, float] | None = None, xticklabels=None):
    """Mean energy (left axis, solid) and accuracy (right axis, dashed) against ``x``.

    ``panels``: title → {"mean_energy": [...], "accuracy": [...]}.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for i, (ax, (title, d)) in enumerate(zip(axes[0], panels.items())):
        ax.plot(x, d["mean_energy"], "o-", color=PALETTE[0], label="mean E(x) attacked")
        if clean_energy and title in clean_energy:
            ax.axhline(clean_energy[title], color=PALETTE[0], ls=":", label="mean E(x) clean")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean energy", color=PALETTE[0])
        if xticklabels is not None:
            ax.set_xticks(x, xticklabels)
        ax2 = ax.twinx()
        ax2.plot(x, [100 * a for a in d["accuracy"]], "s--", color=PALETTE[1], label="accuracy")
        ax2.set_ylabel("accuracy (%)", color=PALETTE[1])
        ax2.set_ylim(-3, 103)
        ax.set_title(title)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def roc_curves(curves: Mapping[str, tuple], *, title: str = "ROC"):
    """``curves``: label → (fpr, tpr, auroc)."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for i, (label, (fpr, tpr, auc)) in enumerate(curves.items()):
        ax.plot(_np(fpr), _np(tpr), color=PALETTE[i % len(PALETTE)], label=f"{label} (AUROC {auc:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false-positive rate (clean flagged)")
    ax.set_ylabel("true-positive rate (attacked flagged)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _lines(ax, x, lines: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str, title: str = "",
           ylim=None, logx: bool = False, dashed_pairs: bool = False):
    for i, (label, ys) in enumerate(lines.items()):
        style = "s--" if dashed_pairs and i % 2 else "o-"
        ax.plot(x, ys, style, color=PALETTE[i % len(PALETTE)], label=label)
    if logx:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


def series(x: Sequence[float], lines: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str,
           logx: bool = False, title: str = "", ylim=None):
    """Several lines against one x axis."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    _lines(ax, x, lines, xlabel=xlabel, ylabel=ylabel, title=title, ylim=ylim, logx=logx)
    fig.tight_layout()
    return fig


def panels(x, data: Mapping[str, Mapping[str, Sequence[float]]], *, xlabel, ylabel: str,
           hlines: Mapping[str, float] | None = None, hline_label: str = "", ylim=None):
    """One panel per title, several labelled lines in each; an optional dotted reference line per panel.

    ``x`` and ``xlabel`` are shared, or mappings title → value for panels with their own axis.
    """
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 3.4), squeeze=False)
    for ax, (title, lines) in zip(axes[0], data.items()):
        if hlines and title in hlines:
            ax.axhline(hlines[title], color="grey", ls=":", label=hline_label)
        _lines(ax, x[title] if isinstance(x, Mapping) else x, lines, ylabel=ylabel, title=title, ylim=ylim,
               xlabel=xlabel[title] if isinstance(xlabel, Mapping) else xlabel, dashed_pairs=True)
    fig.tight_layout()
    return fig


def tradeoff(points: Mapping[str, Sequence[tuple]], *, xlabel: str, ylabel: str, title: str = ""):
    """``points``: series label → [(x, y, annotation), ...], drawn as annotated lines."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, (label, pts) in enumerate(points.items()):
        xs, ys, notes = zip(*pts)
        ax.plot(xs, ys, "o-", color=PALETTE[i % len(PALETTE)], label=label)
        for x_, y_, n in pts:
            ax.annotate(n, (x_, y_), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _as_image(x):
    """(C, H, W) in [0, 1] → an array imshow draws (grey for one channel)."""
    a = _np(x).clip(0.0, 1.0)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def contours(grids: Mapping[str, Sequence[object]], offsets, *, levels: int = 14, xlabel: str = "direction 2",
             ylabel: str = "direction 1", label: str = "E(x, y)"):
    """Rows = models, columns = images: filled contours of an energy on a 2-D grid centred on the image.

    ``grids``: row label → list of (n, n) arrays; one colour scale per row, the centre marked.
    """
    rows = list(grids.items())
    n_cols = max(len(g) for _, g in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.3 * n_cols + 1.2, 2.1 * len(rows)), squeeze=False)
    off = _np(offsets)
    for r, (name, row) in enumerate(rows):
        arrays = [_np(g) for g in row]
        lo = min(float(np.nanmin(a)) for a in arrays)
        hi = max(float(np.nanmax(a)) for a in arrays)
        span = max(hi - lo, 1e-6 * max(1.0, abs(hi)))          # a flat landscape still gets increasing levels
        lv = np.linspace(lo, lo + span, levels)
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(arrays):
                ax.axis("off")
                continue
            cs = ax.contourf(off, off, arrays[c], levels=lv, cmap="viridis")
            ax.plot([0], [0], "r*", ms=8)
            ax.set_xticks([off[0], 0, off[-1]])
            ax.set_yticks([off[0], 0, off[-1]])
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(f"{name}\n{ylabel}", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
        fig.colorbar(cs, ax=list(axes[r]), label=label, shrink=0.9)
    return fig


def tile(images, cols: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] → one (C, rows·(H+pad)-pad, cols·(W+pad)-pad) array, row-major."""
    x = _np(images).clip(0.0, 1.0)
    n, c, h, w = x.shape
    rows = -(-n // cols)
    out = np.full((c, rows * (h + pad) - pad, cols * (w + pad) - pad), fill, dtype=x.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        out[:, r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = x[i]
    return out


def mosaics(blocks, *, cols: int, title: str = "", width: float = 2.6):
    """Side-by-side panels, each a tiled set of images (a mapping or (label, images) pairs)."""
    blocks = list(blocks.items() if hasattr(blocks, "items") else blocks)
    tiles = [tile(b, cols) for _, b in blocks]
    aspect = tiles[0].shape[1] / tiles[0].shape[2]
    fig, axes = plt.subplots(1, len(blocks), figsize=(width * len(blocks), width * aspect + 0.6), squeeze=False)
    for ax, (label, _), t in zip(axes[0], blocks, tiles):
        ax.imshow(_as_image(t), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def grouped_bars(groups: Mapping[str, Mapping[str, float]], *, ylabel: str, ylim=None, title: str = ""):
    """One group of bars per key of ``groups`` (e.g. a threat model), one bar per label (e.g. a model)."""
    labels = list(dict.fromkeys(k for g in groups.values() for k in g))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(1.2 + 1.6 * len(groups) * max(1, len(labels)) / 3, 3.4))
    for i, label in enumerate(labels):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(groups))]
        ys = [g.get(label, np.nan) for g in groups.values()]
        bars = ax.bar(xs, ys, width, color=PALETTE[i % len(PALETTE)], label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def frontier(points: Mapping[str, tuple], *, xlabel: str, ylabel: str, logx: bool = True, title: str = ""):
    """``points``: label → (cost, robustness, clean accuracy in [0, 1], group). One dot per
    label (its area grows with clean accuracy, its colour is its group), and the Pareto
    frontier: the most robust model at or below each cost."""
    groups = list(dict.fromkeys(p[3] for p in points.values()))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, g in enumerate(groups):
        pts = [(k, p) for k, p in points.items() if p[3] == g]
        ax.scatter([p[0] for _, p in pts], [p[1] for _, p in pts], s=[20 + 180 * p[2] ** 4 for _, p in pts],
                   color=PALETTE[i % len(PALETTE)], label=g, alpha=0.8, edgecolor="k", linewidth=0.5)
    for k, p in points.items():
        ax.annotate(k, (p[0], p[1]), textcoords="offset points", xytext=(5, 3), fontsize=7)
    front, best = [], -np.inf
    for k, p in sorted(points.items(), key=lambda kv: (kv[1][0], -kv[1][1])):
        if p[1] > best:
            best = p[1]
            front.append((p[0], p[1]))
    if front:
        fx, fy = zip(*front)
        ax.step(fx, fy, where="post", color="grey", ls="--", lw=1, label="frontier")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig

