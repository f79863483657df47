"""Verdicts and the closing "paper vs this run" table.

A verdict states a claim, the paper's number, the number measured in this run (with its
interval and n, see :mod:`robgen_lib.core.stats`), and one of ``reproduced`` / ``not
reproduced`` / ``reproduced only when …`` / ``inconclusive`` — decided by a test on the
measured values that the chapter shows next to it; ``inconclusive`` whenever the interval
of the deciding quantity straddles the chapter's bar, ``not informative`` when the
measurement cannot test the claim at all.

A verdict whose word has been seen to change between machines (another CPU rounds
differently, trains a slightly different model, and the decision falls the other way) is
printed as *unsettled*: the evidence of one run does not decide it, and the book's
notebook check (``tests/nbval_sanitize.cfg``) does not compare its word.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Verdict:
    claim: str
    paper: str
    measured: str
    status: str
    unsettled: bool = False

    @property
    def in_table(self) -> str:
        """The verdict word as a table cell shows it: bold, with a short unsettled mark."""
        return f"**{self.status}**" + (" (unsettled)" if self.unsettled else "")

    @property
    def shown(self) -> str:
        """The verdict word as printed, with the unsettled mark where it applies."""
        return f"{self.status} ({UNSETTLED})" if self.unsettled else self.status

    def __str__(self) -> str:
        return (f"Claim:    {self.claim}\nPaper:    {self.paper}\nThis run: {self.measured}\n"
                f"Verdict:  {self.shown}")

    @classmethod
    def parse_all(cls, text: str) -> list["Verdict"]:
        """The verdicts printed (by ``str``) in ``text``, e.g. a notebook cell's output, in order."""
        found = []
        for m in _PRINTED.finditer(text):
            word, mark = m["verdict"].strip(), f" ({UNSETTLED})"
            found.append(cls(m["claim"], m["paper"], m["measured"], word.removesuffix(mark), word.endswith(mark)))
        return found


#: How an unsettled verdict is marked (the notebook check keys on the word "unsettled").
UNSETTLED = ("unsettled: this word can change between runs on another CPU (its deciding numbers sit close to the "
             "bar); read it as inconclusive")


#: One printed verdict (see ``Verdict.__str__``).
_PRINTED = re.compile(r"^Claim:    (?P<claim>.*)\nPaper:    (?P<paper>.*)\nThis run: (?P<measured>.*)\n"
                      r"Verdict:  (?P<verdict>.*)$", re.MULTILINE)


#: The word of a claim whose deciding interval straddles the chapter's bar.
INCONCLUSIVE = "inconclusive"


#: The word of a claim the run's evidence cannot test (e.g. a 0 % accuracy that no attack can lower).
NOT_INFORMATIVE = "not informative"


def verdict(claim: str, paper: str, measured: str, holds: bool | None, *, only_when: str | None = None,
            unsettled: bool = False, informative: bool = True) -> Verdict:
    """``holds`` → reproduced; ``None`` (the evidence does not decide, see
    :func:`robgen_lib.core.stats.decide`) → inconclusive; else ``only_when`` (the
    conditions under which it does) or not reproduced.

    ``unsettled``: the word has been seen to flip between machines (see the module's docstring);
    ``informative=False``: the measurement cannot test the claim (→ not informative).
    """
    if not informative:
        status = NOT_INFORMATIVE
    elif holds is None:
        status = INCONCLUSIVE
    elif holds:
        status = "reproduced"
    elif only_when:
        status = f"reproduced only when {only_when}"
    else:
        status = "not reproduced"
    return Verdict(claim, paper, measured, status, unsettled)


def hypothesis(claim: str, measured: str, holds: bool | None, *, unsettled: bool = False,
               informative: bool = True) -> Verdict:
    """A question of this book's own (no paper number): ``holds`` / ``does not hold`` /
    ``inconclusive`` (``holds`` is ``None``) / ``not informative`` (``informative=False``)."""
    word = (NOT_INFORMATIVE if not informative else INCONCLUSIVE if holds is None
            else "holds" if holds else "does not hold")
    return Verdict(claim, "- (this book's question)", measured, word, unsettled)


@dataclass
class Report:
    """The verdicts of one chapter run, in order."""

    profile: str
    verdicts: list = field(default_factory=list)

    def add(self, v: Verdict) -> Verdict:
        self.verdicts.append(v)
        return v

    def markdown(self) -> str:
        return markdown_table(["claim", "paper", f"this run (profile `{self.profile}`)", "verdict"],
                              [(v.claim, v.paper, v.measured,
                               v.in_table)
                               for v in self.verdicts])


def markdown_table(headers, rows) -> str:
    """A Markdown table from a header list and rows of already formatted cells."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_budget(eps: float) -> str:
    """A budget as the paper would write it: its decimals when three digits say it exactly
    (0.3, 0.6, 2), else 8/255 when it is a multiple of 1/255, else 3 digits."""
    short, k = f"{eps:.3g}", eps * 255
    if abs(float(short) - eps) > 1e-12 and eps > 0 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return short


def quality_table(quality: dict, names) -> str:
    """Markdown table of IS-style, FID-style and agreement per scorer for the sample sets ``names``."""
    scorers = list(next(iter(quality.values())))
    head = ["samples"] + [f"{s}: {col}" for s in scorers for col in ("IS-style ↑", "FID-style ↓", "agrees")]
    rows = [[n] + [v for s in scorers for v in (f"{quality[n][s]['is_style']:.2f}", f"{quality[n][s]['fid_style']:.2f}",
                                                 f"{100 * quality[n][s]['agreement']:.0f} %")] for n in names]
    return markdown_table(head, rows)


def pct(fraction: float, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage: ``pct(0.4567)`` → ``'45.7 %'``."""
    return f"{100 * fraction:.{digits}f} %"


def table(rows: Mapping[Any, Mapping[str, Any]], index: str = ""):
    """A table to show in a notebook (an IPython ``Markdown`` object): one row per key of
    ``rows`` (the first column, headed ``index``), one column per key of the row dicts (in
    the first row's order); cells are shown as they are (format numbers first, e.g. with
    :func:`pct`)."""
    from IPython.display import Markdown   # the book's extras (ipykernel); the library runs without them

    columns = list(next(iter(rows.values()))) if rows else []
    return Markdown(markdown_table([index] + columns,
                                   [[name] + [row.get(c, "") for c in columns] for name, row in rows.items()]))


def models_table(models: Mapping[str, Any]):
    """What each trained model is: architecture, objective, test accuracy, trained now or cached."""
    return table({name: {"architecture": m.spec.get("arch", m.spec.get("recipe", "")),
                         "objective": (m.spec.get("objective") or {}).get("name", ""),
                         "test accuracy": pct(m.test_accuracy) if m.test_accuracy == m.test_accuracy else "",
                         "": "from cache" if m.from_cache else "trained now"}
                  for name, m in models.items()}, "model")


def glue_numbers(**values: float) -> None:
    """Make each number available to the chapter's prose (``{glue:text}`name```) without showing it."""
    from myst_nb import glue   # the book's extras

    for name, value in values.items():
        glue(name, value, display=False)
