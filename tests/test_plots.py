"""The figures fit the page and keep one colour per model across chapters."""
import matplotlib

matplotlib.use("Agg")

import io

import numpy as np
import PIL.Image
import pytest
from matplotlib.text import Text

from robgen_lib.book import plots

BOOK_MODELS = ["standard CNN", "PGD-trained CNN", "noise-trained CNN (σ = 0.25)", "JEAT", "diffusion classifier",
               "RDC", "ABS", "E-ABS-style", "smoothed CNN (σ = 0.25)"]
rng = np.random.default_rng(0)


def every_helper():
    """Each helper as a chapter calls it, at the widest a chapter draws it."""
    x = [1, 2, 4, 8]
    lines = {m: list(rng.uniform(0, 100, 4)) for m in BOOK_MODELS[:4]}
    yield "energy_histograms", plots.energy_histograms(
        {f"model {i}": {"clean": rng.normal(size=200), "PGD-5": rng.normal(1, size=200)} for i in range(3)})
    yield "energy_histograms, long labels", plots.energy_histograms(     # chapter 2's
        {m: {"clean": rng.normal(size=200), **{f"{a}, 20 steps": rng.normal(1, size=200)
                                               for a in ("PGD", "HE-PGD (λ = 1.5)")}} for m in BOOK_MODELS[:2]})
    yield "curves_with_accuracy", plots.curves_with_accuracy(
        x, {"standard": {"mean_energy": [1, 2, 3, 4], "accuracy": [1, .5, .2, 0]},
            "adversarially trained": {"mean_energy": [1, 1, 1, 2], "accuracy": [.9, .8, .7, .6]}}, xlabel="steps")
    yield "roc_curves", plots.roc_curves({"standard": ([0, .5, 1], [0, .7, 1], .6), "PGD-trained CNN": ([0, 1], [0, 1], .5)})
    yield "series", plots.series(x, lines, xlabel="T′", ylabel="accuracy (%)", logx=True)
    yield "panels", plots.panels(x, {"ℓ∞": lines, "ℓ2": lines, "huge": lines}, xlabel="ε", ylabel="robust accuracy (%)")
    attacks = {f"{m}, {a}": list(rng.uniform(0, 100, 4)) for m in BOOK_MODELS for a in ("book's PGD", "APGD-CE")}
    yield "panels, many lines", plots.panels(x, {"ℓ∞": attacks, "ℓ2": attacks}, xlabel="ε",   # chapter 6's
                                             ylabel="robust accuracy (%)")
    yield "tradeoff", plots.tradeoff({"standard": [(0, 1, "λ=0"), (1, 2, "λ=1")]}, xlabel="Δ", ylabel="ΔE")
    yield "contours", plots.contours({"standard": [rng.normal(size=(9, 9))] * 4,
                                      "adversarially trained": [rng.normal(size=(9, 9))] * 4}, np.linspace(-1, 1, 9))
    yield "mosaics, one column", plots.mosaics(                                     # chapter 5's
        {label: rng.uniform(size=(6, 1, 28, 28)) for label in ("class 7 images", "noise", "2/16: class 8's model",
                                                               "2/16: noise by class 0", "32/256: class 8's model",
                                                               "32/256: noise by class 0")}, cols=1, width=1.6)
    yield "mosaics", plots.mosaics({f"block {i}": rng.uniform(size=(20, 1, 28, 28)) for i in range(5)}, cols=4,
                                   title="the same seeds per class")
    yield "grouped_bars", plots.grouped_bars({t: {m: 50.0 for m in BOOK_MODELS} for t in ("ℓ∞", "ℓ2")},
                                             ylabel="robust accuracy (%)")
    from robgen_lib.book.analysis import jeat

    sig = [0.0, 0.1, 0.25]
    rating = {"standard scorer": {"is_style": 2.0, "fid_style": 1.0}, "robust scorer": {"is_style": 2.0, "fid_style": 1.0}}
    quality = {**{n: rating for n in jeat.sweep_names(sig)}, "adversarially trained": rating}
    flat = {n: {"grad_norm": 1.0} for n in quality}
    yield "sigma_sweep_figure", jeat.sigma_sweep_figure(quality, flat, sig, other_seeds=[quality])
    history = {"test_accuracy": [0.5, 0.9], "energy_data": [1.0, 2.0], "energy_samples": [3.0, 2.0]}
    yield "training_history_figure", jeat.training_history_figure(history, history)
    yield "frontier", plots.frontier({m: (10.0 ** i, 10 * i, 0.9, "generative" if i > 3 else "discriminative")
                                      for i, m in enumerate(BOOK_MODELS)}, xlabel="ms", ylabel="robust (%)")


@pytest.mark.parametrize("name, fig", list(every_helper()), ids=lambda v: v if isinstance(v, str) else "")
def test_a_figure_fits_the_page_and_no_text_is_smaller_than_nine_points(name, fig):
    png = io.BytesIO()
    fig.savefig(png, format="png", bbox_inches="tight")      # what the notebook's page receives
    width = PIL.Image.open(png).size[0] / fig.dpi
    assert width <= plots.PAGE_WIDTH, f"{name}: {width:.2f} in wide, the page holds {plots.PAGE_WIDTH}"
    small = {(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() < plots.MIN_FONT}
    assert not small, f"{name}: text below {plots.MIN_FONT} pt: {sorted(small)[:5]}"
    matplotlib.pyplot.close(fig)


def test_each_book_model_has_its_own_colour_in_every_kind_of_figure():
    own = [plots.model_colour(m) for m in BOOK_MODELS]
    assert None not in own and len(set(own)) == len(BOOK_MODELS)
    assert set(own) - {"#7F7F7F"} <= set(plots.PALETTE)                       # Okabe–Ito (and a grey)
    # the names the chapters give the same model
    assert plots.model_colour("adversarially trained") == plots.model_colour("PGD-trained CNN")
    assert plots.model_colour("diffusion classifier (fixed noise)") == plots.model_colour("diffusion classifier")
    assert plots.model_colour("standard") == plots.model_colour("standard CNN")
    assert plots.model_colour("HE-PGD (λ = 2)") is None and plots.model_colour("PGD") is None   # attacks are not models
    bars = plots.grouped_bars({"ℓ∞": {"RDC": 1.0, "standard CNN": 2.0}}, ylabel="%")
    lines = plots.series([1, 2], {"clean": [1, 2], "standard CNN": [1, 2], "RDC": [2, 1]}, xlabel="x", ylabel="y")
    bar_colour = {p.get_label(): matplotlib.colors.to_hex(p.patches[0].get_facecolor())
                  for p in bars.axes[0].containers}
    line_colour = {ln.get_label(): matplotlib.colors.to_hex(ln.get_color()) for ln in lines.axes[0].lines}
    for m in ("RDC", "standard CNN"):
        assert bar_colour[m] == line_colour[m] == plots.model_colour(m).lower()
    assert line_colour["clean"] not in (line_colour["RDC"], line_colour["standard CNN"])   # a free colour


def test_series_without_models_take_distinct_colours():
    got = plots.colours(["clean", "PGD-5", "PGD-40", "HE-PGD"])
    assert got == plots.PALETTE[:4] and len(set(got)) == 4
    assert plots.colours(["clean", "standard CNN"])[0] != plots.model_colour("standard CNN")


def test_the_reading_guide_shows_each_models_colour_as_the_figures_draw_it():
    import os
    import re

    guide = open(os.path.join(os.path.dirname(__file__), "..", "guide.md"), encoding="utf-8").read()
    rows = dict(re.findall(r"^\| ([^|]+?) \| <span style=\"color:(#[0-9A-F]{6})\">", guide, re.M))
    assert len(rows) == len(BOOK_MODELS)
    for name, colour in rows.items():
        assert plots.model_colour(name) == colour, name
