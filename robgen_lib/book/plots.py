"""Figure helpers the chapters share (matplotlib; each returns the Figure).

Made for the page they land on:

* **One colour per model, the same in every chapter**, from Okabe and Ito's palette, which
  stays distinguishable under the common colour-vision deficiencies: :func:`colours` gives a
  book model (recognised by its name: "standard CNN", "PGD-trained CNN", "RDC", ...) its own
  colour wherever it appears, and other series (clean vs attacked, one attack vs another) the
  palette's colours in order, skipping those the figure's models hold.
* **Readable at the page's width**: no figure is wider than :data:`PAGE_WIDTH` inches (at
  100 dpi, narrower than the book's text column in a window 1,200 pixels wide, whose
  column holds 608 pixels, so a browser there or wider never scales it down), panels
  wrap onto rows of at most :data:`PER_ROW`, and no text is smaller than :data:`MIN_FONT` pt.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

#: Okabe & Ito's colour-blind-safe palette, in the order series without a model take it.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]

#: The book's models and their colours: the first keyword found in a (lower-cased) label
#: decides, so the more specific names come first ("e-abs" before "abs", the diffusion
#: classifier before "noise", which its "fixed noise" variant also contains).
MODEL_COLOURS = (
    (("e-abs",), "#7F7F7F"),
    (("rdc",), "#E69F00"),
    (("diffusion classifier",), "#CC79A7"),
    (("abs",), "#000000"),
    (("jeat",), "#009E73"),
    (("smoothed",), "#F0E442"),
    (("noise-trained", "noise σ"), "#56B4E9"),
    (("pgd-trained", "adversarially trained", "adv. trained", "robust scorer", "robust cnn", "robust-cnn"), "#D55E00"),
    (("standard",), "#0072B2"),
)

#: The widest figure (inches; 100 dpi): the text column of the book's pages is wider.
PAGE_WIDTH = 6.0
#: Panels per row of a multi-panel figure.
PER_ROW = 2
#: The smallest text of any figure (points).
MIN_FONT = 9

#: Sizes every helper draws with.
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": MIN_FONT,
         "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT, "figure.titlesize": 10, "figure.dpi": 100}
plt.rcParams.update(STYLE)


def model_colour(label: str) -> str | None:
    """The colour of the book model ``label`` names, or ``None`` when it names none."""
    low = label.lower()
    for keys, colour in MODEL_COLOURS:
        if any(k in low for k in keys):
            return colour
    return None


def colours(labels: Sequence[str]) -> list[str]:
    """A colour for each label: a model's own, else the next palette colour no model of
    ``labels`` holds (two unknown series never share one while the palette lasts)."""
    own = [model_colour(label) for label in labels]
    free = iter([c for c in PALETTE if c not in own] + PALETTE * 4)
    return [c if c is not None else next(free) for c in own]


def legend_entry_width(label: str) -> float:
    """Inches a legend entry takes: a 9-pt character is about 0.065 in, the handle and gap 0.5 in."""
    return 0.5 + 0.065 * len(label)


def legend_columns(labels: Sequence[str], most: int = 3) -> int:
    """How many columns of legend entries fit across the page."""
    widest = max((legend_entry_width(label) for label in labels), default=legend_entry_width("x"))
    return max(1, min(most, len(labels), int(PAGE_WIDTH // widest)))


def grid(n: int, height: float = 2.9, per_row: int = PER_ROW):
    """``n`` panels on rows of at most ``per_row``, the figure at most :data:`PAGE_WIDTH`
    wide; the unused cells of the last row are hidden. Returns the figure and the n axes."""
    cols = min(n, per_row)
    rows = math.ceil(n / cols)
    width = PAGE_WIDTH if cols > 1 else min(PAGE_WIDTH, 5.2)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def finish(fig, rect=None, *, layout: bool = True):
    """Lay ``fig`` out (tight, inside ``rect`` if given; ``layout=False`` keeps the helper's own
    placement, e.g. colour bars beside their row) and narrow it until what the page
    receives — the notebook saves the figure's tight bounding box, legends and labels that
    stick out included — is at most :data:`PAGE_WIDTH` wide: text keeps its size, the axes
    give way. Every helper ends with it; returns the figure."""
    if layout:
        fig.set_layout_engine("tight", rect=rect) if rect is not None else fig.set_layout_engine("tight")
    room = PAGE_WIDTH - 2 * plt.rcParams["savefig.pad_inches"]     # the saved image pads the box on both sides
    for _ in range(5):
        fig.canvas.draw()
        wide = fig.get_tightbbox(fig.canvas.get_renderer()).width
        if wide <= room - 0.02:
            break
        w, h = fig.get_size_inches()
        fig.set_size_inches(max(1.0, w - (wide - room) - 0.05), h)
    return fig


def _np(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def energy_histograms(panels: Mapping[str, Mapping[str, object]], *, bins: int = 40, xlabel: str = "E(x)"):
    """One panel per model: overlaid histograms of energies, e.g. clean vs attacked (a panel a
    row when the legend's labels are too long to share a row)."""
    widest = max(legend_entry_width(f"{label} (mean -00.0)") for series in panels.values() for label in series)
    fig, axes = grid(len(panels), 3.1, per_row=1 if widest > PAGE_WIDTH / PER_ROW - 0.6 else PER_ROW)
    for ax, (title, series) in zip(axes, panels.items()):
        arrays = {k: _np(v).ravel() for k, v in series.items()}
        palette = colours(list(arrays))
        lo = min(a.min() for a in arrays.values())
        hi = max(a.max() for a in arrays.values())
        edges = np.linspace(lo, hi, bins + 1)
        for i, (label, a) in enumerate(arrays.items()):
            style = dict(alpha=0.45) if i == 0 else dict(histtype="step", lw=2)
            ax.hist(a, edges, color=palette[i], label=f"{label} (mean {a.mean():.1f})", density=True, **style)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend()
    return finish(fig)


def curves_with_accuracy(x: Sequence[float], panels: Mapping[str, Mapping[str, Sequence[float]]], *, xlabel: str,
                         clean_energy: Mapping[str, float] | None = None, xticklabels=None):
    """Mean energy (left axis, solid) and accuracy (right axis, dashed) against ``x``.

    ``panels``: title → {"mean_energy": [...], "accuracy": [...]}.
    """
    fig, axes = grid(len(panels), 3.1)
    for i, (ax, (title, d)) in enumerate(zip(axes, panels.items())):
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
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="best")
    return finish(fig)


def roc_curves(curves: Mapping[str, tuple], *, title: str = "ROC"):
    """``curves``: label → (fpr, tpr, auroc)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for colour, (label, (fpr, tpr, auc)) in zip(colours(list(curves)), curves.items()):
        ax.plot(_np(fpr), _np(tpr), color=colour, label=f"{label} (AUROC {auc:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("false-positive rate (clean flagged)")
    ax.set_ylabel("true-positive rate (attacked flagged)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return finish(fig)


def _lines(ax, x, lines: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str, title: str = "",
           ylim=None, logx: bool = False, dashed_pairs: bool = False, legend: bool = True):
    for i, (colour, (label, ys)) in enumerate(zip(colours(list(lines)), lines.items())):
        style = "s--" if dashed_pairs and i % 2 else "o-"
        ax.plot(x, ys, style, color=colour, label=label)
    if logx:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend()


def shared_legend(fig, axes) -> None:
    """One legend for all panels (each label once, in order of appearance), so that no panel's
    curves hide under it: in the empty cell of the last row, else under the panels."""
    seen: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if not seen:
        finish(fig)
        return
    spare = [ax for ax in fig.axes if ax not in axes]   # the empty cell of an odd last row holds it
    if spare:
        spare[0].legend(list(seen.values()), list(seen), loc="center", frameon=False)
        finish(fig)
        return
    ncol = legend_columns(list(seen))
    rows = math.ceil(len(seen) / ncol)
    height = fig.get_size_inches()[1]
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, frameon=False)
    finish(fig, rect=(0, min(0.4, (0.3 * rows + 0.1) / height), 1, 1))


def series(x: Sequence[float], lines: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str,
           logx: bool = False, title: str = "", ylim=None):
    """Several lines against one x axis."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    _lines(ax, x, lines, xlabel=xlabel, ylabel=ylabel, title=title, ylim=ylim, logx=logx)
    return finish(fig)


def panels(x, data: Mapping[str, Mapping[str, Sequence[float]]], *, xlabel, ylabel: str,
           hlines: Mapping[str, float] | None = None, hline_label: str = "", ylim=None):
    """One panel per title, several labelled lines in each; an optional dotted reference line per panel.

    ``x`` and ``xlabel`` are shared, or mappings title → value for panels with their own axis.
    """
    fig, axes = grid(len(data), 3.1)
    for ax, (title, lines) in zip(axes, data.items()):
        if hlines and title in hlines:
            ax.axhline(hlines[title], color="grey", ls=":", label=hline_label)
        _lines(ax, x[title] if isinstance(x, Mapping) else x, lines, ylabel=ylabel, title=title, ylim=ylim,
               xlabel=xlabel[title] if isinstance(xlabel, Mapping) else xlabel, dashed_pairs=True, legend=False)
    shared_legend(fig, axes)
    return fig


def tradeoff(points: Mapping[str, Sequence[tuple]], *, xlabel: str, ylabel: str, title: str = ""):
    """``points``: series label → [(x, y, annotation), ...], drawn as annotated lines."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for colour, (label, pts) in zip(colours(list(points)), points.items()):
        xs, ys, notes = zip(*pts)
        ax.plot(xs, ys, "o-", color=colour, label=label)
        for x_, y_, n in pts:
            ax.annotate(n, (x_, y_), textcoords="offset points", xytext=(4, 4), fontsize=MIN_FONT)
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return finish(fig)


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
    cell = min(2.3, (PAGE_WIDTH - 1.4) / n_cols)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(cell * n_cols + 1.4, (cell - 0.1) * len(rows)),
                             squeeze=False)
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
            ax.tick_params(labelsize=MIN_FONT)
            if c == 0:
                ax.set_ylabel(f"{name}\n{ylabel}", fontsize=MIN_FONT)
            if r == len(rows) - 1:
                ax.set_xlabel(xlabel, fontsize=MIN_FONT)
        fig.colorbar(cs, ax=list(axes[r]), label=label, shrink=0.9)
    return finish(fig, layout=False)


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
    width = min(width, PAGE_WIDTH / len(blocks))
    fig, axes = plt.subplots(1, len(blocks), figsize=(width * len(blocks), width * aspect + 0.7), squeeze=False)
    for ax, (label, _), t in zip(axes[0], blocks, tiles):
        ax.imshow(_as_image(t), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(label, fontsize=MIN_FONT, wrap=True)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10, wrap=True)
    return finish(fig)


def grouped_bars(groups: Mapping[str, Mapping[str, float]], *, ylabel: str, ylim=None, title: str = ""):
    """One group of bars per key of ``groups`` (e.g. a threat model), one bar per label (e.g. a model)."""
    labels = list(dict.fromkeys(k for g in groups.values() for k in g))
    width = 0.8 / max(1, len(labels))
    ncol = legend_columns(labels)
    legend_rows = math.ceil(len(labels) / ncol)
    fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH, 2.0 + 0.45 * len(groups) * max(1, len(labels))),
                                    3.2 + 0.25 * legend_rows))
    for i, (colour, label) in enumerate(zip(colours(labels), labels)):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(groups))]
        ys = [g.get(label, np.nan) for g in groups.values()]
        bars = ax.bar(xs, ys, width, color=colour, label=label, edgecolor="k", linewidth=0.4)
        if len(labels) * len(groups) <= 12:   # beyond that the numbers would overlap; the table has them
            ax.bar_label(bars, fmt="%.0f", fontsize=MIN_FONT)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=ncol, frameon=False)
    return finish(fig)


def frontier(points: Mapping[str, tuple], *, xlabel: str, ylabel: str, logx: bool = True, title: str = ""):
    """``points``: label → (cost, robustness, clean accuracy in [0, 1], group). One dot per
    label (its area grows with clean accuracy, its colour is the model's, its shape its group),
    and the Pareto frontier: the most robust model at or below each cost."""
    groups = list(dict.fromkeys(p[3] for p in points.values()))
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 4.4))
    markers = dict(zip(groups, "osD^v"))
    for (k, p), colour in zip(points.items(), colours(list(points))):   # colour: the model; shape: its group
        ax.scatter([p[0]], [p[1]], s=[20 + 180 * p[2] ** 4], color=colour, marker=markers.get(p[3], "o"),
                   alpha=0.85, edgecolor="k", linewidth=0.5)
        ax.annotate(k, (p[0], p[1]), textcoords="offset points", xytext=(5, 3), fontsize=MIN_FONT)
    for g in groups:
        ax.scatter([], [], color="white", edgecolor="k", marker=markers.get(g, "o"), label=g)
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
    ax.legend(loc="best")
    return finish(fig)

