"""How a verdict is printed, and the closing "paper vs this run" table.

A verdict states a claim (with its id in brackets), the paper's number, the number measured
in this run (with its interval and n, see :mod:`robgen_lib.core.stats`), and its word —
decided by the book's one rule (:mod:`robgen_lib.book.judge`) from the claim declared in
the chapter's claims table (:mod:`robgen_lib.book.claims`).
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

    @property
    def in_table(self) -> str:
        """The verdict word as a table cell shows it: the word in bold, its reason after it."""
        word, _, why = self.status.partition(" (")
        return f"**{word}**" + (f" ({why}" if why else "")

    @property
    def id(self) -> str | None:
        """The claim's id (printed in brackets at the end of the claim), or None for a
        verdict printed before claims had ids."""
        m = re.search(r" \[([\w-]+)\]$", self.claim)
        return m[1] if m else None

    @property
    def sentence(self) -> str:
        """The claim without its id."""
        return re.sub(r" \[[\w-]+\]$", "", self.claim)

    def __str__(self) -> str:
        return (f"Claim:    {self.claim}\nPaper:    {self.paper}\nThis run: {self.measured}\n"
                f"Verdict:  {self.status}")

    @classmethod
    def parse_all(cls, text: str) -> list["Verdict"]:
        """The verdicts printed (by ``str``) in ``text``, e.g. a notebook cell's output, in order."""
        return [cls(m["claim"], m["paper"], m["measured"], m["verdict"].strip()) for m in _PRINTED.finditer(text)]


#: One printed verdict (see ``Verdict.__str__``).
_PRINTED = re.compile(r"^Claim:    (?P<claim>.*)\nPaper:    (?P<paper>.*)\nThis run: (?P<measured>.*)\n"
                      r"Verdict:  (?P<verdict>.*)$", re.MULTILINE)


#: The word of a claim whose deciding interval straddles the chapter's bar.
INCONCLUSIVE = "inconclusive"


#: The word of a claim the run's evidence cannot test (e.g. a 0 % accuracy that no attack can lower).
NOT_INFORMATIVE = "not informative"


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
    """A Markdown table from a header list and rows of already formatted cells (a ``|`` inside
    a cell is escaped)."""
    def cell(c) -> str:
        return str(c).replace("|", "\\|")   # a bar inside a cell (|x|) must not end it

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
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
